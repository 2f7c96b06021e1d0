"""Structure metrics of a mapping matrix, relative L1 error, dead units, and seed statistics.

A mapping matrix `C` has shape `(nb_bins, nb_bins)`; `C[i, j]` is the weight of input bin j in output bin
i, so `y ≈ x @ C.T` for frames `x` of shape `(nb_frames, nb_bins)`. Every matrix metric is a pure
jax.numpy function of one matrix: jit it, or `jax.vmap` it over a `(K, nb_bins, nb_bins)` stack
(`structure_metrics` does the vmap for you). No metric emits NaN: a zero denominator (all-zero matrix,
all-zero row, silent input) gives 0.0, as documented per function.

"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..models import dense_layers

__all__ = [
    "diagonal_energy_ratio",
    "near_diagonal_energy",
    "weighted_diagonal_energy_ratio",
    "weighted_near_diagonal_energy",
    "mean_coupling_distance",
    "mean_coupling_distance_octaves",
    "bin_frequencies",
    "per_output_spread",
    "structure_metrics",
    "mean_input_energy",
    "relative_l1",
    "dead_unit_share",
    "quantiles",
    "band_mask",
    "voice_band",
    "functional_diagonality",
    "keep_share",
    "restricted_structure",
]

DEFAULT_K = 2
"""Default half-width (in bins) of the band that `near_diagonal_energy` counts as near the diagonal."""


# ---------------------------------------------------------------------------------------------------
# input checks and small helpers


def _as_float(a: ArrayLike) -> Array:
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        a = a.astype(jnp.float32)
    return a


def _square(C: ArrayLike, name: str = "C") -> Array:
    C = _as_float(C)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(
            f"{name} must be one square mapping matrix of shape (nb_bins, nb_bins), got shape {C.shape}; "
            "for a (K, nb_bins, nb_bins) stack use jax.vmap or structure_metrics"
        )
    return C


def _energy_vector(input_energy: ArrayLike, n: int) -> Array:
    e = _as_float(input_energy)
    if e.shape != (n,):
        raise ValueError(
            f"input_energy must have shape (nb_bins,) = ({n},), got {e.shape}; "
            "compute it with mean_input_energy(x) on frames x of shape (nb_frames, nb_bins)"
        )
    return e


def _check_k(k) -> None:
    if isinstance(k, Real) and k < 0:
        raise ValueError(f"k (half-width of the diagonal band, in bins) must be >= 0, got {k}")


def _safe_ratio(num: Array, den: Array) -> Array:
    """num / den, and 0.0 where den == 0 (no NaN, and no NaN gradient either)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _bin_distance(n: int) -> Array:
    """|i - j| for all (i, j), shape (n, n)."""
    idx = jnp.arange(n)
    return jnp.abs(idx[:, None] - idx[None, :])


def _diag_ratio(E: Array) -> Array:
    return _safe_ratio(jnp.trace(E), E.sum())


def _band_ratio(E: Array, k) -> Array:
    band = _bin_distance(E.shape[0]) <= k
    return _safe_ratio(jnp.where(band, E, 0.0).sum(), E.sum())


# ---------------------------------------------------------------------------------------------------
# energy near the diagonal


def diagonal_energy_ratio(C: Float[ArrayLike, "nb_bins nb_bins"]) -> Float[Array, ""]:
    """Share of the squared weights on the diagonal: Σ_i C_ii² / Σ_ij C_ij². 1 for a diagonal matrix
    (a pure per-bin gain, i.e. a mask), 1/N for all-equal weights. All-zero matrix -> 0.0."""
    C = _square(C)
    return _diag_ratio(C**2)


def near_diagonal_energy(
    C: Float[ArrayLike, "nb_bins nb_bins"], k: int = DEFAULT_K
) -> Float[Array, ""]:
    """Share of the squared weights within |i - j| <= k bins of the diagonal. All-zero matrix -> 0.0.
    `k` may be a Python int or a traced integer (jit/vmap over k works)."""
    _check_k(k)
    C = _square(C)
    return _band_ratio(C**2, k)


def weighted_diagonal_energy_ratio(
    C: Float[ArrayLike, "nb_bins nb_bins"], input_energy: Float[ArrayLike, " nb_bins"]
) -> Float[Array, ""]:
    """`diagonal_energy_ratio` with column j weighted by the input energy e_j (`mean_input_energy`):
    Σ_i C_ii² e_i / Σ_ij C_ij² e_j, the share of the energy carried on the data that stays in its bin.
    Couplings from bins where the input is silent then do not count. `input_energy` must be >= 0.
    Zero weighted total (zero matrix or silent input) -> 0.0."""
    C = _square(C)
    e = _energy_vector(input_energy, C.shape[0])
    return _diag_ratio(C**2 * e[None, :])


