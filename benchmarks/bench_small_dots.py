"""Batched float32 matmul rates at the mapping stage's shapes: `jnp.matmul` against `torch.bmm` (MKL) and
NumPy (OpenBLAS), so the stage's FLOP-bound time can be stated against the best library on the machine,
not only against XLA's own dot.

The shapes are those of the default mapping stage's iterative fits (`bench_mapping_profile.py`): K = 10
fits, N = 129 bins, F = 1,024 fit frames: (K, F, N) @ (K, N, N), (K, N, N) @ (K, N, N) and the gradient's
(K, N, F) @ (K, F, N). Each rate is the median of 5 timed blocks of 50 calls after two warm-up calls.
torch is optional (the `bench` extra); without it its column is skipped.

    python benchmarks/bench_small_dots.py [--k 10] [--n 129] [--frames 1024]
"""

# ruff: noqa: B023  (each closure is timed within the loop iteration that defines it)

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np


def rate(fn, flops: float, reps: int = 50) -> float:
    """Median GFLOP/s of 5 blocks of `reps` calls."""
    fn()
    fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return flops / sorted(times)[2] / 1e9


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n", type=int, default=129)
    ap.add_argument("--frames", type=int, default=1024)
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    print(f"# bench_small_dots: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()}, jax "
          f"{jax.__version__}, torch {getattr(torch, '__version__', 'absent')}")
    print("| shape (K x M x K' x N) | jnp.matmul | torch.bmm | numpy.matmul | jnp / best |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    k, n, f = args.k, args.n, args.frames
    for m, inner in ((f, n), (n, n), (n, f)):
        a = rng.random((k, m, inner), np.float32)
        b = rng.random((k, inner, n), np.float32)
        flops = 2.0 * k * m * inner * n
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        matmul = jax.jit(jnp.matmul)
        r_jax = rate(lambda: matmul(ja, jb).block_until_ready(), flops)
        r_np = rate(lambda: np.matmul(a, b), flops)
        r_torch = float("nan")
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            r_torch = rate(lambda: torch.bmm(ta, tb), flops)
        best = np.nanmax([r_np, r_torch])
        print(f"| {k}x{m}x{inner}x{n} | {r_jax:.0f} | {r_torch:.0f} | {r_np:.0f} | {r_jax / best:.2f} |")


if __name__ == "__main__":
    main()
