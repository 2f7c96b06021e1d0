"""Training-step throughput of the separators: frames/s, GFLOP/s and % of the measured matmul rate.

Times `Trainer(...).step` from `ncajax.training` (jitted once, state donated, seeds vmapped: exactly what
`train_model` runs) on random frames, interleaved with jnp.dot at the step's own matmul shapes
("shape" yardstick) and at a large square ("square" yardstick). FLOPs: `flops.train_step_matmuls`,
cross-checked with XLA's cost analysis.

    python benchmarks/bench_train.py [--quick] [--models dae ...] [--bins 513 1025] [--batch 64 256]
"""

from __future__ import annotations

import common
import flops
import jax
import jax.numpy as jnp
import numpy as np

from ncajax import models, training
from ncajax.config import MODEL_NAMES, TrainConfig

TARGET_PCT = 80.0  # N = 1025, batch 256: >= 80 % of the measured matmul rate


def bench_one(name: str, n_bins: int, batch: int, seeds: int, repeats: int, platform: str) -> dict:
    model = models.build(name, n_bins)
    trainer = training.Trainer(model, TrainConfig(batch_size=batch, n_seeds=seeds))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((seeds, batch, n_bins), np.float32))
    y = jnp.asarray(0.5 * np.asarray(x))
    holder = [trainer.unstack(trainer.init())]  # what train_model steps on (one seed: no seed axis)
    xla = flops.xla_flops(jax.jit(trainer.step), holder[0], (x, y))  # Trainer.step is a method

    def step():
        holder[0], metrics = trainer.step(holder[0], (x, y))
        return holder[0], metrics

    shapes = flops.train_step_matmuls(name, batch, n_bins) * seeds
    shape_ref = common.DotRef(shapes, tag="shape")
    square_ref = common.DotRef([common.square_ref(platform)], tag="square")
    times = common.interleaved(
        {"step": step, **shape_ref.fns(), **square_ref.fns()}, repeats=repeats, warmup=2
    )
    t = common.median(times["step"])
    fl = common.matmul_flops(shapes)
    rate = fl / t
    rec = {
        "bench": "train_step",
        "model": name,
        "n_bins": n_bins,
        "batch": batch,
        "seeds": seeds,
        "step_ms": 1e3 * t,
        "frames_per_s": seeds * batch / t,
        "steps_per_s": 1 / t,
        "matmul_gflop_per_step": fl / 1e9,
        "xla_gflop_per_step": None if xla is None else xla / 1e9,
        "gflops": rate / 1e9,
        "dot_shape_gflops": shape_ref.rate(times) / 1e9,
        "dot_square_gflops": square_ref.rate(times) / 1e9,
        "spread": common.spread(times["step"]),
        "repeats": repeats,
    }
    rec["pct_of_dot_shape"] = 100 * rate / shape_ref.rate(times)
    rec["pct_of_dot_square"] = 100 * rate / square_ref.rate(times)
    if n_bins == 1025 and batch == 256:
        rec["target"] = f">= {TARGET_PCT:.0f} % of dot_shape"
        rec["met"] = bool(rec["pct_of_dot_shape"] >= TARGET_PCT)
    return rec


COLUMNS = ["model", "n_bins", "batch", "seeds", "step_ms", "frames_per_s", "gflops",
           "dot_shape_gflops", "dot_square_gflops", "pct_of_dot_shape", "pct_of_dot_square",
           "xla_gflop_per_step", "matmul_gflop_per_step", "spread", "met"]


def main(argv=None) -> list[dict]:
    ap = common.parser(__doc__)
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    ap.add_argument("--bins", nargs="+", type=int, default=None)
    ap.add_argument("--batch", nargs="+", type=int, default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1],
                    help="seeds vmapped in one step (the main job trains 3)")
    args = ap.parse_args(argv)
    info = common.header("bench_train")
    bins = args.bins or ([1025] if args.quick else [513, 1025])
    batches = args.batch or ([256] if args.quick else [64, 256])
    repeats = args.repeats or (3 if args.quick else 7)
    rows = []
    for n_bins in bins:
        for batch in batches:
            for seeds in args.seeds:
                for name in args.models:
                    rec = bench_one(name, n_bins, batch, seeds, repeats, info["platform"])
                    rec["platform"] = info["platform"]
                    common.emit(rec)
                    rows.append(rec)
    print(common.table(rows, COLUMNS), flush=True)
    return rows


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", False)
    main()
