"""Are a separator's output units alive, and how far is it from scale equivariance?

- `dead_output_share(outputs)`: share of output units (columns) that are zero on every frame.
- `live_output_share_by_octave(outputs, freqs)`: the share of output units that are nonzero on some
  frame, per octave band of their bin frequency.
- `homogeneity_error(f, x, alpha)`: ||f(alpha x) - alpha f(x)|| / ||alpha f(x)|| (Frobenius norms over
  all frames), 0 for a positively homogeneous map such as a bias-free ReLU network.

"Output units" are the last layer's units: for `dae` / `dae_deep` the estimate itself, for `dae_sf` the
mask m(x) (pass `model.apply(params, x, method="mask")`), since x * m(x) is zero wherever x is.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np


def live_units(outputs) -> np.ndarray:
    """Boolean `(nb_units,)`: unit i is nonzero on at least one frame of `outputs` `(nb_frames, nb_units)`."""
    out = np.asarray(outputs)
    if out.ndim != 2:
        raise ValueError(f"outputs must be (nb_frames, nb_units), got shape {out.shape}")
    return np.any(out != 0, axis=0)


def dead_output_share(outputs) -> float:
    """Share of output units that are zero on every frame."""
    return float(1.0 - np.mean(live_units(outputs)))


def octave_bands(freqs) -> list[tuple[float, float, np.ndarray]]:
    """Bins grouped into octave bands: `(lo_hz, hi_hz, bin indices)` in increasing frequency.

    The 0 Hz bin (if any) is its own band (0, 0); the others fall in [f1 * 2^k, f1 * 2^(k+1)), f1 the
    lowest positive bin frequency.
    """
    f = np.asarray(freqs, np.float64)
    if f.ndim != 1 or np.any(f < 0) or not np.all(np.isfinite(f)):
        raise ValueError("freqs must be a 1-D array of non-negative finite frequencies (Hz)")
    bands = []
    zero = np.flatnonzero(f == 0)
    if zero.size:
        bands.append((0.0, 0.0, zero))
    pos = f > 0
    if np.any(pos):
        f1 = float(np.min(f[pos]))
        k = np.full(f.shape, -1, np.int64)
        # a small tolerance so that exact powers of two land in the band they open
        k[pos] = np.floor(np.log2(f[pos] / f1) + 1e-9).astype(np.int64)
        for band in range(int(k.max()) + 1):
            idx = np.flatnonzero(k == band)
            if idx.size:
                bands.append((f1 * 2.0**band, f1 * 2.0 ** (band + 1), idx))
    return bands


def live_output_share_by_octave(outputs, freqs) -> list[dict]:
    """Per octave band (`octave_bands`): `{"lo_hz", "hi_hz", "n_units", "live_share"}`, the share of the
    band's output units that are nonzero on some frame of `outputs` `(nb_frames, nb_bins)`."""
    live = live_units(outputs)
    if live.shape[0] != np.asarray(freqs).shape[0]:
        raise ValueError(f"outputs have {live.shape[0]} units but freqs has {np.asarray(freqs).shape[0]}")
    return [
        {"lo_hz": lo, "hi_hz": hi, "n_units": int(idx.size), "live_share": float(np.mean(live[idx]))}
        for lo, hi, idx in octave_bands(freqs)
    ]


def homogeneity_error(f: Callable, x, alpha: float) -> float:
    """||f(alpha x) - alpha f(x)|| / ||alpha f(x)|| over all frames of x (float64 norms); `f` maps
    `(nb_frames, nb_bins)` to an array of the same leading shape. inf when f(x) is all zero."""
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    x = np.asarray(x, np.float32)
    ref = alpha * np.asarray(f(x), np.float64)
    scaled = np.asarray(f(np.float32(alpha) * x), np.float64)
    den = float(np.linalg.norm(ref))
    if den == 0:
        return float("inf")
    return float(np.linalg.norm(scaled - ref) / den)


HOMOGENEITY_ALPHAS = (0.25, 4.0)


def output_units(model, params, x) -> np.ndarray:
    """The last layer's units on frames x `(nb_frames, nb_bins)` for ONE seed's params: the estimate
    for `dae` / `dae_deep`, the mask m(x) for `dae_sf` (any module with a `mask` method)."""
    x = jnp.asarray(x, jnp.float32)
    if hasattr(model, "mask"):
        return np.asarray(model.apply(params, x, method="mask"))
    return np.asarray(model.apply(params, x))


def unit_facts(model, params, x, freqs, *, alphas=HOMOGENEITY_ALPHAS) -> dict:
    """Liveness and homogeneity of ONE seed of a separator on held-out frames x `(nb_frames, nb_bins)`:
    {"dead_share", "live_by_octave" (`live_output_share_by_octave`), "homogeneity": {alpha: error}}.
    Homogeneity is that of the estimate x ↦ f(x) (for `dae_sf`, x ⊙ m(x))."""
    units = output_units(model, params, x)

    def estimate(frames):
        return np.asarray(model.apply(params, jnp.asarray(frames, jnp.float32)))

    return {
        "dead_share": dead_output_share(units),
        "live_by_octave": live_output_share_by_octave(units, freqs),
        "homogeneity": {f"{a:g}": homogeneity_error(estimate, x, a) for a in alphas},
    }
