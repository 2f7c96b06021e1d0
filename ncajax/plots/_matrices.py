"""Mapping-matrix figures: every model's NCA matrix (`mapping_matrices`) and every estimator's
(`estimator_matrices`), drawn by `draw_matrix_grid` with one dB colour scale per figure."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..config import (
    JACOBIAN,
    LSTSQ,
    NCA_AUTHORS,
    NCA_CONVERGED,
    NCA_OUTPUT_BIAS,
    NCA_UNIFORM,
    STUDENT_CONVERGED,
)
from . import _base as base
from ._base import (
    CMAP,
    PART_KEYS,
    ROW_QUANTILE,
    SETTING_LABELS,
    bin_edges_extent,
    frequencies_of,
    log_magnitude_db,
    order_models,
    read_npz,
    setting_label,
    shared_db_limits,
)


def _block_max(a: np.ndarray, max_pixels: int) -> np.ndarray:
    """Max-pool a (n, n) image to at most max_pixels per side (a thin diagonal stays visible)."""
    f = math.ceil(a.shape[0] / max_pixels)
    if f <= 1:
        return a
    n = a.shape[0] // f * f
    return a[:n, :n].reshape(n // f, f, n // f, f).max(axis=(1, 3))


def _zoom_bins(freqs: np.ndarray, zoom_hz: float | None) -> tuple[int, float, float]:
    """How many bins from DC to show, and the (low, high) edges in Hz of what is shown."""
    lo, hi = bin_edges_extent(freqs)
    if zoom_hz is None:
        return freqs.size, lo, hi
    df = (hi - lo) / freqs.size
    n_keep = max(2, min(freqs.size, int(math.floor(zoom_hz / df + 0.5)) + 1))
    return n_keep, lo, lo + n_keep * df


def draw_matrix_grid(
    matrices: Mapping[tuple[str, str], Float[ArrayLike, "nb_bins nb_bins"] | None],
    frequencies: Float[ArrayLike, " nb_bins"],
    *,
    rows: Sequence[str],
    cols: Sequence[str],
    row_labels: Mapping[str, str] | None = None,
    col_labels: Mapping[str, str] | None = None,
    zoom_hz: float | Mapping[str, float | None] | None = None,
    dynamic_range_db: float = 60.0,
    row_quantile: float = ROW_QUANTILE,
    limits: tuple[float, float] | None = None,
    missing_labels: Mapping[str, str] | None = None,
    max_pixels: int = 512,
    title: str | None = None,
) -> Figure:
    """A rows x cols grid of mapping matrices `matrices[(row, col)]` `(nb_bins, nb_bins)` in dB with
    ONE colour scale over all panels: `limits` (vmin, vmax) if given, else `shared_db_limits` of
    what is shown (`dynamic_range_db`, `row_quantile`).

    `zoom_hz`: show input and output frequencies from 0 up to it, for every row (a number) or per
    row (a mapping row -> Hz or None). A missing (None or absent) panel is left blank with a note
    (`missing_labels[col]`, default "not available").
    Matrices larger than `max_pixels` are max-pooled for display (a thin diagonal stays visible and
    the PDF stays small).
    """
    freqs = np.asarray(frequencies, dtype=np.float64)
    present = _check_matrices(matrices, freqs)
    zooms = {r: (zoom_hz.get(r) if isinstance(zoom_hz, Mapping) else zoom_hz) for r in rows}
    shown = {r: _zoom_bins(freqs, zooms[r]) for r in rows}
    if limits is None:
        limits = shared_db_limits(
            [m[: shown[r][0], : shown[r][0]] for (r, c), m in present.items() if r in shown],
            dynamic_range_db=dynamic_range_db,
            row_quantile=row_quantile,
        )
    row_labels, col_labels = row_labels or {}, col_labels or {}
    fig = Figure(
        figsize=(3.0 * len(cols) + 1.4, 2.9 * len(rows) + (0.5 if title else 0.2)),
        layout="constrained",
    )
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    image = None
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            ax = axes[r, c]
            m = present.get((row, col))
            if r == 0:
                ax.set_title(col_labels.get(col, col), fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{row_labels.get(row, row)}\noutput frequency (Hz)")
            if m is None:
                _blank_panel(ax, (missing_labels or {}).get(col, "not available"))
                continue
            image = _matrix_panel(ax, m, shown[row], limits, max_pixels)
            if r == len(rows) - 1 or zooms[row] != zooms[rows[min(r + 1, len(rows) - 1)]]:
                ax.set_xlabel("input frequency (Hz)")
    fig.colorbar(image, ax=axes, shrink=0.85, extend="max", label="20 log10 |C| (dB)")
    if title:
        fig.suptitle(title)
    return fig


def _check_matrices(matrices: Mapping, freqs: np.ndarray) -> dict:
    """The panels present, as arrays, each checked to be (nb_bins, nb_bins) for `freqs`."""
    present = {k: np.asarray(m) for k, m in matrices.items() if m is not None}
    if not present:
        raise ValueError("no matrices to draw: every panel is missing")
    for m in present.values():
        if m.shape != (freqs.size, freqs.size):
            raise ValueError(
                f"matrix of shape {m.shape} does not match the {freqs.size} frequencies given; "
                "pass the frequencies of the STFT the matrices were fitted on"
            )
    return present


def _blank_panel(ax, note: str) -> None:
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _matrix_panel(ax, m: np.ndarray, shown: tuple[int, float, float], limits, max_pixels: int):
    """One matrix in dB, 0..shown[0] bins spanning shown[1]..shown[2] Hz; returns the image."""
    n_keep, lo, hi = shown
    db = _block_max(log_magnitude_db(m[:n_keep, :n_keep]), max_pixels)
    image = ax.imshow(db, origin="lower", extent=(lo, hi, lo, hi), vmin=limits[0], vmax=limits[1],
                      cmap=CMAP, interpolation="nearest", aspect="equal")
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    return image


@dataclasses.dataclass(frozen=True)
class MatrixView:
    """What a matrix figure shows: the fit of training seed index `seed`, the zoom band 0..`zoom_hz`
    (Hz) and the top `dynamic_range_db` dB of the shared colour scale."""

    seed: int = 0
    zoom_hz: float = 1000.0
    dynamic_range_db: float = 60.0


def _pooled_matrix(mappings_dir: Path, model: str, setting: str, seed: int, key: str = "matrix"):
    arrays = read_npz(mappings_dir / "matrices" / f"{model}__{setting}.npz")
    if arrays is None or key not in arrays or arrays[key].shape[0] <= seed:
        return None
    return arrays[key][seed]


def _mappings_dir_and_models(run_dir: str | Path) -> tuple[Path, list[str]]:
    mdir = Path(run_dir) / "mappings"
    return mdir, order_models(p.name.split("__")[0] for p in (mdir / "matrices").glob("*__*.npz"))


def mapping_matrices(
    run_dir: str | Path, out_dir: str | Path, *,
    settings: Sequence[str] = (NCA_AUTHORS, NCA_CONVERGED, NCA_OUTPUT_BIAS, NCA_UNIFORM),
    view: MatrixView = MatrixView(),
) -> list[Path]:
    """The NCA mapping matrix of every model side by side, full band (top row) and 0..zoom_hz
    (bottom row): one figure `mapping_matrices_<setting>` per setting, one dB colour scale for all
    its panels."""
    mdir, models = _mappings_dir_and_models(run_dir)
    seed, zoom_hz, dynamic_range_db = view.seed, view.zoom_hz, view.dynamic_range_db
    written: list[Path] = []
    for setting in settings:
        mats = {m: _pooled_matrix(mdir, m, setting, seed) for m in models}
        if all(v is None for v in mats.values()):
            continue
        freqs = frequencies_of(mdir, next(v for v in mats.values() if v is not None).shape[0])
        # one scale for both rows: the zoom row shows the same dB values as the full band
        limits = shared_db_limits(
            list(mats.values()), dynamic_range_db=dynamic_range_db, row_quantile=ROW_QUANTILE
        )
        band = f"0–{zoom_hz:g} Hz"
        fig = draw_matrix_grid(
            {(row, m): v for m, v in mats.items() for row in ("full band", band)},
            freqs,
            rows=["full band", band],
            cols=models,
            zoom_hz={band: zoom_hz},
            limits=limits,
        )
        fig.suptitle(
            f"{setting_label(setting)} mapping matrix C (seed {seed}), "
            f"top {dynamic_range_db:g} dB shared across models"
        )
        written += base.save_figure(fig, out_dir, f"mapping_matrices_{setting}")
    return written


def estimator_matrices(
    run_dir: str | Path, out_dir: str | Path, *,
    settings: Sequence[str] = (NCA_CONVERGED, STUDENT_CONVERGED, LSTSQ, JACOBIAN),
    view: MatrixView = MatrixView(),
) -> list[Path]:
    """Models (rows) x estimators (columns), plus dae_sf's two Jacobian parts (diag(m) and
    diag(x) dm/dx), one dB scale for the whole grid: `estimator_matrices` (full band) and
    `estimator_matrices_zoom` (0..zoom_hz)."""
    mdir, models = _mappings_dir_and_models(run_dir)
    seed, zoom_hz, dynamic_range_db = view.seed, view.zoom_hz, view.dynamic_range_db
    cols = list(settings) + list(PART_KEYS)
    mats: dict[tuple[str, str], np.ndarray | None] = {}
    for m in models:
        for s in settings:
            mats[(m, s)] = _pooled_matrix(mdir, m, s, seed)
        for col, key in PART_KEYS.items():
            mats[(m, col)] = _pooled_matrix(mdir, m, JACOBIAN, seed, key=key)
    cols = [c for c in cols if any(mats[(m, c)] is not None for m in models)]
    if not cols:
        return []
    freqs = frequencies_of(mdir, next(v for v in mats.values() if v is not None).shape[0])
    limits = shared_db_limits(
        list(mats.values()), dynamic_range_db=dynamic_range_db, row_quantile=ROW_QUANTILE
    )
    written: list[Path] = []
    for zoom, name in ((None, "estimator_matrices"), (zoom_hz, "estimator_matrices_zoom")):
        band = "full band" if zoom is None else f"0–{zoom:g} Hz"
        fig = draw_matrix_grid(
            mats,
            freqs,
            rows=models,
            cols=cols,
            col_labels=SETTING_LABELS,
            zoom_hz=zoom,
            limits=limits,
            missing_labels=dict.fromkeys(PART_KEYS, "skip-filter models only"),
            title=f"Mapping matrices of every estimator (seed {seed}, {band}), "
            f"top {dynamic_range_db:g} dB shared by all panels",
        )
        written += base.save_figure(fig, out_dir, name)
    return written