def weighted_near_diagonal_energy(
    C: Float[ArrayLike, "nb_bins nb_bins"],
    input_energy: Float[ArrayLike, " nb_bins"],
    k: int = DEFAULT_K,
) -> Float[Array, ""]:
    """`near_diagonal_energy` on the input-energy-weighted squared weights C_ij² e_j. Zero -> 0.0."""
    _check_k(k)
    C = _square(C)
    e = _energy_vector(input_energy, C.shape[0])
    return _band_ratio(C**2 * e[None, :], k)


# ---------------------------------------------------------------------------------------------------
# how far couplings reach


def mean_coupling_distance(C: Float[ArrayLike, "nb_bins nb_bins"]) -> Float[Array, ""]:
    """|C_ij|-weighted mean of |i - j|, in bins: Σ |C_ij| |i - j| / Σ |C_ij|. All-zero matrix -> 0.0."""
    C = _square(C)
    W = jnp.abs(C)
    return _safe_ratio((W * _bin_distance(C.shape[0])).sum(), W.sum())


def bin_frequencies(n_bins: int, *, sample_rate: float, n_fft: int) -> np.ndarray:
    """Centre frequencies (Hz) of the `n_bins` STFT bins, `(n_bins,)`, with the DC bin placed half a
    bin up (f_0 = f_1 / 2) so that log-frequency distances stay finite (a DC <-> bin-1 coupling counts
    as one octave)."""
    if not (isinstance(sample_rate, Real) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number (Hz), got {sample_rate!r}")
    if not (isinstance(n_fft, Integral) and n_fft > 0):
        raise ValueError(f"n_fft must be a positive int, got {n_fft!r}")
    if n_bins != n_fft // 2 + 1:
        raise ValueError(
            f"a matrix of {n_bins} bins does not match n_fft={n_fft} (which gives {n_fft // 2 + 1} "
            "bins); pass the n_fft of the STFT the matrix was fitted on"
        )
    f = np.arange(n_bins, dtype=np.float64) * (sample_rate / n_fft)
    f[0] = f[1] / 2 if n_bins > 1 else sample_rate / n_fft / 2
    return f


def mean_coupling_distance_octaves(
    C: Float[ArrayLike, "nb_bins nb_bins"], *, sample_rate: float, n_fft: int
) -> Float[Array, ""]:
    """|C_ij|-weighted mean of |log2(f_i / f_j)|, in octaves, f from `bin_frequencies` (DC at half a
    bin). `sample_rate` and `n_fft` must be concrete Python numbers (close over them to jit); the
    sample rate cancels in the ratio but is checked. All-zero matrix -> 0.0."""
    C = _square(C)
    logf = jnp.asarray(np.log2(bin_frequencies(C.shape[0], sample_rate=sample_rate, n_fft=n_fft)))
    W = jnp.abs(C)
    D = jnp.abs(logf[:, None] - logf[None, :]).astype(W.dtype)
    return _safe_ratio((W * D).sum(), W.sum())


def per_output_spread(C: Float[ArrayLike, "nb_bins nb_bins"]) -> Float[Array, " nb_bins"]:
    """Per output bin i, the |C_ij|-weighted standard deviation of the input bin j around its weighted
    mean, in bins, `(nb_bins,)`. 0 for a row with a single non-zero weight and for an all-zero row."""
    C = _square(C)
    W = jnp.abs(C)
    j = jnp.arange(C.shape[0], dtype=W.dtype)
    total = W.sum(axis=1)
    mu = _safe_ratio(W @ j, total)
    var = _safe_ratio((W * (j[None, :] - mu[:, None]) ** 2).sum(axis=1), total)
    return jnp.sqrt(jnp.maximum(var, 0.0))


# ---------------------------------------------------------------------------------------------------
# all of the above at once


def _metrics_one(C, input_energy, k, sample_rate, n_fft) -> dict[str, Array]:
    C = _square(C)
    out = {
        "diagonal_energy_ratio": diagonal_energy_ratio(C),
        "near_diagonal_energy": near_diagonal_energy(C, k),
        "mean_coupling_distance": mean_coupling_distance(C),
    }
    spread = per_output_spread(C)
    live = jnp.abs(C).sum(axis=1) > 0
    n_live = live.sum()
    out["spread_mean"] = _safe_ratio(
        jnp.where(live, spread, 0.0).sum(), n_live.astype(spread.dtype)
    )
    median = jnp.nanmedian(jnp.where(live, spread, jnp.nan))
    out["spread_median"] = jnp.where(n_live > 0, median, 0.0)
    if input_energy is not None:
        out["weighted_diagonal_energy_ratio"] = weighted_diagonal_energy_ratio(C, input_energy)
        out["weighted_near_diagonal_energy"] = weighted_near_diagonal_energy(C, input_energy, k)
    if sample_rate is not None:
        out["mean_coupling_distance_octaves"] = mean_coupling_distance_octaves(
            C, sample_rate=sample_rate, n_fft=n_fft
        )
    return out


def structure_metrics(
    C: Float[ArrayLike, "*K nb_bins nb_bins"],
    *,
    input_energy: Float[ArrayLike, "*K nb_bins"] | None = None,
    sample_rate: float | None = None,
    n_fft: int | None = None,
    k: int = DEFAULT_K,
) -> dict[str, Float[Array, "*K"]]:
    """Every structure metric of `C` as a dict of scalars (or of `(K,)` arrays for a `(K, N, N)` stack).

    Keys: diagonal_energy_ratio, near_diagonal_energy (band |i - j| <= k), mean_coupling_distance
    (bins), spread_mean and spread_median (of `per_output_spread` over output bins whose row is not
    all zero; 0.0 when every row is zero); with `input_energy` (`(N,)` shared, or `(K, N)` per matrix)
    also weighted_diagonal_energy_ratio and weighted_near_diagonal_energy; with `sample_rate` and
    `n_fft` also mean_coupling_distance_octaves.
    """
    _check_k(k)
    if (sample_rate is None) != (n_fft is None):
        raise ValueError(
            "pass both sample_rate and n_fft (for the octave distance) or neither, "
            f"got sample_rate={sample_rate!r}, n_fft={n_fft!r}"
        )
    C = _as_float(C)
    if C.ndim == 2:
        return _metrics_one(C, input_energy, k, sample_rate, n_fft)
    if C.ndim != 3:
        raise ValueError(
            f"C must be (nb_bins, nb_bins) or a (K, nb_bins, nb_bins) stack, got shape {C.shape}"
        )
    e_axis = None
    if input_energy is not None:
        input_energy = _as_float(input_energy)
        e_axis = 0 if input_energy.ndim == 2 else None
        if e_axis == 0 and input_energy.shape[0] != C.shape[0]:
            raise ValueError(
                f"input_energy of shape {input_energy.shape} does not match {C.shape[0]} matrices; "
                "pass (nb_bins,) shared by all or (K, nb_bins) one per matrix"
            )
    return jax.vmap(lambda c, e: _metrics_one(c, e, k, sample_rate, n_fft), in_axes=(0, e_axis))(
        C, input_energy
    )


# ---------------------------------------------------------------------------------------------------
# data-dependent quantities


def mean_input_energy(x: Float[ArrayLike, "*K nb_frames nb_bins"]) -> Float[Array, "*K nb_bins"]:
    """Mean input power spectrum: the mean over frames of x², `(nb_bins,)` (stacks keep leading axes)."""
    x = _as_float(x)
    if x.ndim < 2:
        raise ValueError(f"x must be frames of shape (nb_frames, nb_bins), got shape {x.shape}")
    return jnp.mean(x**2, axis=-2)


def relative_l1(
    y: Float[ArrayLike, "..."], y_hat: Float[ArrayLike, "..."], *, axis: int | tuple[int, ...] | None = None
) -> Float[Array, "..."]:
    """Σ|y - ŷ| / Σ|y| over `axis` (None: every element; -1 on frames: one value per frame).

    Where Σ|y| = 0 the ratio is undefined; it is reported as inf if ŷ is non-zero there and 0.0 if ŷ
    is zero too (a perfect fit of silence), never NaN.
    """
    y, y_hat = _as_float(y), _as_float(y_hat)
    if y.shape != y_hat.shape:
        raise ValueError(f"y and y_hat must have the same shape, got {y.shape} and {y_hat.shape}")
    num = jnp.abs(y - y_hat).sum(axis=axis)
    den = jnp.abs(y).sum(axis=axis)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.where(num > 0, jnp.inf, 0.0))


