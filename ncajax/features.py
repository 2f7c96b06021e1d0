"""STFT/iSTFT (librosa), the memory-mapped feature cache, deterministic shuffled minibatches.

Cache layout (`build_cache`): `cache_root / f"{name}-{fingerprint}"/` holds

- `mixture.npy`, `vocals.npy`: float32 `(n_frames, nb_bins)` magnitudes |STFT| of all tracks,
  stacked along frames (track i owns rows `offsets[i]:offsets[i + 1]`), opened memory-mapped and
  read-only;
- `meta.json`: STFT config, FORMAT_VERSION, track names, offsets, the TrackRefs and the fingerprint;
- `COMPLETE`: written last. The directory is built under a temporary name and renamed into place, so
  a directory without the marker, or whose meta/arrays disagree with the request, is never read: it
  is deleted and rebuilt.

The fingerprint covers the STFT config, FORMAT_VERSION and the TrackRefs (name, path, kind, start,
stop), so another preset, segment or format version gets another directory.

Minibatches: `FeatureCache.batch(step, batch_size, seed)` is a pure function of (seed, step):
epoch `step // steps_per_epoch` draws a permutation of all frames from
`np.random.default_rng([seed, epoch])`; the step takes its slice of that permutation (the last
incomplete batch is dropped) and reads the rows in sorted index order, so rows inside a batch come
in increasing frame order (the set of rows, not their order, is what is random). Resumed training
therefore sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import librosa
import numpy as np
from jaxtyping import Complex, Float

from .config import STFTConfig, fingerprint, mismatch, to_dict
from .prefetch import Prefetch
from .sources import TrackRef, load_track

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "COMPLETE"
PREFETCH = 4
PERM_CACHE = 16


# --------------------------------------------------------------------------------------------- STFT


def stft(
    audio: Float[np.ndarray, "n_samples"], cfg: STFTConfig
) -> Complex[np.ndarray, "nb_frames nb_bins"]:
    """Complex STFT `(nb_frames, nb_bins)`, nb_frames = 1 + n_samples // hop (librosa, centred)."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"stft expects mono audio of shape (n_samples,), got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("stft got zero-length audio; pass at least one sample")
    if not np.all(np.isfinite(audio)):
        raise ValueError(
            "stft got NaN or Inf samples; check the audio source (load_track rejects them)"
        )
    spec = librosa.stft(
        audio.astype(np.float32, copy=False),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=cfg.window,
        center=True,
        pad_mode="constant",
    )
    return np.ascontiguousarray(spec.T, dtype=np.complex64)


def istft(
    magnitude: Float[np.ndarray, "nb_frames nb_bins"],
    mixture_stft: Complex[np.ndarray, "nb_frames nb_bins"],
    cfg: STFTConfig,
    length: int,
) -> Float[np.ndarray, "n_samples"]:
    """Signal `(length,)` from `magnitude` and the phase of `mixture_stft`, both
    `(nb_frames, nb_bins)`."""
    magnitude, mixture_stft = np.asarray(magnitude), np.asarray(mixture_stft)
    if magnitude.shape != mixture_stft.shape or magnitude.ndim != 2:
        raise ValueError(
            "istft needs magnitude and mixture STFT of the same (nb_frames, nb_bins) shape, got "
            f"{magnitude.shape} and {mixture_stft.shape}"
        )
    if magnitude.shape[1] != cfg.n_bins:
        raise ValueError(
            f"istft: {magnitude.shape[1]} bins but the STFT config has n_bins={cfg.n_bins}; use "
            "the config the features were computed with"
        )
    if length < 1:
        raise ValueError(f"istft length must be positive, got {length}")
    spec = magnitude.astype(np.float32) * np.exp(1j * np.angle(mixture_stft))
    out = librosa.istft(
        spec.T.astype(np.complex64),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=cfg.window,
        center=True,
        length=int(length),
    )
    return out.astype(np.float32)


# -------------------------------------------------------------------------------------------- cache


