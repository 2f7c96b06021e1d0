"""Fit the mapping functions of the trained separators (NCA, linear student, least squares, mean Jacobian).

Run (after experiments/train_separators.py, with the same data options):
    python experiments/fit_mappings.py                                  # runs/default/train -> mappings
    python experiments/fit_mappings.py --steps 5000 --lr 1e-3 --out runs/default/mappings-long

For every model (all seeds in one vmapped program per setting) and every setting — the authors' NCA (600
steps, lr 1e-4, Xavier-normal), a converged NCA with the Xavier and the uniform start, the student at both
settings, ridge least squares and the exact mean Jacobian — yields under --out: matrices/*.npz (matrices and
loss curves), per_track/*.npz (one fit per test track, vmapped), metrics.jsonl and result.json (fidelity on the
fitted and held-out tracks, convergence, structure metrics, dead units, Jacobian spread).
"""

from __future__ import annotations

import argparse

from ncajax import mappings, pipeline


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline.add_data_arguments(ap, stage_dirs=("runs/default/train", "runs/default/mappings"))
    ap.add_argument("--steps", type=int, default=3000, help="steps of the converged iterative fits")
    ap.add_argument("--lr", type=float, default=1e-3, help="learning rate of the converged fits")
    ap.add_argument("--frames", type=int, default=1024, help="pooled frames per fit")
    ap.add_argument("--heldout-tracks", type=int, default=2)
    args = ap.parse_args(argv)
    data = pipeline.data_from_arguments(args)
    cfg = mappings.MappingConfig(settings=mappings.default_settings(args.steps, args.lr),
                                 n_fit_frames=args.frames, heldout_tracks=args.heldout_tracks)
    result = pipeline.fit_all(data, args.train_dir, args.out, cfg=cfg, model_names=tuple(args.models))
    print(f"{len(result['records'])} fits in {result['wall_s']:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
