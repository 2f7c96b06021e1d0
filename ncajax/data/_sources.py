"""Track sources, train/valid/test splits and audio checks.

Two layouts are read:

- MUSDB18 stems: `<root>/{train,test}/<track>.stem.mp4`, read through `musdb`/`stempeg`, which need
  the `ffmpeg` and `ffprobe` executables (`find_ffmpeg`, `require_ffmpeg`).
- MUSDB18-HQ layout: `<root>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav`, read with
  `soundfile` (no ffmpeg). The embedded synthetic corpus (`ncajax.data`) uses this layout.

`musdb`, `museval` and `stempeg` raise at *import* time when ffmpeg is missing, so they are imported
lazily, inside the functions that need them, after `require_ffmpeg()`.

Split rule (`dataset_splits`):

1. test = the `test` subset; train pool = the `train` subset.
2. valid, for a MUSDB18 (stems) or MUSDB18-HQ (wav) root: the tracks of the train pool that musdb's
   official validation list names (`official_validation_tracks`, the `validation_tracks` of the
   installed musdb package's `configs/mus.yaml`, 14 tracks in musdb 0.4), the same list for both
   layouts; the rest of the train pool is train. For the embedded synthetic corpus (a root holding the
   `corpus.json` that `ncajax.data` writes), and for a root whose train pool holds none of the listed
   tracks (a partial copy, or other music in these layouts; logged as a warning), a seeded shuffle of
   the train pool moves `max(1, round(valid_fraction * n))` tracks (at most n - 1) to valid.
   `valid_split="musdb"` / `"random"` forces one rule.
3. Time-split fallback: when there is no test track, or fewer than 2 tracks for train + valid, every
   available track is split in time instead: train = [0, 60%), valid = [60%, 70%),
   test = [70%, 100%) of its duration (`TrackRef.start/stop`, seconds). A warning is logged when
   this happens.

The split decides the `TrackRef`s of each split, and the feature caches are named by a fingerprint of
those refs (`ncajax.data.cache_fingerprint`), so a changed split builds new caches instead of
reusing old ones; a training run records its tracks per split in its config, so a run directory made
with another split is refused (`ncajax.runs.open_run`).

Silent audio: an all-silent track (or silent frames) is loaded as is and never divided by
downstream; `is_silent` lets callers detect it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from jaxtyping import Float

from ._ffmpeg import FFMPEG_HELP, find_ffmpeg

log = logging.getLogger(__name__)

STEMS = ("mixture", "vocals", "drums", "bass", "other")
ACCOMPANIMENT_STEMS = ("drums", "bass", "other")
# the separate sources of a track (every layout has them); the mixture is their sum (MUSDB18's mp4 mix
# up to coding noise)
SOURCE_STEMS = ("vocals", *ACCOMPANIMENT_STEMS)
SUBSETS = ("train", "test")
TIME_SPLIT = {"train": (0.0, 0.6), "valid": (0.6, 0.7), "test": (0.7, 1.0)}


@dataclasses.dataclass(frozen=True)
class TrackRef:
    """One track (or a time segment of it) of a dataset.

    `kind` is "wav" (`path` = the HQ track folder) or "stem" (`path` = the `.stem.mp4` file);
    `start`/`stop` are seconds (`stop=None`: to the end).
    """

    name: str
    path: str
    kind: str
    start: float = 0.0
    stop: float | None = None

    def __post_init__(self):
        if self.kind not in ("wav", "stem"):
            raise ValueError(f"TrackRef.kind must be 'wav' or 'stem', got {self.kind!r}")
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise ValueError(
                f"TrackRef {self.name!r}: need 0 <= start < stop, got start={self.start}, "
                f"stop={self.stop}"
            )


@dataclasses.dataclass
class TrackAudio:
    """Mono float32 audio at `rate`: mixture, vocals, accompaniment, each `(n_samples,)`."""

    name: str
    rate: int
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray


# ------------------------------------------------------------------------------------------- ffmpeg


def require_ffmpeg() -> None:
    """Raise RuntimeError (with the fix) unless ffmpeg and ffprobe can be found (`ncajax.data`)."""
    if find_ffmpeg() is None:
        raise RuntimeError(
            "ffmpeg/ffprobe not found: reading MUSDB18 .stem.mp4 files (and importing "
            f"musdb/museval) needs the ffmpeg and ffprobe executables on PATH; {FFMPEG_HELP}"
        )


def _import_musdb():
    require_ffmpeg()
    try:
        import musdb
    except RuntimeError as err:  # stempeg's import-time ffmpeg check
        raise RuntimeError(f"could not import musdb ({err}); {FFMPEG_HELP}") from err
    return musdb


# ------------------------------------------------------------------------------------------- splits


VALID_SPLITS = ("musdb", "random")
CORPUS_MANIFEST = "corpus.json"  # written by `ncajax.data.generate_corpus` at the corpus root


def dataset_splits(
    root: str | os.PathLike,
    *,
    is_wav: bool | None = None,
    valid_fraction: float = 0.2,
    seed: int = 0,
    valid_split: str | None = None,
) -> dict[str, list[TrackRef]]:
    """Train/valid/test `TrackRef` lists of a MUSDB18 (stems) or MUSDB18-HQ-layout (wav) folder.

    `is_wav=None` detects the layout from the files present. `valid_split` picks the validation rule:
    "musdb" (musdb's official validation track list), "random" (a seeded shuffle of `valid_fraction` of
    the train pool) or None (the embedded synthetic corpus: "random"; any other root: "musdb"). See the
    module docstring for the whole split rule (time-split fallback included). Lists are sorted by track
    name.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if valid_split is not None and valid_split not in VALID_SPLITS:
        raise ValueError(
            f"unknown valid_split {valid_split!r}; choose one of {list(VALID_SPLITS)} or None "
            "(automatic)"
        )
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"dataset root {str(root)!r} does not exist: pass the folder holding train/ and test/ "
            "(MUSDB18 .stem.mp4 or MUSDB18-HQ wav folders), or generate the embedded corpus"
        )
    if not root.is_dir():
        raise NotADirectoryError(f"dataset root {str(root)!r} is not a folder")
    root = root.resolve()
    layout = _detect_layout(root)
    if layout is None:
        raise ValueError(_layout_error(root))
    if is_wav is None:
        if layout == "both":
            raise ValueError(
                f"dataset root {str(root)!r} holds both .stem.mp4 files and wav track folders; "
                "pass is_wav=True (wav) or is_wav=False (stems)"
            )
        is_wav = layout == "wav"
    kind = "wav" if is_wav else "stem"
    if layout not in (kind, "both"):
        raise ValueError(
            f"dataset root {str(root)!r} holds {layout!r} tracks but is_wav={is_wav} asks for "
            f"{kind!r}; pass is_wav={layout == 'wav'} or is_wav=None"
        )
    if valid_split is None:
        valid_split = "random" if is_embedded_corpus(root) else "musdb"

    pool, test = _subsets(root, kind)
    valid: list[TrackRef] = []
    if valid_split == "musdb":
        listed = set(official_validation_tracks())
        valid = [r for r in pool if r.name in listed]
        pool = [r for r in pool if r.name not in listed]
        if not valid and len(pool) >= 2:
            log.warning(
                "dataset %s: none of its %d train/ tracks is on musdb's official validation list "
                "(%d tracks); validating on a seeded random %.0f%% of them instead, which is not the "
                "official MUSDB18 split",
                root, len(pool), len(listed), 100 * valid_fraction,
            )
    if not valid and len(pool) >= 2:
        pool, valid = _shuffle_split(pool, valid_fraction, seed)

    if not test or len(pool) + len(valid) < 2 or not pool:
        every = sorted(pool + valid + test, key=lambda r: r.name)
        log.warning(
            "dataset %s has %d test and %d train/valid tracks: too few for track-wise splits, so "
            "each of its %d tracks is split in time (train [0, 60%%), valid [60%%, 70%%), test "
            "[70%%, 100%%))",
            root, len(test), len(pool) + len(valid), len(every)
        )
        return _time_split(every)
    return {
        "train": sorted(pool, key=lambda r: r.name),
        "valid": sorted(valid, key=lambda r: r.name),
        "test": sorted(test, key=lambda r: r.name),
    }


