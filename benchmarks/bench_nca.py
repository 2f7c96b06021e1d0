"""Mapping fits (`ncajax.nca.fit_mapping`): steps/s, GFLOP/s and % of the measured matmul rate, and
K vmapped fits versus K single fits run one after another.

Part 1 (`fit`): for each model and N, "nca" and "student" (Adam steps in one lax.scan) and "lstsq"
(closed form) on 512 random magnitude frames, interleaved with jnp.dot at the fit's own matmul shapes
("shape" yardstick, at HIGHEST precision like nca.py) and at a large square. Per-step FLOPs:
`flops.nca_step_matmuls` / `flops.student_step_matmuls`; the per-call extras (target, final matrix,
relative error) are not counted, so the rates are slight underestimates.

Part 2 (`vmap`): K fits in one vmapped call vs K single calls in a row (ratio = sequential time /
vmapped time; > 1 means vmap is faster), plus the matmul kernels behind them: K single (F, N) @ (N, N)
dots, one batched (K, F, N) @ (K, N, N) dot_general (what vmap over distinct x produces), and one fused
(F, N) @ (N, K N) dot (what K fits sharing the same x could use).

    python benchmarks/bench_nca.py [--quick] [--models dae ...] [--bins 513 1025] [--k 8]
"""

from __future__ import annotations

import common
import flops
import jax
import jax.numpy as jnp
import numpy as np

from ncajax import models, nca
from ncajax.config import MODEL_NAMES

TARGET_PCT = 80.0  # NCA fit at N = 1025: >= 80 % of the measured matmul rate
TARGET_VMAP = 0.9  # K = 8 vmapped fits: >= 0.9 x the throughput of 8 sequential fits
HIGHEST = jax.lax.Precision.HIGHEST


def frames(n_fits: int | None, n_frames: int, n_bins: int, seed: int = 0) -> np.ndarray:
    """Random non-negative magnitude-like frames, `(n_frames, n_bins)` or `(K, n_frames, n_bins)`."""
    rng = np.random.default_rng(seed)
    shape = (n_frames, n_bins) if n_fits is None else (n_fits, n_frames, n_bins)
    return (rng.random(shape, np.float32) ** 2).astype(np.float32)


def model_and_params(name: str, n_bins: int):
    model = models.build(name, n_bins)
    return model, models.init_params(model, jax.random.key(0))


def steps_for(method: str, n_bins: int, platform: str, quick: bool) -> int:
    if platform != "cpu":
        return 50 if quick else 200
    if method == "nca":
        return 3 if quick else (4 if n_bins > 600 else 20)
    return 10 if quick else 40


def lstsq_flops(n_frames: int, n_bins: int) -> int:
    """Ridge least squares as nca.py computes it: X^T X, X^T Y, Cholesky (N^3/3), two triangular
    solves with N right-hand sides twice (refinement; 2 N^3 each), the residual A Z, the relative error."""
    f, n = n_frames, n_bins
    return int(2 * 2 * f * n * n + n**3 / 3 + 2 * 2 * n**3 + 2 * n**3 + 2 * f * n * n)


def estimator(method: str, steps: int, learning_rate: float):
    """The iterative estimator of `method` ("nca" or "student")."""
    return (nca.NCA if method == "nca" else nca.Student)(steps=steps, learning_rate=learning_rate)


