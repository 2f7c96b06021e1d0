"""Fit the mapping functions of the trained separators (NCA, linear student, least squares, mean Jacobian).

Run (after experiments/train_separators.py, with the same data options):
    python experiments/fit_mappings.py                                  # runs/default/train -> mappings
    python experiments/fit_mappings.py --steps 5000 --lr 1e-3 --out runs/default/mappings-long

For every model (all seeds in one vmapped program per setting, each fit with its own initialisation key)
and every setting (the authors' NCA at their defaults and converged, the converged linear student, least
squares and the exact mean Jacobian; --extra-settings adds the NCA variants), fitted on frames pooled over
the training songs, yields under --out: matrices/*.npz (matrices and loss curves), metrics.jsonl and
result.json (relative L1 error on the fitted frames and on every unseen test song, raw and clipped at 0,
the zero and per-bin-gain baselines, convergence, structure metrics per seed and song, dead units,
Jacobian spread).
"""

from __future__ import annotations

import argparse

from ncajax import mappings, pipeline
from ncajax.config import FIT_LEARNING_RATE, FIT_STEPS, check_fit_frames, jacobian_chunk_for, preset


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline.add_data_arguments(ap, stage_dirs=("runs/default/train", "runs/default/mappings"))
    ap.add_argument("--steps", type=int, default=FIT_STEPS, help="steps of the converged iterative fits")
    ap.add_argument("--lr", type=float, default=FIT_LEARNING_RATE, help="learning rate of the converged fits")
    ap.add_argument("--fit-frames", "--frames", dest="frames", type=int, default=None,
                    help="training-song frames per fit (default 4 N rounded up to a multiple of 256, at least "
                         "1024: fast 1024, mid 2304, paper 8448; at least N)")
    ap.add_argument("--jacobian-chunk", type=int, default=None,
                    help="frames of per-frame Jacobians formed at a time, seed by seed (default: automatic)")
    ap.add_argument("--heldout-frames", type=int, default=256, help="frames of each unseen test song scored")
    ap.add_argument("--extra-settings", action="store_true", help="also the NCA variants and the 600-step student")
    args = ap.parse_args(argv)
    stft = preset(args.preset)  # every size checked against the preset's N before any work
    check_fit_frames(args.frames, stft.n_bins, option="--fit-frames", preset_name=args.preset)
    jacobian_chunk_for(stft.n_bins, args.jacobian_chunk, option="--jacobian-chunk")
    cfg = mappings.MappingConfig(settings=mappings.default_settings(args.steps, args.lr, extra=args.extra_settings),
                                 n_fit_frames=args.frames, heldout_frames_per_song=args.heldout_frames,
                                 jacobian_chunk=args.jacobian_chunk).resolved(stft, preset_name=args.preset)
    data = pipeline.data_from_arguments(args)
    result = pipeline.fit_all(data, args.train_dir, args.out, cfg=cfg, model_names=tuple(args.models))
    print(f"{len(result['records'])} fits in {result['wall_s']:.1f} s -> {args.out}")


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
