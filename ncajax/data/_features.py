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

Stem remix (`build_stems_cache`, `StemsCache`): for the training split only, and only when a remix
augmentation is on (`TrainConfig.augment_remix`, `augment_stem_gain_db`), `cache_root /
f"{name}-stems-{fingerprint}"/` holds one complex64 `(n_frames, nb_bins)` STFT per stem of STEMS
(`vocals.npy`, `drums.npy`, `bass.npy`, `other.npy`, same frames and offsets as the magnitude cache),
built and validated like the magnitude cache (its fingerprint adds the format tag STEMS_FORMAT). The STFT
is linear, so a remixed mixture's spectrum is the sum of its scaled stems' spectra:
`StemsCache.remix_batch(step, batch_size, seed, remix_prob=, stem_gain_db=)` takes the frames of the
ordinary batch of (seed, step), replaces, with probability `remix_prob` per example, every stem's frame by
an independent uniform draw over all frames of the split (other songs, as open-unmix mixes random
tracks), scales each stem by its own gain uniform in dB on [-stem_gain_db, +stem_gain_db] and returns
(|sum of the scaled stems|, |scaled vocals|). Its randomness is `np.random.default_rng([seed,
REMIX_STREAM, step])`, so it too is a pure function of (seed, step) and resume stays bit-exact. With
remix_prob = 0 and stem_gain_db = 0 it is the ordinary batch (the mixture as |sum of the stems' STFTs|,
equal to the cached mixture magnitude up to float32 rounding for the embedded corpus and MUSDB18-HQ; for
MUSDB18's mp4 stems up to the coding noise between the mix and the sum of its stems).
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

from ..config import STFTConfig, fingerprint, mismatch, to_dict
from ._prefetch import Prefetch
from ._sources import SOURCE_STEMS, TrackRef, load_stems, load_track

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "COMPLETE"
PREFETCH = 4
PERM_CACHE = 16
# the stems of the remix cache, in the order they are summed: ((vocals + drums) + bass) + other
STEMS = SOURCE_STEMS
# format tag of the stems cache (part of its fingerprint and meta.json)
STEMS_FORMAT = "stems-complex64"
# stream id of the remix randomness: np.random.default_rng([seed, REMIX_STREAM, step])
REMIX_STREAM = 0x5E3


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
    refs = _checked_refs(refs, name, "build_cache")
    cache_root = Path(cache_root)
    fp = cache_fingerprint(refs, cfg)
    final = cache_root / f"{name}-{fp}"
    expected = {
        "stft": to_dict(cfg),
        "format_version": FORMAT_VERSION,
        "refs": _refs_dicts(refs),
        "fingerprint": fp,
    }

    def write(tmp: Path) -> dict:
        offsets = _write_features(refs, cfg, tmp, progress=progress)
        return {"track_names": [r.name for r in refs], "offsets": offsets}

    return _materialise(final, expected, write, _check_cache, open_cache, "feature cache")


def _checked_refs(refs: Sequence[TrackRef], name: str, caller: str) -> list[TrackRef]:
    """`refs` as a list, refused when empty; `name` refused unless it is a plain folder-name prefix."""
    refs = list(refs)
    if not refs:
        raise ValueError(f"{caller} got no tracks; pass a non-empty list of TrackRef (dataset_splits)")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"cache name must be a plain folder-name prefix, got {name!r}")
    return refs


def _materialise(final: Path, expected: dict, write, check, opener, what: str):
    """`opener(final)` once `final` is a complete cache matching `expected` (`check(path, expected)`
    is None): reused as is, else (partial or mismatching: deleted first) built by `write(tmp)` (which
    returns the meta fields beyond `expected`) in a temporary sibling directory that gets meta.json,
    then the MARKER, and is renamed into place."""
    if final.exists():
        problem = check(final, expected)
        if problem is None:
            return opener(final)
        log.warning("%s %s is unusable (%s); rebuilding it", what, final, problem)
        shutil.rmtree(final)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = dict(expected, **write(tmp))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        (tmp / MARKER).write_text("ok\n")
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished the same cache first: use it if it is valid
            if check(final, expected) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return opener(final)


