"""The two CPU levers left after the XLA flags (issue 21): a BLAS GEMM inside XLA, and a one-pass Adam.

Variants, each in its own fresh process, interleaved per repetition, medians reported:

- `xla`: XLA:CPU's own dot (what the package runs);
- `openblas`: the same programs with every matmul a BLAS sgemm custom call (`blas_ffi.py`), NumPy's
  bundled OpenBLAS;
- `mkl`: the same through MKL's `cblas_sgemm` (`--mkl PATH/libmkl_rt.so.N`, e.g. from `pip install mkl`);
- `torch` (if installed): `torch.mm` (MKL) and PyTorch's Adam, eager (foreach) and fused, for reference.

Per N and batch B it measures: the float32 GEMM rate at the training step's shapes (forward and input
gradient B x N x N, weight gradient N x B x N) and at N^3; a bare jitted, donated training step of
a two-layer DAE (ReLU, MSE, `optax.adam`) with the variant's matmul; for `xla` also the package's own
`Trainer.step` at the same settings; Adam's update alone on the DAE's parameters (optax, donated; torch
foreach and fused). Exactness: each variant's loss after 20 steps against `xla`'s.

    python benchmarks/bench_cpu_levers.py                                   # N = 513 1025, B = 64 256
    python benchmarks/bench_cpu_levers.py --mkl /path/lib/libmkl_rt.so.3 --repeats 3
"""

# ruff: noqa: B023  (closures are called within the loop iteration that defines them)

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _timed(fn, block, target_s):
    for _ in range(2):
        block(fn())
    t0, it = time.perf_counter(), 0
    while time.perf_counter() - t0 < target_s or it < 3:
        block(fn())
        it += 1
    return (time.perf_counter() - t0) / it


def _shapes(n, batches):
    out = []
    for b in batches:
        out += [(b, n, n, "fwd"), (n, b, n, "wgrad")]
    return out + [(n, n, n, "square")]


def _torch_worker(spec):
    import torch

    out = {"gflops": {}, "ms": {}, "loss": {}}
    rng = np.random.default_rng(0)
    for n in spec["n"]:
        for m, k, nn, tag in _shapes(n, spec["batch"]):
            a = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
            b = torch.from_numpy(rng.standard_normal((k, nn), dtype=np.float32))
            out["gflops"][f"N={n} {m}x{k}x{nn} {tag}"] = 2 * m * k * nn / _timed(
                lambda a=a, b=b: a @ b, lambda x: x, spec["target_s"]) / 1e9
        for fused in (False, True):
            ps = [torch.nn.Parameter(torch.from_numpy(rng.standard_normal(s, dtype=np.float32)))
                  for s in ((n, n), (n,), (n, n), (n,))]
            for p in ps:
                p.grad = torch.full_like(p, 1e-3)
            opt = torch.optim.Adam(ps, lr=1e-3, fused=fused)
            out["ms"][f"N={n} adam {'fused' if fused else 'foreach'}"] = 1e3 * _timed(
                opt.step, lambda x: x, spec["target_s"])
    return out


