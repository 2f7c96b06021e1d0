"""Train the three separators (dae, dae_deep, dae_sf), several seeds each in one vmapped program.

Run:
    python experiments/train_separators.py                      # embedded synthetic corpus, fast preset
    python experiments/train_separators.py --preset mid              # 16 kHz, N = 513
    python experiments/train_separators.py --musdb-root ~/musdb18 --preset paper
    python experiments/train_separators.py --musdb-root ~/musdb18hq --is-wav

Yields, under --out (default runs/default/train): one run directory per model with config.json,
meta.json (git commit, versions), metrics.jsonl (per epoch), Orbax checkpoints (latest + best) and
result.json (test-set magnitude SDR per seed next to the mixture's). Re-running resumes or reuses.
"""

from __future__ import annotations

import argparse
import json

from ncajax import pipeline
from ncajax.config import STUDY_SEEDS, TrainConfig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/default/train")
    pipeline.add_data_arguments(ap)
    ap.add_argument("--seeds", type=int, default=STUDY_SEEDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.learning_rate)
    ap.add_argument("--loss", default="mse", choices=["mse", "l1", "gkl"])
    ap.add_argument("--augment-remix", type=float, default=TrainConfig.augment_remix,
                    help="probability that a training example's stems come from different songs (0-1)")
    ap.add_argument("--augment-stem-gain-db", type=float, default=TrainConfig.augment_stem_gain_db,
                    help="half-width (dB) of each stem's random gain in training (0-24)")
    args = ap.parse_args(argv)

    cfg = TrainConfig(  # checked before the data are prepared
        learning_rate=args.lr, batch_size=args.batch_size, max_epochs=args.epochs, loss=args.loss,
        seed=args.seed, n_seeds=args.seeds, augment_remix=args.augment_remix,
        augment_stem_gain_db=args.augment_stem_gain_db,
    )
    data = pipeline.data_from_arguments(args)
    results = pipeline.train_all(data, args.out, model_names=tuple(args.models), train_cfg=cfg)
    summary = {name: r.result.get("test_improvement_db") for name, r in results.items()}
    print(json.dumps({"test_improvement_db": summary}, indent=1))


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
