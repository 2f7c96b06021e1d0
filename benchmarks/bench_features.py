"""The feature pipeline: minibatches/s streamed from the on-disk cache, compared with the rate the
training step consumes them, and the memory (RSS delta) while streaming caches of growing size.

Writes synthetic caches (random magnitudes in the `ncajax.data` on-disk layout, opened with
`open_cache`) into a temporary folder, then per cache size:
- `batch()` alone and `batches()` (background prefetch) in batches/s, no training;
- the dae training step (the fastest consumer) on a fixed batch, and the same steps fed from
  `batches()`: the slowdown says whether the loader keeps up while it shares the CPU with training;
- peak RSS delta (total, anonymous, file-backed) over one streamed epoch. File-backed RSS is the
  memory-mapped cache pages (page cache, reclaimable); anonymous RSS is what the process really holds.

    python benchmarks/bench_features.py [--quick] [--bins 1025] [--batch 256]
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import common
import jax
import jax.numpy as jnp
import numpy as np

from ncajax import models, training
from ncajax.config import STFTConfig, TrainConfig, to_dict
from ncajax.data import _features as features

TARGET_RATIO = 5.0  # batches delivered >= 5 x faster than the training step consumes them


def write_cache(root: Path, n_frames: int, n_bins: int, *, n_tracks: int = 4) -> Path:
    """A synthetic cache directory of `n_frames` random frames in the features.py layout."""
    cfg = STFTConfig(n_fft=2 * (n_bins - 1), win_length=2 * (n_bins - 1), hop_length=256)
    path = root / f"bench-{n_bins}-{n_frames}"
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for key in ("mixture", "vocals"):
        arr = np.lib.format.open_memmap(path / f"{key}.npy", "w+", np.float32, (n_frames, n_bins))
        for lo in range(0, n_frames, 8192):
            hi = min(n_frames, lo + 8192)
            arr[lo:hi] = rng.random((hi - lo, n_bins), np.float32)
        arr.flush()
        del arr
    offsets = np.linspace(0, n_frames, n_tracks + 1).astype(int).tolist()
    names = [f"t{i}" for i in range(n_tracks)]
    refs = [{"name": n, "path": str(path), "kind": "wav", "start": 0.0, "stop": None} for n in names]
    meta = {"stft": to_dict(cfg), "format_version": features.FORMAT_VERSION, "refs": refs,
            "fingerprint": "bench", "track_names": names, "offsets": offsets}
    (path / "meta.json").write_text(json.dumps(meta))
    (path / features.MARKER).write_text("ok\n")
    return path


def rss() -> dict[str, int]:
    """Resident memory of this process in bytes: total, anonymous and file-backed (Linux; zeros
    elsewhere). Read from /proc/self/smaps_rollup, which walks the page tables and so also counts the
    pages other threads (the prefetcher) faulted in."""
    out = {"total": 0, "anon": 0, "file": 0}
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "Rss:":
            out["total"] = int(parts[1]) * 1024
        elif parts and parts[0] == "Anonymous:":
            out["anon"] = int(parts[1]) * 1024
    out["file"] = out["total"] - out["anon"]
    return out


class PeakRSS:
    """Samples RSS every few ms in a thread; `peak[k] - start[k]` is the peak delta."""

    def __enter__(self):
        self.start = rss()
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            for k, v in rss().items():
                self.peak[k] = max(self.peak[k], v)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for k, v in rss().items():
            self.peak[k] = max(self.peak[k], v)

    def delta_mb(self, key: str) -> float:
        return (self.peak[key] - self.start[key]) / 2**20


def bench_cache(path: Path, batch: int, n_steps: int, repeats: int, seeds: int) -> dict:
    cache = features.open_cache(path)
    n_bins = cache.n_bins
    spe = cache.steps_per_epoch(batch)
    n_steps = min(n_steps, spe)

    def direct():
        for s in range(n_steps):
            cache.batch(s, batch, 0)

    def prefetched():
        for _ in cache.batches(batch, 0, start_step=0, n_steps=n_steps):
            pass

    trainer = training.Trainer(models.build("dae", n_bins), TrainConfig(batch_size=batch, n_seeds=seeds))
    holder = [trainer.unstack(trainer.init())]
    x0 = jnp.asarray(np.stack([cache.batch(0, batch, s)[0] for s in range(seeds)]))

    def train_fixed():
        for _ in range(n_steps):
            holder[0], _ = trainer.step(holder[0], (x0, x0))
        return holder[0]

    def train_streamed():
        its = [cache.batches(batch, s, start_step=0, n_steps=n_steps) for s in range(seeds)]
        for pairs in zip(*its, strict=True):
            xb = np.stack([p[0] for p in pairs])
            yb = np.stack([p[1] for p in pairs])
            holder[0], _ = trainer.step(holder[0], (xb, yb))
        return holder[0]

    times = common.interleaved({"direct": direct, "prefetched": prefetched, "train_fixed": train_fixed,
                                "train_streamed": train_streamed}, repeats=repeats, warmup=1)
    med = {k: common.median(v) for k, v in times.items()}
    del cache
    # A fresh mapping, so pages touched above (fault-around maps whole 64 KiB runs) are not counted
    # as already resident: one full epoch of every seed's stream, no training.
    fresh = features.open_cache(path)
    with PeakRSS() as mem:
        for s in range(seeds):
            for _ in fresh.batches(batch, s):
                pass
    step_rate = n_steps / med["train_fixed"]
    rec = {
        "bench": "features",
        "n_bins": n_bins,
        "batch": batch,
        "seeds": seeds,
        "cache_frames": fresh.n_frames,
        "cache_mb": 2 * fresh.n_frames * n_bins * 4 / 2**20,
        "buffer_mb": seeds * features.PREFETCH * 2 * batch * n_bins * 4 / 2**20,
        "batches_per_s_direct": n_steps / med["direct"],
        "batches_per_s_prefetch": n_steps / med["prefetched"],
        "train_steps_per_s": step_rate,
        "ratio_to_train": n_steps / med["prefetched"] / (step_rate * seeds),
        "streamed_slowdown_pct": 100 * (med["train_streamed"] / med["train_fixed"] - 1),
        "rss_delta_mb": mem.delta_mb("total"),
        "rss_anon_delta_mb": mem.delta_mb("anon"),
        "rss_file_delta_mb": mem.delta_mb("file"),
        "repeats": repeats,
    }
    return rec


COLUMNS = ["n_bins", "batch", "seeds", "cache_mb", "buffer_mb", "batches_per_s_direct",
           "batches_per_s_prefetch", "train_steps_per_s", "ratio_to_train", "streamed_slowdown_pct",
           "rss_delta_mb", "rss_anon_delta_mb", "rss_file_delta_mb", "met"]


def main(argv=None) -> list[dict]:
    ap = common.parser(__doc__)
    ap.add_argument("--bins", type=int, default=1025)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--frames", nargs="+", type=int, default=None,
                    help="cache sizes in frames (the memory check needs two or more)")
    args = ap.parse_args(argv)
    info = common.header("bench_features")
    sizes = args.frames or ([8192, 32768] if args.quick else [16384, 65536])
    repeats = args.repeats or (3 if args.quick else 5)
    n_steps = 20 if info["platform"] == "cpu" else 100
    rows = []
    with tempfile.TemporaryDirectory(prefix="ncajax-bench-") as tmp:
        for n_frames in sorted(sizes):
            path = write_cache(Path(tmp), n_frames, args.bins)
            rec = bench_cache(path, args.batch, n_steps, repeats, args.seeds)
            rec["platform"] = info["platform"]
            rows.append(rec)
    base = rows[0]
    for rec in rows:
        rec["target"] = f"batches >= {TARGET_RATIO:.0f} x train step rate; anon RSS flat in cache size"
        grows = rec["rss_anon_delta_mb"] > base["rss_anon_delta_mb"] + max(16.0, rec["buffer_mb"])
        rec["memory_flat"] = not grows
        rec["met"] = bool(rec["ratio_to_train"] >= TARGET_RATIO and not grows)
        common.emit(rec)
    print(common.table(rows, COLUMNS), flush=True)
    return rows


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", False)
    main()