def worker(spec):
    if spec["variant"] == "torch":
        return _torch_worker(spec)
    import jax
    import jax.numpy as jnp
    import optax

    if spec["variant"] == "xla":
        mm = jnp.matmul
    else:
        import blas_ffi

        blas_ffi.load(spec.get("lib"))
        mm = blas_ffi.matmul
    block = jax.block_until_ready
    out = {"gflops": {}, "ms": {}, "loss": {}, "gemm_rel_err": 0.0}
    rng = np.random.default_rng(0)
    for n in spec["n"]:
        for m, k, nn, tag in _shapes(n, spec["batch"]):
            a = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
            b = jnp.asarray(rng.standard_normal((k, nn), dtype=np.float32))
            f = jax.jit(mm)
            out["gflops"][f"N={n} {m}x{k}x{nn} {tag}"] = 2 * m * k * nn / _timed(
                lambda a=a, b=b, f=f: f(a, b), block, spec["target_s"]) / 1e9
            ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
            err = float(np.max(np.abs(np.asarray(f(a, b)) - ref)) / np.max(np.abs(ref)))
            out["gemm_rel_err"] = max(out["gemm_rel_err"], err)
        opt = optax.adam(1e-3)

        def init(n=n):
            r = np.random.default_rng(1)
            w = lambda: jnp.asarray(r.standard_normal((n, n), dtype=np.float32) / np.sqrt(n))  # noqa: E731
            p = {"w1": w(), "b1": jnp.zeros(n), "w2": w(), "b2": jnp.zeros(n)}
            return p, opt.init(p)

        def loss(p, x, y):
            h = jax.nn.relu(mm(x, p["w1"]) + p["b1"])
            return jnp.mean((jax.nn.relu(mm(h, p["w2"]) + p["b2"]) - y) ** 2)

        def adam_only(p, s, g):
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        adam_only = jax.jit(adam_only, donate_argnums=(0, 1))

        def step(p, s, x, y):
            lv, g = jax.value_and_grad(loss)(p, x, y)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s, lv

        step = jax.jit(step, donate_argnums=(0, 1))
        for batch in spec["batch"]:
            x = jnp.asarray(np.abs(rng.standard_normal((batch, n), dtype=np.float32)))
            y = 0.5 * x
            st = list(init())
            losses = []
            for _ in range(20):
                st[0], st[1], lv = step(st[0], st[1], x, y)
                losses.append(float(lv))
            out["loss"][f"N={n} B={batch}"] = losses[-1]

            def run(st=st, x=x, y=y):
                st[0], st[1], lv = step(st[0], st[1], x, y)
                return lv

            out["ms"][f"N={n} B={batch} bare step"] = 1e3 * _timed(run, block, spec["target_s"])
            if spec["variant"] == "xla":
                from ncajax import models, training
                from ncajax.config import TrainConfig

                cfg = TrainConfig(batch_size=batch, n_seeds=1, loss="mse", recipe="raw", augment_gain_db=0.0)
                tr = training.Trainer(models.build("dae", n), cfg)
                ts = [tr.init()]
                data = (x[None], y[None])

                def tstep(tr=tr, ts=ts, data=data):
                    ts[0], met = tr.step(ts[0], data)
                    return met

                out["ms"][f"N={n} B={batch} Trainer.step"] = 1e3 * _timed(tstep, block, spec["target_s"])
        p, s = init()
        g = jax.tree.map(lambda v: jnp.full_like(v, 1e-3), p)
        ast = [p, s]

        def adam(ast=ast, g=g):
            ast[0], ast[1] = adam_only(ast[0], ast[1], g)
            return ast[0]

        out["ms"][f"N={n} adam optax (donated)"] = 1e3 * _timed(adam, block, spec["target_s"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[513, 1025])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--mkl", default=None, help="path of a BLAS library exporting cblas_sgemm (libmkl_rt.so.N)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target-s", type=float, default=0.5)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import common

    if args.worker is not None:
        return common.worker_main(worker, args.worker)

    variants = [("xla", None), ("openblas", None)] + ([("mkl", args.mkl)] if args.mkl else [])
    try:
        import torch  # noqa: F401

        variants.append(("torch", None))
    except ImportError:
        print("# torch not installed: no PyTorch reference (pip install -e '.[bench]')")
    print(f"# bench_cpu_levers: {common.cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()}, "
          f"command: {' '.join(sys.argv)}", flush=True)
    results: dict = {}
    for rep in range(args.repeats):
        for name, lib in variants:
            spec = {"variant": name, "lib": lib, "n": args.n, "batch": args.batch, "target_s": args.target_s}
            res, err = common.run_worker(__file__, spec)
            if res is None:
                print(f"# {name} failed: {err}", flush=True)
                continue
            results.setdefault(name, []).append(res)
            print(f"# rep {rep + 1} {name}: load {os.getloadavg()[0]:.2f}", flush=True)
            print("BENCH " + json.dumps({"variant": name, "rep": rep, **res}), flush=True)
    names = [v for v, _ in variants if v in results]
    for kind, unit in (("gflops", "GFLOP/s"), ("ms", "ms")):
        keys = sorted({k for v in names for k in results[v][0][kind]},
                      key=lambda s: (int(s.split()[0][2:]), s))
        print(f"\n{unit}, medians over {args.repeats} repetitions\n")
        print("| | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for k in keys:
            cells = [statistics.median(r[kind][k] for r in results[v]) if k in results[v][0][kind] else None
                     for v in names]
            print(f"| {k} | " + " | ".join("—" if c is None else f"{c:.3g}" for c in cells) + " |")
    base = results.get("xla")
    if base:
        print("\nExactness: loss after 20 bare steps, largest relative difference from xla's; GEMM vs float64")
        for v in names:
            if v == "torch":
                continue
            d = max(abs(results[v][0]["loss"][k] - base[0]["loss"][k]) / abs(base[0]["loss"][k])
                    for k in base[0]["loss"])
            print(f"- {v}: loss {d:.1e}, GEMM max rel err {results[v][0]['gemm_rel_err']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
