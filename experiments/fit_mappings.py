"""Fit the mapping functions of the trained separators (NCA, linear student, least squares, mean Jacobian).

A thin wrapper of `ncajax fit` (the same flags and defaults; `ncajax fit --help` lists them; the old
`--steps`, `--lr` and `--frames` are still accepted here for `--fit-steps`, `--fit-lr`, `--fit-frames`).
The data options default to those the training run under --train-dir recorded (preset, corpus seed and
size), so nothing has to be repeated after experiments/train_separators.py.

Run (after experiments/train_separators.py):
    python experiments/fit_mappings.py                                  # runs/default/train -> mappings
    python experiments/fit_mappings.py --fit-steps 5000 --fit-lr 1e-3 --out runs/default/mappings-long
    python experiments/fit_mappings.py --train-dir runs/corpus4/train --out runs/corpus4/mappings

For every model (all seeds in one vmapped program per setting, each fit with its own initialisation key)
and every setting (the authors' NCA at their defaults and converged, the converged linear student, least
squares and the exact mean Jacobian; --extra-settings adds the NCA variants), fitted on frames pooled over
the training songs, yields under --out: matrices/*.npz (matrices and loss curves), metrics.jsonl and
result.json (relative L1 error on the fitted frames and on every unseen test song, raw and clipped at 0,
the zero and per-bin-gain baselines, convergence, structure metrics per seed and song, dead units,
Jacobian spread).
"""

from __future__ import annotations

from ncajax import cli

LEGACY = {"--steps": "--fit-steps", "--lr": "--fit-lr", "--frames": "--fit-frames"}  # the old spellings


def main(argv=None):
    return cli.run("fit", cli.legacy_flags(argv, LEGACY))


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