def _write_features(
    refs: list[TrackRef], cfg: STFTConfig, out: Path, *, progress: bool
) -> list[int]:
    """Append each track's magnitudes to mixture.npy / vocals.npy (`_append_tracks`)."""

    def magnitudes(ref: TrackRef) -> dict[str, np.ndarray]:
        audio = load_track(ref, cfg.sample_rate)
        rows = {}
        for key in ("mixture", "vocals"):
            signal = getattr(audio, key)
            mag = np.abs(stft(signal, cfg)) if np.all(np.isfinite(signal)) else signal
            if not np.all(np.isfinite(mag)):
                raise ValueError(
                    f"track {ref.name!r} ({ref.path}) gives NaN/Inf {key} features; check its "
                    "audio"
                )
            rows[key] = mag
        return rows

    return _append_tracks(refs, out, ("mixture", "vocals"), np.float32, cfg.n_bins, magnitudes,
                          desc=f"features {out.name}", what="feature cache", progress=progress)


def _append_tracks(refs, out: Path, names, dtype, n_bins: int, rows_of, *, desc: str, what: str,
                   progress: bool) -> list[int]:
    """Append `rows_of(ref)` ({name: (nb_frames, n_bins)}, one frame count per track) to `<name>.npy`
    in `out` for every track, as `dtype`; the .npy headers get the final shape at the end (numpy pads
    headers so the frame count can grow in place). Returns the track offsets in frames."""
    files = {k: open(out / f"{k}.npy", "wb") for k in names}
    try:
        starts = {}
        for f in files.values():
            _write_npy_header(f, 0, n_bins, dtype)
            starts[f] = f.tell()
        offsets = [0]
        it = refs
        if progress:
            from tqdm import tqdm

            it = tqdm(refs, desc=desc, unit="track")
        for ref in it:
            for key, rows in rows_of(ref).items():
                rows.astype(dtype, copy=False).tofile(files[key])
                n = len(rows)
            offsets.append(offsets[-1] + n)
        for f in files.values():
            f.flush()
            f.seek(0)
            _write_npy_header(f, offsets[-1], n_bins, dtype)
            if f.tell() != starts[f]:
                raise RuntimeError(f"npy header changed size while finalising the {what}")
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            f.close()
    return offsets


def _write_npy_header(f, n_frames: int, n_bins: int, dtype=np.float32) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (n_frames, n_bins)}
    )


def _check_cache(
    path: Path,
    expected: dict | None = None,
    *,
    arrays: Sequence[str] = ("mixture", "vocals"),
    dtype=np.float32,
    fmt: str | None = None,
) -> str | None:
    """None when `path` is a complete cache (matching `expected`), else what is wrong with it.
    `arrays`, `dtype`, `fmt`: the stems cache's files, dtype and format tag (default: magnitudes)."""
    if not (path / MARKER).is_file():
        return f"no {MARKER} marker (partly written)"
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as err:
        return f"unreadable meta.json ({err})"
    if meta.get("format_version") != FORMAT_VERSION:
        return f"format version {meta.get('format_version')} != {FORMAT_VERSION}"
    if meta.get("format") != fmt:
        return f"format {meta.get('format')!r} != {fmt!r}"
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
        for key in arrays:
            arr = np.load(path / f"{key}.npy", mmap_mode="r")
            if arr.shape != (int(offsets[-1]), n_bins) or arr.dtype != dtype:
                return (
                    f"{key}.npy has shape {arr.shape} and dtype {arr.dtype}, expected "
                    f"({int(offsets[-1])}, {n_bins}) {np.dtype(dtype)}"
                )
        if len(offsets) != len(meta["track_names"]) + 1 or np.any(np.diff(offsets) < 0):
            return "inconsistent offsets"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable arrays ({err})"
    return None


def open_cache(path: str | os.PathLike) -> FeatureCache:
    """Open a complete cache directory read-only; ValueError when partial, corrupt or outdated."""
    return _open_checked(path, "feature cache", "build_cache", _check_cache, FeatureCache)


