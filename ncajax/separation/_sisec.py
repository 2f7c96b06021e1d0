"""Separation quality comparable with SiSEC 2018 (MUSDB18): stereo, at the tracks' own sample rate,
BSS Eval v4 through museval, museval's per-track JSON, SiSEC's aggregation, and nSDR beside it.

The study's evaluation stage (`ncajax.separation`) scores mono audio at the model's rate (8 kHz for the
`fast` preset): cheap and fine for comparing the study's models with each other, but its numbers are
not comparable with published MUSDB18 results. This module is the comparable path:

- `load_stereo_track` / `stereo_tracks`: MUSDB18 `.stem.mp4` files or MUSDB18-HQ wav folders, every
  channel, at the file's rate (optionally an excerpt). Accompaniment = drums + bass + other (musdb's
  definition, its gains from musdb's `mus.yaml`).
- a separator is a callable `(mixture (n_samples, n_channels) float32, rate) -> {"vocals": ...,
  "accompaniment": ...}` of the same shape, with an `identity` dict naming it. `model_separator` wraps a
  trained ncajax run: it goes through `ncajax.separation.separate_file`, the very code `ncajax-separate`
  runs (each channel resampled to the model's rate, separated, its vocals resampled back to the
  input's rate, accompaniment = input - vocals). `mixture_baseline` is SiSEC's "MIX" reference (the
  mixture as the estimate of every target).
- `evaluate_sisec`: every track scored with `museval.eval_mus_track` (BSS Eval v4, 1 s windows and hops,
  512-tap time-invariant filters: the SiSEC 2018 protocol) and written as museval's per-track JSON,
  `<out>/<subset>/<track>.json` (museval's own `TrackStore` JSON, the layout `museval.EvalStore.
  add_eval_dir` and `museval.MethodStore.add_eval_dir` read for the "test" subset). Each target of
  that JSON carries an extra field "nSDR" and the file an extra "ncajax" block (separator identity,
  rate, channels, excerpt); museval ignores both. `<out>/sisec.json` names the separator;
  `<out>/aggregate.json` holds the aggregate.
- `aggregate` / `aggregate_runs`: museval's `EvalStore` (median over frames, then median over tracks,
  as SiSEC 2018 reports) per run, nSDR per target (median and mean over tracks; the MDX challenges
  average), and across runs (e.g. the seeds of one model) the median, mean, min and max of the runs'
  aggregates.

nSDR (the "new"/global SDR of the Music Demixing challenges, MDX 2021/2023): per source and track,
10 log10(Σ‖s‖² / Σ‖s - ŝ‖²) over every sample and channel of the whole track (`nsdr`). Unlike
BSS Eval it allows no distortion filter: a gain or a delay of the estimate costs. MDX adds 1e-7 to
both sums; here the exact ratio is used (+inf for an exact estimate, -inf for a silent reference).

Cost (shared/docs/dependency-notes.md): museval on 30 s of stereo at 44.1 kHz takes about 4 s per track on
one core, so the 50 MUSDB18 test tracks take a few minutes per separator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from jaxtyping import ArrayLike, Float

from ..data import _sources as sources
from ..data._sources import STEMS, is_silent
from ..training import _train as train
from . import _separate as separate
from ._bss import METRICS, TARGETS, import_museval

__all__ = ["StereoTrack", "Separator", "nsdr", "load_stereo_track", "stereo_tracks", "model_separator",
           "mixture_baseline", "named", "evaluate_track", "evaluate_sisec", "load_eval_dir", "aggregate",
           "aggregate_runs", "SISEC_FILE", "AGGREGATE_FILE"]

SISEC_FILE = "sisec.json"  # the separator that wrote a results folder
AGGREGATE_FILE = "aggregate.json"
WINDOW_S = 1.0  # museval's default (SiSEC 2018): 1 s windows, 1 s hops
NSDR_DEFINITION = "10 log10(sum ||s||^2 / sum ||s - s_hat||^2) over all samples and channels (MDX)"


# ------------------------------------------------------------------------------------------ tracks


@dataclasses.dataclass
class StereoTrack:
    """One track at its own rate, every channel: `mixture`, `vocals`, `accompaniment`, each
    `(n_samples, n_channels)` float32. `subset` is the folder its museval JSON goes to ("test" for
    MUSDB18's test set); `source` is the file or folder it came from (named in errors)."""

    name: str
    rate: int
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    subset: str = "test"
    source: str = ""
    start_s: float = 0.0

    @property
    def where(self) -> str:
        return self.source or f"track {self.name!r}"


def _check_stereo_track(track: StereoTrack) -> None:
    """Raise ValueError naming the track's file for mismatched shapes/rates or non-finite audio."""
    where = track.where
    if not isinstance(track.rate, (int, np.integer)) or track.rate <= 0:
        raise ValueError(f"{where}: sample rate must be a positive integer, got {track.rate!r}")
    if not track.name or "/" in track.name or track.name.startswith("."):
        raise ValueError(f"{where}: track name {track.name!r} cannot name a JSON file; rename the track")
    shapes = {}
    for field in ("mixture", "vocals", "accompaniment"):
        x = np.asarray(getattr(track, field))
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"{where}: {field} must be (n_samples, n_channels) with samples, got shape {x.shape}; "
                "load the track with ncajax.separation.load_stereo_track"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{where}: {field} contains NaN or Inf samples; re-create or re-download it")
        shapes[field] = x.shape
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"{where}: mixture, vocals and accompaniment differ in shape (samples, channels) {shapes}; "
            "every stem of a track needs the same channels and length (re-export the stems together)"
        )
    for field in ("vocals", "accompaniment"):
        if is_silent(np.asarray(getattr(track, field))):
            raise ValueError(
                f"{where}: the {field} reference is entirely silent, so BSS Eval cannot score the track "
                "(SiSEC leaves such tracks out); leave it out of the tracks"
            )