def dead_unit_share(
    model, params: dict, x: Float[ArrayLike, "nb_frames nb_bins"]
) -> dict[str, Array]:
    """Share of ReLU units that output exactly zero on every frame of x, per dense layer and overall.

    The forward pass is recomputed as a plain ReLU stack, h = relu(h @ kernel + bias), over
    `ncajax.models.dense_layers(params)`: that is the `dae` and `dae_deep` forward pass and the mask
    network of `dae_sf` (whose input is x itself). Keys: "layer_0" ... "layer_{L-1}" (every dense layer
    in forward order, the last included), "output" (= the last layer), "overall" (dead units over all
    units of all layers). Params with a leading seed axis (kernels `(S, in, out)`) give `(S,)` arrays.
    """
    layers = dense_layers(params)
    x = _as_float(x)
    n_in = layers[0][0].shape[-2]
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x must be frames of shape (nb_frames, {n_in}), got shape {x.shape}")
    n_bins = getattr(model, "n_bins", n_in)
    if n_bins != n_in:
        raise ValueError(
            f"params have {n_in} inputs but the model expects {n_bins} bins: "
            "pass the params that belong to this model"
        )
    kernel_ndim = layers[0][0].ndim
    if kernel_ndim not in (2, 3) or any(kern.ndim != kernel_ndim for kern, _ in layers):
        raise ValueError(
            "kernels must all be (in, out), or all (n_seeds, in, out) for stacked seeds; "
            f"got shapes {[kern.shape for kern, _ in layers]}"
        )

    def dead_counts(layers):
        h, counts = x, []
        for kernel, bias in layers:
            h = jax.nn.relu(h @ kernel + bias)
            counts.append(jnp.all(h == 0, axis=0).sum())
        return counts

    counts = dead_counts(layers) if kernel_ndim == 2 else jax.vmap(dead_counts)(layers)
    widths = [kern.shape[-1] for kern, _ in layers]
    out = {f"layer_{i}": c / w for i, (c, w) in enumerate(zip(counts, widths, strict=True))}
    out["output"] = out[f"layer_{len(layers) - 1}"]
    out["overall"] = sum(counts) / sum(widths)
    return out


