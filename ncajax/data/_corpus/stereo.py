"""Realism v4 production: panning into stereo, a wider vocal channel strip and a stereo room with a
vocal echo (`CorpusConfig(realism="v4")`, the default; the earlier "v3" corpus never calls this module).

Stereo stems are `(n_samples, 2)` float64 here and float32 on disk. The pipeline reads every wav as
the mean of its channels (`ncajax.data`), so what a separator sees is the mono down-mix
(L + R) / 2: `mono` computes exactly that, and the mix (`mix.master`) sets every level it records
(stem balance, vocal-to-accompaniment level, loudness) on the down-mix, holds the limiter on the
louder channel, and keeps each channel of the mixture the exact float32 sum of the stems' channels.

Pan law: constant power (-3 dB at the centre), L = cos(θ), R = sin(θ) with θ = (p + 1) π / 4 for a
position p in [-1, 1]; in the mono down-mix a hard-panned source therefore sits 3 dB below a centred
one, as in real mixes down-mixed the same way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from .dsp import peaking_sos, rms


def pan(x: np.ndarray, position: float) -> np.ndarray:
    """Mono `(n,)` to stereo `(n, 2)` at `position` in [-1 (left), 1 (right)], constant power."""
    theta = (float(np.clip(position, -1.0, 1.0)) + 1.0) * np.pi / 4
    return np.stack([x * np.cos(theta), x * np.sin(theta)], axis=1)


def mono(x: np.ndarray) -> np.ndarray:
    """The down-mix the pipeline reads: `(n,)` as is, `(n, 2)` as the mean of its channels."""
    return x if x.ndim == 1 else x.mean(axis=1)


def haas(rng: np.random.Generator, x: np.ndarray, sr: int, width: float) -> tuple[np.ndarray, float]:
    """A double-tracked part: `x` on one side and a copy 8-25 ms later (at 0.8-1.0 of its level) on
    the other, both `width` from the centre; the down-mix comb-filters as real doubled guitars do.
    Returns `(stereo (n, 2), delay ms)`."""
    delay = float(rng.uniform(0.008, 0.025))
    d = int(round(delay * sr))
    late = np.concatenate([np.zeros(d), x[: x.size - d]]) * float(rng.uniform(0.8, 1.0))
    side = 1.0 if rng.random() < 0.5 else -1.0
    return pan(x, side * width) + pan(late, -side * width), round(1000 * delay, 2)


def vocal_chain(rng: np.random.Generator, parts: list[np.ndarray], sr: int) -> tuple[list, dict]:
    """The v4 vocal channel strip, one draw per song applied to every vocal part (lead, double,
    backing): compression (threshold 0-18 dB under the sung RMS, ratio 1.5-8), in 35 % of the songs
    tanh saturation (drive 1.5-6), a low cut at 60-350 Hz, a low-mid peak at 150-700 Hz (-8..+6 dB), a
    "honk" peak at 700-1500 Hz (-6..+6 dB), a presence peak at 1.5-5 kHz (-6..+9 dB), an air shelf above
    min(8 kHz, 0.35 sr) (-4..+8 dB) and in 10 % of the songs a telephone band (300-3400 Hz)."""
    thr_db, ratio = float(rng.uniform(-18.0, 0.0)), float(rng.uniform(1.5, 8.0))
    drive = float(rng.uniform(1.5, 6.0)) if rng.random() < 0.35 else None
    cut = float(rng.uniform(60.0, 350.0))
    peaks = [
        (float(rng.uniform(150.0, 700.0)), float(rng.uniform(-8.0, 6.0)), 1.0),
        (float(rng.uniform(700.0, 1500.0)), float(rng.uniform(-6.0, 6.0)), float(rng.uniform(0.8, 2.0))),
        (float(rng.uniform(1500.0, 5000.0)), float(rng.uniform(-6.0, 9.0)), float(rng.uniform(0.7, 2.0))),
    ]
    air_db = float(rng.uniform(-4.0, 8.0))
    phone = bool(rng.random() < 0.1)
    sos = np.concatenate(
        [signal.butter(2, cut, btype="highpass", fs=sr, output="sos")]
        + [peaking_sos(f, g, q, sr) for f, g, q in peaks]
        + ([signal.butter(2, [300.0, min(3400.0, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")]
           if phone else [])
    )
    air = signal.butter(2, min(8000.0, 0.35 * sr), btype="highpass", fs=sr, output="sos")
    out = []
    for x in parts:
        x = _compress(x, sr, thr_db, ratio)
        if drive is not None:
            peak = max(float(np.abs(x).max()), 1e-12)
            x = np.tanh(drive * x / peak) * peak / np.tanh(drive)
        y = signal.sosfilt(sos, x)
        out.append(y + (10 ** (air_db / 20) - 1) * signal.sosfilt(air, y))
    params = {
        "vocal_compressor": [round(thr_db, 2), round(ratio, 2)],
        "vocal_saturation": None if drive is None else round(drive, 3),
        "vocal_eq": {"low_cut_hz": round(cut, 1),
                     "peaks": [[round(f, 1), round(g, 2), round(q, 2)] for f, g, q in peaks],
                     "air_db": round(air_db, 2), "telephone": phone},
    }
    return out, params


def _compress(x: np.ndarray, sr: int, thr_db: float, ratio: float) -> np.ndarray:
    """Feed-forward compression on a 10 ms RMS envelope, the gain smoothed over 30 ms."""
    power = ndimage.uniform_filter1d(x * x, max(1, int(0.01 * sr)), mode="nearest")
    env = np.sqrt(np.maximum(power, 0.0))
    if env.max() <= 0:
        return x
    sung = env > 0.05 * env.max()
    thr = rms(x[sung]) * 10 ** (thr_db / 20)
    gain = np.where(env > thr, (np.maximum(env, 1e-12) / thr) ** (1 / ratio - 1), 1.0)
    return x * ndimage.uniform_filter1d(gain, max(1, int(0.03 * sr)), mode="nearest")


def room(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int, beat: float
) -> tuple[dict[str, np.ndarray], dict]:
    """A stereo room: two independent decaying-noise impulse responses (RT60 0.2-1.2 s, one per
    channel, so the tail is decorrelated and half its power leaves the down-mix's centre) on the
    vocals, drums and other at per-stem wet levels (bass dry), and in 40 % of the songs a vocal echo
    (a ping-pong delay of an eighth or a quarter note, 2-4 repeats, -22..-10 dB, low-passed), which
    belongs to the vocals stem as in MUSDB18's stems."""
    rt60 = float(rng.uniform(0.2, 1.2))
    pre = int(rng.uniform(0.005, 0.04) * sr)
    t = np.arange(int(rt60 * sr)) / sr
    damp = signal.butter(1, min(float(rng.uniform(2000.0, 6000.0)), 0.4 * sr), fs=sr, output="sos")
    irs = []
    for _ in range(2):
        ir = signal.sosfilt(damp, rng.standard_normal(t.size)) * np.exp(-6.91 * t / rt60)
        irs.append(np.concatenate([np.zeros(pre), ir / np.sqrt(np.sum(ir**2))]))
    ir2 = np.stack(irs, axis=1)
    wet_db = {
        "vocals": float(rng.uniform(-18.0, -6.0)),
        "drums": float(rng.uniform(-24.0, -10.0)),
        "other": float(rng.uniform(-20.0, -8.0)),
    }
    out = dict(raw)
    for name, db in wet_db.items():
        x = raw[name]
        dry = mono(x)
        out[name] = x + 10 ** (db / 20) * signal.fftconvolve(dry[:, None], ir2, axes=0)[: x.shape[0]]
    echo = None
    if rng.random() < 0.4:
        delay = beat * (0.5 if rng.random() < 0.5 else 1.0)
        repeats, db = int(rng.integers(2, 5)), float(rng.uniform(-22.0, -10.0))
        lp = signal.butter(2, min(float(rng.uniform(1500.0, 3500.0)), 0.4 * sr), fs=sr, output="sos")
        src = signal.sosfilt(lp, mono(raw["vocals"]))
        d = int(round(delay * sr))
        tail = np.zeros_like(out["vocals"])
        for r in range(1, repeats + 1):
            if r * d >= src.size:
                break
            tap = np.zeros(src.size)
            tap[r * d:] = src[: src.size - r * d] * 10 ** (db * (1 + 0.5 * (r - 1)) / 20)
            tail += pan(tap, 0.7 if r % 2 else -0.7)
        out["vocals"] = out["vocals"] + tail
        echo = {"delay_s": round(delay, 4), "repeats": repeats, "level_db": round(db, 2)}
    params = {"rt60_s": round(rt60, 3), "reverb_wet_db": {k: round(v, 2) for k, v in wet_db.items()},
              "vocal_echo": echo}
    return out, params
