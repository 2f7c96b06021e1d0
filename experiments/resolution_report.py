"""The report of the first rung with a "Resolution" section comparing every rung of the ladder that ran.

A thin wrapper of `ncajax report --rung ...` (the same flags; `ncajax report --help`; the old
`--corpora FILE` is still accepted here for `--across-corpora FILE`). Run (after the study ran at each preset, e.g. `reproduce.py --corpora 2 --out runs/corpora` and
`reproduce.py --preset mid --seeds 3 --out runs/mid`):
    python experiments/resolution_report.py --rung fast=runs/corpora/corpus-0 --rung mid=runs/mid \\
        --corpora runs/corpora/across_corpora.json --figures-dir figures

Yields: `<first rung>/REPORT.md` rewritten with the Resolution section (and the across-corpora section
when --corpora is given), `<first rung>/resolution.json` (the numbers behind it, `ncajax.report`), and
with --figures-dir the report, its figures, resolution.json, conclusion.json and timings.json (with
--corpora: across_corpora.json and the timings of every corpus) copied there. Nothing is
trained or fitted: it reads the finished runs.
"""

from __future__ import annotations

from ncajax import cli

LEGACY = {"--corpora": "--across-corpora"}  # this script's old spelling


def main(argv=None) -> int:
    return cli.run("report", cli.legacy_flags(argv, LEGACY))


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