def bench_fit(name, method, n_bins, n_frames, repeats, platform, quick) -> dict:
    model, params = model_and_params(name, n_bins)
    x = frames(None, n_frames, n_bins)
    steps = steps_for(method, n_bins, platform, quick)
    est = nca.LeastSquares() if method == "lstsq" else estimator(method, steps, 1e-4)
    if method != "lstsq":
        shapes = (flops.nca_step_matmuls(name, n_frames, n_bins) if method == "nca"
                  else flops.student_step_matmuls(n_frames, n_bins))
        fl = common.matmul_flops(shapes) * steps
    else:
        shapes = [(n_bins, n_frames, n_bins)] * 2 + [(n_frames, n_bins, n_bins)]
        fl = lstsq_flops(n_frames, n_bins)

    def fit():
        return nca.fit_mapping(model, params, x, est).matrix

    shape_ref = common.DotRef(shapes, precision=HIGHEST, tag="shape")
    square_ref = common.DotRef([common.square_ref(platform)], precision=HIGHEST, tag="square")
    times = common.interleaved({"fit": fit, **shape_ref.fns(), **square_ref.fns()},
                               repeats=repeats, warmup=1)
    t = common.median(times["fit"])
    rate = fl / t
    rec = {
        "bench": "nca_fit",
        "model": name,
        "method": method,
        "n_bins": n_bins,
        "n_frames": n_frames,
        "steps": None if method == "lstsq" else steps,
        "call_s": t,
        "steps_per_s": None if method == "lstsq" else steps / t,
        "gflops": rate / 1e9,
        "dot_shape_gflops": shape_ref.rate(times) / 1e9,
        "dot_square_gflops": square_ref.rate(times) / 1e9,
        "pct_of_dot_shape": 100 * rate / shape_ref.rate(times),
        "pct_of_dot_square": 100 * rate / square_ref.rate(times),
        "spread": common.spread(times["fit"]),
        "repeats": repeats,
    }
    if method != "lstsq":
        one = (flops.nca_step_matmuls(name, n_frames, n_bins) if method == "nca"
               else flops.student_step_matmuls(n_frames, n_bins))
        rec["matmul_gflop_per_step"] = common.matmul_flops(one) / 1e9
        rec["xla_gflop_per_step"] = xla_step_flops(method, model, params, x)
    if n_bins == 1025 and method == "nca":
        rec["target"] = f">= {TARGET_PCT:.0f} % of dot_shape"
        rec["met"] = bool(rec["pct_of_dot_shape"] >= TARGET_PCT)
    return rec


def xla_step_flops(method, model, params, x) -> float | None:
    """XLA's count for one loss + gradient evaluation (the body of the Adam scan, minus Adam)."""
    n = x.shape[-1]
    xj = jnp.asarray(x)
    target = model.apply(params, xj)
    with jax.default_matmul_precision("highest"):
        if method == "nca":
            layers = [(k, b) for k, b in models.dense_layers(params)]
            ps = [jnp.eye(k.shape[0]) for k, _ in layers]
            f = jax.jit(jax.value_and_grad(lambda ps: nca.nca_loss(ps, xj, target, layers)))
            fl = flops.xla_flops(f, ps)
        else:
            f = jax.jit(jax.value_and_grad(
                lambda c: jnp.sum(jnp.abs(target - nca.apply_matrix(c, xj))) / xj.shape[0]))
            fl = flops.xla_flops(f, jnp.eye(n))
    return None if fl is None else fl / 1e9


def bench_vmap(name, method, n_bins, n_frames, k, repeats, platform, quick) -> dict:
    model, params = model_and_params(name, n_bins)
    xs = frames(k, n_frames, n_bins)
    steps = steps_for(method, n_bins, platform, quick)
    est = nca.LeastSquares() if method == "lstsq" else estimator(method, steps, 1e-4)

    def vmapped():
        return nca.fit_mapping(model, params, xs, est).matrix

    def sequential():
        return [nca.fit_mapping(model, params, xs[i], est).matrix for i in range(k)]

    times = common.interleaved({"vmapped": vmapped, "sequential": sequential},
                               repeats=repeats, warmup=1)
    t_v, t_s = common.median(times["vmapped"]), common.median(times["sequential"])
    rec = {
        "bench": "nca_vmap",
        "model": name,
        "method": method,
        "n_bins": n_bins,
        "n_frames": n_frames,
        "k": k,
        "steps": steps,
        "vmapped_s": t_v,
        "sequential_s": t_s,
        "ratio": t_s / t_v,
        "spread": max(common.spread(times["vmapped"]), common.spread(times["sequential"])),
        "repeats": repeats,
    }
    if k == 8:
        rec["target"] = f">= {TARGET_VMAP} x sequential throughput"
        rec["met"] = bool(rec["ratio"] >= TARGET_VMAP)
    return rec


