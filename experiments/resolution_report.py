"""The report of the first rung with a "Resolution" section comparing every rung of the ladder that ran.

Run (after the study ran at each preset, e.g. `reproduce.py --corpora 2 --out runs/corpora` and
`reproduce.py --preset mid --seeds 3 --out runs/mid`):
    python experiments/resolution_report.py --rung fast=runs/corpora/corpus-0 --rung mid=runs/mid \\
        --corpora runs/corpora/across_corpora.json --figures-dir figures

Yields: `<first rung>/REPORT.md` rewritten with the Resolution section (and the across-corpora section
when --corpora is given), `<first rung>/resolution.json` (the numbers behind it, `ncajax.resolution`), and
with --figures-dir the report, its figures, resolution.json, conclusion.json and timings.json (with
--corpora: across_corpora.json and the timings of every corpus) copied there. Nothing is
trained or fitted: it reads the finished runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ncajax import report, resolution, runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rung", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="a finished study run of one preset (repeat; the first one's report is written)")
    ap.add_argument("--corpora", default=None, help="across_corpora.json of the first rung's --corpora study")
    ap.add_argument("--figures-dir", default=None, help="also copy the report, figures and JSON here")
    args = ap.parse_args(argv)
    rungs = {}
    for item in args.rung:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--rung {item!r}: write NAME=RUN_DIR, e.g. --rung mid=runs/mid")
        rungs[name] = Path(path)
    summary = resolution.summarise(rungs)
    first = next(iter(rungs.values()))
    runs.write_json(first / "resolution.json", summary)
    corpora = runs.read_json(Path(args.corpora)) if args.corpora else None
    timings = runs.read_json(first / "timings.json") if (first / "timings.json").exists() else None
    path = report.write_report(first, first / "REPORT.md", timings=timings, corpora=corpora, resolution=summary)
    print(f"report: {path}")
    if args.figures_dir:
        dest = Path(args.figures_dir)
        report.copy_outputs(first, dest)
        srcs = [first / "resolution.json", first / "conclusion.json"]
        if args.corpora:  # the across-corpora summary and the timings of every corpus beside it
            srcs += [Path(args.corpora), Path(args.corpora).parent / "timings.json"]
        else:
            srcs.append(first / "timings.json")
        for src in srcs:
            if src.exists():
                shutil.copy2(src, dest / src.name)
        print(f"copied to {dest}")
    return 0


if __name__ == "__main__":
    from ncajax import cli

    sys.exit(cli.run(main))
