"""The mapping stage's iterative fits at the main job's size: S seeds of one model fitted in one program.

Times `nca.fit_mapping` for "nca" (the authors' input-column bias) and "student" with S seeds (params with a
leading seed axis, one init key per fit), F frames and the given steps, as the mapping stage runs them, on
whatever device JAX sees. Compilation is excluded (one warm-up call with the same shapes).

    python benchmarks/bench_mapping_fits.py [--seeds 10] [--frames 1024] [--steps 3000] [--bins 129]
"""

from __future__ import annotations

import time

import common
import jax
import jax.numpy as jnp
import numpy as np

from ncajax import models, nca


def main(argv=None) -> list[dict]:
    ap = common.parser(__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--bins", type=int, default=129)
    ap.add_argument("--models", nargs="+", default=["dae", "dae_deep", "dae_sf"])
    args = ap.parse_args(argv)
    info = common.header("bench_mapping_fits")
    rows = []
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(args.seeds, args.frames, args.bins))).astype(np.float32)
    for name in args.models:
        model = models.build(name, args.bins)
        keys = jax.random.split(jax.random.key(0), args.seeds)
        params = jax.vmap(lambda k, m=model: models.init_params(m, k))(keys)
        for method in ("nca", "student"):
            est = (nca.NCA if method == "nca" else nca.Student)(steps=args.steps, learning_rate=1e-3)
            kw = dict(seed=list(range(args.seeds)), params_axis=0)
            nca.fit_mapping(model, params, x, est, **kw)  # compile
            t0 = time.perf_counter()
            fit = nca.fit_mapping(model, params, x, est, **kw)
            jnp.asarray(fit.matrix).block_until_ready()
            wall = time.perf_counter() - t0
            row = {"bench": "mapping_fits", "model": name, "method": method, "seeds": args.seeds,
                   "frames": args.frames, "steps": args.steps, "n_bins": args.bins, "wall_s": round(wall, 3),
                   "fit_steps_per_s": round(args.seeds * args.steps / wall, 1), "platform": info["platform"]}
            common.emit(row)
            rows.append(row)
    print(common.table(rows, ["model", "method", "seeds", "frames", "steps", "wall_s", "fit_steps_per_s"]),
          flush=True)
    return rows


if __name__ == "__main__":
    main()
