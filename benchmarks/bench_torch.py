"""ncajax against a PyTorch reference of the same computations, side by side on one machine.

Cases (each at every N of --n):
- `train`: one training step of dae / dae_deep / dae_sf (MSE, Adam lr 1e-3) at every batch of --batch.
  ncajax: `ncajax.training.Trainer(...).step` (jitted, donated, one seed in the unstacked working layout:
  what `train_model` runs).
  torch: the same network as `torch.nn.Linear` + ReLU layers (dae_sf: x * mask(x)), `loss.backward()`,
  `opt.step()`.
- `nca`: the NCA fit of each model on --frames frames (`fit_mapping(..., NCA(...))`, the authors'
  Xavier-normal P, bias added per input column). torch, from the paper's description: per dense layer
  W~_l = relu((W_l + b_l) P_l^T) * W_l (PyTorch's `W + b` broadcast), C = W~_L ... W~_1, L1 loss
  sum|y - x C^T| / nb_frames, Adam (lr 1e-4) over the P_l.
- `student`: the linear-student fit (C itself fitted by the same loss and Adam; dae teacher).
- `matmul`: float32 GFLOP/s of `jnp.dot` (jitted), `torch.mm` and `numpy.matmul` at the matmul shapes of
  the cases above.

Protocol: every measurement runs in its own fresh subprocess (`--worker`), so neither library's thread
pools, allocator or JIT cache touch the other's numbers; the order is interleaved (for each repetition,
for each case: ncajax, then each torch variant), `--repeats` repetitions (default 3), medians reported.
Both sides start from the same weights, frames and initial P / C (built once in NumPy with a seed and
loaded into flax params and torch modules); the first loss of every torch run must equal ncajax's to
1e-4 relative or the script exits non-zero. Compilation / warm-up is excluded from the timings: a
training measurement times a run of steps (blocked on every step) after 3 warm-up steps, a fit
measurement one whole fit call after one warm-up call (the same `steps`, so ms/step = call / steps).

torch variants: `stock` = torch.optim.Adam with its defaults, eager; `foreach` = Adam(foreach=True);
`fused` = Adam(fused=True) (the fused CPU kernel); `compile` = torch.compile of the loss (forward and
backward) with fused Adam; `compile_all` = compiled loss and a compiled `opt.step()` (Adam foreach).
`<variant>@1` = the same with torch.set_num_threads(1): on a machine where other jobs take a core, torch's
OpenMP barriers stall its 2-thread runs by 10-100x, and one thread is then torch's best setting.
"torch best" is the fastest variant that ran; a variant that fails (e.g. torch.compile without a working
C++ toolchain) is reported as n/a.

    pip install -e '.[bench]'      # torch (CPU is enough); torch is never a dependency of ncajax
    python benchmarks/bench_torch.py                       # N = 513, 1025; batch 64, 256; 3 repetitions
    python benchmarks/bench_torch.py --quick               # tiny sizes, 1 repetition: a smoke run
    python benchmarks/bench_torch.py --n 1025 --batch 256 --cases train matmul --variants stock fused
    python benchmarks/bench_torch.py --n 513 1025 --variants stock fused compile fused@1 compile@1 --repeats 1

Output: a markdown report on stdout (header with date, CPU, cores, versions and the exact command) and one
`BENCH {json}` line per measurement, also written to --out (default benchmarks/results-torch-cpu.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = ("dae", "dae_deep", "dae_sf")
DEPTH = {"dae": 1, "dae_deep": 3, "dae_sf": 1}  # encoder layers; one decoder layer follows
VARIANTS = ("stock", "foreach", "fused", "compile", "compile_all")
# "<variant>@<k>": the variant with torch.set_num_threads(k) (k = 1 protects torch's OpenMP barriers
# from a core taken by another job; on a quiet machine torch's default thread count is its best)
THREADED = tuple(f"{v}@1" for v in ("stock", "fused", "compile"))
CASES = ("train", "nca", "student", "matmul")
TRAIN_LR = 1e-3  # TrainConfig default
FIT_LR = 1e-4  # fit_mapping default (the authors')
LOSS_RTOL = 1e-4
LATER_RTOL = 1e-3  # the loss after a few Adam steps (train: step 3; fits: the last step of a call)
SEED = 0


# ===================================================================================== shared data


def make_layers(name: str, n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel (in, out) as flax stores it, bias (out,)) per dense layer in forward order.

    Xavier-normal kernels (both libraries' init for these models) and PyTorch-default uniform biases
    (non-zero, so the NCA bias broadcast is exercised)."""
    out = []
    for _ in range(DEPTH[name] + 1):  # hidden width = N: every layer is N x N
        std = math.sqrt(2.0 / (n + n))
        kernel = rng.normal(0.0, std, (n, n)).astype(np.float32)
        bound = 1.0 / math.sqrt(n)
        bias = rng.uniform(-bound, bound, n).astype(np.float32)
        out.append((kernel, bias))
    return out