def _open_checked(path, what: str, builder: str, check, cls):
    """`cls(path, meta)` of a complete cache directory; FileNotFoundError when missing, ValueError (with
    `check`'s problem and the `builder` to rebuild it with) when partial, corrupt or outdated."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; create it with ncajax.data.{builder}")
    problem = check(path)
    if problem is not None:
        raise ValueError(f"{what} {str(path)!r} is unusable ({problem}); delete it and rebuild it with {builder}")
    return cls(path, json.loads((path / "meta.json").read_text()))


# ------------------------------------------------------------------------------ stems cache (remix)


def _check_remix_options(remix_prob: float, stem_gain_db: float) -> None:
    if not 0.0 <= remix_prob <= 1.0:
        raise ValueError(
            f"remix_prob must be a probability between 0 and 1 (e.g. remix_prob=0.5), got {remix_prob}"
        )
    if not 0.0 <= stem_gain_db <= 24.0:
        raise ValueError(
            f"stem_gain_db must be between 0 and 24 dB (e.g. stem_gain_db=6.0), got {stem_gain_db}"
        )


class StemsCache:
    """Read-only memory-mapped complex64 STFTs `(n_frames, nb_bins)` of the stems STEMS of many tracks,
    frame for frame the rows of the magnitude cache of the same tracks (same offsets), and the
    stem-remix batches drawn from them (see the module docstring)."""

    # the same epoch permutations and batch frames as the magnitude cache of the same tracks
    steps_per_epoch = FeatureCache.steps_per_epoch
    _permutation = FeatureCache._permutation
    batch_indices = FeatureCache.batch_indices

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.stft = STFTConfig(**meta["stft"])
        self.track_names: list[str] = list(meta["track_names"])
        self.offsets = np.asarray(meta["offsets"], dtype=np.int64)
        self.refs = [TrackRef(**r) for r in meta["refs"]]
        self.stems = {s: np.load(self.path / f"{s}.npy", mmap_mode="r") for s in STEMS}
        self._perm_lock = threading.Lock()
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"StemsCache({str(self.path)!r}, n_tracks={len(self.track_names)}, "
            f"n_frames={self.n_frames}, n_bins={self.n_bins})"
        )

    @property
    def n_frames(self) -> int:
        return int(self.stems[STEMS[0]].shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.stems[STEMS[0]].shape[1])

    def track_of(self, frames) -> np.ndarray:
        """The track index of each global frame index (same shape as `frames`)."""
        frames = np.asarray(frames, np.int64)
        if frames.size and (frames.min() < 0 or frames.max() >= self.n_frames):
            raise IndexError(
                f"frame indices must lie in [0, {self.n_frames}), got {frames.min()}..{frames.max()}"
            )
        return np.searchsorted(self.offsets, frames, side="right") - 1

    def remix_draws(
        self, step: int, batch_size: int, seed: int, *, remix_prob: float, stem_gain_db: float
    ) -> tuple[np.ndarray, Float[np.ndarray, "batch n_stems"]]:
        """Frame indices `(batch_size, len(STEMS))` (int64) and linear gains `(batch_size, len(STEMS))`
        (float32) of every stem of every example of step `step`: a pure function of (seed, step).

        Row b starts from frame `batch_indices(step, batch_size, seed)[b]` for all stems; with
        probability `remix_prob` every stem's frame is instead drawn independently and uniformly from all
        frames of the split. Gains are uniform in dB on [-stem_gain_db, +stem_gain_db] (exactly 1 at 0).
        The draws come from `np.random.default_rng([seed, REMIX_STREAM, step])` in a fixed order and
        number whatever the options, so changing one option leaves the others' draws alone.
        """
        _check_remix_options(remix_prob, stem_gain_db)
        base = self.batch_indices(step, batch_size, seed).astype(np.int64)
        rng = np.random.default_rng([int(seed), REMIX_STREAM, int(step)])
        remix = rng.random(batch_size) < remix_prob
        drawn = rng.integers(0, self.n_frames, size=(batch_size, len(STEMS)), dtype=np.int64)
        db = rng.uniform(-stem_gain_db, stem_gain_db, size=(batch_size, len(STEMS)))
        frames = np.where(remix[:, None], drawn, base[:, None])
        gains = np.power(10.0, db / 20.0).astype(np.float32)
        return frames, gains

    def remix_batch(
        self, step: int, batch_size: int, seed: int, *, remix_prob: float, stem_gain_db: float
    ) -> tuple[Float[np.ndarray, "batch nb_bins"], Float[np.ndarray, "batch nb_bins"]]:
        """Mixture and vocal magnitudes `(batch_size, nb_bins)` float32 of the remixed step `step`:
        x = |sum over STEMS of gain * STFT frame|, y = |gain_vocals * vocals STFT frame| with the frames
        and gains of `remix_draws`. With remix_prob = 0 and stem_gain_db = 0 these are the frames of
        `FeatureCache.batch(step, batch_size, seed)` (y bit for bit; x up to float32 rounding)."""
        frames, gains = self.remix_draws(
            step, batch_size, seed, remix_prob=remix_prob, stem_gain_db=stem_gain_db
        )
        mix = y = None
        for k, stem in enumerate(STEMS):  # vocals first: ((vocals + drums) + bass) + other
            rows = np.asarray(np.take(self.stems[stem], frames[:, k], axis=0))  # a fresh copy
            if stem_gain_db > 0:  # (else every gain is exactly 1)
                # a real gain scales real and imaginary parts alike: float32 work in place
                parts = rows.view(np.float32)
                parts *= gains[:, k : k + 1]
            if mix is None:
                y, mix = np.abs(rows), rows
            else:
                mix += rows
        return np.abs(mix), y

    def remixer(self, remix_prob: float, stem_gain_db: float) -> RemixBatches:
        """These stems as a batch source for training (`RemixBatches`)."""
        return RemixBatches(self, float(remix_prob), float(stem_gain_db))


@dataclasses.dataclass(frozen=True)
class RemixBatches:
    """The training batches of the stem remix with fixed options: `batch(step, batch_size, seed)` and
    `steps_per_epoch` as a `FeatureCache` has them (what `ncajax.training.Trainer.make_batch` reads),
    from `StemsCache.remix_batch`; shapes `(batch_size, nb_bins)`."""

    stems: StemsCache
    remix_prob: float
    stem_gain_db: float

    def __post_init__(self):
        _check_remix_options(self.remix_prob, self.stem_gain_db)

    @property
    def n_frames(self) -> int:
        return self.stems.n_frames

    @property
    def n_bins(self) -> int:
        return self.stems.n_bins

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.stems.steps_per_epoch(batch_size)

    def batch(
        self, step: int, batch_size: int, seed: int
    ) -> tuple[Float[np.ndarray, "batch nb_bins"], Float[np.ndarray, "batch nb_bins"]]:
        return self.stems.remix_batch(
            step, batch_size, seed, remix_prob=self.remix_prob, stem_gain_db=self.stem_gain_db
        )


def stems_fingerprint(refs: Sequence[TrackRef], cfg: STFTConfig) -> str:
    """Fingerprint of (STFT config, FORMAT_VERSION, STEMS_FORMAT, TrackRefs) naming the stems cache."""
    return fingerprint(
        {"stft": to_dict(cfg), "format_version": FORMAT_VERSION, "format": STEMS_FORMAT,
         "refs": _refs_dicts(refs)}
    )


def build_stems_cache(
    refs: list[TrackRef],
    cfg: STFTConfig,
    cache_root: str | os.PathLike,
    *,
    name: str,
    progress: bool = False,
) -> StemsCache:
    """The complex STFTs `(nb_frames, nb_bins)` of each stem of `refs` under
    `cache_root / f"{name}-stems-{fingerprint}"`, computed only when missing (like `build_cache`: a
    complete matching cache is reused, a partial or mismatching one deleted and rebuilt, one track in
    memory at a time). Reads MUSDB18, MUSDB18-HQ and the embedded corpus alike (`sources.load_stems`).
    Raises ValueError naming a track with NaN/Inf stems or stems of unequal length."""
    refs = _checked_refs(refs, name, "build_stems_cache")
    fp = stems_fingerprint(refs, cfg)
    final = Path(cache_root) / f"{name}-stems-{fp}"
    expected = {
        "stft": to_dict(cfg),
        "format_version": FORMAT_VERSION,
        "format": STEMS_FORMAT,
        "stems": list(STEMS),
        "refs": _refs_dicts(refs),
        "fingerprint": fp,
    }

    def write(tmp: Path) -> dict:
        offsets = _write_stems(refs, cfg, tmp, progress=progress)
        return {"track_names": [r.name for r in refs], "offsets": offsets}

    return _materialise(final, expected, write, _check_stems, open_stems_cache, "stems cache")


def _check_stems(path: Path, expected: dict | None = None) -> str | None:
    return _check_cache(path, expected, arrays=STEMS, dtype=np.complex64, fmt=STEMS_FORMAT)


def _write_stems(refs: list[TrackRef], cfg: STFTConfig, out: Path, *, progress: bool) -> list[int]:
    """Append each track's stem STFTs to `<stem>.npy` (complex64, `_append_tracks`)."""

    def spectra(ref: TrackRef) -> dict[str, np.ndarray]:
        stems = load_stems(ref, cfg.sample_rate)
        rows, n = {}, None
        for s in STEMS:
            spec = stft(stems[s], cfg)
            if not np.all(np.isfinite(spec)):
                raise ValueError(
                    f"track {ref.name!r} ({ref.path}) gives NaN/Inf {s} STFT; check its audio"
                )
            if n is not None and len(spec) != n:
                raise ValueError(
                    f"track {ref.name!r} ({ref.path}): stem {s} has {len(spec)} frames, the "
                    f"others {n}; all stems of a track must have the same length"
                )
            rows[s], n = spec, len(spec)
        return rows

    return _append_tracks(refs, out, STEMS, np.complex64, cfg.n_bins, spectra,
                          desc=f"stems {out.name}", what="stems cache", progress=progress)