def load_stereo_track(
    path: str | os.PathLike,
    *,
    start: float = 0.0,
    duration: float | None = None,
    subset: str | None = None,
    name: str | None = None,
) -> StereoTrack:
    """A MUSDB18 `.stem.mp4` file (needs ffmpeg) or a MUSDB18-HQ track folder (`mixture.wav`,
    `vocals.wav`, `drums.wav`, `bass.wav`, `other.wav`) as a `StereoTrack` at the file's own rate and
    channel count, cut to [start, start + duration) seconds.

    `subset` defaults to the name of the folder holding the track ("train"/"test" in MUSDB18);
    `name` to the track's name. Raises FileNotFoundError / ValueError naming the file for a missing
    file, stems whose rates or channel counts differ, an empty excerpt or NaN/Inf samples.
    """

    path = Path(path)
    if start < 0 or (duration is not None and duration <= 0):
        raise ValueError(f"need start >= 0 and duration > 0 (or None), got {start}, {duration}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such track; pass a .stem.mp4 file or an HQ track folder")
    if path.is_dir():
        stems, rate = _read_hq_folder(path, start, duration)
        default_name = path.name
    else:
        if not path.name.lower().endswith(".stem.mp4"):
            raise ValueError(f"{path}: not a MUSDB18 .stem.mp4 file or an HQ track folder")
        ref = sources.TrackRef(path.name[: -len(".stem.mp4")], str(path), "stem", start,
                               None if duration is None else start + duration)
        stems, rate = _read_stem_streams_stereo(ref)
        default_name = ref.name
    accompaniment_gains = sources._musdb_setup()["accompaniment"]
    accompaniment = sum(g * stems[s] for s, g in accompaniment_gains.items())
    track = StereoTrack(
        name=name or default_name, rate=int(rate), mixture=stems["mixture"], vocals=stems["vocals"],
        accompaniment=np.asarray(accompaniment, np.float32), subset=subset or path.parent.name or "test",
        source=str(path), start_s=float(start),
    )
    if track.mixture.shape[0] == 0:
        raise ValueError(f"{path}: no samples in [{start}, {start + (duration or 0)}) s; the excerpt "
                         "lies past the track's end")
    _check_stereo_track(track)
    return track