def is_embedded_corpus(root: str | os.PathLike) -> bool:
    """True when `root` is a corpus written by `ncajax.data.generate_corpus` (its `corpus.json`
    names a format version and a config): its validation songs are a seeded random share of its
    training songs, not musdb's list."""
    path = Path(root) / CORPUS_MANIFEST
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "format_version" in meta and "config" in meta


def official_validation_tracks() -> tuple[str, ...]:
    """musdb's official MUSDB18 validation track names (the `validation_tracks` of the installed musdb
    package's `configs/mus.yaml`; read without importing musdb, so no ffmpeg is needed).

    Raises FileNotFoundError when the file cannot be found (musdb not installed) and ValueError when it
    holds no such list; nothing is downloaded.
    """
    path = _musdb_config_path()
    setup = _read_musdb_config(path)
    tracks = setup.get("validation_tracks")
    if not isinstance(tracks, list) or not tracks or not all(isinstance(t, str) for t in tracks):
        raise ValueError(
            f"musdb's config {str(path)!r} holds no `validation_tracks` list of track names, so the "
            "official MUSDB18 validation split cannot be read; reinstall musdb (pip install "
            "--force-reinstall 'musdb>=0.4.2')"
        )
    return tuple(tracks)


def _musdb_config_path() -> Path:
    """Where the installed musdb package keeps `configs/mus.yaml` (found without importing musdb)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("musdb")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            "the musdb package is not installed, so its official MUSDB18 validation track list "
            "(musdb/configs/mus.yaml) cannot be read; pip install 'musdb>=0.4.2' (a dependency "
            "of ncajax)"
        )
    return Path(locations[0]) / "configs" / "mus.yaml"


def _read_musdb_config(path: Path) -> dict:
    """musdb's `mus.yaml` at `path` as a dict, or a FileNotFoundError / ValueError naming it."""
    import yaml

    if not path.is_file():
        raise FileNotFoundError(
            f"musdb's config {str(path)!r} is missing, so the official MUSDB18 validation track "
            "list cannot be read; reinstall musdb (pip install --force-reinstall 'musdb>=0.4.2')"
        )
    try:
        setup = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(
            f"musdb's config {str(path)!r} is unreadable ({err}); reinstall musdb (pip install "
            "--force-reinstall 'musdb>=0.4.2')"
        ) from err
    if not isinstance(setup, dict):
        raise ValueError(
            f"musdb's config {str(path)!r} is not a YAML mapping; reinstall musdb (pip install "
            "--force-reinstall 'musdb>=0.4.2')"
        )
    return setup