def fit_inits(method: str, n: int, n_layers: int) -> list[np.ndarray]:
    """fit_mapping's own initial P_l (nca) or C (student): init="xavier_normal", seed 0, made by the
    package's init function so both libraries start from the same numbers."""
    import jax

    from ncajax.nca import _couplings as nca

    key = jax.random.key(SEED)
    if method == "student":
        return [np.asarray(nca._init_matrix(key, n, "xavier_normal", np.float32))]
    return [np.asarray(nca._init_matrix(jax.random.fold_in(key, i), n, "xavier_normal", np.float32))
            for i in range(n_layers)]


def write_data(spec: dict, folder: Path) -> str:
    """The npz with everything both sides load for one case; returns its path."""
    rng = np.random.default_rng([SEED, spec["n"], MODELS.index(spec["model"])])
    layers = make_layers(spec["model"], spec["n"], rng)
    arrays = {}
    for i, (k, b) in enumerate(layers):
        arrays[f"kernel{i}"], arrays[f"bias{i}"] = k, b
    n = spec["n"]
    if spec["case"] == "train":
        x = rng.random((spec["batch"], n), np.float32)
        arrays["x"], arrays["y"] = x, (0.5 * x).astype(np.float32)
    else:
        arrays["x"] = (rng.random((spec["frames"], n), np.float32) ** 2).astype(np.float32)
        for i, p in enumerate(fit_inits(spec["case"], n, len(layers))):
            arrays[f"init{i}"] = p
    path = folder / (case_key(spec).replace(" ", "_").replace("=", "") + ".npz")
    np.savez(path, n_layers=len(layers), **arrays)
    return str(path)


def load_layers(data) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(data[f"kernel{i}"], data[f"bias{i}"]) for i in range(int(data["n_layers"]))]


def train_flops(name: str, batch: int, n: int) -> int:
    """Matmul FLOPs of one training step (same count as benchmarks/flops.py, without importing jax)."""
    layers = DEPTH[name] + 1
    return 2 * batch * n * n * (2 * layers + (layers - 1))


def fit_flops(method: str, name: str, frames: int, n: int) -> int:
    """Matmul FLOPs of one fit step (flops.nca_step_matmuls / student_step_matmuls)."""
    student = 2 * 2 * frames * n * n
    if method == "student":
        return student
    layers = DEPTH[name] + 1
    return 2 * n**3 * (5 * layers - 3) + student


# ===================================================================================== workers


def _block_jax(tree):
    import jax

    return jax.block_until_ready(tree)


def _timed_steps(step, target_s: float, block=lambda out: out) -> tuple[float, int]:
    """Seconds per call of step() over a run of calls lasting about target_s (after an estimate)."""
    t0 = time.perf_counter()
    for _ in range(3):
        block(step())
    est = (time.perf_counter() - t0) / 3
    iters = int(min(500, max(10, math.ceil(target_s / max(est, 1e-6)))))
    t0 = time.perf_counter()
    for _ in range(iters):
        block(step())
    return (time.perf_counter() - t0) / iters, iters