def _read_hq_folder(folder: Path, start: float, duration: float | None) -> tuple[dict, int]:
    infos = {}
    for s in STEMS:
        f = folder / f"{s}.wav"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing; an HQ track folder needs {[s + '.wav' for s in STEMS]}")
        try:
            infos[s] = sf.info(str(f))
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise ValueError(f"{f}: corrupt or unreadable ({err}); re-create or re-download it") from err
    ref = infos["mixture"]
    for s, info in infos.items():
        if info.samplerate != ref.samplerate or info.channels != ref.channels:
            raise ValueError(
                f"{folder / (s + '.wav')}: {info.samplerate} Hz, {info.channels} channel(s), but "
                f"mixture.wav is {ref.samplerate} Hz, {ref.channels} channel(s); re-export every stem "
                "of the track at one rate and channel count"
            )
        if info.frames != ref.frames:
            raise ValueError(
                f"{folder / (s + '.wav')}: {info.frames} samples, mixture.wav {ref.frames}; all stems "
                "of a track must have the same length (re-create the truncated file)"
            )
    rate = ref.samplerate
    a = round(start * rate)
    b = ref.frames if duration is None else min(ref.frames, a + round(duration * rate))
    stems = {}
    for s in STEMS:
        data, _ = sf.read(str(folder / f"{s}.wav"), start=a, stop=max(a, b), dtype="float32",
                          always_2d=True)
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{folder / (s + '.wav')}: contains NaN or Inf samples; re-create it")
        stems[s] = np.ascontiguousarray(data)
    return stems, rate


def _read_stem_streams_stereo(ref) -> tuple[dict, int]:
    """Every stream of a MUSDB18 stem file, all channels, at its rate (as `ncajax.data` reads the
    mono ones, same excerpt rule)."""

    musdb = sources._import_musdb()
    try:
        track = musdb.MultiTrack(path=ref.path, name=ref.name, stem_id=0, is_wav=False)
        rate = int(track.rate)
        a = round(ref.start * rate)
        n_want = None if ref.stop is None else max(0, round(ref.stop * rate) - a)
        track.chunk_start = a / rate
        track.chunk_duration = None if n_want is None else (n_want + 64) / rate
        streams = np.asarray(track.stems, dtype=np.float32)
    except Exception as err:
        raise ValueError(f"{ref.path}: corrupt or unreadable ({type(err).__name__}: {err}); "
                         "re-download it") from err
    if streams.ndim != 3 or streams.shape[0] < 5:
        raise ValueError(f"{ref.path}: holds {streams.shape[0] if streams.ndim else 0} streams, a "
                         "MUSDB18 stem file needs 5 (mixture, drums, bass, other, vocals); re-download it")
    if n_want is not None:
        streams = streams[:, :n_want]
    ids = sources._musdb_setup()["stem_ids"]
    stems = {s: np.ascontiguousarray(streams[i]) for s, i in ids.items()}
    for s, x in stems.items():
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{ref.path}: the {s} stream contains NaN or Inf samples; re-download it")
    return stems, rate


def stereo_tracks(
    root: str | os.PathLike,
    subset: str = "test",
    *,
    names: Iterable[str] | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> list[StereoTrack]:
    """Every track of `<root>/<subset>/` (MUSDB18 `.stem.mp4` files or MUSDB18-HQ folders), sorted by
    name, optionally only `names`, each cut to [start, start + duration) s. All tracks are loaded and
    checked first (a bad one raises, naming its file)."""
    folder = Path(root) / subset
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; pass the MUSDB18 root holding {subset}/")
    found = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.name.lower().endswith(".stem.mp4"):
            found[p.name[: -len(".stem.mp4")]] = p
        elif p.is_dir() and (p / "mixture.wav").exists():
            found[p.name] = p
    if names is not None:
        names = list(names)
        missing = [n for n in names if n not in found]
        if missing:
            raise FileNotFoundError(f"{folder}: no track(s) {missing}; found {sorted(found)}")
        found = {n: found[n] for n in names}
    if not found:
        raise FileNotFoundError(f"{folder}: holds no .stem.mp4 files or HQ track folders")
    return [load_stereo_track(p, start=start, duration=duration, subset=subset) for p in found.values()]


# ------------------------------------------------------------------------------------------ nSDR


def nsdr(reference: Float[ArrayLike, "..."], estimate: Float[ArrayLike, "..."]) -> float:
    """nSDR in dB: 10 log10(Σ s² / Σ (s - ŝ)²) over every element (the whole track, all channels),
    in float64. An exact estimate gives +inf, a silent reference with a wrong estimate -inf."""
    s = np.asarray(reference, dtype=np.float64)
    s_hat = np.asarray(estimate, dtype=np.float64)
    if s.shape != s_hat.shape:
        raise ValueError(f"reference {s.shape} and estimate {s_hat.shape} must have the same shape")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(s_hat))):
        raise ValueError("nsdr got NaN or Inf samples")
    num, den = float(np.sum(s * s)), float(np.sum((s - s_hat) ** 2))
    if den == 0.0:
        return math.inf
    if num == 0.0:
        return -math.inf
    return 10.0 * math.log10(num / den)


