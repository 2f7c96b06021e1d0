"""Draw every figure of a finished (or partly finished) study run from its saved results alone.

Run:
    python experiments/make_figures.py                                # runs/default -> figures/
    python experiments/make_figures.py --run-dir runs/musdb --out runs/musdb/figures

Yields, under --out (default figures/, where the committed figures of runs/corpora/corpus-0 live), a PNG and a PDF
of each figure whose inputs exist: mapping_matrices_<setting> (the NCA matrices of the three
models, full band and 0-1 kHz), estimator_matrices(_zoom), structure_metrics, direction_intervals,
heldout_error, training_curves, fit_loss_curves, linearity, separation_quality and spectrograms.
Nothing is trained, fitted or run: the spectrogram figure draws the excerpt the evaluation stage
saved (evaluation/spectrograms.npz).
"""

from __future__ import annotations

import argparse
import sys

from ncajax import plots


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--run-dir", default="runs/default", help="study run directory (reproduce.py --out)"
    )
    ap.add_argument("--out", default="figures", help="where the PNG and PDF files go")
    args = ap.parse_args(argv)

    written = plots.make_all(args.run_dir, args.out)
    for p in written:
        print(p)
    if not written:
        print(f"no figure written: {args.run_dir} holds no results yet", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
