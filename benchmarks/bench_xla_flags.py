"""XLA:CPU flags against the default: matmul rate, training step and NCA / student fits, and exactness.

Each flag setting runs in its own fresh process (XLA_FLAGS is read when jax creates its CPU client), the
settings interleaved per repetition; medians reported. Exactness: every setting's dot product, first
training loss and fitted NCA matrix are compared with the default setting's (max relative difference).

    python benchmarks/bench_xla_flags.py                       # N = 1025, 2 repetitions
    python benchmarks/bench_xla_flags.py --n 513 1025 --repeats 3 --flags "" "--xla_cpu_use_onednn=true"

The setting "" is the default. `NCAJAX_XLA_FLAGS=0` is set in the workers, so the package's own default
flags (if any) do not mix in: each worker runs exactly the XLA_FLAGS of its setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_FLAGS = ("", "--xla_cpu_experimental_ynn_fusion_type=", "--xla_cpu_use_onednn=true",
                 "--xla_cpu_experimental_onednn_custom_call=true")


def worker(spec: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from ncajax import models, nca, training
    from ncajax.config import TrainConfig

    n, rng = spec["n"], np.random.default_rng(0)
    out: dict = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "gflops": {}, "ms": {}}

    def timed(fn, target=spec["target_s"]):
        for _ in range(2):
            jax.block_until_ready(fn())
        t0, it = time.perf_counter(), 0
        while time.perf_counter() - t0 < target or it < 3:
            jax.block_until_ready(fn())
            it += 1
        return (time.perf_counter() - t0) / it

    dot = jax.jit(jnp.dot)
    checks = {}
    for m, k in ((n, n), (256, n), (512, n)):
        a = jnp.asarray(rng.random((m, k), np.float32))
        b = jnp.asarray(rng.random((k, n), np.float32))
        sec = timed(lambda a=a, b=b: dot(a, b))
        out["gflops"][f"{m}x{k}x{n}"] = 2 * m * k * n / sec / 1e9
        checks[f"dot {m}x{k}x{n}"] = np.asarray(dot(a, b))[:8, :8].tolist()
    for name, batch in (("dae", 256), ("dae", 64)):
        model = models.build(name, n)
        cfg = TrainConfig(batch_size=batch, n_seeds=1, loss="mse", recipe="raw", augment_gain_db=0.0)
        tr = training.Trainer(model, cfg)
        x = rng.random((1, batch, n), np.float32)
        data = (jnp.asarray(x), jnp.asarray(0.5 * x))
        st = [tr.unstack(tr.init())]
        first = []

        def step(tr=tr, st=st, data=data, first=first):
            st[0], met = tr.step(st[0], data)
            if not first:
                first.append(float(met["loss"][0]))
            return st[0]

        out["ms"][f"train {name} B={batch}"] = 1e3 * timed(step)
        checks[f"train {name} B={batch} first loss"] = first[0]
    model = models.build("dae", n)
    params = models.init_params(model, jax.random.key(0))
    xf = (rng.random((512, n), np.float32) ** 2).astype(np.float32)
    for method, steps in (("nca", 8), ("student", 40)):
        est = (nca.NCA if method == "nca" else nca.Student)(steps=steps, learning_rate=1e-4)
        fit = nca.fit_mapping(model, params, xf, est, seed=0)
        t0 = time.perf_counter()
        fit = nca.fit_mapping(model, params, xf, est, seed=0)
        out["ms"][f"{method} dae F=512 (per step)"] = 1e3 * (time.perf_counter() - t0) / steps
        checks[f"{method} matrix"] = np.asarray(fit.matrix)[::64, ::64].tolist()
    out["checks"] = checks
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1025])
    ap.add_argument("--flags", nargs="+", default=list(DEFAULT_FLAGS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--target-s", type=float, default=0.7)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import common

    if args.worker is not None:
        return common.worker_main(worker, args.worker)
    print(f"# bench_xla_flags: load {os.getloadavg()}, command: {' '.join(sys.argv)}", flush=True)
    results: dict = {}
    for rep in range(args.repeats):
        for n in args.n:
            for flags in args.flags:
                spec = {"n": n, "target_s": args.target_s}
                res, err = common.run_worker(__file__, spec, {"XLA_FLAGS": flags, "NCAJAX_XLA_FLAGS": "0"})
                if res is None:
                    print(f"# {flags!r} failed: {err}", flush=True)
                    continue
                res["load"] = os.getloadavg()[0]
                results.setdefault((n, flags), []).append(res)
                print(f"# rep {rep + 1} N={n} {flags or '(default)'}: load {res['load']:.2f}", flush=True)
    for n in args.n:
        base = results.get((n, ""), [None])[0]
        keys = None
        print(f"\nN = {n}: medians over {args.repeats} repetitions (GFLOP/s for dots, ms for the rest); "
              "exact = max relative difference from the default setting's numbers\n")
        for flags in args.flags:
            runs = results.get((n, flags))
            if not runs:
                continue
            cells = {**{f"dot {k}": statistics.median(r["gflops"][k] for r in runs) for k in runs[0]["gflops"]},
                     **{k: statistics.median(r["ms"][k] for r in runs) for k in runs[0]["ms"]}}
            if keys is None:
                keys = list(cells)
                print("| XLA_FLAGS | " + " | ".join(keys) + " | exact |")
                print("|---" * (len(keys) + 2) + "|")
            diff = 0.0
            if base is not None:
                for k, v in runs[0]["checks"].items():
                    a, b = np.asarray(v, np.float64), np.asarray(base["checks"][k], np.float64)
                    diff = max(diff, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
            print(f"| `{flags or '(default)'}` | " + " | ".join(f"{cells[k]:.3g}" for k in keys)
                  + f" | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
