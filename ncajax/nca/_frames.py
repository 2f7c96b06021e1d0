"""Map any separator from its outputs alone: one N x N matrix C with y ≈ C x from magnitude frames.

The study's mapping stage (`ncajax.nca.run_stage`) maps models it can run. This module maps a
separator from what any framework can hand over: the mixture magnitude frames it was given and the
estimate frames it returned, `(nb_frames, nb_bins)` each (NumPy arrays or anything `np.asarray` takes),
or `.npy`/`.npz` files of them (`load_frames`).

- `map_frames(mixture, estimate, sample_rate=..., n_fft=...)`: splits the frames into a fit part and a
  held-out part (several songs: whole songs are held out, never single frames; one song: the last
  `heldout_fraction` of its frames, one contiguous block, so neighbouring frames do not leak), fits C
  by "lstsq" (closed-form least squares) and/or "student" (C itself fitted by full-batch Adam on the L1
  error, the authors' linear student), and judges every matrix on the held-out frames with the study's
  rules: relative L1 error with predictions clipped at 0 (raw beside), against the zero predictor and
  the best per-bin gain, plus the functional diagonality (`analysis.functional_diagonality`: the
  held-out error of diag(C) and of its band part, and the share of C's advantage over silence each
  keeps). "nca" and "jacobian" need the model itself and are refused with a message saying so.
- `map_callable(fn, mixture, ...)`: the same for a frame-wise JAX callable (its outputs are computed
  here), which also allows "jacobian" (the mean exact Jacobian of fn on the fit frames; not a fit).
- `load_frames(mixture_path, estimate_path)`: the files' conventions are in its docstring.
- `plot_frame_mapping(result, out_dir)` and `FrameMapping.save(out_dir)`: figures (PNG + PDF),
  `mapping.json` (every number) and `matrices.npz` (the matrices).

Every input is checked up front, before any fit: one ValueError (FileNotFoundError for a missing file)
that names the array or file, the song and the fix. The comparisons with the baselines in `to_dict`
(`below_baselines`) are point comparisons on one split, without the study's seed x song intervals.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import runs
from .._estimators import LeastSquares, MeanJacobian, Student
from ..config import DIAGONAL_BAND_HZ, FIT_FRAMES_PER_BIN, FIT_LEARNING_RATE, FIT_STEPS, METHODS
from . import _couplings as nca
from . import _stage as mappings
from . import _structure as analysis

__all__ = ["CALLABLE_METHODS", "FRAME_METHODS", "BaselineError", "FrameMapping", "Frames", "MethodMapping",
           "check_methods", "load_frames", "map_callable", "map_frames"]

FRAME_METHODS = ("lstsq", "student")
CALLABLE_METHODS = ("lstsq", "student", "jacobian")
BASELINES = ("zero", "per_bin_gain")
METHOD_LABELS = {"lstsq": "least squares", "student": "linear student", "jacobian": "mean Jacobian"}
ROLES = ("mixture", "estimate")

FRAMES_ONLY_MESSAGE = (
    "method(s) {asked} need the separator itself, not only its output frames: 'nca' builds C from the "
    "model's dense-layer weights (pass a flax module and its params to ncajax.nca.fit_mapping, see "
    "experiments/map_your_model.py) and 'jacobian' differentiates the model (pass the frame-wise JAX "
    "callable to ncajax.nca.map_callable). From frames alone use 'lstsq' and/or 'student'"
)
NCA_CALLABLE_MESSAGE = (
    "method 'nca' needs the model's dense-layer weights, which a callable does not expose: pass a flax "
    "module and its params to ncajax.nca.fit_mapping(module, params, x, ncajax.nca.NCA()) (see "
    "experiments/map_your_model.py), or use 'lstsq', 'student' or 'jacobian' here"
)


# --------------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass(frozen=True)
class MethodMapping:
    """One method's matrix and how well it describes the separator.

    matrix: C `(N, N)`, y ≈ x @ C.T (C[i, j]: weight of input bin j in output bin i).
    fit_error / heldout_error: relative L1 error Σ|y - ŷ| / Σ|y| of ŷ = max(x C^T, 0) on the fit and the
        held-out frames (lower is better); `*_raw`: the same without clipping.
    heldout_error_per_song: the held-out error per held-out song (None for a time-block split).
    functional: `analysis.functional_diagonality` on the pooled held-out frames: err_full, err_diag,
        err_band, err_zero (clipped; `*_raw` beside), keep_diag and keep_band (None where C has no
        advantage over silence).
    details: steps, learning_rate, seed, converged and final_loss (student), ridge (lstsq),
        local_spread (jacobian).
    """

    method: str
    matrix: np.ndarray
    fit_error: float
    fit_error_raw: float
    heldout_error: float
    heldout_error_raw: float
    functional: dict[str, float | None]
    heldout_error_per_song: tuple[float, ...] | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "fit_error": self.fit_error, "fit_error_raw": self.fit_error_raw,
                "heldout_error": self.heldout_error, "heldout_error_raw": self.heldout_error_raw,
                "heldout_error_per_song": _plain(self.heldout_error_per_song),
                "functional": _plain(self.functional), **_plain(self.details)}


@dataclasses.dataclass(frozen=True)
class BaselineError:
    """A baseline judged like the mappings: "zero" (predict silence) or "per_bin_gain" (the better on the
    fit frames, by L1, of the least-squares and the L1-optimal per-bin gain; `gain` `(N,)`, `choice`)."""

    name: str
    fit_error: float
    fit_error_raw: float
    heldout_error: float
    heldout_error_raw: float
    heldout_error_per_song: tuple[float, ...] | None = None
    gain: np.ndarray | None = None
    choice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"fit_error": self.fit_error, "fit_error_raw": self.fit_error_raw,
               "heldout_error": self.heldout_error, "heldout_error_raw": self.heldout_error_raw,
               "heldout_error_per_song": _plain(self.heldout_error_per_song)}
        if self.choice is not None:
            out["choice"] = self.choice
        return out


@dataclasses.dataclass(frozen=True)
class FrameMapping:
    """What `map_frames` / `map_callable` found: per method a `MethodMapping`, the two baselines, the bin
    frequencies `freqs` (Hz, `analysis.bin_frequencies`: DC placed half a bin up), the STFT, the band
    half-width of the functional diagonality, and the split (`split["unit"]`: "song", "time_block" or
    "given"; the fit and held-out songs and frame counts)."""

    methods: dict[str, MethodMapping]
    baselines: dict[str, BaselineError]
    freqs: np.ndarray
    sample_rate: float
    n_fft: int
    band_hz: float
    split: dict[str, Any]
    source: str = "frames"  # "frames" (map_frames) or "callable" (map_callable)

    @property
    def n_bins(self) -> int:
        return int(self.freqs.size)

    def matrix(self, method: str) -> np.ndarray:
        if method not in self.methods:
            raise KeyError(f"no {method!r} mapping in this result; it has {sorted(self.methods)}")
        return self.methods[method].matrix

    def to_dict(self) -> dict[str, Any]:
        """Every number of the result, JSON-ready (NaN as None); the matrices are in `arrays()`."""
        zero = self.baselines["zero"].heldout_error
        gain = self.baselines["per_bin_gain"].heldout_error
        methods = {}
        for name, m in self.methods.items():
            methods[name] = {**m.to_dict(), "below_baselines": {"zero": bool(m.heldout_error < zero),
                                                                "per_bin_gain": bool(m.heldout_error < gain)}}
        return {
            "source": self.source,
            "sample_rate": float(self.sample_rate),
            "n_fft": int(self.n_fft),
            "n_bins": self.n_bins,
            "band_hz": float(self.band_hz),
            "split": _plain(self.split),
            "methods": methods,
            "baselines": {name: b.to_dict() for name, b in self.baselines.items()},
            "error": "relative L1 sum|y - y_hat| / sum|y|, y_hat clipped at 0 (raw: unclipped); lower is better",
            "below_baselines": "point comparison of held-out errors on this one split (no interval)",
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of `matrices.npz`: one `(N, N)` matrix per method (under its name), `per_bin_gain`
        `(N,)` and `frequencies_hz` `(N,)`."""
        out = {name: np.asarray(m.matrix, np.float32) for name, m in self.methods.items()}
        out["per_bin_gain"] = np.asarray(self.baselines["per_bin_gain"].gain, np.float32)
        out["frequencies_hz"] = np.asarray(self.freqs, np.float64)
        return out

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write `<out_dir>/mapping.json` (`to_dict`) and `<out_dir>/matrices.npz` (`arrays`)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs.write_json(out_dir / "mapping.json", self.to_dict())
        np.savez(out_dir / "matrices.npz", **self.arrays())
        return [out_dir / "mapping.json", out_dir / "matrices.npz"]

    def table(self) -> str:
        """A plain-text summary: per method and baseline the fit and held-out errors, keep shares."""
        lines = [f"{'':16s} {'err. fit':>9s} {'err. held':>9s} {'diag(C)':>8s} {'keep diag':>9s} "
                 f"{'keep band':>9s}"]
        for name, m in self.methods.items():
            f = m.functional
            lines.append(f"{METHOD_LABELS.get(name, name):16s} {m.fit_error:9.3f} {m.heldout_error:9.3f} "
                         f"{_fmt(f['err_diag']):>8s} {_fmt(f['keep_diag']):>9s} {_fmt(f['keep_band']):>9s}")
        for name, b in self.baselines.items():
            label = "per-bin gain" if name == "per_bin_gain" else "zero"
            lines.append(f"{label:16s} {b.fit_error:9.3f} {b.heldout_error:9.3f}")
        for name, m in self.methods.items():
            if m.details.get("converged") is False:
                lines.append(f"{METHOD_LABELS.get(name, name)}: not converged after {m.details['steps']} steps "
                             "(loss still falling; raise student_steps)")
        split = self.split
        lines.append(f"(relative L1 error, predictions clipped at 0, lower is better; {split['n_fit_frames']} "
                     f"fit and {split['n_heldout_frames']} held-out frames, held out by {split['unit']}; "
                     f"band ±{self.band_hz:g} Hz)")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _plain(v):
    """JSON-ready: arrays -> lists, NumPy scalars -> Python, NaN -> None, tuples -> lists."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (numbers.Integral,)):
        return int(v)
    if isinstance(v, (numbers.Real,)):
        f = float(v)
        return None if math.isnan(f) else f
    return v


# --------------------------------------------------------------------------------------------------
# Public entry points


def map_frames(
    mixture: Any,
    estimate: Any,
    *,
    sample_rate: float,
    n_fft: int,
    heldout: Any = None,
    heldout_fraction: float = 0.25,
    methods: str | Sequence[str] = FRAME_METHODS,
    student_steps: int = FIT_STEPS,
    learning_rate: float = FIT_LEARNING_RATE,
    band_hz: float = DIAGONAL_BAND_HZ,
    seed: int = 0,
    songs: Sequence[str] | None = None,
) -> FrameMapping:
    """The mapping matrices of a separator from its frames alone: `estimate` ≈ `mixture` @ C.T.

    mixture, estimate: magnitude frames `(nb_frames, nb_bins)` (non-negative, finite), N = nb_bins =
        n_fft // 2 + 1; any array-like (a torch tensor: pass `t.detach().cpu().numpy()`). Several songs:
        a list of such arrays per song, the same frame count for a song's mixture and estimate.
    sample_rate, n_fft: the STFT the frames come from (bin frequencies, the band of the functional
        diagonality).
    heldout: None (default): several songs -> round(heldout_fraction * songs) whole songs (at least one,
        drawn with `seed`) are held out; one song -> the last round(heldout_fraction * nb_frames) frames
        (one contiguous block). A sequence of song indices (or names, with `songs`): those songs are
        held out. A pair (mixture, estimate) of frames (arrays or per-song lists): judged on those, and
        all of `mixture`/`estimate` is fitted.
    methods: "lstsq" (closed-form least squares, automatic float32 ridge) and/or "student" (C fitted by
        `student_steps` full-batch Adam steps at `learning_rate` on the L1 error, Xavier-normal start
        keyed by `seed`). "nca" and "jacobian" need the model: refused here (see `map_callable`).
    band_hz: half-width (Hz) of the band part of C in the functional diagonality.
    songs: names of the songs (for the split record and the messages), one per song.

    Raises ValueError, naming the array and song, for frames that are not 2-D, differ in shape or frame
    count, do not have n_fft // 2 + 1 bins, are negative or not finite, and for a fit part with fewer
    frames than bins (underdetermined). Nothing is fitted before every check has passed.
    """
    methods = check_methods(methods, FRAME_METHODS)
    return _map(mixture, estimate, None, methods=methods, sample_rate=sample_rate, n_fft=n_fft,
                heldout=heldout, heldout_fraction=heldout_fraction, student_steps=student_steps,
                learning_rate=learning_rate, band_hz=band_hz, seed=seed, songs=songs)


def map_callable(
    fn: Callable,
    mixture: Any,
    *,
    sample_rate: float,
    n_fft: int,
    heldout: Any = None,
    heldout_fraction: float = 0.25,
    methods: str | Sequence[str] = FRAME_METHODS,
    student_steps: int = FIT_STEPS,
    learning_rate: float = FIT_LEARNING_RATE,
    band_hz: float = DIAGONAL_BAND_HZ,
    seed: int = 0,
    songs: Sequence[str] | None = None,
    jacobian_chunk: int | None = None,
) -> FrameMapping:
    """`map_frames` for a frame-wise JAX callable fn(x) -> y on `(nb_frames, nb_bins)` arrays: the
    estimate is fn's output on the mixture (jitted), then everything runs as in `map_frames`, which
    gives the same result on the same frames. `heldout` may also be held-out mixture frames (an array or
    per-song list; fn computes their estimate). methods may include "jacobian": the mean over the fit
    frames of fn's exact Jacobian (`nca.fit_mapping(fn, None, x, nca.MeanJacobian())`, `jacobian_chunk`
    frames at a time, default automatic), judged on the held-out frames like the fits ("nca" still needs
    a flax module's layers and is refused)."""
    if not callable(fn):
        raise ValueError(f"fn must be a frame-wise JAX callable f(x) -> y, got {type(fn).__name__}")
    methods = check_methods(methods, CALLABLE_METHODS)
    _check_options(sample_rate, n_fft, heldout_fraction, methods, student_steps, learning_rate, band_hz, seed)
    mix, single = _songs_of(mixture, "mixture")
    mix = [_check_array(a, _song_label("mixture", i, len(mix), songs), n_fft) for i, a in enumerate(mix)]
    run = _jitted(fn)
    est = [_run_fn(run, x, _song_label("fn's output on the mixture", i, len(mix), songs)) for i, x in enumerate(mix)]
    if heldout is not None and not _is_song_selection(heldout):
        held_mix, _ = _songs_of(heldout, "held-out mixture")
        held_mix = [_check_array(a, _song_label("held-out mixture", i, len(held_mix), None), n_fft)
                    for i, a in enumerate(held_mix)]
        held_est = [_run_fn(run, x, _song_label("fn's output on the held-out mixture", i, len(held_mix), None))
                    for i, x in enumerate(held_mix)]
        heldout = (held_mix, held_est)
    return _map(mix if not single else mix[0], est if not single else est[0], fn, methods=methods,
                sample_rate=sample_rate, n_fft=n_fft, heldout=heldout, heldout_fraction=heldout_fraction,
                student_steps=student_steps, learning_rate=learning_rate, band_hz=band_hz, seed=seed,
                songs=songs, jacobian_chunk=jacobian_chunk, est_role="fn's output")


# --------------------------------------------------------------------------------------------------
# The fits and their judgement


def _map(mixture, estimate, fn, *, methods, sample_rate, n_fft, heldout, heldout_fraction, student_steps,
         learning_rate, band_hz, seed, songs, jacobian_chunk=None, est_role="estimate") -> FrameMapping:
    _check_options(sample_rate, n_fft, heldout_fraction, methods, student_steps, learning_rate, band_hz, seed)
    mix, est, single = _check_pair(mixture, estimate, n_fft=n_fft, roles=("mixture", est_role), songs=songs)
    if songs is not None:
        songs = tuple(str(s) for s in songs)
    given = None
    if heldout is not None and not _is_song_selection(heldout):
        given = _check_heldout_pair(heldout, n_fft, est_role)
    split = _split(mix, est, single, songs, heldout, given, heldout_fraction, seed)
    freqs = analysis.bin_frequencies(mix[0].shape[1], sample_rate=sample_rate, n_fft=int(n_fft))

    x_fit, y_fit = split["x_fit"], split["y_fit"]
    held = split["held"]
    x_held = np.concatenate([x for x, _ in held])
    y_held = np.concatenate([y for _, y in held])
    per_song = split["info"]["unit"] != "time_block"

    def judge(predict_fn):
        """(fit clipped, fit raw, held clipped, held raw, per held-out song clipped or None)."""
        fit_raw = predict_fn(x_fit)
        held_raw = predict_fn(x_held)
        songs_err = (tuple(float(_rel_l1(y, np.maximum(predict_fn(x), 0.0))) for x, y in held)
                     if per_song else None)
        return (float(_rel_l1(y_fit, np.maximum(fit_raw, 0.0))), float(_rel_l1(y_fit, fit_raw)),
                float(_rel_l1(y_held, np.maximum(held_raw, 0.0))), float(_rel_l1(y_held, held_raw)), songs_err)

    results = {}
    for method in methods:
        matrix, details = _fit(method, x_fit, y_fit, fn, steps=student_steps, learning_rate=learning_rate,
                               seed=seed, jacobian_chunk=jacobian_chunk)
        c64 = np.asarray(matrix, np.float64)
        fit_e, fit_r, held_e, held_r, song_e = judge(lambda x, c=c64: np.asarray(x, np.float64) @ c.T)
        functional = analysis.functional_diagonality(c64, x_held, y_held, freqs, float(band_hz))
        functional = {k: _plain(np.asarray(v).item()) for k, v in functional.items()}
        results[method] = MethodMapping(method, np.asarray(matrix, np.float32), fit_e, fit_r, held_e, held_r,
                                        functional, song_e, details)

    baselines = {}
    zero = judge(lambda x: np.zeros_like(x, np.float64))
    baselines["zero"] = BaselineError("zero", *zero)
    gain, choice = mappings.best_per_bin_gain(x_fit, y_fit[None])
    g = np.asarray(gain[0], np.float64)
    baselines["per_bin_gain"] = BaselineError("per_bin_gain", *judge(lambda x: np.asarray(x, np.float64) * g),
                                              gain=g.astype(np.float32), choice=choice[0])
    return FrameMapping(results, baselines, freqs, float(sample_rate), int(n_fft), float(band_hz),
                        split["info"], "frames" if fn is None else "callable")


def _frames_only(x):  # pragma: no cover - never called: every frames-only fit is given its target
    raise RuntimeError("a frames-only fit called its model; it must be given target frames")


def _fit(method, x, y, fn, *, steps, learning_rate, seed, jacobian_chunk) -> tuple[np.ndarray, dict]:
    """One fit of C on the fit frames; returns C and the details recorded with it."""
    if method == "lstsq":
        fit = nca.fit_mapping(_frames_only, None, x, LeastSquares(), target=y)
        return fit.matrix, {"ridge": fit.ridge}
    if method == "student":
        student = Student(steps=int(steps), learning_rate=float(learning_rate))
        fit = nca.fit_mapping(_frames_only, None, x, student, target=y, seed=int(seed))
        return fit.matrix, {"steps": int(steps), "learning_rate": float(learning_rate), "seed": int(seed),
                            "init": fit.init, "converged": bool(fit.converged),
                            "final_loss": float(np.asarray(fit.losses)[-1])}
    chunk = jacobian_chunk or mappings.jacobian_chunk(None, x.shape[-1])
    fit = nca.fit_mapping(fn, None, x, MeanJacobian(chunk_size=int(chunk)), target=y)
    return fit.matrix, {"local_spread": float(fit.local_spread),
                        "note": "the mean Jacobian is not a fit; it is judged like one but never gated"}


def _rel_l1(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Relative L1 error over frames and bins (float64; 0/0 -> 0, a/0 -> inf)."""
    return float(analysis._rel_l1_np(np.asarray(y, np.float64), np.asarray(y_hat, np.float64)))


# --------------------------------------------------------------------------------------------------
# The split into fit and held-out frames


def _split(mix, est, single, songs, heldout, given, fraction, seed) -> dict:
    n_songs, n_bins = len(mix), mix[0].shape[1]
    names = list(songs) if songs is not None else list(range(n_songs))
    if given is not None:
        fit_idx, held_idx = list(range(n_songs)), []
        held = list(zip(*given, strict=True))
        info = {"unit": "given", "fit_songs": names, "heldout_songs": list(range(len(held)))}
    elif heldout is not None or n_songs >= 2:
        held_idx = (_resolve_heldout(heldout, n_songs, songs) if heldout is not None
                    else _draw_songs(n_songs, fraction, seed))
        fit_idx = [i for i in range(n_songs) if i not in held_idx]
        held = [(mix[i], est[i]) for i in held_idx]
        info = {"unit": "song", "fit_songs": [names[i] for i in fit_idx],
                "heldout_songs": [names[i] for i in held_idx]}
        if heldout is None:
            info["heldout_fraction"] = float(fraction)
    else:
        n = mix[0].shape[0]
        n_held = max(1, int(round(fraction * n)))
        if n - n_held < 1:
            raise ValueError(
                f"the mixture has {n} frame(s): holding out the last {n_held} leaves nothing to fit; give "
                f"at least {n_bins + max(1, math.ceil(fraction * n_bins))} frames (more than the N = {n_bins} bins)")
        _check_determined(n - n_held, n_bins, lambda: _time_block_fix(n, n_bins, fraction))
        info = {"unit": "time_block", "heldout_fraction": float(fraction), "heldout_frames": [n - n_held, n],
                "fit_songs": names, "heldout_songs": names}
        x_fit, y_fit = mix[0][: n - n_held], est[0][: n - n_held]
        info.update(n_fit_frames=int(len(x_fit)), n_heldout_frames=int(n_held))
        return {"x_fit": x_fit, "y_fit": y_fit, "held": [(mix[0][n - n_held:], est[0][n - n_held:])],
                "info": info}
    x_fit = np.concatenate([mix[i] for i in fit_idx])
    y_fit = np.concatenate([est[i] for i in fit_idx])
    short = n_bins - len(x_fit)
    if given is not None:
        fix = f"give at least {short} more frames to fit on"
    elif len(held_idx) > 1:
        fix = (f"hold out fewer songs (a smaller heldout_fraction, or heldout= one song's index) or use more "
               f"or longer songs ({short} more fit frames)")
    else:
        fix = f"use more or longer songs ({short} more fit frames, with one song held out)"
    _check_determined(len(x_fit), n_bins, lambda: fix)
    info.update(n_fit_frames=int(len(x_fit)), n_heldout_frames=int(sum(len(x) for x, _ in held)))
    return {"x_fit": x_fit, "y_fit": y_fit, "held": held, "info": info}


def _check_determined(n_fit: int, n_bins: int, fix: Callable[[], str]) -> None:
    if n_fit < n_bins:
        raise ValueError(
            f"the fit part has {n_fit} frames, fewer than the N = {n_bins} frequency bins: an N x N mapping "
            f"fitted on fewer frames than bins is underdetermined; {fix()} so that at least {n_bins} frames "
            f"are fitted ({FIT_FRAMES_PER_BIN * n_bins} or more, {FIT_FRAMES_PER_BIN} N, is well posed)")


def _time_block_fix(n: int, n_bins: int, fraction: float) -> str:
    need = math.ceil(n_bins / (1.0 - fraction)) + 1
    text = f"give at least {need} frames with heldout_fraction={fraction:g}"
    if n > n_bins + 1:
        working = math.floor(100.0 * (n - n_bins - 1) / n) / 100.0
        if working > 0:
            text += f", or hold out less of these {n} frames (heldout_fraction={working:g})"
    return text


def _draw_songs(n_songs: int, fraction: float, seed: int) -> list[int]:
    n_held = min(n_songs - 1, max(1, int(round(fraction * n_songs))))
    rng = np.random.default_rng([int(seed), 11])
    return sorted(int(i) for i in rng.choice(n_songs, size=n_held, replace=False))


def _is_song_selection(heldout) -> bool:
    """heldout given as song indices or names (not as frames)."""
    if isinstance(heldout, (str, numbers.Integral)):
        return True
    if isinstance(heldout, np.ndarray):
        return heldout.ndim == 1 and (np.issubdtype(heldout.dtype, np.integer) or heldout.dtype.kind == "U")
    if isinstance(heldout, (list, tuple)) and heldout:
        return all(isinstance(h, (str, numbers.Integral)) and not isinstance(h, bool) for h in heldout)
    return False


def _resolve_heldout(heldout, n_songs: int, songs) -> list[int]:
    items = [heldout] if isinstance(heldout, (str, numbers.Integral)) else list(np.asarray(heldout).tolist())
    if n_songs < 2:
        raise ValueError(
            "heldout names songs, but the frames are one song: hold out songs only with a list of per-song "
            "arrays (mixture=[song_0, song_1, ...]), or leave heldout=None for a time-block split")
    out = []
    for h in items:
        if isinstance(h, str):
            if songs is None or h not in songs:
                known = "no names were given (songs=...)" if songs is None else f"the songs are {list(songs)}"
                raise ValueError(f"held-out song {h!r} is not among the songs: {known}")
            out.append(list(songs).index(h))
        else:
            if not -n_songs <= int(h) < n_songs:
                raise ValueError(f"held-out song index {h} is out of range for {n_songs} songs (0..{n_songs - 1})")
            out.append(int(h) % n_songs)
    if len(set(out)) != len(out):
        raise ValueError(f"heldout names a song twice: {items}")
    if len(out) >= n_songs:
        raise ValueError(f"heldout holds out all {n_songs} songs, leaving none to fit on: hold out at most "
                         f"{n_songs - 1}")
    return sorted(out)


def _check_heldout_pair(heldout, n_fft, est_role) -> tuple[list, list]:
    if not (isinstance(heldout, (list, tuple)) and len(heldout) == 2):
        raise ValueError(
            "heldout must be None, song indices/names, or a pair (mixture, estimate) of held-out frames; "
            f"got a {type(heldout).__name__}")
    mix, est, _ = _check_pair(heldout[0], heldout[1], n_fft=n_fft,
                              roles=("held-out mixture", f"held-out {est_role}"), songs=None)
    return mix, est


# --------------------------------------------------------------------------------------------------
# Input checks


def check_methods(methods, allowed: tuple[str, ...] = FRAME_METHODS) -> tuple[str, ...]:
    """The methods as a tuple, checked: known, distinct, and among `allowed` (FRAME_METHODS for frames
    alone: "nca"/"jacobian" are refused with a message saying what they need; CALLABLE_METHODS for a
    callable: "nca" is refused)."""
    if isinstance(methods, str):
        methods = (methods,)
    try:
        methods = tuple(methods)
    except TypeError:
        raise ValueError(f"methods must be a method name or a sequence of them, got {methods!r}") from None
    if not methods:
        raise ValueError(f"no methods given: choose from {allowed}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {allowed}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods name a method twice: {list(methods)}")
    refused = [m for m in methods if m not in allowed]
    if refused:
        if allowed == FRAME_METHODS:
            raise ValueError(FRAMES_ONLY_MESSAGE.format(asked=", ".join(repr(m) for m in refused)))
        raise ValueError(NCA_CALLABLE_MESSAGE)
    return methods


def _check_options(sample_rate, n_fft, fraction, methods, steps, learning_rate, band_hz, seed) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or not (
            math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number of Hz (the frames' STFT), got {sample_rate!r}")
    if isinstance(n_fft, bool) or not isinstance(n_fft, numbers.Integral) or n_fft < 2:
        raise ValueError(f"n_fft must be an integer >= 2 (the FFT size of the frames' STFT, N = n_fft // 2 + 1 "
                         f"bins), got {n_fft!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), e.g. 0.25, got {fraction!r}")
    if "student" in methods:
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"student_steps must be a positive integer, e.g. {FIT_STEPS}, got {steps!r}")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or not (
                math.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, e.g. {FIT_LEARNING_RATE}, "
                             f"got {learning_rate!r}")
    if isinstance(band_hz, bool) or not isinstance(band_hz, numbers.Real) or not (
            math.isfinite(band_hz) and band_hz >= 0):
        raise ValueError(f"band_hz (half-width of the band part, Hz) must be >= 0, e.g. {DIAGONAL_BAND_HZ}, "
                         f"got {band_hz!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _songs_of(value, role: str) -> tuple[list, bool]:
    """([arrays per song], single): a list/tuple of arrays of >= 2 dims is one entry per song; anything
    else is one song's frames."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{role} is an empty list: pass (nb_frames, nb_bins) frames, or one such array per song")
        if all(np.ndim(v) >= 2 for v in value):
            return list(value), False
    if value is None:
        raise ValueError(f"{role} is None: pass (nb_frames, nb_bins) magnitude frames")
    return [value], True


def _song_label(role: str, i: int, n_songs: int, songs) -> str:
    if n_songs == 1 and songs is None:
        return role
    name = f" {songs[i]!r}" if songs is not None and i < len(songs) else ""
    return f"{role} (song {i}{name})"


def _check_array(a, label: str, n_fft: int | None) -> np.ndarray:
    """One song's frames as float32 `(nb_frames, nb_bins)`, checked; ValueErrors name `label`."""
    arr = _as_frames(a, label)
    if n_fft is not None:
        _check_bins(arr, label, n_fft)
    return _check_values(arr, label)


def _as_frames(a, label: str) -> np.ndarray:
    """a as a numeric 2-D array with at least one frame (dtype kept)."""
    try:
        arr = np.asarray(a)
    except Exception as err:  # e.g. a GPU tensor NumPy cannot read
        raise ValueError(f"{label} cannot be read as an array ({type(a).__name__}: {err}); pass a NumPy "
                         "array (a torch tensor: t.detach().cpu().numpy())") from err
    if np.iscomplexobj(arr):
        raise ValueError(f"{label} is complex: pass magnitudes, np.abs(stft), not the complex STFT")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{label} is not a numeric array (dtype {arr.dtype}); ragged per-song frames go in a "
                         "list, one (nb_frames, nb_bins) array per song")
    if arr.ndim != 2:
        hint = (" (several songs: pass a list with one 2-D array per song)" if arr.ndim == 3 else
                " (one frame: reshape to (1, nb_bins); better, pass many frames)" if arr.ndim == 1 else "")
        raise ValueError(f"{label} must be 2-D magnitude frames (nb_frames, nb_bins), got shape {arr.shape}{hint}")
    if arr.shape[0] < 1:
        raise ValueError(f"{label} has no frames (shape {arr.shape})")
    return arr


def _check_bins(arr: np.ndarray, label: str, n_fft: int) -> None:
    n = n_fft // 2 + 1
    if arr.shape[1] != n:
        hint = ("; the frames look transposed: pass the array's .T, (nb_frames, nb_bins)"
                if arr.shape[0] == n else
                f"; pass the n_fft of the STFT the frames come from ({arr.shape[1]} bins: n_fft = "
                f"{2 * (arr.shape[1] - 1)} or {2 * arr.shape[1] - 1})")
        raise ValueError(f"{label} has {arr.shape[1]} bins per frame, but n_fft={n_fft} gives n_fft // 2 + 1 = "
                         f"{n}{hint}")


def _check_values(arr: np.ndarray, label: str) -> np.ndarray:
    """Finite and non-negative; returned as contiguous float32."""
    bad = ~np.isfinite(arr) if np.issubdtype(arr.dtype, np.floating) else np.zeros(arr.shape, bool)
    if bad.any():
        t, b = np.argwhere(bad)[0]
        raise ValueError(f"{label} has {int(bad.sum())} NaN/Inf value(s) (first at frame {t}, bin {b}): pass "
                         "finite magnitudes (drop or repair those frames first)")
    if arr.size and arr.min() < 0:
        t, b = np.unravel_index(int(np.argmin(arr)), arr.shape)
        raise ValueError(f"{label} has negative values (min {float(arr.min()):.3g} at frame {t}, bin {b}): pass "
                         "magnitudes |STFT| >= 0 (np.abs of the complex STFT), not log-magnitudes or dB")
    return np.ascontiguousarray(arr, np.float32)


def _check_pair(mixture, estimate, *, n_fft, roles=ROLES, songs=None) -> tuple[list, list, bool]:
    """Per-song mixture and estimate frames, checked in this order: 2-D, the same frame count and shape,
    n_fft // 2 + 1 bins (when n_fft is given), finite and non-negative. Returns (mix, est, single)."""
    mix, single_m = _songs_of(mixture, roles[0])
    est, single_e = _songs_of(estimate, roles[1])
    if single_m != single_e or len(mix) != len(est):
        def what(single, songs_):
            return "one array" if single else f"a list of {len(songs_)} songs"

        raise ValueError(
            f"{roles[0]} is {what(single_m, mix)} but {roles[1]} is {what(single_e, est)}: pass one "
            f"{roles[1]} per {roles[0]} song, in the same order")
    if songs is not None:
        if isinstance(songs, str) or len(songs) != len(mix):
            raise ValueError(f"songs must name each of the {len(mix)} song(s) once, got {songs!r}")
    out_m, out_e = [], []
    for i, (m, e) in enumerate(zip(mix, est, strict=True)):
        lm, le = _song_label(roles[0], i, len(mix), songs), _song_label(roles[1], i, len(mix), songs)
        m, e = _as_frames(m, lm), _as_frames(e, le)
        if m.shape[0] != e.shape[0]:
            raise ValueError(
                f"{lm} has {m.shape[0]} frames but {le} has {e.shape[0]}: the estimate must be the separator's "
                "output on exactly these mixture frames (same STFT, hop and start; trim both to the same frames)")
        if m.shape != e.shape:
            raise ValueError(f"{lm} has shape {m.shape} but {le} has {e.shape}: both must be "
                             "(nb_frames, nb_bins) frames of the same STFT")
        if n_fft is not None:
            _check_bins(m, lm, n_fft)
        out_m.append(_check_values(m, lm))
        out_e.append(_check_values(e, le))
    return out_m, out_e, single_m


def _jitted(fn):
    import jax

    return jax.jit(fn)


def _run_fn(run, x: np.ndarray, label: str) -> np.ndarray:
    import jax

    try:
        y = np.asarray(run(x))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as err:
        raise ValueError(
            "fn must be a JAX callable (jax.numpy operations, jit-able): it converted a traced array to "
            f"NumPy ({type(err).__name__}); for a NumPy or PyTorch separator compute its outputs yourself and "
            "use map_frames(mixture, estimate, ...)") from err
    if y.shape != x.shape:
        raise ValueError(f"{label} has shape {y.shape}, not the mixture's {x.shape}: fn must map "
                         "(nb_frames, nb_bins) frames to frames of the same shape")
    return y


# --------------------------------------------------------------------------------------------------
# Files


class Frames(NamedTuple):
    """What `load_frames` read: mixture and estimate frames (one `(nb_frames, nb_bins)` array each, or
    one per song in lists) and the song names (None when the file does not name them)."""

    mixture: np.ndarray | list[np.ndarray]
    estimate: np.ndarray | list[np.ndarray]
    songs: tuple[str, ...] | None


def load_frames(mixture_path: str | Path | None, estimate_path: str | Path | None = None, *,
                n_fft: int | None = None) -> Frames:
    """Read mixture and estimate magnitude frames from `.npy` / `.npz` files (NumPy only, no pickles).

    Conventions, each file holding `(nb_frames, nb_bins)` frames:
    - two files, `mixture_path` and `estimate_path`:
      `.npy`: one 2-D array (one song) or a 3-D stack `(songs, nb_frames, nb_bins)` (songs of equal length);
      `.npz`: one array (as for .npy), or one 2-D array per song under any names (the same names in
      both files; the song names), or the arrays named `mixture`/`estimate` (or `mixture_<song>` /
      `estimate_<song>`) below, of which the file's own role is taken;
    - one `.npz` file (`estimate_path=None`) with both: arrays `mixture` and `estimate` (2-D or 3-D as
      above; `np.savez(path, mixture=X, estimate=Y)`), or per-song pairs `mixture_<song>` and
      `estimate_<song>`.
    `n_fft`: when given, every array must have n_fft // 2 + 1 bins. The frames come back as float32.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for an estimate given
    without its mixture, an unreadable or damaged file, a file missing its arrays, and frames of the
    wrong shape, sign or finiteness (the checks of `map_frames`). Writes nothing.
    """
    if mixture_path is None:
        if estimate_path is not None:
            raise ValueError(
                f"the estimate file {estimate_path} was given without its mixture: the mapping is fitted from "
                "the mixture frames to the estimate frames, so pass the mixture file too (mixture_path, "
                "--mixture FILE), or one .npz holding both (np.savez(path, mixture=X, estimate=Y))")
        raise ValueError("no mixture file given: pass the mixture frames' .npy/.npz file (--mixture FILE)")
    paths = {"mixture": _check_path(mixture_path, "mixture")}
    if estimate_path is not None:
        paths["estimate"] = _check_path(estimate_path, "estimate")
    contents = {role: _read(path, role) for role, path in paths.items()}
    if estimate_path is None:
        path = paths["mixture"]
        if path.suffix == ".npy":
            raise ValueError(
                f"the mixture file {path} is a single .npy array with no estimate: pass the estimate file too "
                "(estimate_path, --estimate FILE), or save both in one .npz (np.savez(path, mixture=X, estimate=Y))")
        mix = _pick(contents["mixture"], "mixture", path, combined=True)
        est = _pick(contents["mixture"], "estimate", path, combined=True)
        est_path = path
    else:
        mix = _pick(contents["mixture"], "mixture", paths["mixture"], combined=False)
        est = _pick(contents["estimate"], "estimate", paths["estimate"], combined=False)
        est_path = paths["estimate"]
    mix_songs, mix_names = _file_songs(mix, "mixture", paths["mixture"])
    est_songs, est_names = _file_songs(est, "estimate", est_path)
    songs = None
    if mix_names is not None and est_names is not None:
        if set(mix_names) != set(est_names):
            missing = [s for s in mix_names if s not in est_names]
            extra = [s for s in est_names if s not in mix_names]
            raise ValueError(
                f"the songs of the mixture ({paths['mixture']}) and the estimate ({est_path}) differ: "
                f"{missing or 'none'} have no estimate, {extra or 'none'} have no mixture; save one estimate per "
                "mixture song under the same name")
        est_songs = [est_songs[est_names.index(s)] for s in mix_names]
        songs = tuple(mix_names)
    elif (mix_names is None) != (est_names is None) or len(mix_songs) != len(est_songs):
        raise ValueError(
            f"the mixture file {paths['mixture']} holds {_describe(mix_songs, mix_names)} but the estimate "
            f"file {est_path} holds {_describe(est_songs, est_names)}: save them the same way (one 2-D "
            "array each, a 3-D stack each, or the same per-song names)")
    single = mix_names is None and len(mix_songs) == 1 and mix_songs[0].ndim == 2 and not _stacked(mix)
    m, e, _ = _check_pair(mix_songs if not single else mix_songs[0], est_songs if not single else est_songs[0],
                          n_fft=n_fft, roles=(f"mixture file {paths['mixture']}", f"estimate file {est_path}"),
                          songs=songs)
    if single:
        return Frames(m[0], e[0], None)
    return Frames(m, e, songs)


def _check_path(path, role: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{role} file {p} does not exist; pass the .npy/.npz file of the {role} "
                                "magnitude frames")
    if p.is_dir():
        raise ValueError(f"{role} file {p} is a directory; pass the .npy/.npz file of the {role} frames")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise ValueError(f"{role} file {p} is not a .npy or .npz file: save the frames with np.save or np.savez")
    return p


def _read(path: Path, role: str) -> dict[str, np.ndarray]:
    """The arrays of a .npy ({"": array}) or .npz file ({name: array}), read fully, no pickles."""
    try:
        if path.suffix.lower() == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("not an .npz archive")
            out = {name: f[name] for name in f.files}
    except Exception as err:
        raise ValueError(f"cannot read the {role} file {path} ({type(err).__name__}: {err}): it is not a valid, "
                         "complete NumPy file (damaged or truncated?); re-save it with np.save / np.savez "
                         "(numeric arrays, no Python objects)") from err
    if not out:
        raise ValueError(f"the {role} file {path} holds no arrays; save the frames with np.savez(path, {role}=X)")
    return out


def _pick(arrays: dict[str, np.ndarray], role: str, path: Path, *, combined: bool):
    """The role's part of a file: an array, or {song: array}."""
    other = "estimate" if role == "mixture" else "mixture"
    keys = list(arrays)
    if role in arrays:
        return arrays[role]
    prefixed = {k[len(role) + 1:]: v for k, v in arrays.items() if k.startswith(role + "_")}
    if prefixed:
        return prefixed
    if other in arrays or any(k.startswith(other + "_") for k in keys):
        if role == "mixture":
            raise ValueError(
                f"{path} holds an estimate ({keys}) but no mixture: the mapping is fitted from the mixture "
                "frames to the estimate, so save the mixture too (np.savez(path, mixture=X, estimate=Y), or "
                "mixture_<song> beside estimate_<song>) or pass the mixture file (--mixture FILE)")
        raise ValueError(
            f"{path} holds the mixture ({keys}) but no estimate: save the separator's output beside it "
            "(np.savez(path, mixture=X, estimate=Y), or estimate_<song> beside mixture_<song>) or pass the "
            "estimate file (--estimate FILE)")
    if combined:
        raise ValueError(
            f"{path} holds neither arrays 'mixture' and 'estimate' nor mixture_<song>/estimate_<song> pairs "
            f"(it has {keys}): save np.savez(path, mixture=X, estimate=Y), or pass the estimate file too "
            "(--estimate FILE)")
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    return dict(arrays)


def _stacked(part) -> bool:
    return isinstance(part, np.ndarray) and part.ndim == 3


def _file_songs(part, role: str, path: Path) -> tuple[list[np.ndarray], list[str] | None]:
    """(per-song arrays, song names or None) of a file's part."""
    if isinstance(part, dict):
        for name, a in part.items():
            if a.ndim != 2:
                raise ValueError(f"{role} array {name!r} in {path} has shape {a.shape}: per-song arrays must be "
                                 "2-D (nb_frames, nb_bins)")
        return list(part.values()), list(part)
    if part.ndim == 2:
        return [part], None
    if part.ndim == 3:
        if part.shape[0] < 1:
            raise ValueError(f"the {role} stack in {path} has no songs (shape {part.shape})")
        return list(part), None
    raise ValueError(f"the {role} array in {path} has shape {part.shape}: expected (nb_frames, nb_bins) frames, "
                     "a stack (songs, nb_frames, nb_bins), or one 2-D array per song in an .npz")


def _describe(songs: list, names) -> str:
    if names is not None:
        return f"{len(songs)} named song(s) {names}"
    return "one array" if len(songs) == 1 else f"a stack of {len(songs)} songs"
