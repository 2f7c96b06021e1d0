"""Draw every figure of a finished (or partly finished) study run from its saved results alone.

Run:
    python experiments/make_figures.py                                # runs/default -> figures/
    python experiments/make_figures.py --run-dir runs/musdb --out runs/musdb/figures
    python experiments/make_figures.py --musdb-root ~/musdb18 --run-dir runs/musdb  # +spectrograms

Yields, under --out (default figures/, the committed figures of the default run), a PNG and a PDF
of each figure whose inputs exist: mapping_matrices_<setting> (the NCA matrices of the three
models, full band and 0-1 kHz), estimator_matrices(_zoom), structure_metrics, training_curves,
fit_loss_curves, linearity, separation_quality, per_track_structure and spectrograms. Nothing is
trained or fitted; the spectrogram figure restores the trained checkpoints to run them on one test
track (for MUSDB18 runs it needs --musdb-root: run directories do not record the dataset's path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ncajax import plots


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--run-dir", default="runs/default", help="study run directory (reproduce.py --out)"
    )
    ap.add_argument("--out", default="figures", help="where the PNG and PDF files go")
    ap.add_argument(
        "--musdb-root",
        default=None,
        help="MUSDB18 root of a MUSDB18 run (only for the spectrogram figure)",
    )
    ap.add_argument(
        "--no-spectrograms",
        action="store_true",
        help="skip the spectrogram figure (the only one that runs the models)",
    )
    args = ap.parse_args(argv)

    data = None
    if args.musdb_root is not None and not args.no_spectrograms:
        from ncajax import pipeline, runs

        train_dirs = sorted(Path(args.run_dir, "train").glob("*/config.json"))
        if not train_dirs:
            raise FileNotFoundError(f"no trained model under {Path(args.run_dir) / 'train'}")
        desc = runs.read_json(train_dirs[0])["data"]
        data = pipeline.prepare_data(
            musdb_root=args.musdb_root,
            is_wav=desc.get("is_wav"),
            preset_name=desc.get("preset", "fast"),
        )
    written = plots.make_all(
        args.run_dir, args.out, data=data, with_spectrograms=not args.no_spectrograms
    )
    for p in written:
        print(p)
    if not written:
        print(f"no figure written: {args.run_dir} holds no results yet", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