def bench_kernels(n_bins, n_frames, k, repeats) -> dict:
    """The matmul of one student step at K fits: K single dots vs one batched vs one fused dot."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((k, n_frames, n_bins), np.float32))
    c = jnp.asarray(rng.random((k, n_bins, n_bins), np.float32))
    single = jax.jit(lambda a, b: jnp.matmul(a, b.T, precision=HIGHEST))
    batched = jax.jit(jax.vmap(lambda a, b: jnp.matmul(a, b.T, precision=HIGHEST)))
    shared = jax.jit(jax.vmap(lambda a, b: jnp.matmul(a, b.T, precision=HIGHEST),
                              in_axes=(None, 0)))
    times = common.interleaved({
        "single_x_k": lambda: [single(x[i], c[i]) for i in range(k)],
        "batched": lambda: batched(x, c),
        "shared_x_fused": lambda: shared(x[0], c),
    }, repeats=repeats, warmup=2)
    fl = 2 * k * n_frames * n_bins * n_bins
    rec = {"bench": "nca_vmap_kernels", "n_bins": n_bins, "n_frames": n_frames, "k": k}
    for key, ts in times.items():
        rec[f"{key}_gflops"] = fl / common.median(ts) / 1e9
    rec["batched_over_single"] = rec["batched_gflops"] / rec["single_x_k_gflops"]
    rec["fused_over_single"] = rec["shared_x_fused_gflops"] / rec["single_x_k_gflops"]
    return rec


FIT_COLUMNS = ["model", "method", "n_bins", "steps", "call_s", "steps_per_s", "gflops",
               "dot_shape_gflops", "dot_square_gflops", "pct_of_dot_shape", "pct_of_dot_square",
               "xla_gflop_per_step", "matmul_gflop_per_step", "spread", "met"]
VMAP_COLUMNS = ["model", "method", "n_bins", "k", "steps", "vmapped_s", "sequential_s", "ratio",
                "spread", "met"]
KERNEL_COLUMNS = ["n_bins", "n_frames", "k", "single_x_k_gflops", "batched_gflops",
                  "shared_x_fused_gflops", "batched_over_single", "fused_over_single"]


def main(argv=None) -> list[dict]:
    ap = common.parser(__doc__)
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    ap.add_argument("--bins", nargs="+", type=int, default=None)
    ap.add_argument("--frames", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--parts", nargs="+", default=["fit", "vmap"], choices=["fit", "vmap"])
    args = ap.parse_args(argv)
    info = common.header("bench_nca")
    plat = info["platform"]
    bins = args.bins or ([1025] if args.quick else [513, 1025])
    repeats = args.repeats or (3 if args.quick else 5)
    rows: list[dict] = []
    fit_rows, vmap_rows, kernel_rows = [], [], []
    if "fit" in args.parts:
        for n_bins in bins:
            for name in args.models:
                for method in ("nca", "student", "lstsq"):
                    if method != "nca" and name != args.models[0]:
                        continue  # student / lstsq cost does not depend on the model
                    rec = bench_fit(name, method, n_bins, args.frames, repeats, plat, args.quick)
                    rec["platform"] = plat
                    common.emit(rec)
                    fit_rows.append(rec)
        print(common.table(fit_rows, FIT_COLUMNS), flush=True)
    if "vmap" in args.parts:
        vbins = [513] if plat == "cpu" else bins
        for n_bins in vbins:
            for method in ("student", "nca"):
                rec = bench_vmap("dae", method, n_bins, args.frames, args.k, repeats, plat,
                                 args.quick)
                rec["platform"] = plat
                common.emit(rec)
                vmap_rows.append(rec)
            rec = bench_kernels(n_bins, args.frames, args.k, max(repeats, 5))
            rec["platform"] = plat
            common.emit(rec)
            kernel_rows.append(rec)
        print(common.table(vmap_rows, VMAP_COLUMNS), flush=True)
        print(common.table(kernel_rows, KERNEL_COLUMNS), flush=True)
    rows = fit_rows + vmap_rows + kernel_rows
    return rows


if __name__ == "__main__":
    main()
