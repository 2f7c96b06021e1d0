"""Production: per-song EQ of every stem, vocal compression, one room reverb, stem balance, loudness and
the peak limiter.

The mixture is scaled to a loudness drawn from LOUDNESS_DBFS and held under PEAK by a smooth limiter
whose gain envelope multiplies every stem, so the mixture stays the exact float32 sum of the stems.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal

from .dsp import peaking_sos, rms

STEMS = ("vocals", "drums", "bass", "other")
VOCAL_LEVEL_DB = (-9.0, 4.0)  # vocal / accompaniment RMS over the whole track
LOUDNESS_DBFS = (-30.0, -6.0)  # mixture RMS target before the peak limit (quiet mixes to mastered)
PEAK = 0.9


def tone_eq(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int, *, vocals: bool = True
) -> tuple[dict[str, np.ndarray], dict]:
    """Per-song mixing EQ. Accompaniment stems: a low shelf (below ~300 Hz) and a high shelf (above
    ~2 kHz), each -6..+6 dB, so the accompaniment's long-term spectrum varies from song to song as real
    productions do (dark to bright, thin to boomy). Vocals (`vocal_chain`, unless `vocals=False`):
    compression, a low cut, a low-mid and a presence band and an air shelf. Stems are `(n,)` or stereo
    `(n, 2)` (filtered along time)."""
    lo_sos = signal.butter(2, 300.0, btype="lowpass", fs=sr, output="sos")
    hi_sos = signal.butter(2, 2000.0, btype="highpass", fs=sr, output="sos")
    out, params = dict(raw), {}
    for name in ("drums", "bass", "other"):
        low_db, high_db = float(rng.uniform(-6.0, 6.0)), float(rng.uniform(-6.0, 6.0))
        x = raw[name]
        out[name] = (
            x
            + (10 ** (low_db / 20) - 1) * signal.sosfilt(lo_sos, x, axis=0)
            + (10 ** (high_db / 20) - 1) * signal.sosfilt(hi_sos, x, axis=0)
        )
        params[name] = [round(low_db, 2), round(high_db, 2)]
    if not vocals:
        return out, {"eq_low_high_db": params}
    out["vocals"], vocal_params = vocal_chain(rng, raw["vocals"], sr)
    return out, {"eq_low_high_db": params, **vocal_params}


def vocal_chain(rng: np.random.Generator, x: np.ndarray, sr: int) -> tuple[np.ndarray, dict]:
    """A vocal channel strip, drawn per song: a compressor (threshold 0-15 dB under the sung RMS,
    ratio 1.5-6, ~30 ms gain smoothing), a 2nd-order low cut at 60-250 Hz, a low-mid peak at
    200-600 Hz (-6..+4 dB), a presence peak at 1.5-5 kHz (-4..+6 dB) and an air shelf above
    min(8 kHz, 0.35 sr) (-3..+6 dB). Real vocals are never heard as the singer sang them."""
    thr_db, ratio = float(rng.uniform(-15.0, 0.0)), float(rng.uniform(1.5, 6.0))
    cut = float(rng.uniform(60.0, 250.0))
    mid_hz, mid_db = float(rng.uniform(200.0, 600.0)), float(rng.uniform(-6.0, 4.0))
    pres_hz, pres_db = float(rng.uniform(1500.0, 5000.0)), float(rng.uniform(-4.0, 6.0))
    pres_q = float(rng.uniform(0.7, 2.0))
    air_db = float(rng.uniform(-3.0, 6.0))
    power = ndimage.uniform_filter1d(x * x, max(1, int(0.01 * sr)), mode="nearest")
    env = np.sqrt(np.maximum(power, 0.0))  # the running mean can round a hair below 0
    sung = env > 0.05 * env.max() if env.max() > 0 else np.zeros(x.size, bool)
    if sung.any():
        thr = rms(x[sung]) * 10 ** (thr_db / 20)
        gain = np.where(env > thr, (np.maximum(env, 1e-12) / thr) ** (1 / ratio - 1), 1.0)
        x = x * ndimage.uniform_filter1d(gain, max(1, int(0.03 * sr)), mode="nearest")
    sos = np.concatenate([
        signal.butter(2, cut, btype="highpass", fs=sr, output="sos"),
        peaking_sos(mid_hz, mid_db, 1.0, sr),
        peaking_sos(pres_hz, pres_db, pres_q, sr),
    ])
    y = signal.sosfilt(sos, x)
    air = signal.butter(2, min(8000.0, 0.35 * sr), btype="highpass", fs=sr, output="sos")
    y = y + (10 ** (air_db / 20) - 1) * signal.sosfilt(air, y)
    params = {
        "vocal_compressor": [round(thr_db, 2), round(ratio, 2)],
        "vocal_eq": {"low_cut_hz": round(cut, 1), "low_mid": [round(mid_hz, 1), round(mid_db, 2)],
                     "presence": [round(pres_hz, 1), round(pres_db, 2)], "air_db": round(air_db, 2)},
    }
    return y, params


def room(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int
) -> tuple[dict[str, np.ndarray], dict]:
    """Light reverb: one room (pre-delayed, low-passed, exponentially decaying noise impulse response of
    RT60 0.2-0.8 s) added to the vocals, drums and other at per-stem wet levels; the bass stays dry."""
    rt60 = float(rng.uniform(0.2, 0.8))
    pre = int(rng.uniform(0.005, 0.03) * sr)
    t = np.arange(int(rt60 * sr)) / sr
    damp = signal.butter(1, min(float(rng.uniform(2000.0, 5000.0)), 0.4 * sr), fs=sr, output="sos")
    ir = signal.sosfilt(damp, rng.standard_normal(t.size)) * np.exp(-6.91 * t / rt60)
    ir = np.concatenate([np.zeros(pre), ir / np.sqrt(np.sum(ir**2))])
    wet_db = {
        "vocals": float(rng.uniform(-18.0, -8.0)),
        "drums": float(rng.uniform(-24.0, -12.0)),
        "other": float(rng.uniform(-20.0, -10.0)),
    }
    out = dict(raw)
    for name, db in wet_db.items():
        x = raw[name]
        out[name] = x + 10 ** (db / 20) * signal.fftconvolve(x, ir)[: x.size]
    params = {
        "rt60_s": round(rt60, 3),
        "reverb_wet_db": {k: round(v, 2) for k, v in wet_db.items()},
    }
    return out, params


def master(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int
) -> tuple[dict[str, np.ndarray], dict]:
    """Balance the stems, set the vocal level and the loudness, limit the peaks; float32 stems plus
    their exact sum.

    Loudness: the mixture is scaled to an RMS drawn from LOUDNESS_DBFS, then a peak limiter (one smooth
    gain envelope applied to every stem, so the mixture stays their sum) holds it under PEAK, as a
    mastering limiter does; loud targets therefore come out dense and compressed, quiet ones untouched.
    The vocals are then rescaled so the recorded vocal-to-accompaniment level holds exactly.

    Stems may be stereo `(n, 2)` (realism v4): every level is then set on the mono down-mix
    (L + R) / 2 that the pipeline reads, the limiter holds the louder channel, and each channel of
    the mixture is the exact float32 sum of the stems' channels.
    """
    rel_db = {"drums": rng.uniform(-3, 3), "bass": rng.uniform(-4, 2), "other": rng.uniform(-3, 3)}
    vocal_db = float(rng.uniform(*VOCAL_LEVEL_DB))
    loud_db = float(rng.uniform(*LOUDNESS_DBFS))
    stems = {}
    for name in ("drums", "bass", "other"):
        x = raw[name]
        stems[name] = x / max(_rms(x), 1e-12) * 10 ** (rel_db[name] / 20)
    acc = stems["drums"] + stems["bass"] + stems["other"]
    v = raw["vocals"]
    stems["vocals"] = v / max(_rms(v), 1e-12) * _rms(acc) * 10 ** (vocal_db / 20)
    mix = stems["vocals"] + acc
    gain = 10 ** (loud_db / 20) / max(_rms(mix), 1e-12)
    env = limiter_gain(gain * (mix if mix.ndim == 1 else np.abs(mix).max(axis=1)), sr, 0.97 * PEAK)
    if mix.ndim == 2:
        env = env[:, None]
    stems = {name: gain * env * x for name, x in stems.items()}
    acc = stems["drums"] + stems["bass"] + stems["other"]
    stems["vocals"] *= _rms(acc) * 10 ** (vocal_db / 20) / max(_rms(stems["vocals"]), 1e-12)
    mix = stems["vocals"] + acc
    peak = max(np.abs(mix).max(), *(np.abs(s).max() for s in stems.values()))
    guard = min(1.0, PEAK * (1 - 1e-4) / max(peak, 1e-12))
    out = {name: (stems[name] * guard).astype(np.float32) for name in STEMS}
    out = {"mixture": ((out["vocals"] + out["drums"]) + out["bass"]) + out["other"], **out}
    if env.ndim == 2:
        env = env[:, 0]
    levels = {
        "vocal_level_db": round(vocal_db, 4),
        "stem_level_db": {k: round(float(v), 3) for k, v in rel_db.items()},
        "loudness_target_dbfs": round(loud_db, 3),
        "limiter_max_reduction_db": round(
            max(0.0, -20 * math.log10(max(float(env.min()), 1e-12))), 3
        ),
        "mixture_rms_dbfs": round(20 * math.log10(max(_rms(out["mixture"]), 1e-12)), 3),
        "gain_db": round(20 * math.log10(gain * guard), 3),
    }
    return out, levels


def _rms(x: np.ndarray) -> float:
    """RMS of `(n,)` audio, or of the mono down-mix (L + R) / 2 of stereo `(n, 2)` audio."""
    return rms(x if x.ndim == 1 else x.astype(np.float64).mean(axis=1))


def limiter_gain(x: np.ndarray, sr: int, limit: float) -> np.ndarray:
    """A smooth gain envelope `(n,)` in (0, 1] with |x * gain| <= limit everywhere.

    The needed gain min(1, limit / |x|) is min-filtered and then averaged over the same centred 21 ms
    window: every averaged value is a mean of minima over windows that contain its own sample, so it
    never exceeds the needed gain there (no overshoot), and it moves smoothly (no clicks).
    """
    need = np.minimum(1.0, limit / np.maximum(np.abs(x), 1e-12))
    if need.min() >= 1.0:
        return np.ones_like(x)
    size = int(0.021 * sr) | 1
    low = ndimage.minimum_filter1d(need, size, mode="nearest")
    return np.minimum(ndimage.uniform_filter1d(low, size, mode="nearest"), need)
