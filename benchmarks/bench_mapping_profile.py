"""What bounds the mapping stage's iterative fits at the default N = 129: time per fit step against the
FLOP-bound time at the measured `jnp.dot` rate, split into its parts.

For K seeds (the stage's 10), F fit frames (1,024 at N = 129) and a short run of steps, it times (one
jitted program each, compiled first, interleaved, medians):
- `fit`: `nca.fit_mapping` as the stage calls it (K fits, params with a seed axis), per step;
- `loss+grad`: the same K losses and gradients without Adam (a scan of value_and_grad only);
- `matmuls`: the step's exact matmul list (`flops.nca_step_matmuls` / `student_step_matmuls`) as
  K-batched `jnp.matmul`s, in one jitted scan: the FLOP-bound time at this machine's dot rate;
and prints fit / matmuls (the issue's target: <= 1.5).

    python benchmarks/bench_mapping_profile.py [--bins 129] [--frames 1024] [--seeds 10] [--steps 200]
"""

# ruff: noqa: B023  (closures are called within the loop iteration that defines them)

from __future__ import annotations

import argparse
import os
import statistics
import time

import flops
import jax
import jax.numpy as jnp
import numpy as np

from ncajax import models, nca
from ncajax.nca._common import HIGHEST


def timed(fn, reps):
    jax.block_until_ready(fn())
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bins", type=int, default=129)
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["dae", "dae_deep"])
    args = ap.parse_args(argv)
    n, f, k, steps = args.bins, args.frames, args.seeds, args.steps
    print(f"# bench_mapping_profile: N={n} F={f} K={k} steps={steps}, load {os.getloadavg()[0]:.2f}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(k, f, n))).astype(np.float32)
    print("| model | method | fit ms/step | loss+grad ms/step | matmuls ms/step | GFLOP/step | fit GFLOP/s | "
          "dot GFLOP/s | fit / matmuls |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = models.build(name, n)
        params = jax.vmap(lambda key, m=model: models.init_params(m, key))(jax.random.split(jax.random.key(0), k))
        for method in ("nca", "student"):
            if method == "student" and name != args.models[0]:
                continue
            est = (nca.NCA if method == "nca" else nca.Student)(steps=steps, learning_rate=1e-3)
            kw = dict(seed=list(range(k)), params_axis=0)
            fit_t = timed(lambda: nca.fit_mapping(model, params, x, est, **kw).matrix, args.reps)
            shapes = (flops.nca_step_matmuls(name, f, n) if method == "nca" else flops.student_step_matmuls(f, n))
            gflop = sum(2 * a * b * c for a, b, c in shapes) * k / 1e9
            mats = [(jnp.asarray(rng.random((k, a, b), np.float32)), jnp.asarray(rng.random((k, b, c), np.float32)))
                    for a, b, c in shapes]

            @jax.jit
            def matmuls(mats):
                def body(acc, _):
                    s = acc
                    for a, b in mats:
                        s = s + jnp.sum(jnp.matmul(a + s * 0, b, precision=HIGHEST)) * 1e-30
                    return s, None
                return jax.lax.scan(body, jnp.float32(0), None, length=steps)[0]

            mm_t = timed(lambda: matmuls(mats), args.reps)
            target = jnp.asarray(np.abs(rng.normal(size=(k, f, n))).astype(np.float32))
            xj = jnp.asarray(x)
            if method == "nca":
                layers = [(jnp.asarray(a), jnp.asarray(b)) for a, b in models.dense_layers(params)]
                theta = [jnp.asarray(rng.normal(size=(k, n, n)).astype(np.float32) * 0.1) for _ in layers]

                def loss(th, xi, ti, ls):
                    return nca.nca_loss(th, xi, ti, ls)

                in_axes = (0, 0, 0, 0)
                args_ = (theta, xj, target, layers)
            else:
                theta = jnp.asarray(rng.normal(size=(k, n, n)).astype(np.float32) * 0.1)

                def loss(th, xi, ti):
                    return jnp.sum(jnp.abs(ti - nca.apply_matrix(th, xi))) / xi.shape[-2]

                in_axes = (0, 0, 0)
                args_ = (theta, xj, target)
            vg = jax.vmap(jax.value_and_grad(loss), in_axes=in_axes)

            @jax.jit
            def grads_only(th, *rest):
                def body(th, _):
                    v, g = vg(th, *rest)
                    return jax.tree.map(lambda a, b: a - 1e-9 * b, th, g), v.sum()
                return jax.lax.scan(body, th, None, length=steps)[1]

            with jax.default_matmul_precision("highest"):
                lg_t = timed(lambda: grads_only(*args_), args.reps)
            fit_ms, lg_ms, mm_ms = (1e3 * statistics.median(t) / steps for t in (fit_t, lg_t, mm_t))
            print(f"| {name} | {method} | {fit_ms:.3g} | {lg_ms:.3g} | {mm_ms:.3g} | {gflop:.3g} | "
                  f"{gflop / fit_ms * 1e3:.3g} | {gflop / mm_ms * 1e3:.3g} | {fit_ms / mm_ms:.2f} |", flush=True)
    print(f"# load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
