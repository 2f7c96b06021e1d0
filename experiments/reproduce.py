"""The main job: corpus -> features -> three separators x 10 seeds -> mapping fits (fitted on the training
songs, judged on unseen test songs) -> evaluation -> figures -> report with the verdict and its seed x song
intervals.

A thin wrapper of `ncajax reproduce` (the same flags and defaults; `ncajax reproduce --help` lists them).
Run (the README's `make reproduce` does the first in a fresh virtualenv):
    python experiments/reproduce.py                               # embedded corpus, corpus seed 0
    python experiments/reproduce.py --corpora 3 --out runs/corpora --figures-dir figures   # the committed figures/
    python experiments/reproduce.py --corpus-seed 4 --out runs/corpus4
    python experiments/reproduce.py --preset mid --out runs/mid      # 16 kHz, N = 513 (the middle rung)
    python experiments/reproduce.py --musdb-root ~/musdb18 --preset paper --out runs/musdb
    python experiments/reproduce.py --musdb-root ../shared/data/musdb18-sample --out runs/sample --seeds 3
    python experiments/reproduce.py --config runs/corpus4/study.json     # the same study again

Yields under --out (default runs/default): train/<model>/ (checkpoints, metrics), mappings/ (matrices,
errors per seed and song, structure metrics), evaluation/ (museval and magnitude SDR, also on the real
MUSDB18 track of --real-test), figures/ (PNG + PDF), REPORT.md, conclusion.json and timings.json.
With --corpora K: one such study per corpus seed in --out/corpus-<seed>/, plus across_corpora.json and
--out/REPORT.md (the first corpus's report with the verdict across all K). --out/study.json records the
options (`ncajax.study.StudyConfig`; `--config` reads it back). A stage whose outputs exist
for the same config is skipped, so re-running after an interruption continues where it stopped.
"""

from __future__ import annotations

from ncajax import cli
from ncajax.study._options import REAL_TEST  # noqa: F401  (the real MUSDB18 folder scored by default)


def parse(argv=None):
    """The options `ncajax reproduce` parses from `argv`, as one flat namespace (`parse(argv).preset`)."""
    return cli.flat(cli.parse("reproduce", argv))


def main(argv=None):
    return cli.run("reproduce", argv)


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