def all_tracks(root: str | os.PathLike, *, is_wav: bool | None = None) -> list[TrackRef]:
    """Every track of a MUSDB18 (stems) or HQ-layout (wav) folder, whole, from all its subsets, sorted
    by name: for scoring real music a model was not trained on."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"real-music root {str(root)!r} is not a folder: pass a MUSDB18 root holding train/ or test/"
        )
    layout = _detect_layout(root.resolve())
    if layout is None:
        raise ValueError(_layout_error(root))
    wav = layout == "wav" if is_wav is None else is_wav
    # wav track folders are listed under the root as given, stem files under the resolved root
    train, test = _subsets(root, "wav") if wav else _subsets(root.resolve(), "stem")
    refs = train + test
    return sorted({r.name: r for r in refs}.values(), key=lambda r: r.name)


def _layout_error(root: Path) -> str:
    empty = not any(root.iterdir())
    what = "is empty" if empty else "is in neither dataset layout"
    return (
        f"dataset root {str(root)!r} {what}: expected <root>/{{train,test}}/<track>.stem.mp4 "
        "(MUSDB18) or <root>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav "
        "(MUSDB18-HQ layout); point --root at such a folder"
    )


def _detect_layout(root: Path) -> str | None:
    """'wav', 'stem', 'both' or None from the files under root/{train,test}."""
    has_stem = has_wav = False
    for subset in SUBSETS:
        folder = root / subset
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.is_file() and entry.name.endswith(".stem.mp4"):
                has_stem = True
            elif entry.is_dir() and any((entry / f"{s}.wav").exists() for s in STEMS):
                has_wav = True
    if has_stem and has_wav:
        return "both"
    return "stem" if has_stem else "wav" if has_wav else None


def _wav_tracks(folder: Path) -> list[TrackRef]:
    if not folder.is_dir():
        return []
    refs = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or not any((entry / f"{s}.wav").exists() for s in STEMS):
            continue
        missing = [s for s in STEMS if not (entry / f"{s}.wav").is_file()]
        if missing:
            raise FileNotFoundError(
                f"track folder {str(entry)!r} is missing stem(s) {missing}: an HQ-layout track "
                f"needs {[s + '.wav' for s in STEMS]}; add the missing files or remove the folder"
            )
        refs.append(TrackRef(name=entry.name, path=str(entry), kind="wav"))
    return refs


def _subsets(root: Path, kind: str) -> tuple[list[TrackRef], list[TrackRef]]:
    """(train pool, test) tracks of the `kind` ("wav"/"stem") layout, before any validation split."""
    if kind == "wav":
        return _wav_tracks(root / "train"), _wav_tracks(root / "test")
    musdb = _import_musdb()

    def refs(subset: str) -> list[TrackRef]:
        if not (root / subset).is_dir():
            return []
        try:
            db = musdb.DB(root=str(root), is_wav=False, subsets=subset)
        except Exception as err:
            raise ValueError(
                f"musdb could not read the stem files under {str(root)!r} ({err}); check that the "
                ".stem.mp4 files are complete MUSDB18 stems (re-download corrupt ones)"
            ) from err
        return [TrackRef(name=t.name, path=str(t.path), kind="stem") for t in db.tracks]

    return refs("train"), refs("test")


def _shuffle_split(
    pool: list[TrackRef], valid_fraction: float, seed: int
) -> tuple[list[TrackRef], list[TrackRef]]:
    pool = sorted(pool, key=lambda r: r.name)
    n = len(pool)
    n_valid = min(n - 1, max(1, round(valid_fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    valid = [pool[i] for i in sorted(order[:n_valid])]
    train = [pool[i] for i in sorted(order[n_valid:])]
    return train, valid


def _time_split(refs: list[TrackRef]) -> dict[str, list[TrackRef]]:
    out: dict[str, list[TrackRef]] = {k: [] for k in TIME_SPLIT}
    for ref in refs:
        duration = track_duration(ref)
        for split, (lo, hi) in TIME_SPLIT.items():
            stop = None if hi >= 1.0 else hi * duration
            # the piece's name says which part it is, so fit and held-out songs never read alike
            name = f"{ref.name} [{round(lo * 100)}-{round(hi * 100)}%]"
            out[split].append(dataclasses.replace(ref, name=name, start=lo * duration, stop=stop))
    return out


def track_duration(ref: TrackRef) -> float:
    """Duration (s) of the whole track behind `ref`, from metadata (approximate for stems)."""
    if ref.kind == "wav":
        path = Path(ref.path) / "mixture.wav"
        info = _sf_info(path)
        return info.frames / info.samplerate
    musdb = _import_musdb()
    track = musdb.MultiTrack(path=ref.path, name=ref.name, stem_id=0, is_wav=False)
    return float(track.duration)


# ------------------------------------------------------------------------------------------ loading


def load_track(ref: TrackRef, sample_rate: int) -> TrackAudio:
    """Mono float32 mixture/vocals/accompaniment of `ref` at `sample_rate`, cut to [start, stop).

    Channels are averaged; audio is resampled with librosa when the file rate differs. Raises
    FileNotFoundError / ValueError naming the file for missing, corrupt, empty, mismatched or
    non-finite audio. All-silent audio is allowed (see `is_silent`).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if ref.kind == "wav":
        stems, rate = _read_wav_stems(ref)
        mixture, vocals = stems["mixture"], stems["vocals"]
        accompaniment = sum(stems[s] for s in ACCOMPANIMENT_STEMS)
    else:
        mixture, vocals, accompaniment, rate = _read_stem_file(ref)
    if len(mixture) == 0:
        raise ValueError(
            f"track {ref.name!r} ({ref.path}) has zero-length audio in segment [{ref.start}, "
            f"{ref.stop}) s: the file is empty or the segment lies past its end"
        )
    out = [_at_rate(signal, rate, sample_rate) for signal in (mixture, vocals, accompaniment)]
    return TrackAudio(ref.name, int(sample_rate), *out)


