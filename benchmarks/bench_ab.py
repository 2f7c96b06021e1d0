"""In-process A/B of this round's two code changes, interleaved (A B A B ...) so both see the same load.

- train: `Trainer.step` for one seed on the stacked state (a size-1 `jax.vmap` of the single-seed step,
  the layout of `Trainer.init`) against the unstacked working layout (`Trainer.unstack`: the plain
  single-seed program, what `train_model` runs for one seed on one device), same state and batch.
- nca: one NCA Adam step (value_and_grad of `nca.nca_loss` + optax.adam, jitted, F = 512) with the
  matrix chain in "product" order (C formed every step, as before) against "chain" order (the default
  for F < N), same P.

    python benchmarks/bench_ab.py [--n 513 1025] [--reps 7]
"""

# ruff: noqa: B023  (closures are called within the loop iteration that defines them)

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ncajax import models, training
from ncajax.config import TrainConfig
from ncajax.nca import _couplings as nca


def race(fns: dict, reps: int, target: float = 0.3) -> dict:
    for f in fns.values():
        for _ in range(2):
            jax.block_until_ready(f())
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0, it = time.perf_counter(), 0
            while time.perf_counter() - t0 < target or it < 2:
                jax.block_until_ready(f())
                it += 1
            times[k].append((time.perf_counter() - t0) / it)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[513, 1025])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    print(f"# bench_ab: load {os.getloadavg()[0]:.2f} at the start")
    print("| case | N | before ms | after ms | before / after | load |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in args.n:
        for name, batch in ((m, b) for b in (64, 256) for m in ("dae", "dae_deep", "dae_sf")):
            model = models.build(name, n)
            cfg = TrainConfig(batch_size=batch, n_seeds=1, loss="mse", recipe="raw", augment_gain_db=0.0)
            tr = training.Trainer(model, cfg)
            x = rng.random((1, batch, n), np.float32)
            data = (jnp.asarray(x), jnp.asarray(0.5 * x))
            sa, sb = [tr.init()], [tr.unstack(tr.init())]

            def a(sa=sa, data=data, tr=tr):
                sa[0], _ = tr.step(sa[0], data)
                return sa[0]

            def b(sb=sb, data=data, tr=tr):
                sb[0], _ = tr.step(sb[0], data)
                return sb[0]

            t = race({"before": a, "after": b}, args.reps)
            print(f"| train {name} B={batch} | {n} | {1e3 * t['before']:.3g} | {1e3 * t['after']:.3g} | "
                  f"{t['before'] / t['after']:.2f} | {os.getloadavg()[0]:.2f} |", flush=True)
        for name in ("dae", "dae_deep"):
            model = models.build(name, n)
            params = models.init_params(model, jax.random.key(0))
            layers = [(jnp.asarray(k), jnp.asarray(b)) for k, b in models.dense_layers(params)]
            xf = jnp.asarray(rng.random((512, n), np.float32) ** 2)
            target = jnp.asarray(models.predict(model, params, np.asarray(xf)))
            opt = optax.adam(1e-4)
            fns = {}
            for label, order in (("before", "product"), ("after", "chain")):
                def loss(ps, order=order):
                    return nca.nca_loss(ps, xf, target, layers, order=order)

                @jax.jit
                def step(ps, st, loss=loss):
                    v, g = jax.value_and_grad(loss)(ps)
                    u, st = opt.update(g, st, ps)
                    return optax.apply_updates(ps, u), st, v

                ps0 = [nca._init_matrix(jax.random.fold_in(jax.random.key(0), i), n, "xavier_normal",
                                        jnp.float32) for i in range(len(layers))]
                holder = [(ps0, opt.init(ps0))]

                def run(holder=holder, step=step):
                    ps, st, v = step(*holder[0])
                    holder[0] = (ps, st)
                    return v

                fns[label] = run
            t = race(fns, args.reps)
            print(f"| nca step {name} F=512 | {n} | {1e3 * t['before']:.3g} | {1e3 * t['after']:.3g} | "
                  f"{t['before'] / t['after']:.2f} | {os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