def worker_ncajax(spec: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from ncajax import models, training
    from ncajax.config import TrainConfig
    from ncajax.nca import NCA, Student
    from ncajax.nca import _couplings as nca

    data = np.load(spec["data"])
    layers = load_layers(data)
    name, n = spec["model"], spec["n"]
    model = models.build(name, n)
    tree = {f"encoder_{i}": {"kernel": k, "bias": b} for i, (k, b) in enumerate(layers[:-1])}
    tree["decoder"] = {"kernel": layers[-1][0], "bias": layers[-1][1]}
    params = {"params": {"masker": tree} if name == "dae_sf" else tree}
    reference = models.init_params(model, jax.random.key(0))
    if jax.tree.structure(reference) != jax.tree.structure(params):
        raise RuntimeError(f"param tree mismatch: {jax.tree.structure(reference)}")
    out = {"jax": jax.__version__, "backend": jax.default_backend()}
    if spec["case"] == "train":
        # the torch reference's step: MSE on raw magnitudes, no gain augmentation (TrainConfig's
        # study defaults are L1, the standardised recipe and a 12 dB random gain)
        cfg = {"batch_size": spec["batch"], "n_seeds": 1, "loss": "mse"}
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        if "recipe" in fields:
            cfg["recipe"] = "raw"  # raw magnitudes in and out, as the torch reference (no scaling)
        if "augment_gain_db" in fields:
            cfg["augment_gain_db"] = 0.0
        trainer = training.Trainer(model, TrainConfig(**cfg))  # scaling=None: the raw-magnitude step
        seeded = jax.tree.map(lambda a: jnp.asarray(a)[None], params)
        state = trainer.init()
        state = state.replace(params=seeded, best_params=jax.tree.map(jnp.copy, seeded),
                              opt_state=jax.vmap(trainer.tx.init)(seeded))
        batch = (jnp.asarray(data["x"])[None], jnp.asarray(data["y"])[None])
        holder = [trainer.unstack(state)]  # what train_model steps on (one seed: no seed axis)

        def step():
            holder[0], metrics = trainer.step(holder[0], batch)
            return holder[0], metrics

        first = float(_block_jax(step())[1]["loss"][0])
        for _ in range(2):
            later = float(_block_jax(step())[1]["loss"][0])
        sec, iters = _timed_steps(step, spec["target_s"], _block_jax)
        out.update(step_s=sec, iters=iters, first_loss=first, later_loss=later)
        return out
    x = data["x"]
    method = spec["case"]
    est = (NCA if method == "nca" else Student)(steps=spec["steps"], learning_rate=FIT_LR, init="xavier_normal")
    fit = nca.fit_mapping(model, params, x, est, seed=SEED)  # warm-up (compilation)
    first, later = float(fit.losses[0]), float(fit.losses[-1])
    t0 = time.perf_counter()
    fit = nca.fit_mapping(model, params, x, est, seed=SEED)
    call = time.perf_counter() - t0
    out.update(call_s=call, step_s=call / spec["steps"], first_loss=first, later_loss=later,
               rel_l1_error=float(fit.rel_l1_error))
    return out


def _torch_adam(torch, params, lr: float, variant: str):
    if variant == "stock":
        return torch.optim.Adam(params, lr=lr)
    if variant in ("foreach", "compile_all"):
        return torch.optim.Adam(params, lr=lr, foreach=True)
    return torch.optim.Adam(params, lr=lr, fused=True)  # fused, compile


def worker_torch(spec: dict) -> dict:
    import torch

    variant, _, threads = spec["variant"].partition("@")
    if threads or spec.get("torch_threads"):
        torch.set_num_threads(int(threads or spec["torch_threads"]))
    torch.manual_seed(SEED)
    data = np.load(spec["data"])
    layers = load_layers(data)
    name = spec["model"]
    compiled = variant in ("compile", "compile_all")

    class Separator(torch.nn.Module):
        """The ncajax model in torch: Linear + ReLU stack; dae_sf returns x * mask(x)."""

        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList()
            for kernel, bias in layers:
                lin = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(kernel.T.copy()))  # torch: (out, in)
                    lin.bias.copy_(torch.from_numpy(bias))
                self.layers.append(lin)

        def forward(self, x):
            h = x
            for lin in self.layers:
                h = torch.relu(lin(h))
            return x * h if name == "dae_sf" else h

    net = Separator()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "variant": spec["variant"]}
    if spec["case"] == "train":
        x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
        opt = _torch_adam(torch, list(net.parameters()), TRAIN_LR, variant)

        def loss_fn(x, y):
            return torch.nn.functional.mse_loss(net(x), y)

        loss_c = torch.compile(loss_fn) if compiled else loss_fn
        opt_step = torch.compile(opt.step) if variant == "compile_all" else opt.step

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_c(x, y)
            loss.backward()
            opt_step()
            return loss

        first = float(step().detach())
        for _ in range(2):
            later = float(step().detach())
        sec, iters = _timed_steps(step, spec["target_s"])
        out.update(step_s=sec, iters=iters, first_loss=first, later_loss=later,
                   optimizer=_opt_desc(opt))
        return out

    method = spec["case"]  # the student's teacher is the dae (spec["model"])
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.from_numpy(data["x"])
    n_init = 1 if method == "student" else len(layers)
    thetas = [torch.nn.Parameter(torch.from_numpy(data[f"init{i}"].copy())) for i in range(n_init)]
    # frozen teacher layers, paper notation: W_l (out x in), b_l; a dae_sf mask net is the same stack
    ws = [lin.weight.detach() for lin in net.layers]
    bs = [lin.bias.detach() for lin in net.layers]
    opt = _torch_adam(torch, thetas, FIT_LR, variant)

    def matrix(thetas):
        if method == "student":
            return thetas[0]
        c = None
        for p, w, b in zip(thetas, ws, bs, strict=True):
            w_tilde = torch.relu(torch.mm(w + b, p.t())) * w  # W + b: b[j] added to column j
            c = w_tilde if c is None else torch.mm(w_tilde, c)
        return c

    def loss_fn(thetas, x, target):
        return (target - torch.mm(x, matrix(thetas).t())).abs().sum() / x.shape[0]

    loss_c = torch.compile(loss_fn) if compiled else loss_fn
    opt_step = torch.compile(opt.step) if variant == "compile_all" else opt.step

    def fit():
        with torch.no_grad():
            target = net(x)
        losses = []
        for _ in range(spec["steps"]):
            opt.zero_grad(set_to_none=True)
            loss = loss_c(thetas, x, target)
            loss.backward()
            opt_step()
            losses.append(loss.detach())
        with torch.no_grad():
            c = matrix(thetas)
            rel = (target - x @ c.t()).abs().sum() / target.abs().sum()
        return c.detach().numpy().copy(), torch.stack(losses).numpy(), float(rel)

    # warm-up call from the shared init (torch.compile compiles here): its first loss is the check;
    # the timed call continues from where it ended (same work per step)
    _, losses, _ = fit()
    first = float(losses[0])
    t0 = time.perf_counter()
    fit()
    call = time.perf_counter() - t0
    out.update(call_s=call, step_s=call / spec["steps"], first_loss=first,
               later_loss=float(losses[-1]), optimizer=_opt_desc(opt))
    return out


