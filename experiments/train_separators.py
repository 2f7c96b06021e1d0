"""Train the three separators (dae, dae_deep, dae_sf), several seeds each in one vmapped program.

A thin wrapper of `ncajax train` (the same flags and defaults; `ncajax train --help` lists them; the
training rate is `--train-lr`, the old `--lr` is still accepted here). The default is the study's recipe
(`--recipe study`: standardised, L1, +-12 dB gain), as in `ncajax reproduce`.

Run:
    python experiments/train_separators.py                      # embedded synthetic corpus, fast preset
    python experiments/train_separators.py --preset mid              # 16 kHz, N = 513
    python experiments/train_separators.py --musdb-root ~/musdb18 --preset paper
    python experiments/train_separators.py --musdb-root ~/musdb18hq --is-wav
    python experiments/train_separators.py --corpus-seed 4 --out runs/corpus4/train
    python experiments/train_separators.py --augment-remix 0.5 --augment-stem-gain-db 6

Yields, under --out (default runs/default/train): one run directory per model with config.json,
meta.json (git commit, versions), metrics.jsonl (per epoch), Orbax checkpoints (latest + best) and
result.json (test-set magnitude SDR per seed next to the mixture's). Re-running resumes or reuses.
"""

from __future__ import annotations

from ncajax import cli

LEGACY = {"--lr": "--train-lr"}  # this script's old spelling


def main(argv=None):
    return cli.run("train", cli.legacy_flags(argv, LEGACY))


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
