"""The spectrogram figure: one test excerpt's mixture, true vocals, every model's estimate and the
dae_sf mask, drawn from the arrays the evaluation stage saved (`<run>/evaluation/spectrograms.npz`,
written by `ncajax.study.evaluate_all`); nothing here runs a model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float
from matplotlib.figure import Figure

from ..runs import SPECTROGRAMS_FILE
from . import _base as base
from ._base import CMAP, bin_edges_extent, log_magnitude_db, read_npz, shared_db_limits


def _checked_panels(panels, mask, freqs: np.ndarray, frame_seconds: float) -> dict[str, np.ndarray]:
    if not panels:
        raise ValueError("no spectrograms to draw")
    arrays = {k: np.asarray(v, np.float64) for k, v in panels.items()}
    shapes = {v.shape for v in arrays.values()} | ({np.shape(mask)} if mask is not None else set())
    if len(shapes) != 1 or next(iter(shapes))[1:] != (freqs.size,):
        raise ValueError(
            f"every panel must be (nb_frames, {freqs.size}) and all alike, "
            f"got shapes {sorted(shapes)}"
        )
    if frame_seconds <= 0:
        raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")
    return arrays


def _draw_mask(fig: Figure, ax, mask, extent, mask_label: str) -> None:
    m = np.asarray(mask, np.float64)
    top = max(1.0, float(np.quantile(m, 0.99)))
    mim = ax.imshow(m.T, origin="lower", aspect="auto", extent=extent, vmin=0.0, vmax=top,
                    cmap="viridis", interpolation="nearest")
    ax.set_title(mask_label, fontsize=10)
    fig.colorbar(mim, ax=ax, shrink=0.9, label="gain")


def draw_spectrograms(
    panels: Mapping[str, Float[ArrayLike, "nb_frames nb_bins"]],
    *,
    frame_seconds: float,
    frequencies: Float[ArrayLike, " nb_bins"],
    mask: Float[ArrayLike, "nb_frames nb_bins"] | None = None,
    mask_label: str = "mask",
    dynamic_range_db: float = 80.0,
    title: str | None = None,
) -> Figure:
    """Magnitude spectrograms `(nb_frames, nb_bins)` in dB with ONE colour scale over all panels
    (the top `dynamic_range_db` below the largest magnitude), and an optional mask on a linear
    scale. `frame_seconds`: hop between frames in seconds; `frequencies`: bin centres (Hz)
    `(nb_bins,)`."""
    freqs = np.asarray(frequencies, dtype=np.float64)
    arrays = _checked_panels(panels, mask, freqs, frame_seconds)
    n_frames = next(iter(arrays.values())).shape[0]
    lo, hi = bin_edges_extent(freqs)
    extent = (0.0, n_frames * frame_seconds, lo, hi)
    vmin, vmax = shared_db_limits(list(arrays.values()), dynamic_range_db=dynamic_range_db)
    n = len(arrays) + (mask is not None)
    ncols = 2 if n > 2 else n
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols + 1.0, 2.6 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    image = None
    for ax, (name, mag) in zip(axes, arrays.items(), strict=False):
        image = ax.imshow(log_magnitude_db(mag).T, origin="lower", aspect="auto", extent=extent,
                          vmin=vmin, vmax=vmax, cmap=CMAP, interpolation="nearest")
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=axes.tolist(), location="bottom", shrink=0.5, aspect=40,
                 label="magnitude (dB), one scale for all magnitude panels")
    if mask is not None:
        _draw_mask(fig, axes[len(arrays)], mask, extent, mask_label)
    for ax in axes[n:]:
        ax.set_axis_off()
    for i, ax in enumerate(axes[:n]):
        if i % ncols == 0:
            ax.set_ylabel("frequency (Hz)")
        if i >= n - ncols:
            ax.set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return fig


def spectrogram_panels(run_dir: str | Path) -> dict | None:
    """The spectrogram figure's arrays as the evaluation stage saved them: mixture, true vocals and
    every model's estimate (seed index 0) of one test excerpt, and dae_sf's mask, each
    `(nb_frames, nb_bins)`. Returns {"panels", "mask", "frame_seconds", "frequencies", "track"}, or
    None when `<run>/evaluation/spectrograms.npz` does not exist."""
    saved = read_npz(Path(run_dir) / "evaluation" / SPECTROGRAMS_FILE)
    if saved is None:
        return None
    return {
        "panels": dict(zip(saved["panel_names"].tolist(), saved["panels"], strict=True)),
        "mask": saved.get("mask"),
        "frame_seconds": float(saved["frame_seconds"]),
        "frequencies": saved["frequencies"],
        "track": str(saved["track"]),
    }


def spectrograms(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Figure `spectrograms`: one test track's mixture, true vocals, every model's estimate and the
    dae_sf mask (see `spectrogram_panels`)."""
    got = spectrogram_panels(run_dir)
    if got is None:
        return []
    fig = draw_spectrograms(
        got["panels"],
        frame_seconds=got["frame_seconds"],
        frequencies=got["frequencies"],
        mask=got["mask"],
        mask_label="dae_sf mask m(x)",
        title=f"Test track {got['track']}: magnitudes (shared dB scale)",
    )
    return base.save_figure(fig, out_dir, "spectrograms")