def _opt_desc(opt) -> str:
    d = opt.defaults
    return f"Adam(foreach={d.get('foreach')}, fused={d.get('fused')})"


def worker_matmul(spec: dict) -> dict:
    """GFLOP/s of one library's float32 matmul at each (m, k, n) of spec["shapes"]."""
    lib = spec["lib"]
    rng = np.random.default_rng(SEED)
    out = {"lib": lib, "gflops": {}}
    if lib == "jax":
        import jax
        import jax.numpy as jnp

        dot = jax.jit(jnp.dot)
        out["jax"] = jax.__version__

        def make(a, b):
            a, b = jnp.asarray(a), jnp.asarray(b)
            return lambda: dot(a, b).block_until_ready()
    elif lib == "torch":
        import torch

        if spec.get("torch_threads"):
            torch.set_num_threads(spec["torch_threads"])
        out.update(torch=torch.__version__, threads=torch.get_num_threads())

        def make(a, b):
            a, b = torch.from_numpy(a), torch.from_numpy(b)
            return lambda: torch.mm(a, b)
    else:
        out["numpy"] = np.__version__

        def make(a, b):
            return lambda: np.matmul(a, b)
    for m, k, n in spec["shapes"]:
        fn = make(rng.random((m, k), np.float32), rng.random((k, n), np.float32))
        fn()
        sec, _ = _timed_steps(fn, spec["target_s"])
        out["gflops"][f"{m}x{k}x{n}"] = 2 * m * k * n / sec / 1e9
    return out