# ------------------------------------------------------------------------------------------ separators


Separator = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]


class _NamedSeparator:
    """A separator callable with its `identity` (a JSON-able dict; results of different identities
    never share an output folder)."""

    def __init__(self, fn: Separator, identity: Mapping[str, Any], notes: list[str] | None = None):
        self.fn, self.identity = fn, dict(identity)
        self.notes = notes if notes is not None else []  # warnings of the last call (band warning)

    def __call__(self, mixture: np.ndarray, rate: int) -> Mapping[str, np.ndarray]:
        return self.fn(mixture, rate)

    def __repr__(self) -> str:
        return f"<separator {self.identity}>"


def _identity_of(separator: Any) -> dict:
    identity = getattr(separator, "identity", None)
    if identity is None:
        raise ValueError(
            "the separator has no `identity`: give it an attribute `identity = {\"method\": \"name\"}` "
            "(or wrap it: ncajax.separation._sisec.named(fn, method=\"name\")) so its results folder says which "
            "separator wrote it"
        )
    if "method" not in identity:
        raise ValueError(f"separator identity {identity!r} needs a \"method\" name")
    json.dumps(identity)  # must be JSON-able
    return dict(identity)


def named(fn: Separator, *, method: str, **facts: Any) -> _NamedSeparator:
    """`fn` (mixture (n_samples, n_channels), rate -> {"vocals", "accompaniment"}) with the identity
    `{"method": method, **facts}`."""
    return _NamedSeparator(fn, {"method": method, **facts})


def mixture_baseline() -> _NamedSeparator:
    """SiSEC's "MIX" reference: the mixture as the estimate of every target."""

    def fn(mixture, rate):
        return {"vocals": mixture, "accompaniment": mixture}

    return named(fn, method="mixture")