class FeatureCache:
    """Read-only memory-mapped mixture/vocal magnitudes `(n_frames, nb_bins)` of many tracks."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.stft = STFTConfig(**meta["stft"])
        self.track_names: list[str] = list(meta["track_names"])
        self.offsets = np.asarray(meta["offsets"], dtype=np.int64)
        self.refs = [TrackRef(**r) for r in meta["refs"]]
        self.mixture = np.load(self.path / "mixture.npy", mmap_mode="r")
        self.vocals = np.load(self.path / "vocals.npy", mmap_mode="r")
        # a few recent epoch permutations (several seeds train side by side, each its own order)
        self._perm_lock = threading.Lock()
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    @classmethod
    def from_arrays(
        cls,
        mixture: Float[np.ndarray, "n_frames nb_bins"],
        vocals: Float[np.ndarray, "n_frames nb_bins"],
        *,
        stft: STFTConfig | None = None,
        name: str = "in-memory",
    ) -> FeatureCache:
        """A cache over arrays already in memory (one pseudo-track), with the same deterministic
        minibatches as an on-disk cache: for small experiments, notebooks and tests."""
        mixture = np.asarray(mixture, np.float32)
        vocals = np.asarray(vocals, np.float32)
        if mixture.ndim != 2 or mixture.shape != vocals.shape:
            raise ValueError(
                f"mixture and vocals must be equal (n_frames, nb_bins) arrays, got {mixture.shape} "
                f"and {vocals.shape}"
            )
        if not (np.all(np.isfinite(mixture)) and np.all(np.isfinite(vocals))):
            raise ValueError("mixture/vocals contain NaN or Inf; clean the features first")
        self = cls.__new__(cls)
        self.path = Path(name)
        self.stft = stft
        self.meta = {"in_memory": True}
        self.track_names = [name]
        self.offsets = np.array([0, len(mixture)], dtype=np.int64)
        self.refs = []
        self.mixture, self.vocals = mixture, vocals
        self._perm_lock = threading.Lock()
        self._perms = OrderedDict()
        return self

    def __repr__(self) -> str:
        return (
            f"FeatureCache({str(self.path)!r}, n_tracks={len(self.track_names)}, "
            f"n_frames={self.n_frames}, n_bins={self.n_bins})"
        )

    @property
    def n_frames(self) -> int:
        return int(self.mixture.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.mixture.shape[1])

    def track(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Mixture and vocal magnitudes `(nb_frames_i, nb_bins)` of track i (memmap views)."""
        if not -len(self.track_names) <= i < len(self.track_names):
            raise IndexError(f"track index {i} out of range for {len(self.track_names)} tracks")
        i %= len(self.track_names)
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.mixture[lo:hi], self.vocals[lo:hi]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full batches per epoch, `n_frames // batch_size` (the last partial batch is dropped)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        steps = self.n_frames // batch_size
        if steps < 1:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {self.n_frames} frames of cache "
                f"{self.path.name}; lower the batch size or use more/longer tracks"
            )
        return steps

    def _permutation(self, seed: int, epoch: int) -> np.ndarray:
        key = (seed, epoch)
        with self._perm_lock:
            perm = self._perms.get(key)
            if perm is None:
                perm = np.random.default_rng([seed, epoch]).permutation(self.n_frames)
                if self.n_frames < 2**31:
                    perm = perm.astype(np.int32)
                self._perms[key] = perm
                while len(self._perms) > PERM_CACHE:
                    self._perms.popitem(last=False)
            self._perms.move_to_end(key)
            return perm

    def batch_indices(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        """Sorted frame indices `(batch_size,)` of global step `step` (see the module docstring)."""
        if step < 0 or seed < 0:
            raise ValueError(f"step and seed must be non-negative, got step={step}, seed={seed}")
        spe = self.steps_per_epoch(batch_size)
        epoch, k = divmod(int(step), spe)
        return np.sort(self._permutation(int(seed), epoch)[k * batch_size : (k + 1) * batch_size])

    def batch(
        self, step: int, batch_size: int, seed: int
    ) -> tuple[Float[np.ndarray, "batch nb_bins"], Float[np.ndarray, "batch nb_bins"]]:
        """Mixture and vocal frames `(batch_size, nb_bins)` of global step `step`: a pure function
        of (seed, step, batch_size); rows come in increasing frame order (sorted for fast page
        access)."""
        idx = self.batch_indices(step, batch_size, seed)
        return np.asarray(self.mixture[idx]), np.asarray(self.vocals[idx])

    def batches(
        self,
        batch_size: int,
        seed: int,
        *,
        start_step: int = 0,
        n_steps: int | None = None,
        prefetch: int = PREFETCH,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of steps start_step, start_step + 1, ... read ahead by a background thread.

        `n_steps=None` runs to the end of the epoch holding `start_step`. At most `prefetch` batches
        wait in memory, so memory does not grow with the cache size.
        """
        spe = self.steps_per_epoch(batch_size)
        if start_step < 0:
            raise ValueError(f"start_step must be non-negative, got {start_step}")
        if n_steps is None:
            n_steps = spe - start_step % spe
        if n_steps < 0 or prefetch < 1:
            raise ValueError(f"need n_steps >= 0 and prefetch >= 1, got {n_steps}, {prefetch}")
        steps = range(start_step, start_step + n_steps)
        return Prefetch(lambda s: self.batch(s, batch_size, seed), steps, prefetch)


def per_bin_rms(
    cache: FeatureCache, *, chunk: int = 8192, floor: float = 1e-6
) -> tuple[Float[np.ndarray, "nb_bins"], Float[np.ndarray, "nb_bins"]]:
    """Per-bin RMS `(s, t)` of the mixture and vocal magnitudes over all frames of `cache`, float32.

    Accumulated in float64 in chunks (memory does not grow with the cache). A bin whose RMS is below
    `floor` times the largest bin's RMS (e.g. a silent DC bin) gets that floor instead, so dividing by it
    stays finite; the scaling is a fixed positive diagonal either way. Used by the "standardised" training
    recipe (`ncajax.config.TrainConfig.recipe`).
    """
    if cache.n_frames < 1:
        raise ValueError(f"cache {cache.path.name} has no frames to compute a per-bin RMS from")
    sums = [np.zeros(cache.n_bins, np.float64), np.zeros(cache.n_bins, np.float64)]
    for start in range(0, cache.n_frames, chunk):
        for acc, arr in zip(sums, (cache.mixture, cache.vocals), strict=True):
            block = np.asarray(arr[start : start + chunk], np.float64)
            acc += np.sum(block * block, axis=0)
    out = []
    for acc in sums:
        rms = np.sqrt(acc / cache.n_frames)
        top = float(np.max(rms))  # NaN features stay NaN here: the training guard names them
        out.append(np.maximum(rms, max(top * floor, 1e-12)).astype(np.float32))
    return out[0], out[1]


def _refs_dicts(refs: Sequence[TrackRef]) -> list[dict]:
    return [dataclasses.asdict(r) for r in refs]


def cache_fingerprint(refs: Sequence[TrackRef], cfg: STFTConfig) -> str:
    """Fingerprint of (STFT config, FORMAT_VERSION, TrackRefs) naming the cache directory."""
    return fingerprint(
        {"stft": to_dict(cfg), "format_version": FORMAT_VERSION, "refs": _refs_dicts(refs)}
    )


def build_cache(
    refs: list[TrackRef],
    cfg: STFTConfig,
    cache_root: str | os.PathLike,
    *,
    name: str,
    progress: bool = False,
) -> FeatureCache:
    """The cache of `refs` under `cache_root / f"{name}-{fingerprint}"`, computed only when missing.

    A complete matching cache is reused as is; a partial or mismatching one is deleted and rebuilt.
    Tracks are processed one at a time (memory: one track). Raises ValueError naming a track with
    NaN/Inf features.
    """
    refs = list(refs)
    if not refs:
        raise ValueError(
            "build_cache got no tracks; pass a non-empty list of TrackRef (dataset_splits)"
        )
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"cache name must be a plain folder-name prefix, got {name!r}")
    cache_root = Path(cache_root)
    fp = cache_fingerprint(refs, cfg)
    final = cache_root / f"{name}-{fp}"
    expected = {
        "stft": to_dict(cfg),
        "format_version": FORMAT_VERSION,
        "refs": _refs_dicts(refs),
        "fingerprint": fp,
    }
    if final.exists():
        problem = _check_cache(final, expected)
        if problem is None:
            return open_cache(final)
        log.warning("feature cache %s is unusable (%s); rebuilding it", final, problem)
        shutil.rmtree(final)

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        offsets = _write_features(refs, cfg, tmp, progress=progress)
        meta = dict(expected, track_names=[r.name for r in refs], offsets=offsets)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        (tmp / MARKER).write_text("ok\n")
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished the same cache first: use it if it is valid
            if _check_cache(final, expected) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_cache(final)


def _write_features(
    refs: list[TrackRef], cfg: STFTConfig, out: Path, *, progress: bool
) -> list[int]:
    """Append each track's magnitudes to mixture.npy / vocals.npy; the .npy headers get the final
    shape at the end (numpy pads headers so the frame count can grow in place)."""
    files = {k: open(out / f"{k}.npy", "wb") for k in ("mixture", "vocals")}
    try:
        starts = {}
        for f in files.values():
            _write_npy_header(f, 0, cfg.n_bins)
            starts[f] = f.tell()
        offsets = [0]
        it = refs
        if progress:
            from tqdm import tqdm

            it = tqdm(refs, desc=f"features {out.name}", unit="track")
        for ref in it:
            audio = load_track(ref, cfg.sample_rate)
            n = None
            for key in ("mixture", "vocals"):
                signal = getattr(audio, key)
                mag = np.abs(stft(signal, cfg)) if np.all(np.isfinite(signal)) else signal
                if not np.all(np.isfinite(mag)):
                    raise ValueError(
                        f"track {ref.name!r} ({ref.path}) gives NaN/Inf {key} features; check its "
                        "audio"
                    )
                mag.astype(np.float32, copy=False).tofile(files[key])
                n = len(mag)
            offsets.append(offsets[-1] + n)
        for f in files.values():
            f.flush()
            f.seek(0)
            _write_npy_header(f, offsets[-1], cfg.n_bins)
            if f.tell() != starts[f]:
                raise RuntimeError("npy header changed size while finalising the feature cache")
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            f.close()
    return offsets


def _write_npy_header(f, n_frames: int, n_bins: int) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": (n_frames, n_bins)}
    )


def _check_cache(path: Path, expected: dict | None = None) -> str | None:
    """None when `path` is a complete cache (matching `expected`), else what is wrong with it."""
    if not (path / MARKER).is_file():
        return f"no {MARKER} marker (partly written)"
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as err:
        return f"unreadable meta.json ({err})"
    if meta.get("format_version") != FORMAT_VERSION:
        return f"format version {meta.get('format_version')} != {FORMAT_VERSION}"
    if expected is not None:
        diff = mismatch(
            {k: expected[k] for k in ("stft", "fingerprint")},
            {k: meta.get(k) for k in ("stft", "fingerprint")},
        )
        if diff or meta.get("refs") != expected["refs"]:
            return "config/tracks differ: " + ("; ".join(diff) or "track list")
    try:
        offsets = np.asarray(meta["offsets"], dtype=np.int64)
        n_bins = STFTConfig(**meta["stft"]).n_bins
        for key in ("mixture", "vocals"):
            arr = np.load(path / f"{key}.npy", mmap_mode="r")
            if arr.shape != (int(offsets[-1]), n_bins) or arr.dtype != np.float32:
                return f"{key}.npy has shape {arr.shape}, expected ({int(offsets[-1])}, {n_bins})"
        if len(offsets) != len(meta["track_names"]) + 1 or np.any(np.diff(offsets) < 0):
            return "inconsistent offsets"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable arrays ({err})"
    return None


def open_cache(path: str | os.PathLike) -> FeatureCache:
    """Open a complete cache directory read-only; ValueError when partial, corrupt or outdated."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"feature cache {str(path)!r} does not exist; create it with "
            "ncajax.features.build_cache"
        )
    problem = _check_cache(path)
    if problem is not None:
        raise ValueError(
            f"feature cache {str(path)!r} is unusable ({problem}); delete it and rebuild it with "
            "build_cache"
        )
    return FeatureCache(path, json.loads((path / "meta.json").read_text()))