# ---------------------------------------------------------------------------------------------------
# statistics over seeds and frames (NumPy; not jitted)


def quantiles(
    values: Float[ArrayLike, "n ..."],
    qs: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    *,
    axis: int = 0,
) -> Float[Array, "nq ..."]:
    """Quantiles `qs` of `values` over `axis` (e.g. the frames of per-frame errors), `(len(qs), ...)`
    in the order of `qs` (linear interpolation, as numpy's default). `qs` must be concrete numbers."""
    qs_arr = np.asarray(qs, dtype=np.float64)
    if qs_arr.ndim != 1 or qs_arr.size == 0 or np.any((qs_arr < 0) | (qs_arr > 1)):
        raise ValueError(f"qs must be a non-empty sequence of numbers in [0, 1], got {qs!r}")
    v = _as_float(values)
    if v.ndim == 0 or v.shape[axis] == 0:
        raise ValueError(f"values need a non-empty axis {axis}, got shape {v.shape}")
    return jnp.quantile(v, jnp.asarray(qs_arr, dtype=v.dtype), axis=axis)


# ---------------------------------------------------------------------------------------------------
# functional diagonality: how much of a mapping's held-out accuracy its diagonal (or band) keeps


def band_mask(freqs: ArrayLike, band_hz: float) -> np.ndarray:
    """Boolean `(N, N)`: True where |f_i - f_j| <= band_hz (frequencies in Hz, `bin_frequencies`).
    The diagonal is always inside; band_hz = 0 gives the diagonal alone."""
    f = np.asarray(freqs, np.float64)
    if f.ndim != 1:
        raise ValueError(f"freqs must be 1-D bin frequencies (Hz), got shape {f.shape}")
    if not (isinstance(band_hz, Real) and band_hz >= 0):
        raise ValueError(f"band_hz (half-width of the band, in Hz) must be >= 0, got {band_hz!r}")
    return np.abs(f[:, None] - f[None, :]) <= band_hz + 1e-9 * max(1.0, float(band_hz))


def voice_band(freqs: ArrayLike, *, sample_rate: float, lo_hz: float = 80.0, hi_hz: float = 8000.0
               ) -> np.ndarray:
    """Boolean `(N,)`: bins whose frequency lies in [lo_hz, min(Nyquist, hi_hz)] (the singing voice's
    band, 80 Hz to 8 kHz by default)."""
    f = np.asarray(freqs, np.float64)
    top = min(sample_rate / 2.0, hi_hz)
    return (f >= lo_hz) & (f <= top)


