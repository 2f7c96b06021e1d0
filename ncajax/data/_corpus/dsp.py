"""Sound primitives shared by the corpus renderers: harmonic notes, band-limited noise, placement."""

from __future__ import annotations

import numpy as np
from scipy import signal


def midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Unit-RMS white noise band-passed to [lo, hi] Hz (clamped below Nyquist)."""
    hi = min(hi, 0.45 * sr)
    lo = min(lo, 0.5 * hi)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n))
    return x / max(float(x.std()), 1e-12)


def place(out: np.ndarray, onset: float, sr: int, sound: np.ndarray, gain: float = 1.0) -> None:
    """Add `gain * sound` into `out` from `onset` s on (cut at the end of `out`)."""
    i = int(round(onset * sr))
    if i >= len(out):
        return
    m = min(len(sound), len(out) - i)
    out[i : i + m] += gain * sound[:m]


def tone(
    f0: float,
    seconds: float,
    sr: int,
    *,
    slope: float,
    decay: float | None,
    decay_slope: float = 0.5,
    attack: float = 0.005,
    release: float = 0.03,
    inharm: float = 0.0,
    max_partials: int = 16,
) -> np.ndarray:
    """A harmonic note `(round(seconds * sr),)`: partials k^-slope, decaying as
    exp(-t k^decay_slope / decay) (no decay for `decay=None`), linear attack and release ramps."""
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    k = np.arange(1, max_partials + 1, dtype=np.float64)
    fk = k * f0 * np.sqrt(1 + inharm * k**2)
    k, fk = k[fk < 0.45 * sr], fk[fk < 0.45 * sr]
    if k.size == 0:
        return np.zeros(n)
    # Phase in cycles wrapped in float64, sine in float32: exact enough and several times faster.
    cycles = np.multiply.outer(fk, t)
    arg = np.subtract(cycles, np.floor(cycles), out=cycles).astype(np.float32)
    waves = np.sin(arg * np.float32(2 * np.pi), out=arg)
    if decay is not None:
        rates = (k**decay_slope / decay).astype(np.float32)
        waves *= np.exp(-t.astype(np.float32)[None] * rates[:, None])
    x = np.einsum("k,kn->n", (k**-slope).astype(np.float32), waves)  # BLAS gemv is slower here
    x *= np.minimum(1.0, t / attack) * np.clip((seconds - t) / release, 0.0, 1.0)
    return x.astype(np.float64)


def glide(
    f0: np.ndarray,
    sr: int,
    *,
    slope: float,
    max_partials: int,
    odd_only: bool = False,
    attack: float = 0.05,
    release: float = 0.1,
) -> np.ndarray:
    """A sustained harmonic note `(len(f0),)` whose pitch follows the per-sample `f0` (Hz, vibrato and
    glides): partials k^-slope (odd ones only for `odd_only`, a clarinet-like tone), each faded out
    as it nears 0.45 * sr, with linear attack and release ramps."""
    n = f0.size
    t = np.arange(n) / sr
    phase = np.cumsum(f0 / sr)
    step = 2 if odd_only else 1
    k = np.arange(1, max_partials + 1, step, dtype=np.float64)
    k = k[k * f0.max() < 0.45 * sr]
    if k.size == 0:
        return np.zeros(n)
    cycles = np.multiply.outer(k, phase)
    arg = np.subtract(cycles, np.floor(cycles), out=cycles).astype(np.float32)
    waves = np.sin(arg * np.float32(2 * np.pi), out=arg)
    x = np.einsum("k,kn->n", (k**-slope).astype(np.float32), waves).astype(np.float64)
    seconds = n / sr
    return x * np.minimum(1.0, t / attack) * np.clip((seconds - t) / release, 0.0, 1.0)


def peaking_sos(freq: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """One peaking-EQ biquad (RBJ cookbook) as a `(1, 6)` sos: `gain_db` at `freq` Hz (kept below
    0.45 * sr), bandwidth set by `q`."""
    w = 2 * np.pi * min(freq, 0.45 * sr) / sr
    a = 10 ** (gain_db / 40)
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None]