def model_separator(run: Any, *, seed_index: int = 0, chunk: int = 4096) -> _NamedSeparator:
    """A trained ncajax run (its directory, or an `ncajax.training.Trained`) as a separator, through
    `ncajax.separation.separate_file`: exactly what `ncajax-separate RUN_DIR song.wav` writes (each channel
    on its own at the model's rate, vocals resampled back to the input's rate, accompaniment = input -
    vocals). The mixture goes through a temporary 32-bit float wav (lossless for float32 audio).

    Identity: the model's name, its run directory (when given), the sha256 of its config.json content
    and the seed index.
    """

    run_dir = None
    trained = run
    if isinstance(run, (str, os.PathLike)):
        run_dir = str(Path(run).resolve())
        trained = train.load_trained(run)
    separate._check_seed_index(trained, seed_index)
    config_sha = hashlib.sha256(json.dumps(trained.config, sort_keys=True, default=str).encode()).hexdigest()
    identity = {"method": f"{trained.model_cfg.name}/seed{seed_index}", "model": trained.model_cfg.name,
                "run_dir": run_dir, "config_sha256": config_sha, "seed_index": seed_index,
                "model_rate": trained.stft.sample_rate}
    notes: list[str] = []

    def fn(mixture: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        notes.clear()
        with tempfile.TemporaryDirectory(prefix="ncajax-sisec-") as tmp:
            src = Path(tmp) / "mixture.wav"
            sf.write(str(src), np.asarray(mixture, np.float32), rate, format="WAV", subtype="FLOAT")
            outputs = {t: Path(tmp) / f"{t}.wav" for t in TARGETS}
            separate.separate_file(trained, src, outputs=outputs, seed_index=seed_index, chunk=chunk,
                                   progress=False, on_warning=notes.append)
            return {t: sf.read(str(outputs[t]), dtype="float32", always_2d=True)[0] for t in TARGETS}

    return _NamedSeparator(fn, identity, notes)


# ------------------------------------------------------------------------------------------ scoring


def _q(value: float) -> Decimal | float:
    """museval's JSON quantisation (5 decimals) for a finite value; ±inf/NaN kept as floats."""
    return Decimal(value).quantize(Decimal(".00001")) if math.isfinite(value) else float(value)


def _separate_checked(separator, track: StereoTrack) -> dict[str, np.ndarray]:
    out = separator(np.asarray(track.mixture, np.float32), int(track.rate))
    est = {}
    for t in TARGETS:
        if t not in out:
            raise ValueError(f"separator {_identity_of(separator)['method']!r} returned no {t!r} for "
                             f"{track.where}; return {{'vocals': ..., 'accompaniment': ...}}")
        x = np.asarray(out[t], np.float64)
        if x.shape != track.mixture.shape:
            raise ValueError(f"separator returned {t} of shape {x.shape} for {track.where}, whose mixture "
                             f"is {track.mixture.shape}; return (n_samples, n_channels) at the input's rate")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"separator returned NaN or Inf {t} samples for {track.where}")
        est[t] = x
    return est