def keep_share(err_zero, err_part, err_full) -> np.ndarray:
    """(err_zero - err_part) / (err_zero - err_full): the share of the full mapping's advantage over
    predicting silence that the part keeps (1: all of it, 0: none, < 0: worse than silence). NaN where
    the full mapping has no advantage over silence (err_full >= err_zero): nothing to keep."""
    z, p, f = (np.asarray(v, np.float64) for v in (err_zero, err_part, err_full))
    den = z - f
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (z - p) / np.where(den > 0, den, 1.0), np.nan)


def _rel_l1_np(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """Relative L1 over the last two axes (frames, bins), float64; 0/0 -> 0, a/0 -> inf."""
    num = np.abs(y - y_hat).sum(axis=(-2, -1))
    den = np.abs(y).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))


def functional_diagonality(
    C: Float[ArrayLike, "*K nb_bins nb_bins"],
    x: Float[ArrayLike, "nb_frames nb_bins"],
    y: Float[ArrayLike, "*K nb_frames nb_bins"],
    freqs: ArrayLike,
    band_hz: float,
) -> dict[str, np.ndarray]:
    """Held-out relative L1 error of C, of its diagonal part diag(C) and of its band part (entries
    with |f_i - f_j| <= band_hz) against the teacher outputs y, and of the zero predictor; with the
    predictions clipped at 0 (the study's convention) and raw (`*_raw`). `keep_diag` / `keep_band`
    (`keep_share`, clipped errors) say how much of C's advantage over silence the part keeps.

    NumPy (float64 errors), not jitted. C `(K, N, N)` or `(N, N)`, y `(K, F, N)` or `(F, N)`; every
    value has shape `(K,)` (or is a scalar)."""
    C = np.asarray(C, np.float64)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if C.shape[-1] != C.shape[-2] or x.shape[-1] != C.shape[-1] or y.shape[-2:] != x.shape:
        raise ValueError(f"C {C.shape}, x {x.shape} and y {y.shape} do not match: C (K, N, N), "
                         "x (F, N), y (K, F, N)")
    mask = band_mask(freqs, band_hz)
    if mask.shape != C.shape[-2:]:
        raise ValueError(f"freqs has {mask.shape[0]} bins, C has {C.shape[-1]}")
    eye = np.eye(C.shape[-1], dtype=bool)
    parts = {"full": C, "diag": np.where(eye, C, 0.0), "band": np.where(mask, C, 0.0)}
    out: dict[str, np.ndarray] = {}
    for name, M in parts.items():
        y_hat = x @ np.swapaxes(M, -1, -2)
        out[f"err_{name}"] = _rel_l1_np(y, np.maximum(y_hat, 0.0))
        out[f"err_{name}_raw"] = _rel_l1_np(y, y_hat)
    out["err_zero"] = out["err_zero_raw"] = _rel_l1_np(y, np.zeros_like(y))
    out["keep_diag"] = keep_share(out["err_zero"], out["err_diag"], out["err_full"])
    out["keep_band"] = keep_share(out["err_zero"], out["err_band"], out["err_full"])
    return out


def restricted_structure(
    C: Float[ArrayLike, "nb_bins nb_bins"],
    *,
    live_rows: ArrayLike,
    band: ArrayLike,
    freqs: ArrayLike,
    band_hz: float,
    energies: dict[str, ArrayLike],
) -> dict[str, float]:
    """Diagonal structure of C counted only on live output rows inside the voice band, and on input
    columns inside the voice band.

    live_rows, band: boolean `(N,)` (rows whose teacher output is nonzero on some fit frame; the voice
    band, `voice_band`). For each energy weighting `name -> e (N,)` (e.g. the mixture's and the
    vocals' mean power): `live_voice_diagonal_energy_ratio_<name>` = Σ_i C_ii² e_i / Σ_ij C_ij² e_j and
    `live_voice_band_energy_<name>` (|f_i - f_j| <= band_hz), over the kept rows and columns. 0.0 when
    nothing is kept or the weighted total is zero."""
    C = np.asarray(C, np.float64)
    rows = np.asarray(live_rows, bool) & np.asarray(band, bool)
    cols = np.asarray(band, bool)
    keep = rows[:, None] & cols[None, :]
    near = band_mask(freqs, band_hz)
    eye = np.eye(C.shape[0], dtype=bool)
    out = {}
    for name, e in energies.items():
        E = np.where(keep, C**2 * np.asarray(e, np.float64)[None, :], 0.0)
        total = E.sum()
        out[f"live_voice_diagonal_energy_ratio_{name}"] = float(E[eye].sum() / total) if total > 0 else 0.0
        out[f"live_voice_band_energy_{name}"] = float(E[near].sum() / total) if total > 0 else 0.0
    return out
