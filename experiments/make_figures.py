"""Draw every figure of a finished (or partly finished) study run from its saved results alone.

A thin wrapper of `ncajax figures` (the same flags and defaults; `ncajax figures --help`).

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

from ncajax import cli


def main(argv=None) -> int:
    return cli.run("figures", argv)


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