def open_stems_cache(path: str | os.PathLike) -> StemsCache:
    """Open a complete stems cache directory read-only; ValueError when partial, corrupt or outdated."""
    return _open_checked(path, "stems cache", "build_stems_cache", _check_stems, StemsCache)


def stems_cache_for(cache: FeatureCache, *, progress: bool = False) -> StemsCache:
    """The stems cache of the tracks of `cache` (a `build_cache` cache), built next to it when missing,
    checked to have the same frames."""
    fp = cache.meta.get("fingerprint")
    if not cache.refs or not fp or cache.stft is None:
        raise ValueError(
            f"the stem remix needs the tracks behind the training features, but {cache!r} has none "
            "(an in-memory cache): build the training cache with build_cache, or turn the remix off "
            "(augment_remix=0.0, augment_stem_gain_db=0.0)"
        )
    name = cache.path.name.removesuffix(f"-{fp}")
    stems = build_stems_cache(cache.refs, cache.stft, cache.path.parent, name=name, progress=progress)
    check_same_frames(stems, cache)
    return stems


def check_same_frames(stems: StemsCache, cache: FeatureCache) -> None:
    """ValueError unless `stems` holds the same tracks, frames and bins as the magnitude `cache`."""
    if (
        stems.n_bins != cache.n_bins
        or stems.n_frames != cache.n_frames
        or not np.array_equal(stems.offsets, cache.offsets)
    ):
        raise ValueError(
            f"stems cache {stems.path.name} ({stems.n_frames} frames x {stems.n_bins} bins, "
            f"{len(stems.track_names)} tracks) does not match the training features {cache.path.name} "
            f"({cache.n_frames} x {cache.n_bins}, {len(cache.track_names)} tracks): build both from "
            "the same tracks and STFT preset (stems_cache_for(train_cache))"
        )
