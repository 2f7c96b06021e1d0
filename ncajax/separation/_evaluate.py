"""Separation quality of the separators, next to two references: the mixture and the oracle IRM.

Every separator is a `predict_fn`: mixture magnitudes `(nb_frames, nb_bins)` -> vocal magnitudes
`(nb_frames, nb_bins)`, applied frame by frame. The vocal waveform is the inverse STFT of the estimated
magnitude with the mixture phase; the accompaniment is the mixture minus that waveform (time domain).

Two kinds of scores:
- `magnitude_sdr`: 10 log10(Σ v² / Σ (v - v̂)²) on the vocal magnitude spectrogram (cheap, exact, what the
  training losses see).
- `bss_eval`: museval's BSS Eval v4 (SiSEC 2018) SDR/SIR/SAR/ISR on the waveforms, 1-second windows,
  summarised per target as the median over windows (NaN windows, where museval finds a silent reference
  or estimate, ignored).

The references added by `evaluate_tracks`: "mixture" (the unprocessed mixture as the estimate of both
targets, the floor) and "oracle_irm" (the ideal ratio mask from the true stems at the same STFT applied to
the mixture, the ceiling any magnitude-masking separator at this STFT could reach).

Scope: everything here is mono (channels averaged) at the model's rate (8 kHz for the `fast` preset,
so only the band up to 4 kHz), a yardstick between the study's models, not comparable with published
MUSDB18 (SiSEC 2018) results. `ncajax.separation` gives the comparable numbers: stereo, at the tracks' own
rate, through `ncajax-separate`'s per-channel path, museval's per-track JSON and aggregation, and nSDR.

BSS Eval itself (museval) is `ncajax.separation`. Silence is judged by `ncajax.data.is_silent`, the rule
the data pipeline uses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..config import STFTConfig
from ..data._sources import is_silent
from ._bss import METRICS, TARGETS, BSSReferences, bss_eval, median_over_windows, stack_checked

__all__ = ["TARGETS", "METRICS", "REFERENCES", "magnitude_sdr", "ideal_ratio_mask", "separate_track", "bss_eval",
           "evaluate_tracks"]

REFERENCES = ("mixture", "oracle_irm")

PredictFn = Callable[[Any], Any]


# --------------------------------------------------------------------------------------------------
# Magnitude-domain scores and the oracle mask


def magnitude_sdr(
    reference: Float[ArrayLike, "nb_frames nb_bins"],
    estimate: Float[ArrayLike, "nb_frames nb_bins"],
) -> float:
    """10 log10(Σ v² / Σ (v - v̂)²) in dB over a whole magnitude spectrogram (computed in float64).

    Zero denominators are not NaN: an exact estimate gives +inf (also when both are all zero), and a
    silent reference with a non-zero estimate gives -inf (0 / positive). The result is never NaN for
    finite inputs.
    """
    v = np.asarray(reference, dtype=np.float64)
    v_hat = np.asarray(estimate, dtype=np.float64)
    if v.shape != v_hat.shape:
        raise ValueError(
            f"reference {v.shape} and estimate {v_hat.shape} must have the same shape "
            "(nb_frames, nb_bins); compute both with the same STFT settings and audio length"
        )
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(v_hat))):
        raise ValueError("magnitude_sdr got NaN or Inf values; check the separator's output")
    num = float(np.sum(v**2))
    den = float(np.sum((v - v_hat) ** 2))
    if den == 0.0:
        return math.inf
    if num == 0.0:
        return -math.inf
    return 10.0 * math.log10(num / den)


def ideal_ratio_mask(
    vocals_mag: Float[ArrayLike, "nb_frames nb_bins"],
    accompaniment_mag: Float[ArrayLike, "nb_frames nb_bins"],
    eps: float = 1e-8,
    *,
    power: int = 1,
) -> Float[Array, "nb_frames nb_bins"]:
    """The ideal ratio mask |V|^p / (|V|^p + |A|^p), in [0, 1].

    `power=1` is the magnitude IRM of the SiSEC oracle baselines (the default); `power=2` is the
    power-spectrogram (Wiener-like) variant. The denominator is floored at `eps`, so a bin where both
    sources are silent gets mask 0 (no 0/0) and a bin where only the vocals sound gets exactly 1.
    """
    if power not in (1, 2):
        raise ValueError(f"power must be 1 (magnitude IRM) or 2 (power IRM), got {power!r}")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    v = jnp.abs(jnp.asarray(vocals_mag, dtype=jnp.float32)) ** power
    a = jnp.abs(jnp.asarray(accompaniment_mag, dtype=jnp.float32)) ** power
    if v.shape != a.shape:
        raise ValueError(
            f"vocals_mag {v.shape} and accompaniment_mag {a.shape} must have the same shape "
            "(nb_frames, nb_bins)"
        )
    return v / jnp.maximum(v + a, eps)


# --------------------------------------------------------------------------------------------------
# Separation of one track


def _check_track(track: Any, cfg: STFTConfig) -> None:
    for field in ("mixture", "vocals", "accompaniment"):
        x = np.asarray(getattr(track, field))
        if x.ndim != 1:
            raise ValueError(
                f"track {track.name!r}: {field} must be mono (n_samples,), got shape {x.shape}; "
                "load it with ncajax.data.load_track"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"track {track.name!r}: {field} holds NaN or Inf samples")
    if not (len(track.mixture) == len(track.vocals) == len(track.accompaniment)):
        raise ValueError(
            f"track {track.name!r}: mixture/vocals/accompaniment lengths differ "
            f"({len(track.mixture)}, {len(track.vocals)}, {len(track.accompaniment)})"
        )
    if track.rate != cfg.sample_rate:
        raise ValueError(
            f"track {track.name!r} is at {track.rate} Hz but the STFT config expects "
            f"{cfg.sample_rate} Hz; load the track with sample_rate=cfg.sample_rate"
        )


def _predict_in_chunks(
    predict_fn: PredictFn, mix_mag: np.ndarray, batch_size: int, name: str, track: str
) -> np.ndarray:
    outs = []
    for start in range(0, mix_mag.shape[0], batch_size):
        chunk = mix_mag[start : start + batch_size]
        out = np.asarray(predict_fn(chunk), dtype=np.float32)
        if out.shape != chunk.shape:
            raise ValueError(
                f"predictor {name!r} on track {track!r} returned shape {out.shape} for input "
                f"{chunk.shape}; it must map (nb_frames, nb_bins) to the same shape"
            )
        outs.append(out)
    vocals_mag = np.concatenate(outs, axis=0)
    if not np.all(np.isfinite(vocals_mag)):
        raise ValueError(
            f"predictor {name!r} returned NaN or Inf magnitudes on track {track!r}; "
            "the model or its mapping diverged"
        )
    return vocals_mag


def _resynthesise(
    vocals_mag: np.ndarray, mix_stft: np.ndarray, mixture: np.ndarray, cfg, name, track
):
    from ..data import _features as features

    vocals = np.asarray(features.istft(vocals_mag, mix_stft, cfg, len(mixture)), dtype=np.float32)
    if not np.all(np.isfinite(vocals)):
        raise ValueError(f"predictor {name!r}: the vocal waveform of track {track!r} is not finite")
    return {
        "vocals": vocals,
        "accompaniment": (mixture.astype(np.float32) - vocals).astype(np.float32),
        "vocals_mag": vocals_mag,
        "mixture_mag": np.abs(mix_stft).astype(np.float32),
    }


def separate_track(
    predict_fn: PredictFn,
    track: Any,
    cfg: STFTConfig,
    *,
    batch_size: int = 4096,
    name: str = "predictor",
) -> dict[str, np.ndarray]:
    """Separate one `TrackAudio` with a frame-wise magnitude separator.

    `predict_fn` is called on chunks of at most `batch_size` frames `(chunk, nb_bins)` and must return
    vocal magnitudes of the same shape. Negative outputs (possible for linear mappings) are clipped to 0
    before resynthesis and scoring: a magnitude cannot be negative. Returns numpy arrays
    `{"vocals": (n_samples,), "accompaniment": (n_samples,), "vocals_mag": (nb_frames, nb_bins),
    "mixture_mag": (nb_frames, nb_bins)}`; `name` only labels errors.
    """
    from ..data import _features as features

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    _check_track(track, cfg)
    mix_stft = np.asarray(features.stft(track.mixture, cfg))
    return _separate_stft(predict_fn, track, mix_stft, cfg, batch_size, name)


def _separate_stft(predict_fn, track, mix_stft, cfg, batch_size, name):
    mix_mag = np.abs(mix_stft).astype(np.float32)
    vocals_mag = np.maximum(
        _predict_in_chunks(predict_fn, mix_mag, batch_size, name, track.name), 0
    )
    return _resynthesise(vocals_mag, mix_stft, np.asarray(track.mixture), cfg, name, track.name)


# --------------------------------------------------------------------------------------------------
# Whole-corpus evaluation


def _none_if_nan(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _score(
    sep: dict,
    track: Any,
    true_vocals_mag: np.ndarray,
    bss_refs: BSSReferences | None,
    with_bss: bool,
    name: str,
) -> dict[str, Any]:
    for key in ("vocals", "accompaniment", "vocals_mag"):
        if not np.all(np.isfinite(sep[key])):
            raise ValueError(f"predictor {name!r}: {key} of track {track.name!r} is not finite")
    vocals_silent = is_silent(track.vocals)
    row: dict[str, Any] = {
        # A silent vocal reference gives -inf (or +inf); such tracks leave the summary (see below).
        "mag_sdr": magnitude_sdr(true_vocals_mag, sep["vocals_mag"]),
        "vocals_silent": vocals_silent,
    }
    if not with_bss:
        return row
    refs = {"vocals": track.vocals, "accompaniment": track.accompaniment}
    silent = [f"reference {t}" for t in TARGETS if is_silent(refs[t])]
    silent += [f"estimated {t}" for t in TARGETS if is_silent(sep[t])]
    if silent:
        warnings.warn(
            f"track {track.name!r}, predictor {name!r}: {', '.join(silent)} entirely silent; "
            "BSS Eval cannot score it, the track is left out of this predictor's BSS summary",
            RuntimeWarning,
            stacklevel=4,
        )
        scores = {t: {m: None for m in METRICS} for t in TARGETS}
    else:
        _, ests = stack_checked(refs, {t: sep[t] for t in TARGETS})
        raw = median_over_windows(bss_refs.evaluate(ests))
        scores = {t: {m: _none_if_nan(raw[t][m]) for m in METRICS} for t in TARGETS}
    row.update(scores)
    return row


def _summarise(rows: dict[str, dict[str, Any]], with_bss: bool) -> dict[str, Any]:
    qualified = [r for r in rows.values() if not r["vocals_silent"]]
    mag = [r["mag_sdr"] for r in qualified]
    summary: dict[str, Any] = {
        "mag_sdr": float(np.mean(mag)) if mag else None,
        "n_tracks": len(qualified),
    }
    if with_bss:
        for t in TARGETS:
            summary[t] = {}
            for m in METRICS:
                vals = [r[t][m] for r in qualified if r[t][m] is not None]
                summary[t][m] = float(np.median(vals)) if vals else None
        summary["n_tracks_bss"] = sum(r["vocals"]["SDR"] is not None for r in qualified)
    return summary


def evaluate_tracks(
    predictors: Mapping[str, PredictFn],
    tracks: list[Any],
    cfg: STFTConfig,
    *,
    with_bss: bool = True,
    progress: bool = False,
    batch_size: int = 4096,
    irm_power: int = 1,
) -> dict[str, Any]:
    """Score every predictor, plus the "mixture" and "oracle_irm" references, on every track.

    Per track and predictor: "mag_sdr" (vocal magnitude SDR, dB) and, with `with_bss`, museval
    SDR/SIR/SAR/ISR (median over 1-second windows) for "vocals" and "accompaniment". Summary per
    predictor: "mag_sdr" = mean over tracks, BSS metrics = median over tracks, and the track counts.

    Tracks whose vocal stem is entirely silent are scored but left out of every summary, with a
    warning. A silent estimated or reference waveform (BSS Eval cannot score it) makes that track's BSS
    metrics None for that predictor, with a warning, and leaves it out of that predictor's BSS median. A
    summary value is None only when no track qualified. NaN per-window values never reach the output
    (median over windows ignores them; an all-NaN metric becomes None). Returns
    `{"per_track": {pred: {track: {...}}}, "summary": {pred: {...}}, "references": [...]}`.
    """
    _check_inputs(predictors, tracks, cfg, batch_size, irm_power)
    all_names = list(REFERENCES) + list(predictors)
    per_track: dict[str, dict[str, Any]] = {n: {} for n in all_names}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tracks) * len(all_names), desc="evaluate", unit="sep")
    for track in tracks:
        rows = _evaluate_track(track, predictors, cfg, with_bss=with_bss, batch_size=batch_size,
                               irm_power=irm_power, bar=bar)
        for name, row in rows.items():
            per_track[name][track.name] = row
    if bar is not None:
        bar.close()
    summary = {n: _summarise(per_track[n], with_bss) for n in all_names}
    return {"per_track": per_track, "summary": summary, "references": list(REFERENCES)}


def _check_inputs(predictors, tracks, cfg: STFTConfig, batch_size: int, irm_power: int) -> None:
    """`evaluate_tracks`' argument checks; warns about tracks with silent vocals."""
    clash = sorted(set(predictors) & set(REFERENCES))
    if clash:
        raise ValueError(f"predictor names {clash} are reserved for the references; rename them")
    if not tracks:
        raise ValueError("no tracks to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if irm_power not in (1, 2):
        raise ValueError(f"irm_power must be 1 (magnitude IRM) or 2 (power IRM), got {irm_power!r}")
    names = [t.name for t in tracks]
    if len(set(names)) != len(names):
        raise ValueError(f"track names must be unique, got {names}")
    for track in tracks:
        _check_track(track, cfg)
        if is_silent(track.vocals):
            warnings.warn(
                f"track {track.name!r} has entirely silent vocals: it is scored but left out of "
                "every summary",
                RuntimeWarning,
                stacklevel=3,
            )


def _evaluate_track(track: Any, predictors: Mapping[str, PredictFn], cfg: STFTConfig, *, with_bss: bool,
                    batch_size: int, irm_power: int, bar) -> dict[str, dict[str, Any]]:
    """The scores of the references and of every predictor on one track, by name."""
    from ..data import _features as features

    mixture = np.asarray(track.mixture, dtype=np.float32)
    mix_stft = np.asarray(features.stft(mixture, cfg))
    mix_mag = np.abs(mix_stft).astype(np.float32)
    vocals_mag = np.abs(np.asarray(features.stft(track.vocals, cfg))).astype(np.float32)
    acc_mag = np.abs(np.asarray(features.stft(track.accompaniment, cfg))).astype(np.float32)
    bss_refs = None
    if with_bss and not (is_silent(track.vocals) or is_silent(track.accompaniment)):
        refs, _ = stack_checked({"vocals": track.vocals, "accompaniment": track.accompaniment}, None)
        bss_refs = BSSReferences(refs, track.rate, window_s=1.0, hop_s=1.0)
    rows = {}
    for name in list(REFERENCES) + list(predictors):
        if name == "mixture":
            sep = {"vocals": mixture, "accompaniment": mixture, "vocals_mag": mix_mag, "mixture_mag": mix_mag}
        elif name == "oracle_irm":
            mask = np.asarray(ideal_ratio_mask(vocals_mag, acc_mag, power=irm_power))
            sep = _resynthesise(mask * mix_mag, mix_stft, mixture, cfg, name, track.name)
        else:
            sep = _separate_stft(predictors[name], track, mix_stft, cfg, batch_size, name)
        rows[name] = _score(sep, track, vocals_mag, bss_refs, with_bss, name)
        if bar is not None:
            bar.update(1)
    return rows