def worker_main(spec: dict) -> int:
    try:
        if spec["case"] == "matmul":
            res = worker_matmul(spec)
        elif spec["impl"] == "ncajax":
            res = worker_ncajax(spec)
        else:
            res = worker_torch(spec)
        res["ok"] = True
        res["loadavg_1m"] = os.getloadavg()[0]
    except Exception as err:  # noqa: BLE001 - reported as n/a by the orchestrator
        res = {"ok": False, "error": f"{type(err).__name__}: {str(err)[-1500:]}"}
    print("RESULT " + json.dumps(res), flush=True)
    return 0


# ===================================================================================== orchestrator


def case_key(spec: dict) -> str:
    if spec["case"] == "train":
        return f"train {spec['model']} B={spec['batch']} N={spec['n']}"
    if spec["case"] == "matmul":
        return f"matmul N={spec['n']}"
    return f"{spec['case']} {spec['model']} N={spec['n']}"


def run_worker(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            res["wall_s"] = wall
            return res
    tail = (proc.stderr or proc.stdout)[-1500:]
    return {"ok": False, "error": f"worker exited {proc.returncode}: {tail}", "wall_s": wall}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_snapshot() -> dict:
    """`uptime`'s load averages and the processes (other than this benchmark's) using the most CPU."""
    snap = {"loadavg": list(os.getloadavg())}
    try:
        ps = subprocess.run(["ps", "-eo", "pid,ni,pcpu,etime,comm,args", "--sort=-pcpu"],
                            capture_output=True, text=True, timeout=10).stdout.splitlines()
        me = {str(os.getpid())}
        rows = [r for r in ps[1:] if r.split()[0] not in me and "bench_torch" not in r]
        snap["top"] = [" ".join(r.split()[:5]) + " " + " ".join(r.split()[5:8])[:80]
                       for r in rows[:4]]
    except (OSError, subprocess.SubprocessError):
        snap["top"] = []
    return snap


def fmt_load(snap: dict) -> str:
    la = snap["loadavg"]
    top = "; ".join(snap["top"]) or "n/a"
    return f"load {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; busiest other processes (pid ni %cpu etime comm args): {top}"


def version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def matmul_shapes(n: int, batches: list[int], frames: int, cases: list[str]) -> list[list[int]]:
    shapes: list[list[int]] = []
    if "train" in cases:
        for b in batches:
            shapes += [[b, n, n], [n, b, n]]  # forward / input gradient, kernel gradient
    if "nca" in cases or "student" in cases:
        shapes += [[frames, n, n], [n, frames, n]]
    if "nca" in cases:
        shapes.append([n, n, n])
    seen: list[list[int]] = []
    for s in shapes:
        if s not in seen:
            seen.append(s)
    return seen


def plan(args) -> list[dict]:
    """One spec per case (no impl yet), in table order."""
    specs = []
    for n in args.n:
        if "train" in args.cases:
            for b in args.batch:
                for m in args.models:
                    specs.append({"case": "train", "model": m, "n": n, "batch": b,
                                  "target_s": args.target_s})
        if "nca" in args.cases:
            for m in args.models:
                specs.append({"case": "nca", "model": m, "n": n, "frames": args.frames,
                              "steps": args.nca_steps or (5 if args.quick else (20 if n <= 600 else 8)),
                              "target_s": args.target_s})
        if "student" in args.cases:
            specs.append({"case": "student", "model": "dae", "n": n, "frames": args.frames,
                          "steps": args.student_steps or (10 if args.quick else 40),
                          "target_s": args.target_s})
        if "matmul" in args.cases:
            specs.append({"case": "matmul", "n": n, "target_s": args.target_s,
                          "shapes": matmul_shapes(n, args.batch, args.frames, args.cases)})
    return specs


def med(xs):
    return float(statistics.median(xs)) if xs else None


def fmt_ms(s):
    return "n/a" if s is None else f"{1e3 * s:.3g} ms"


def fmt_x(r):
    return "n/a" if r is None else f"{r:.2f}x"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition (smoke run)")
    ap.add_argument("--n", type=int, nargs="+", default=None, help="bins N (default 513 1025)")
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="training batch (64 256)")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--variants", nargs="+", choices=VARIANTS + THREADED, default=list(VARIANTS),
                    help="torch variants (stock is always run)")
    ap.add_argument("--repeats", type=int, default=None, help="repetitions (default 3; quick 1)")
    ap.add_argument("--frames", type=int, default=None, help="frames of the fits (default 512)")
    ap.add_argument("--nca-steps", type=int, default=None)
    ap.add_argument("--student-steps", type=int, default=None)
    ap.add_argument("--target-s", type=float, default=None,
                    help="seconds each timed run of steps / matmuls lasts (default 1.0; quick 0.2)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads in the torch workers (default: torch's own choice)")
    ap.add_argument("--worker-timeout", type=float, default=1800.0)
    ap.add_argument("--out", type=Path, default=HERE / "results-torch-cpu.jsonl")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        return worker_main(json.loads(args.worker))
    args.n = args.n or ([65] if args.quick else [513, 1025])
    args.batch = args.batch or ([16] if args.quick else [64, 256])
    args.frames = args.frames or (64 if args.quick else 512)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.target_s = args.target_s or (0.2 if args.quick else 1.0)
    variants = ["stock"] + [v for v in args.variants if v != "stock"]
    if version("torch") is None:
        print("torch is not installed: pip install -e '.[bench]' (or pip install torch)",
              file=sys.stderr)
        return 2

    import common  # imports jax: the orchestrator itself times nothing

    info = common.machine()
    command = shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    if os.environ.get("XLA_FLAGS"):
        command = f"XLA_FLAGS={shlex.quote(os.environ['XLA_FLAGS'])} {command}"
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = {p: version(p) for p in ("jax", "jaxlib", "torch", "numpy", "optax", "flax")}
    head = {"bench": "torch_compare", "kind": "machine", **info, "cpu": cpu_model(),
            "versions": versions, "command": command, "repeats": args.repeats}
    lines = []

    def emit(rec):
        common.emit(rec)
        lines.append(json.dumps(rec, default=common._plain))

    start_load = load_snapshot()
    head["load_start"] = start_load
    emit(head)
    print(f"# ncajax vs PyTorch\n\n- date: {date}\n- CPU: {cpu_model()} (/proc/cpuinfo), "
          f"{os.cpu_count()} cores, 1-min load {info['loadavg_1m']:.2f} at the start\n"
          f"- jax {versions['jax']} (jaxlib {versions['jaxlib']}), torch {versions['torch']}, numpy "
          f"{versions['numpy']}, Python {platform.python_version()}, XLA_FLAGS="
          f"'{os.environ.get('XLA_FLAGS', '')}'\n- command: `{command}`\n- at the start: "
          f"{fmt_load(start_load)}\n", flush=True)

    specs = plan(args)
    results: dict[str, dict[str, list[dict]]] = {case_key(s): {} for s in specs}
    with tempfile.TemporaryDirectory(prefix="bench_torch_") as tmp:
        for s in specs:
            if s["case"] != "matmul":
                s["data"] = write_data(s, Path(tmp))
        t_start = time.perf_counter()
        for rep in range(args.repeats):
            for s in specs:
                if s["case"] == "matmul":
                    impls = [{"impl": "matmul", "lib": lib} for lib in ("jax", "torch", "numpy")]
                else:
                    impls = [{"impl": "ncajax"}] + [{"impl": "torch", "variant": v} for v in variants]
                for extra in impls:
                    spec = {**s, **extra, "torch_threads": args.torch_threads}
                    label = extra.get("lib") or extra.get("variant") or "ncajax"
                    res = run_worker(spec, args.worker_timeout)
                    results[case_key(s)].setdefault(label, []).append(res)
                    status = (f"{fmt_ms(res.get('step_s'))}/step" if res.get("step_s")
                              else ("ok" if res["ok"] else "FAILED"))
                    load = res.get("loadavg_1m")
                    print(f"# rep {rep + 1}/{args.repeats} {case_key(s)} {label}: {status} "
                          f"({res['wall_s']:.1f} s wall"
                          + ("" if load is None else f", load {load:.2f}") + ")", flush=True)
        total = time.perf_counter() - t_start
    end_load = load_snapshot()
    emit({"bench": "torch_compare", "kind": "load_end", **end_load})
    print(f"# at the end: {fmt_load(end_load)}", flush=True)

    # ------------------------------------------------------------------ aggregate, check, report
    rows, mm_rows, mismatches, failures, drifts = [], [], [], [], []
    worst_later = 0.0
    for s in specs:
        key = case_key(s)
        per = results[key]
        if s["case"] == "matmul":
            for shape in s["shapes"]:
                sk = "x".join(map(str, shape))
                row = {"n": s["n"], "shape": sk}
                for lib, runs in per.items():
                    vals = [r["gflops"][sk] for r in runs if r["ok"]]
                    row[lib] = med(vals)
                    for r in runs:
                        if not r["ok"]:
                            failures.append(f"{key} {lib}: {r['error']}")
                emit({"bench": "torch_compare", "case": "matmul", "n_bins": s["n"], "shape": sk,
                      **{f"{lib}_gflops": row[lib] for lib in per},
                      "reps": {lib: [r["gflops"].get(sk) for r in runs if r["ok"]]
                               for lib, runs in per.items()}, "platform": info["platform"]})
                mm_rows.append(row)
            continue
        flop = (train_flops(s["model"], s["batch"], s["n"]) if s["case"] == "train"
                else fit_flops(s["case"], s["model"], s["frames"], s["n"]))
        meds, ref_loss, ref_later = {}, None, None
        for label, runs in per.items():
            ok = [r for r in runs if r["ok"]]
            for r in runs:
                if not r["ok"]:
                    failures.append(f"{key} {label}: {r['error']}")
            times = [r["step_s"] for r in ok]
            meds[label] = med(times)
            if label == "ncajax" and ok:
                ref_loss, ref_later = ok[0]["first_loss"], ok[0]["later_loss"]
            rec = {"bench": "torch_compare", "case": s["case"], "model": s["model"],
                   "n_bins": s["n"], "batch": s.get("batch"), "frames": s.get("frames"),
                   "steps": s.get("steps"), "impl": "ncajax" if label == "ncajax" else "torch",
                   "variant": None if label == "ncajax" else label, "step_ms":
                   None if meds[label] is None else 1e3 * meds[label],
                   "gflops": None if meds[label] is None else flop / meds[label] / 1e9,
                   "matmul_gflop_per_step": flop / 1e9, "reps_ms": [1e3 * t for t in times],
                   "spread": (max(times) - min(times)) / meds[label] if len(times) > 1 else None,
                   "first_loss": ok[0]["first_loss"] if ok else None,
                   "later_loss": ok[0]["later_loss"] if ok else None,
                   "optimizer": ok[0].get("optimizer") if ok else None,
                   "error": None if ok else runs[0].get("error"), "platform": info["platform"]}
            if s["case"] == "train":
                rec["frames_per_s"] = None if meds[label] is None else s["batch"] / meds[label]
            emit(rec)
        for label, runs in per.items():
            if label == "ncajax" or ref_loss is None:
                continue
            for r in runs:
                if r["ok"]:
                    rel = abs(r["first_loss"] - ref_loss) / max(abs(ref_loss), 1e-30)
                    if rel > LOSS_RTOL:
                        mismatches.append(f"{key} {label}: first loss {r['first_loss']:.8g} vs "
                                          f"ncajax {ref_loss:.8g} (rel {rel:.2e})")
                    later = abs(r["later_loss"] - ref_later) / max(abs(ref_later), 1e-30)
                    worst_later = max(worst_later, later)
                    if later > LATER_RTOL:
                        drifts.append(f"{key} {label}: loss after the Adam steps "
                                      f"{r['later_loss']:.8g} vs ncajax {ref_later:.8g} "
                                      f"(rel {later:.2e})")
        torch_meds = {k: v for k, v in meds.items() if k != "ncajax" and v is not None}
        best = min(torch_meds, key=torch_meds.get) if torch_meds else None
        nc, st = meds.get("ncajax"), meds.get("stock")
        bt = torch_meds.get(best) if best else None
        case_name = (f"train {s['model']} B={s['batch']}" if s["case"] == "train"
                     else f"{s['case']} {s['model']}" if s["case"] == "nca"
                     else f"student ({s['model']} teacher)")
        rows.append({"n": s["n"], "case": case_name, "ncajax": nc, "stock": st, "best": bt,
                     "best_variant": best, "meds": meds,
                     "r_stock": st / nc if nc and st else None,
                     "r_best": bt / nc if nc and bt else None})

    print(f"\n{args.repeats} repetition(s), medians; ms per training step / per fit step (fits: "
          f"{args.frames} frames, one whole call / steps); ncajax/x = torch time / ncajax time "
          "(> 1: ncajax is faster). Subprocesses took "
          f"{total:.0f} s in all.\n")
    print("| N | case | ncajax | torch stock | torch best | ncajax/stock | ncajax/best |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        best = "n/a" if r["best"] is None else f"{fmt_ms(r['best'])} ({r['best_variant']})"
        print(f"| {r['n']} | {r['case']} | {fmt_ms(r['ncajax'])} | {fmt_ms(r['stock'])} | {best} "
              f"| {fmt_x(r['r_stock'])} | {fmt_x(r['r_best'])} |")
    if rows:
        print(f"\nEvery torch variant (ms/step): | N | case | {' | '.join(variants)} |")
        print("|---|---|" + "---|" * len(variants))
        for r in rows:
            cells = " | ".join(fmt_ms(r["meds"].get(v)) for v in variants)
            print(f"| {r['n']} | {r['case']} | {cells} |")
    if mm_rows:
        print("\nfloat32 matmul GFLOP/s at the cases' shapes (m x k x n):\n")
        print("| N | shape | jnp.dot | torch.mm | numpy |")
        print("|---|---|---|---|---|")
        for r in mm_rows:
            cells = " | ".join("n/a" if r.get(lib) is None else f"{r[lib]:.1f}"
                               for lib in ("jax", "torch", "numpy"))
            print(f"| {r['n']} | {r['shape']} | {cells} |")
    if failures:
        print("\nFailed measurements (n/a above):")
        for f in failures:
            print(f"- {f}")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\n# {len(lines)} JSON lines -> {args.out}")
    if drifts:
        print("\nWARNING: the losses drift apart after a few Adam steps (optimizer mismatch?):")
        for d in drifts:
            print(f"- {d}")
    else:
        print(f"# losses after the first Adam steps agree too (worst rel {worst_later:.1e}; train: "
              "step 3, fits: the last step of a call)")
    if mismatches:
        print("\nFIRST-LOSS MISMATCH (the two implementations do not compute the same thing):")
        for m in mismatches:
            print(f"- {m}")
        return 1
    print(f"# first losses agree (torch vs ncajax, every variant and repetition, rel <= {LOSS_RTOL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
