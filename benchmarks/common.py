"""Timing harness shared by the benchmark scripts (scripts, not tests).

- `machine()`: what ran the numbers (CPU model, cores, device platform, jax version, load average).
- `interleaved(fns, repeats=...)`: warm-up once, then run every function once per repetition in turn
  (A B C A B C ...), so the code under test and its matmul yardstick see the same machine state (other
  processes, clock). Returns the per-function list of seconds; report their median.
- `dot_rate(shapes)` / `DotRef`: the float32 `jnp.dot` rate at given (m, k, n) shapes, the "measured
  matmul rate" the code under test is compared with.
- `emit(record)`: one JSON line per measurement; `table(rows, columns)`: a readable table.

Every timed function must block on its result (`jax.block_until_ready`), which the helpers here do.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))

Shape = tuple[int, int, int]  # (m, k, n) of an (m, k) @ (k, n) matmul


# ----------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """The machine description stored with every benchmark run."""
    dev = jax.devices()[0]
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": dev.platform,
        "device": dev.device_kind,
        "n_devices": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_1m": os.getloadavg()[0],
    }


# ----------------------------------------------------------------------------------- timing


def block(out: Any) -> Any:
    return jax.block_until_ready(out)


def interleaved(
    fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument function, repetitions interleaved across functions.

    Each function is called `warmup` times first (compilation, caches; not timed). Results are blocked on.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> float:
    """(max - min) / median of the repetitions: how noisy the machine was."""
    m = median(xs)
    return float((max(xs) - min(xs)) / m) if m > 0 else float("nan")


# ----------------------------------------------------------------------------------- worker processes

WORKER_TAG = "RESULT "  # the line a worker process prints its JSON result on


def worker_main(worker: Callable[[dict], dict], spec_json: str) -> int:
    """The `--worker SPEC` side: run `worker(spec)` and print its result on one tagged line."""
    print(WORKER_TAG + json.dumps(worker(json.loads(spec_json))), flush=True)
    return 0


def run_worker(script: str, spec: dict, env: dict[str, str] | None = None) -> tuple[dict | None, str]:
    """Run `python script --worker SPEC` in a fresh process (from the repository, with REPO and
    benchmarks/ on PYTHONPATH, `env` on top of this process's environment); returns (its result or None,
    the tail of its stderr)."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "benchmarks")]), **(env or {}))
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], env=full,
                          capture_output=True, text=True, cwd=str(REPO))
    res = next((json.loads(line[len(WORKER_TAG):]) for line in proc.stdout.splitlines()
                if line.startswith(WORKER_TAG)), None)
    return res, proc.stderr[-800:]


# ----------------------------------------------------------------------------------- matmul yardstick


def matmul_flops(shapes: Sequence[Shape]) -> int:
    """Exact FLOPs (2 m k n each) of a list of matmuls."""
    return int(sum(2 * m * k * n for m, k, n in shapes))


class DotRef:
    """Zero-argument timed `jnp.dot` programs at the distinct shapes of a matmul list.

    `fns()` gives one callable per distinct shape (to pass to `interleaved`); `rate(times)` turns their
    timings into the matmul-only rate of the whole list: sum of FLOPs / sum over matmuls of the time
    jnp.dot takes at that shape. That is what the code under test would reach if all its non-matmul work
    were free and each of its matmuls ran at the speed of a lone jnp.dot.
    """

    def __init__(self, shapes: Sequence[Shape], *, precision=None, seed: int = 0, tag: str = "dot"):
        self.shapes = list(shapes)
        self.counts: dict[Shape, int] = {}
        for s in self.shapes:
            self.counts[s] = self.counts.get(s, 0) + 1
        self.tag = tag
        dot = jax.jit(lambda a, b: jnp.dot(a, b, precision=precision))
        rng = np.random.default_rng(seed)
        self._fns = {}
        for m, k, n in self.counts:
            a = jnp.asarray(rng.random((m, k), np.float32))
            b = jnp.asarray(rng.random((k, n), np.float32))
            self._fns[self.key((m, k, n))] = (lambda a=a, b=b: dot(a, b))

    def key(self, s: Shape) -> str:
        return f"{self.tag}:{s[0]}x{s[1]}x{s[2]}"

    def fns(self) -> dict[str, Callable[[], Any]]:
        return dict(self._fns)

    def rate(self, times: dict[str, list[float]]) -> float:
        """FLOP/s of the whole matmul list at the median per-shape jnp.dot times."""
        total_t = sum(c * median(times[self.key(s)]) for s, c in self.counts.items())
        return matmul_flops(self.shapes) / total_t


def square_ref(platform: str) -> Shape:
    """The large square reference matmul: 2048^3 on CPU, 8192^3 on accelerators."""
    n = 2048 if platform == "cpu" else 8192
    return (n, n, n)


# ----------------------------------------------------------------------------------- output


def emit(record: dict[str, Any]) -> None:
    """One JSON line (prefixed `BENCH ` so it can be grepped out of mixed output)."""
    print("BENCH " + json.dumps(record, default=_plain), flush=True)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of `rows` (dicts) over `columns`; floats get 3 significant digits."""

    def fmt(v):
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e5 else f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repetitions (median reported)")
    return ap


def header(name: str) -> dict[str, Any]:
    """Print and return the machine description at the start of a benchmark script."""
    info = machine()
    emit({"bench": name, "kind": "machine", **info})
    print(f"# {name}: {info['cpu']} ({info['cores']} cores), {info['platform']} "
          f"{info['device']}, jax {info['jax']}, load {info['loadavg_1m']:.2f}", flush=True)
    return info


REAL_TRACK = REPO.parent / "shared" / "data" / "musdb18-sample" / "train" / "Music Delta - 80s Rock.stem.mp4"


def real_track(sample_rate: int):
    """The real MUSDB18 sample track shared beside the repository, mono at `sample_rate` (a
    `data.Track`), or None when it or ffmpeg is missing."""
    from ncajax import data

    if not REAL_TRACK.exists():
        return None
    try:
        data.require_ffmpeg()
    except RuntimeError:
        return None
    ref = data.TrackRef(name=REAL_TRACK.name.removesuffix(".stem.mp4"), path=str(REAL_TRACK), kind="stem")
    return data.load_track(ref, sample_rate)