def load_stems(ref: TrackRef, sample_rate: int) -> dict[str, np.ndarray]:
    """The separate stems of `ref` as mono float32 `(n_samples,)` arrays at `sample_rate`, keyed by
    SOURCE_STEMS ("vocals", "drums", "bass", "other"), cut to [start, stop) exactly as `load_track` cuts
    (so each stem has the samples of `load_track(ref, sample_rate).mixture`).

    The same reader serves MUSDB18-HQ/embedded-corpus wav folders and MUSDB18 `.stem.mp4` files (the
    stem file's streams by musdb's stem ids). Used by the stem-remix training augmentation
    (`ncajax.data.build_stems_cache`); raises like `load_track`.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    stems, rate = _read_wav_stems(ref) if ref.kind == "wav" else _read_stem_streams(ref)
    if len(stems["vocals"]) == 0:
        raise ValueError(
            f"track {ref.name!r} ({ref.path}) has zero-length audio in segment [{ref.start}, "
            f"{ref.stop}) s: the file is empty or the segment lies past its end"
        )
    return {s: _at_rate(stems[s], rate, sample_rate) for s in SOURCE_STEMS}


def _at_rate(signal: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """`signal` resampled (librosa) from `rate` to `sample_rate` when they differ, float32."""
    if rate != sample_rate:
        import librosa

        signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(signal, dtype=np.float32)


def _sf_info(path: Path):
    if not path.is_file():
        raise FileNotFoundError(
            f"audio file {str(path)!r} is missing: an HQ-layout track needs "
            f"{[s + '.wav' for s in STEMS]}; restore the missing stem"
        )
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: Exception) -> ValueError:
    return ValueError(
        f"audio file {str(path)!r} is corrupt or unreadable ({err}); re-create or re-download it"
    )


def _read_wav_stems(ref: TrackRef) -> tuple[dict[str, np.ndarray], int]:
    folder = Path(ref.path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"track folder {str(folder)!r} does not exist; re-run dataset_splits on the current "
            "dataset"
        )
    infos = {s: _sf_info(folder / f"{s}.wav") for s in STEMS}
    rates = {s: i.samplerate for s, i in infos.items()}
    lengths = {s: i.frames for s, i in infos.items()}
    if len(set(rates.values())) > 1:
        raise ValueError(
            f"track {str(folder)!r}: stems have different sample rates {rates}; "
            "resample all stems of a track to one rate"
        )
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"track {str(folder)!r}: stems have different lengths (samples) {lengths}; all stems "
            "of a track must have the same length (re-create a truncated file, or trim/pad the "
            "stems)"
        )
    rate, n_total = rates["mixture"], lengths["mixture"]
    if n_total == 0:
        raise ValueError(
            f"track {str(folder)!r} has zero-length audio (0 samples in every stem); "
            "remove or re-create it"
        )
    start = round(ref.start * rate)
    stop = n_total if ref.stop is None else min(n_total, round(ref.stop * rate))
    stems = {}
    for s in STEMS:
        path = folder / f"{s}.wav"
        try:
            data, _ = sf.read(
                str(path), start=start, stop=max(start, stop), dtype="float32", always_2d=True
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise _unreadable(path, err) from err
        if len(data) != max(0, stop - start):
            raise ValueError(
                f"audio file {str(path)!r} is truncated: read {len(data)} samples, its header "
                f"promises {max(0, stop - start)} in [{start}, {stop}); re-create or re-download "
                "it"
            )
        stems[s] = _mono_checked(data, str(path))
    return stems, rate


def _read_stem_file(ref: TrackRef) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    mono, rate = _read_stem_streams(ref)
    ids = _musdb_setup()
    accompaniment = sum(g * mono[s] for s, g in ids["accompaniment"].items())
    return mono["mixture"], mono["vocals"], np.asarray(accompaniment, np.float32), rate


def _read_stem_streams(ref: TrackRef) -> tuple[dict[str, np.ndarray], int]:
    """Every stream of a MUSDB18 stem file (mixture, drums, bass, other, vocals), mono float32, and
    the file's rate."""
    path = Path(ref.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"stem file {str(path)!r} does not exist; re-run dataset_splits on the current dataset"
        )
    musdb = _import_musdb()
    try:
        track = musdb.MultiTrack(path=str(path), name=ref.name, stem_id=0, is_wav=False)
        rate = int(track.rate)
        start = round(ref.start * rate)
        n_want = None if ref.stop is None else max(0, round(ref.stop * rate) - start)
        track.chunk_start = start / rate
        # ask ffmpeg for a little more than needed and cut exactly here (its duration rounding
        # may drop the last sample)
        track.chunk_duration = None if n_want is None else (n_want + 64) / rate
        stems = np.asarray(track.stems)
    except Exception as err:
        raise ValueError(
            f"stem file {str(path)!r} is corrupt or unreadable ({type(err).__name__}: {err}); "
            "re-download it"
        ) from err
    if stems.ndim != 3 or stems.shape[0] < 5:
        raise ValueError(
            f"stem file {str(path)!r} holds {stems.shape[0] if stems.ndim else 0} streams, a "
            "MUSDB18 stem file needs 5 (mixture, drums, bass, other, vocals); re-download it"
        )
    if n_want is not None:
        stems = stems[:, :n_want]
    ids = _musdb_setup()
    return {s: _mono_checked(stems[i], str(path)) for s, i in ids["stem_ids"].items()}, rate


def _musdb_setup() -> dict:
    """musdb's stem ids and accompaniment gains, from its bundled mus.yaml."""
    setup = _read_musdb_config(_musdb_config_path())
    return {"stem_ids": setup["stem_ids"], "accompaniment": setup["targets"]["accompaniment"]}


def _mono_checked(data: np.ndarray, where: str) -> np.ndarray:
    """Channel mean of `(n_samples, n_channels)` audio as float32, rejecting NaN/Inf."""
    mono = np.asarray(data, dtype=np.float32).mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise ValueError(
            f"audio file {where!r} contains NaN or Inf samples; re-create it (non-finite audio "
            "would poison every feature computed from it)"
        )
    return mono


def is_silent(x: Float[np.ndarray, "..."], *, threshold_db: float = -80.0) -> bool:
    """True when the peak of `x` is below `threshold_db` dBFS (all-zero audio is silent).

    Silent tracks and frames are kept in the data; nothing downstream divides by their energy.
    """
    peak = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return peak <= 0.0 or 20.0 * math.log10(peak) < threshold_db