def evaluate_track(separator: Any, track: StereoTrack, *, estimates: Mapping[str, np.ndarray] | None = None):
    """Separate `track` (unless `estimates` are given) and score it: a `museval.TrackStore` from
    `museval.eval_mus_track` (BSS Eval v4, 1 s windows) with an extra "nSDR" in each target's entry and
    an "ncajax" block (identity, rate, channels, excerpt)."""
    museval = import_museval()
    _check_stereo_track(track)
    est = dict(estimates) if estimates is not None else _separate_checked(separator, track)
    # the band warning names the temporary file: name the track instead
    notes = [track.where + n[n.find(": "):] if ": " in n else n for n in getattr(separator, "notes", [])]
    refs = {t: np.asarray(getattr(track, t), np.float64) for t in TARGETS}
    duck = types.SimpleNamespace(
        name=track.name, rate=track.rate, subset=track.subset,
        targets={t: types.SimpleNamespace(audio=refs[t]) for t in TARGETS},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # silent windows: NaN, as in museval
        store = museval.eval_mus_track(duck, est, output_dir=None, mode="v4", win=WINDOW_S, hop=WINDOW_S)
    for entry in store.scores["targets"]:
        entry["nSDR"] = _q(nsdr(refs[entry["name"]], est[entry["name"]]))
    store.scores["ncajax"] = {
        "identity": _identity_of(separator) if separator is not None else None,
        "rate": int(track.rate), "channels": int(track.mixture.shape[1]),
        "n_samples": int(track.mixture.shape[0]), "start_s": track.start_s,
        "duration_s": track.mixture.shape[0] / track.rate, "source": track.source,
        "bss_eval": "museval v4, 1 s windows and hops", "nSDR": NSDR_DEFINITION, "notes": notes,
    }
    return store


def _json_dump(obj: Any) -> str:
    import simplejson

    return simplejson.dumps(obj, indent=2, allow_nan=True, use_decimal=True)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _track_jsons(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*/*.json") if not p.name.startswith("."))


def _check_out_dir(out: Path, identity: dict) -> None:
    """Refuse a folder holding results of another separator (or museval results of unknown origin)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a folder; pass a folder for the results")
    marker = out / SISEC_FILE
    if marker.exists():
        try:
            held = json.loads(marker.read_text()).get("identity")
        except (json.JSONDecodeError, AttributeError) as err:
            raise ValueError(f"{marker}: not readable ({err}); delete the folder or pass another --out") from err
        if held != identity:
            raise ValueError(
                f"{out}: already holds SiSEC results of a different separator ({held}; {marker}), not "
                f"of {identity}; pass a new output folder (one per model and seed) or delete this one"
            )
    elif out.is_dir() and _track_jsons(out):
        raise ValueError(
            f"{out}: holds museval JSON files ({_track_jsons(out)[0]}) but no {SISEC_FILE}, so which "
            "separator wrote them is unknown; pass a new output folder or delete this one"
        )


def evaluate_sisec(
    separator: Any,
    tracks: Sequence[StereoTrack],
    out: str | os.PathLike,
    *,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Score `separator` on `tracks` (stereo, each at its own rate) the SiSEC 2018 way and write
    museval's per-track JSON to `<out>/<subset>/<track>.json`, `<out>/sisec.json` (the separator's
    identity) and `<out>/aggregate.json` (`aggregate(out)`), which is returned.

    `separator`: `model_separator(run_dir, seed_index=k)`, `mixture_baseline()`, or any callable
    `(mixture (n_samples, n_channels) float32, rate) -> {"vocals", "accompaniment"}` of the same shape
    with an `identity` (`named(fn, method=...)`). Every track, and the output folder, are checked
    before anything is separated or written: mismatched channels or rates, NaN/Inf audio, a silent
    reference, duplicate track names, or a folder already holding results of a different separator
    raise ValueError naming the file and the fix. A track whose JSON is already in the folder (same
    separator, same excerpt) is not evaluated again, so an interrupted evaluation resumes. `progress`:
    a bar over the tracks (True: always, None: when stderr is a terminal, False: never).
    """
    out = Path(out)
    identity = _identity_of(separator)
    if not tracks:
        raise ValueError("no tracks to evaluate")
    for track in tracks:
        _check_stereo_track(track)
    keys = [(t.subset, t.name) for t in tracks]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"track names must be unique per subset (their JSON files would clash): {dup}")
    _check_out_dir(out, identity)
    bar = None
    if progress is not False:  # None: when stderr is a terminal
        from tqdm import tqdm

        bar = tqdm(total=len(tracks), desc="sisec", unit="track", disable=None if progress is None else False)
    for track in tracks:
        path = out / track.subset / f"{track.name}.json"
        if _done(path, track):
            if bar is not None:
                bar.update(1)
            continue
        store = evaluate_track(separator, track)
        store.validate()  # museval's schema
        if not (out / SISEC_FILE).exists():
            _write_atomic(out / SISEC_FILE, json.dumps({"identity": identity, "format": 1}, indent=2) + "\n")
        _write_atomic(path, _json_dump(store.scores))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    agg = aggregate(out)
    _write_atomic(out / AGGREGATE_FILE, json.dumps(agg, indent=2, allow_nan=True) + "\n")
    return agg


def _done(path: Path, track: StereoTrack) -> bool:
    if not path.exists():
        return False
    try:
        meta = _read_track_json(path).get("ncajax") or {}
    except ValueError:
        return False
    return (meta.get("rate"), meta.get("n_samples"), meta.get("start_s"), meta.get("channels")) == (
        track.rate, track.mixture.shape[0], track.start_s, track.mixture.shape[1])


# ------------------------------------------------------------------------------------------ aggregation


def _read_track_json(path: Path) -> dict:
    import simplejson

    try:
        return simplejson.loads(path.read_text(), allow_nan=True)
    except (simplejson.JSONDecodeError, OSError) as err:
        raise ValueError(f"{path}: not a readable museval JSON ({err}); delete it and evaluate again") from err


def load_eval_dir(out: str | os.PathLike):
    """`(museval.EvalStore, {track: {target: nSDR}}, identity)` of a folder `evaluate_sisec` wrote
    (every subset; `museval.EvalStore.add_eval_dir` alone reads only `test/`)."""
    museval = import_museval()
    out = Path(out)
    if not (out / SISEC_FILE).exists():
        raise FileNotFoundError(f"{out}: no {SISEC_FILE}; pass a folder written by ncajax.separation.evaluate_sisec")
    identity = json.loads((out / SISEC_FILE).read_text()).get("identity")
    store = museval.EvalStore(frames_agg="median", tracks_agg="median")
    nsdrs: dict[str, dict[str, float]] = {}
    for path in _track_jsons(out):
        scores = _read_track_json(path)
        track = path.stem if path.parent.name == "test" else f"{path.parent.name}/{path.stem}"
        store.add_track(museval.json2df(scores, track))
        nsdrs[track] = {t["name"]: float(t["nSDR"]) for t in scores["targets"] if "nSDR" in t}
    return store, nsdrs, identity


def _finite(values) -> list[float]:
    """The values that are numbers (None and NaN dropped; ±inf kept: an exact estimate's nSDR)."""
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def _summarise(store, nsdrs: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """{target: {SDR, SIR, SAR, ISR (median over frames, then tracks), nSDR (median over tracks),
    nSDR_mean (mean over tracks)}} plus the track list."""
    out: dict[str, Any] = {"tracks": sorted(nsdrs)}
    table = store.agg_frames_tracks_scores() if len(store.df) else None
    for target in TARGETS:
        row: dict[str, Any] = {}
        for m in METRICS:
            v = None
            if table is not None and (target, m) in table.index:
                v = float(table[(target, m)])
            row[m] = None if v is None or math.isnan(v) else v
        vals = _finite(n.get(target) for n in nsdrs.values())
        row["nSDR"] = float(np.median(vals)) if vals else None
        row["nSDR_mean"] = float(np.mean(vals)) if vals else None
        out[target] = row
    return out


def aggregate(out: str | os.PathLike) -> dict[str, Any]:
    """SiSEC aggregate of one results folder: museval's `EvalStore` (median over frames, median over
    tracks) for SDR/SIR/SAR/ISR per target, nSDR median and mean over tracks, the identity and tracks."""
    store, nsdrs, identity = load_eval_dir(out)
    return {"identity": identity, "aggregation": "median over 1 s frames, then median over tracks "
            "(museval EvalStore); nSDR: median and mean over tracks", **_summarise(store, nsdrs)}


def aggregate_runs(runs: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]) -> dict[str, Any]:
    """Aggregate several results folders: folders written by the same separator are pooled (a test set
    split over several jobs; a track twice is an error), each separator ("run": e.g. one seed of a
    model) gets `aggregate`'s numbers, and `"across_runs"` holds, per target and metric, the median,
    mean, min and max over the runs' aggregates and the number of runs. `runs` as a mapping gives the
    labels; otherwise each run is labelled by its identity's "method"."""
    museval = import_museval()
    items = list(runs.items()) if isinstance(runs, Mapping) else [(None, r) for r in runs]
    groups: dict[str, dict[str, Any]] = {}
    for label, folder in items:
        store, nsdrs, identity = load_eval_dir(folder)
        key = label or identity.get("method") or Path(folder).name
        g = groups.setdefault(key, {"identity": identity, "store": museval.EvalStore(), "nsdrs": {},
                                    "folders": []})
        if g["identity"] != identity:
            raise ValueError(f"{folder}: its separator {identity} differs from {g['identity']} of "
                             f"{g['folders'][0]} under the same label {key!r}; give each run its own label")
        clash = sorted(set(nsdrs) & set(g["nsdrs"]))
        if clash:
            raise ValueError(f"{folder}: tracks {clash} are already in {g['folders']} of the same separator; "
                             "pass each track's results once")
        g["store"].add_track(store.df)
        g["nsdrs"].update(nsdrs)
        g["folders"].append(str(folder))
    per_run = {k: {"identity": g["identity"], "folders": g["folders"], **_summarise(g["store"], g["nsdrs"])}
               for k, g in groups.items()}
    across: dict[str, Any] = {"n_runs": len(per_run)}
    for target in TARGETS:
        across[target] = {}
        for m in (*METRICS, "nSDR", "nSDR_mean"):
            vals = _finite(r[target][m] for r in per_run.values())
            across[target][m] = (
                {"median": float(np.median(vals)), "mean": float(np.mean(vals)), "min": min(vals),
                 "max": max(vals), "n": len(vals)} if vals else None)
    return {"runs": per_run, "across_runs": across,
            "aggregation": "per run: median over 1 s frames, then over tracks (museval EvalStore); "
                           "across runs: statistics of the runs' aggregates"}
