"""Figures of the study, drawn from the saved results of a study run directory alone.

Nothing here trains or fits: every figure reads `<run>/train/<model>/`, `<run>/mappings/` and
`<run>/evaluation/` (see `experiments/reproduce.py`). The one exception is the spectrogram figure,
which restores the trained checkpoints to run them on one test track (no training, no refitting).

Every figure is saved as `<name>.png` and `<name>.pdf` by its function, which returns the written
paths, or `[]` when its inputs do not exist. `make_all` draws every figure it can. Figures use the
object-oriented Matplotlib API (`matplotlib.figure.Figure`, the Agg canvas), never pyplot, so
nothing global changes and no figure outlives its save.

Conventions: mapping matrices `C[i, j]` (output bin i, input bin j) are drawn with the input
frequency on x and the output frequency on y, origin lower, in dB (`log_magnitude_db`) with one
colour scale per figure (`shared_db_limits`), so the panels of the three models are comparable.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import ArrayLike, Float
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import analysis, runs, stats, verdict
from .config import MODEL_NAMES

__all__ = [
    "MODEL_COLOURS",
    "log_magnitude_db",
    "shared_db_limits",
    "bin_edges_extent",
    "save_figure",
    "load_mapping_records",
    "draw_matrix_grid",
    "draw_spectrograms",
    "spectrogram_panels",
    "mapping_matrices",
    "estimator_matrices",
    "structure_metrics",
    "loss_curves",
    "spectrograms",
    "linearity",
    "separation_quality",
    "direction_intervals",
    "heldout_error",
    "make_all",
]

MODEL_COLOURS = {"dae": "#1f77b4", "dae_deep": "#ff7f0e", "dae_sf": "#2ca02c"}
REFERENCE_COLOURS = {"mixture": "#7f7f7f", "oracle_irm": "#000000"}
TINY = 1e-12
"""Added to |C| before the logarithm, so exact zeros map to -240 dB instead of -inf."""
CMAP = "magma"
DPI = 150
"""Resolution of the PNG files."""
ROW_QUANTILE = 0.95
"""Matrix colour scales top out at this quantile of the per-output-bin maxima (see
`shared_db_limits`)."""

SETTING_ORDER = (
    "nca_authors",
    "nca_converged",
    "nca_output_bias",
    "nca_uniform",
    "student_authors",
    "student_converged",
    "lstsq",
    "jacobian",
)
SETTING_LABELS = {
    "nca_authors": "NCA (authors)",
    "nca_converged": "NCA (converged)",
    "nca_output_bias": "NCA (output-unit bias)",
    "nca_uniform": "NCA (uniform init)",
    "per_bin_gain": "per-bin gain",
    "zero": "zero",
    "student_authors": "student (authors)",
    "student_converged": "student (converged)",
    "lstsq": "least squares",
    "jacobian": "mean Jacobian",
    "jacobian:mask": "Jac. part diag(m)",
    "jacobian:mask_jacobian": "Jac. part diag(x) dm/dx",
}
PART_KEYS = {"jacobian:mask": "part_mask", "jacobian:mask_jacobian": "part_mask_jacobian"}


def _label(setting: str) -> str:
    return SETTING_LABELS.get(setting, setting)


# --------------------------------------------------------------------------------------------------
# colour scales and saving


def log_magnitude_db(C: Float[ArrayLike, "..."], *, tiny: float = TINY) -> np.ndarray:
    """20 log10(|C| + tiny), elementwise, as float64 NumPy (any shape)."""
    if tiny <= 0:
        raise ValueError(f"tiny must be positive (it keeps log10 finite at zero), got {tiny}")
    return 20.0 * np.log10(np.abs(np.asarray(C, dtype=np.float64)) + tiny)


def shared_db_limits(
    arrays: Sequence[Float[ArrayLike, "*rows cols"]],
    *,
    dynamic_range_db: float = 60.0,
    row_quantile: float = 1.0,
    tiny: float = TINY,
) -> tuple[float, float]:
    """One colour scale (vmin, vmax) in dB for several panels, vmin = vmax - dynamic_range_db.

    vmax = 20 log10 of the `row_quantile` quantile of the largest |a| of every row (last axis) of
    every array, pooled: 1.0 (default) is the largest magnitude of all. A lower quantile (e.g.
    0.95) keeps a few outlier rows (such as weights on bins where the input is silent, which the
    data do not constrain) from darkening every panel; they are then drawn saturated."""
    if dynamic_range_db <= 0:
        raise ValueError(f"dynamic_range_db must be positive, got {dynamic_range_db}")
    if not 0.0 < row_quantile <= 1.0:
        raise ValueError(f"row_quantile must be in (0, 1], got {row_quantile}")
    arrays = [np.asarray(a) for a in arrays if a is not None and np.size(a)]
    if not arrays:
        raise ValueError("no non-empty arrays to take a colour scale from")
    row_max = np.concatenate(
        [np.abs(a).reshape(-1, np.shape(a)[-1] if a.ndim else 1).max(axis=1) for a in arrays]
    )
    top = 20.0 * math.log10(float(np.quantile(row_max, row_quantile)) + tiny)
    return top - dynamic_range_db, top


def bin_edges_extent(frequencies: Float[ArrayLike, " nb_bins"]) -> tuple[float, float]:
    """(low, high) edges in Hz of the bins of an STFT whose centres are `frequencies` `(nb_bins,)`:
    bin k spans k·df ± df/2. The DC entry is ignored (`analysis.bin_frequencies` moves it up)."""
    f = np.asarray(frequencies, dtype=np.float64)
    if f.ndim != 1 or f.size < 2:
        raise ValueError(f"frequencies must be (nb_bins,) with nb_bins >= 2, got shape {f.shape}")
    df = f[-1] / (f.size - 1)
    return -df / 2, f[-1] + df / 2


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write `fig` as `<out_dir>/<name>.png` (`DPI`) and `.pdf`; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    # no creation date in the PDF: the same results give byte-identical files
    fig.savefig(paths[0], dpi=DPI, bbox_inches="tight")
    fig.savefig(paths[1], dpi=DPI, bbox_inches="tight", metadata={"CreationDate": None})
    return paths


# --------------------------------------------------------------------------------------------------
# reading a run directory


def load_mapping_records(mappings_dir: str | Path) -> list[dict]:
    """The records of the mapping stage: result.json's, else the lines of metrics.jsonl (a stage
    still running or interrupted). Missing directory -> []."""
    mappings_dir = Path(mappings_dir)
    if (mappings_dir / "result.json").exists():
        return list(runs.read_json(mappings_dir / "result.json").get("records", []))
    return runs.read_metrics(mappings_dir)


def _record(records: list[dict], model: str, setting: str, kind: str = "pooled") -> dict | None:
    for r in records:
        if r.get("model") == model and r.get("setting") == setting and r.get("kind") == kind:
            return r
    return None


def _npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _frequencies(mappings_dir: Path, n_bins: int) -> np.ndarray:
    frames = _npz(mappings_dir / "frames.npz")
    if frames is not None and "frequencies" in frames and len(frames["frequencies"]) == n_bins:
        return frames["frequencies"]
    config = (
        runs.read_json(mappings_dir / "config.json")
        if (mappings_dir / "config.json").exists()
        else {}
    )
    stft = config.get("stft")
    if not stft:
        raise FileNotFoundError(
            f"{mappings_dir} has neither frames.npz nor config.json['stft']: cannot label the "
            "frequency axes; rerun the mapping stage"
        )
    return analysis.bin_frequencies(n_bins, sample_rate=stft["sample_rate"], n_fft=stft["n_fft"])


def _models(names) -> list[str]:
    """Built-in models first in their canonical order, then any others."""
    names = list(dict.fromkeys(names))
    return [m for m in MODEL_NAMES if m in names] + sorted(m for m in names if m not in MODEL_NAMES)


def _settings(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [s for s in SETTING_ORDER if s in names] + [s for s in names if s not in SETTING_ORDER]


# --------------------------------------------------------------------------------------------------
# matrices


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
    present = {k: np.asarray(m) for k, m in matrices.items() if m is not None}
    if not present:
        raise ValueError("no matrices to draw: every panel is missing")
    for m in present.values():
        if m.shape != (freqs.size, freqs.size):
            raise ValueError(
                f"matrix of shape {m.shape} does not match the {freqs.size} frequencies given; "
                "pass the frequencies of the STFT the matrices were fitted on"
            )
    zooms = {r: (zoom_hz.get(r) if isinstance(zoom_hz, Mapping) else zoom_hz) for r in rows}
    shown = {r: _zoom_bins(freqs, zooms[r]) for r in rows}
    if limits is None:
        limits = shared_db_limits(
            [m[: shown[r][0], : shown[r][0]] for (r, c), m in present.items() if r in shown],
            dynamic_range_db=dynamic_range_db,
            row_quantile=row_quantile,
        )
    vmin, vmax = limits
    row_labels, col_labels = row_labels or {}, col_labels or {}
    fig = Figure(
        figsize=(3.0 * len(cols) + 1.4, 2.9 * len(rows) + (0.5 if title else 0.2)),
        layout="constrained",
    )
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    image = None
    for r, row in enumerate(rows):
        n_keep, lo, hi = shown[row]
        for c, col in enumerate(cols):
            ax = axes[r, c]
            m = present.get((row, col))
            if r == 0:
                ax.set_title(col_labels.get(col, col), fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{row_labels.get(row, row)}\noutput frequency (Hz)")
            if m is None:
                ax.text(
                    0.5,
                    0.5,
                    (missing_labels or {}).get(col, "not available"),
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=9,
                    color="0.4",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            db = _block_max(log_magnitude_db(m[:n_keep, :n_keep]), max_pixels)
            image = ax.imshow(
                db,
                origin="lower",
                extent=(lo, hi, lo, hi),
                vmin=vmin,
                vmax=vmax,
                cmap=CMAP,
                interpolation="nearest",
                aspect="equal",
            )
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            if r == len(rows) - 1 or zooms[row] != zooms[rows[min(r + 1, len(rows) - 1)]]:
                ax.set_xlabel("input frequency (Hz)")
    fig.colorbar(image, ax=axes, shrink=0.85, extend="max", label="20 log10 |C| (dB)")
    if title:
        fig.suptitle(title)
    return fig


def _pooled_matrix(mappings_dir: Path, model: str, setting: str, seed: int, key: str = "matrix"):
    arrays = _npz(mappings_dir / "matrices" / f"{model}__{setting}.npz")
    if arrays is None or key not in arrays or arrays[key].shape[0] <= seed:
        return None
    return arrays[key][seed]


def _available_models(mappings_dir: Path) -> list[str]:
    names = [p.name.split("__")[0] for p in (mappings_dir / "matrices").glob("*__*.npz")]
    return _models(names)


def mapping_matrices(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    settings: Sequence[str] = ("nca_authors", "nca_converged", "nca_output_bias", "nca_uniform"),
    seed: int = 0,
    zoom_hz: float = 1000.0,
    dynamic_range_db: float = 60.0,
) -> list[Path]:
    """The NCA mapping matrix of every model side by side, full band (top row) and 0..zoom_hz
    (bottom row): one figure `mapping_matrices_<setting>` per setting, one dB colour scale for all
    its panels."""
    mdir = Path(run_dir) / "mappings"
    models = _available_models(mdir)
    written: list[Path] = []
    for setting in settings:
        mats = {m: _pooled_matrix(mdir, m, setting, seed) for m in models}
        if all(v is None for v in mats.values()):
            continue
        freqs = _frequencies(mdir, next(v for v in mats.values() if v is not None).shape[0])
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
            f"{_label(setting)} mapping matrix C (seed {seed}), "
            f"top {dynamic_range_db:g} dB shared across models"
        )
        written += save_figure(fig, out_dir, f"mapping_matrices_{setting}")
    return written


def estimator_matrices(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    settings: Sequence[str] = ("nca_converged", "student_converged", "lstsq", "jacobian"),
    seed: int = 0,
    zoom_hz: float = 1000.0,
    dynamic_range_db: float = 60.0,
) -> list[Path]:
    """Models (rows) x estimators (columns), plus dae_sf's two Jacobian parts (diag(m) and
    diag(x) dm/dx), one dB scale for the whole grid: `estimator_matrices` (full band) and
    `estimator_matrices_zoom` (0..zoom_hz)."""
    mdir = Path(run_dir) / "mappings"
    models = _available_models(mdir)
    cols = list(settings) + list(PART_KEYS)
    mats: dict[tuple[str, str], np.ndarray | None] = {}
    for m in models:
        for s in settings:
            mats[(m, s)] = _pooled_matrix(mdir, m, s, seed)
        for col, key in PART_KEYS.items():
            mats[(m, col)] = _pooled_matrix(mdir, m, "jacobian", seed, key=key)
    cols = [c for c in cols if any(mats[(m, c)] is not None for m in models)]
    if not cols:
        return []
    freqs = _frequencies(mdir, next(v for v in mats.values() if v is not None).shape[0])
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
        written += save_figure(fig, out_dir, name)
    return written


# --------------------------------------------------------------------------------------------------
# structure metrics


STRUCTURE_PANELS = (
    ("weighted_diagonal_energy_ratio", None, "diagonal energy ratio\n(input-energy weighted)"),
    ("diagonal_energy_ratio", None, "diagonal energy ratio"),
    ("weighted_near_diagonal_energy", "near_diagonal_energy", "energy within ±k bins of diagonal"),
    ("mean_coupling_distance_octaves", None, "mean coupling distance (octaves)"),
)


def _metric_table(records: list[dict]) -> dict[tuple[str, str], dict[str, list]]:
    """(model, column) -> {metric: (n_seeds, n_songs) table}, columns = settings and dae_sf's
    Jacobian parts."""
    table: dict[tuple[str, str], dict[str, list]] = {}
    for r in records:
        if r.get("kind") != "pooled" or not r.get("metrics"):
            continue
        table[(r["model"], r["setting"])] = r["metrics"]
        for part, metrics in (r.get("part_metrics") or {}).items():
            table[(r["model"], f"{r['setting']}:{part}")] = metrics
    return table


def _errorbar_groups(
    ax,
    groups: Sequence[str],
    series: Mapping[str, Mapping[str, Any]],
    colours: Mapping[str, str],
) -> None:
    """Per group (x) and series (hue): per-seed points (mean over songs), the mean and its 95 %
    seed x song bootstrap interval as an error bar. A value is a `(n_seeds, n_songs)` table or a
    list of per-seed numbers (one song)."""
    n = max(len(series), 1)
    width = 0.7
    for k, (name, per_group) in enumerate(series.items()):
        offset = (k - (n - 1) / 2) * width / n
        for g, group in enumerate(groups):
            vals = per_group.get(group)
            if vals is None:
                continue
            arr = np.asarray([np.nan if v is None else v for v in vals] if np.ndim(vals) == 1 else vals,
                             np.float64)
            arr = arr.reshape(arr.shape[0], -1)
            arr = arr[np.all(np.isfinite(arr), axis=1)]
            if arr.size == 0:
                continue
            iv = stats.seed_song_bootstrap(arr)
            x = g + offset
            ax.errorbar([x], [iv["mean"]], yerr=[[iv["mean"] - iv["lo"]], [iv["hi"] - iv["mean"]]],
                        fmt="o", color=colours.get(name, "k"), capsize=3, ms=5,
                        label=name if name not in ax.get_legend_handles_labels()[1] else None)
            per_seed = arr.mean(axis=1)
            ax.plot(np.full(per_seed.size, x), per_seed, ".", color=colours.get(name, "k"), alpha=0.35, ms=4)
    ax.set_xticks(range(len(groups)))
    ax.set_xlim(-0.6, len(groups) - 0.4)


def structure_metrics(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Per estimator (x) and model (colour): the structure metrics of the fits, mean and 95 % seed x
    song bootstrap interval (dots: seeds, averaged over songs). Figure `structure_metrics`."""
    table = _metric_table(load_mapping_records(Path(run_dir) / "mappings"))
    if not table:
        return []
    models = _models(m for m, _ in table)
    settings = _settings(s for _, s in table if ":" not in s)
    cols = settings + [c for c in PART_KEYS if any((m, c) in table for m in models)]
    fig = Figure(figsize=(max(9.0, 1.0 * len(cols) * 2), 7.5), layout="constrained")
    axes = fig.subplots(2, 2, squeeze=False).ravel()
    sample = next(iter(table.values()))
    for ax, (key, fallback, title) in zip(axes, STRUCTURE_PANELS, strict=True):
        name = key if key in sample else fallback
        if name is None or name not in sample:
            ax.set_axis_off()
            continue
        series = {m: {c: table[(m, c)].get(name) for c in cols if (m, c) in table} for m in models}
        _errorbar_groups(ax, cols, series, MODEL_COLOURS)
        ax.set_xticklabels([_label(c) for c in cols], rotation=35, ha="right", fontsize=8)
        ax.set_title(title if name == key else f"{title} (unweighted)", fontsize=10)
        ax.set_ylabel("octaves" if "octaves" in name else "share of squared weights (0–1)", fontsize=8)
        if "ratio" in name or "energy" in name:
            ax.set_ylim(-0.03, 1.05)
            ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Structure of the mapping matrices (mean and 95 % seed × song bootstrap interval; dots: seeds)")
    return save_figure(fig, out_dir, "structure_metrics")


def _conclusion(records: list[dict]) -> dict:
    by_key = {(r["model"], r["setting"], r["kind"]): r for r in records}
    settings = _settings(r["setting"] for r in records if r.get("kind") == "pooled")
    return verdict.conclusion(by_key, settings)


def direction_intervals(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Figure `direction_intervals`: per estimator (rows), the 95 % seed x song bootstrap interval of
    DAE − dae_sf on the primary metric for each DAE; filled markers where the estimator counts
    (informative and converged), hollow where it does not. Right of 0: the DAE is more diagonal."""
    records = load_mapping_records(Path(run_dir) / "mappings")
    concl = _conclusion(records)
    rows = [(s, v) for s, v in concl["settings"].items() if v.get("intervals")]
    if not rows:
        return []
    fig = Figure(figsize=(8.0, 0.55 * len(rows) + 1.8), layout="constrained")
    ax = fig.subplots()
    for i, (_, v) in enumerate(rows):
        for k, dae in enumerate(verdict.DAE_MODELS):
            iv = v["intervals"].get(dae)
            if iv is None:
                continue
            y = i + (k - 0.5) * 0.25
            c = MODEL_COLOURS.get(dae, "k")
            ax.errorbar([iv["mean"]], [y], xerr=[[iv["mean"] - iv["lo"]], [iv["hi"] - iv["mean"]]], fmt="o",
                        color=c, mfc=c if v["counts"] else "white", capsize=3,
                        label=f"{dae} − dae_sf" if i == 0 else None)
    ax.axvline(0.0, color="0.3", lw=0.9)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_label(s) + (" (primary)" if s == concl["overall"]["primary_estimator"] else "")
                        for s, _ in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(f"{concl['overall']['primary_metric'].replace('_', ' ')}: DAE − dae_sf (difference of ratios)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Verdict: {concl['overall']['verdict']} (filled: the estimator counts; hollow: it does not)",
                 fontsize=10)
    return save_figure(fig, out_dir, "direction_intervals")


def heldout_error(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Figure `heldout_error`: per estimator (x) and model (colour), the relative L1 error on the
    unseen test songs (mean and 95 % seed x song interval), with each model's per-bin-gain baseline
    (dashed) and the zero predictor (1, dotted)."""
    records = load_mapping_records(Path(run_dir) / "mappings")
    pooled = [r for r in records if r.get("kind") == "pooled" and r.get("rel_l1_heldout")]
    if not pooled:
        return []
    models = _models(r["model"] for r in pooled)
    settings = _settings(r["setting"] for r in pooled)
    fig = Figure(figsize=(max(8.0, 1.3 * len(settings) + 3), 4.8), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, key, title in ((axes[0], "rel_l1_heldout", "raw x ↦ Cx"),
                           (axes[1], "rel_l1_heldout_clipped", "prediction clipped at 0")):
        series = {m: {s: (_record(records, m, s) or {}).get(key) for s in settings} for m in models}
        _errorbar_groups(ax, settings, series, MODEL_COLOURS)
        for m in models:
            gain = _record(records, m, "per_bin_gain", "baseline")
            if gain and gain.get(key):
                ax.axhline(float(np.mean(gain[key])), color=MODEL_COLOURS.get(m, "k"), ls="--", lw=0.9,
                           label=f"per-bin gain ({m})")
        ax.axhline(1.0, color="0.4", ls=":", lw=1.0, label="zero predictor")
        ax.set_xticklabels([_label(s) for s in settings], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("relative L1 error on unseen songs (lower is better)", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("Does the mapping describe the model on unseen songs? (95 % seed × song intervals)")
    return save_figure(fig, out_dir, "heldout_error")


# --------------------------------------------------------------------------------------------------
# loss curves


def _train_history(train_dir: Path) -> list[dict]:
    return [r for r in runs.read_metrics(train_dir) if "train_loss" in r]


def loss_curves(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """`training_curves`: train (solid) and validation (dashed) loss per epoch and seed, per model;
    `fit_loss_curves`: the loss of every iterative mapping fit (NCA, student) per Adam step, a panel
    per setting, colour = model (seeds overlaid)."""
    run_dir = Path(run_dir)
    written: list[Path] = []
    histories = {
        m: _train_history(run_dir / "train" / m)
        for m in _models(p.name for p in (run_dir / "train").glob("*") if p.is_dir())
    }
    histories = {m: h for m, h in histories.items() if h}
    if histories:
        fig = Figure(figsize=(3.6 * len(histories) + 0.5, 3.4), layout="constrained")
        axes = fig.subplots(1, len(histories), squeeze=False, sharey=True)[0]
        for ax, (m, hist) in zip(axes, histories.items(), strict=True):
            epochs = [r["epoch"] for r in hist]
            train = np.asarray([np.atleast_1d(r["train_loss"]) for r in hist], np.float64)
            val = np.asarray([np.atleast_1d(r["val_loss"]) for r in hist], np.float64)
            for s in range(train.shape[1]):
                for curve, style, label in ((train, "-", "train"), (val, "--", "validation")):
                    ax.plot(epochs, curve[:, s], style, color=MODEL_COLOURS.get(m, "k"),
                            alpha=1.0 if s == 0 else 0.55, label=label if s == 0 else None)
            ax.set_yscale("log")
            ax.set_title(f"{m} ({train.shape[1]} seeds)", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        axes[0].set_ylabel("loss")
        fig.suptitle("Training of the separators")
        written += save_figure(fig, out_dir, "training_curves")

    mdir = run_dir / "mappings"
    losses: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted((mdir / "matrices").glob("*__*.npz")):
        model, setting = path.stem.split("__", 1)
        arrays = _npz(path)
        if arrays is not None and "losses" in arrays:
            losses.setdefault(setting, {})[model] = arrays["losses"]
    if losses:
        settings = _settings(losses)
        ncols = min(3, len(settings))
        nrows = math.ceil(len(settings) / ncols)
        fig = Figure(figsize=(4.0 * ncols, 3.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, setting in zip(axes, settings, strict=False):
            for m in _models(losses[setting]):
                curves = np.atleast_2d(losses[setting][m])
                for s, curve in enumerate(curves):
                    ax.plot(
                        np.arange(1, curve.size + 1),
                        curve,
                        color=MODEL_COLOURS.get(m, "k"),
                        alpha=1.0 if s == 0 else 0.5,
                        lw=1.0,
                        label=m if s == 0 else None,
                    )
            ax.set_yscale("log")
            ax.set_title(_label(setting), fontsize=10)
            ax.set_xlabel("Adam step")
            ax.set_ylabel("fit loss")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        for ax in axes[len(settings) :]:
            ax.set_axis_off()
        fig.suptitle("Loss of the iterative mapping fits (all seeds)")
        written += save_figure(fig, out_dir, "fit_loss_curves")
    return written


# --------------------------------------------------------------------------------------------------
# spectrograms (data gathering separate from drawing)


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
    if not panels:
        raise ValueError("no spectrograms to draw")
    freqs = np.asarray(frequencies, dtype=np.float64)
    arrays = {k: np.asarray(v, np.float64) for k, v in panels.items()}
    shapes = {v.shape for v in arrays.values()} | ({np.shape(mask)} if mask is not None else set())
    if len(shapes) != 1 or next(iter(shapes))[1:] != (freqs.size,):
        raise ValueError(
            f"every panel must be (nb_frames, {freqs.size}) and all alike, "
            f"got shapes {sorted(shapes)}"
        )
    if frame_seconds <= 0:
        raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")
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
        image = ax.imshow(
            log_magnitude_db(mag).T,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=vmin,
            vmax=vmax,
            cmap=CMAP,
            interpolation="nearest",
        )
        ax.set_title(name, fontsize=10)
    fig.colorbar(
        image,
        ax=axes.tolist(),
        location="bottom",
        shrink=0.5,
        aspect=40,
        label="magnitude (dB), one scale for all magnitude panels",
    )
    if mask is not None:
        ax = axes[len(arrays)]
        m = np.asarray(mask, np.float64)
        top = max(1.0, float(np.quantile(m, 0.99)))
        mim = ax.imshow(
            m.T,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=0.0,
            vmax=top,
            cmap="viridis",
            interpolation="nearest",
        )
        ax.set_title(mask_label, fontsize=10)
        fig.colorbar(mim, ax=ax, shrink=0.9, label="gain")
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


def _reopen_data(train_config: dict, cache_root):
    """The study's Data from the description a training run recorded (embedded corpus only)."""
    from . import pipeline
    from .config import CorpusConfig, from_dict

    desc = train_config.get("data") or {}
    if "corpus" not in desc or "preset" not in desc:
        warnings.warn(
            "spectrograms skipped: the training run does not describe an embedded-corpus dataset "
            f"(dataset {desc.get('dataset')!r}); pass data=ncajax.pipeline.prepare_data(...) to "
            "plots.make_all to draw them",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return pipeline.prepare_data(
        preset_name=desc["preset"],
        corpus_cfg=from_dict(CorpusConfig, desc["corpus"]),
        cache_root=cache_root,
        progress=False,
    )


def spectrogram_panels(
    run_dir: str | Path,
    *,
    data: Any = None,
    track: int | None = None,
    seed: int = 0,
    max_seconds: float = 8.0,
    cache_root: str | Path | None = None,
) -> dict | None:
    """Gather the spectrogram figure's arrays: mixture, true vocals and every trained model's output
    (seed index `seed`) of one test track, and dae_sf's mask, each `(nb_frames, nb_bins)`.

    Restores the checkpoints under `<run>/train/` (no training). `data`: a `ncajax.pipeline.Data`
    (default: reopened from the embedded-corpus description in the training config, cached).
    `track`: index into the test tracks (default: the one with the largest vocal share of energy).
    Returns {"panels", "mask", "frame_seconds", "frequencies", "track"} or None (nothing trained).
    """
    train_dir = Path(run_dir) / "train"
    models = _models(
        p.name
        for p in train_dir.glob("*")
        if (p / "config.json").exists() and (p / "checkpoints").exists()
    )
    if not models:
        return None
    from .train import load_trained, predict  # jax/flax/orbax: only when there is something to run

    config = runs.read_json(train_dir / models[0] / "config.json")
    if data is None:
        data = _reopen_data(config, cache_root)
        if data is None:
            return None
    stft = data.stft
    if dict(config["stft"]) != {k: getattr(stft, k) for k in config["stft"]}:
        raise ValueError(
            f"the data's STFT {stft} is not the one the models were trained on ({config['stft']}): "
            "pass the data of this run"
        )
    cache = data.test
    n_tracks = len(cache.track_names)
    if track is None:
        share = [
            float(
                np.sum(np.square(v, dtype=np.float64))
                / max(np.sum(np.square(x, dtype=np.float64)), 1e-30)
            )
            for x, v in (cache.track(i) for i in range(n_tracks))
        ]
        track = int(np.argmax(share))
    if not 0 <= track < n_tracks:
        raise ValueError(f"track index {track} out of range for {n_tracks} test tracks")
    mix, voc = cache.track(track)
    n_frames = min(len(mix), max(1, int(max_seconds * stft.sample_rate / stft.hop_length)))
    x = np.asarray(mix[:n_frames], np.float32)
    panels = {"mixture": x, "true vocals": np.asarray(voc[:n_frames], np.float32)}
    mask = None
    for m in models:
        if "custom_module" in runs.read_json(train_dir / m / "config.json"):
            continue  # a custom module cannot be rebuilt from its config; see map_your_model.py
        trained = load_trained(train_dir / m)
        s = min(seed, trained.train_cfg.n_seeds - 1)
        params = trained.seed_params(s)
        panels[f"{m} estimate (seed {trained.train_cfg.seed + s})"] = predict(
            trained.model, params, x
        )
        if m == "dae_sf" and hasattr(trained.model, "mask"):
            mask = np.asarray(trained.model.apply(params, x, method="mask"))
    freqs = np.arange(stft.n_bins) * stft.sample_rate / stft.n_fft
    return {
        "panels": panels,
        "mask": mask,
        "frame_seconds": stft.hop_length / stft.sample_rate,
        "frequencies": freqs,
        "track": cache.track_names[track],
    }


def spectrograms(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    data: Any = None,
    track: int | None = None,
    cache_root: str | Path | None = None,
) -> list[Path]:
    """Figure `spectrograms`: one test track's mixture, true vocals, every model's estimate and the
    dae_sf mask (see `spectrogram_panels`)."""
    got = spectrogram_panels(run_dir, data=data, track=track, cache_root=cache_root)
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
    return save_figure(fig, out_dir, "spectrograms")


# --------------------------------------------------------------------------------------------------
# linearity of the models (issue 8)

LINEARITY_PANELS = (
    ("weighted_diagonal_energy_ratio", "diagonal energy ratio (weighted)"),
    ("diagonal_energy_ratio", "diagonal energy ratio"),
    ("near_diagonal_energy", "energy within ±k bins of diagonal"),
    ("mean_coupling_distance", "mean coupling distance (bins)"),
)


def linearity(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Figure `linearity`: per model, the distribution over frames (seeds pooled; violins) of the
    structure metrics of the per-frame Jacobians J(x_t), with the same metric of the mean Jacobian
    per seed (black x); and per model the relative L1 error of the per-frame linearisations
    J(x_t) x_t against that of the single mean Jacobian, and the local spread of J(x_t)."""
    records = load_mapping_records(Path(run_dir) / "mappings")
    facts = {
        r["model"]: r["linearity"]
        for r in records
        if r.get("kind") == "model" and r.get("linearity")
    }
    if not facts:
        return []
    models = _models(facts)
    fig = Figure(figsize=(12.5, 7.2), layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False).ravel()
    for ax, (name, title) in zip(axes[:4], LINEARITY_PANELS, strict=True):
        data, pos, cols = [], [], []
        for i, m in enumerate(models):
            vals = np.concatenate(
                [np.asarray(s["frame_metric_values"].get(name, []), np.float64) for s in facts[m]]
            )
            vals = vals[np.isfinite(vals)]
            if vals.size:
                data.append(vals)
                pos.append(i)
                cols.append(MODEL_COLOURS.get(m, "0.5"))
            mean_jac = _record(records, m, "jacobian")
            if mean_jac and name in (mean_jac.get("metrics") or {}):
                ys = np.asarray(mean_jac["metrics"][name], np.float64).mean(axis=1)
                ax.plot(
                    np.full(len(ys), i),
                    ys,
                    "x",
                    color="k",
                    ms=7,
                    label="mean Jacobian (per seed)" if i == 0 else None,
                )
        if data:
            parts = ax.violinplot(data, positions=pos, showmedians=True, widths=0.8)
            for body, c in zip(parts["bodies"], cols, strict=True):
                body.set_facecolor(c)
                body.set_alpha(0.5)
            for key in ("cbars", "cmins", "cmaxes", "cmedians"):
                parts[key].set_color("0.3")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fid = {
        "per-frame J(x_t) x_t": {
            m: [s["rel_l1_per_frame_linear"] for s in facts[m]] for m in models
        },
        "mean Jacobian": {m: [s["rel_l1_mean_jacobian"] for s in facts[m]] for m in models},
    }
    _errorbar_groups(
        axes[4], models, fid, {"per-frame J(x_t) x_t": "#9467bd", "mean Jacobian": "k"}
    )
    axes[4].set_xticklabels(models)
    axes[4].set_title("relative L1 error of the linear maps", fontsize=10)
    axes[4].set_ylim(bottom=0)
    axes[4].legend(fontsize=8)
    axes[4].grid(axis="y", alpha=0.3)
    spread = {"local spread": {m: [s["local_spread"] for s in facts[m]] for m in models}}
    _errorbar_groups(axes[5], models, spread, {"local spread": "#d62728"})
    axes[5].set_xticklabels(models)
    axes[5].set_title("local spread  sqrt(mean ||J_t − J̄||²) / ||J̄||", fontsize=10)
    axes[5].set_ylim(bottom=0)
    axes[5].grid(axis="y", alpha=0.3)
    fig.suptitle(
        "How linear is each model? Per-frame Jacobians J(x_t) (frames and seeds pooled; "
        "error bars: mean and 95 % CI over seeds)"
    )
    return save_figure(fig, out_dir, "linearity")


# --------------------------------------------------------------------------------------------------
# separation quality

OFF_SCALE_DB = 60.0
"""Separation scores beyond ±this (dB) are written as text instead of stretching the axis."""
QUALITY_PANELS = (
    (("mag_sdr",), "magnitude SDR (dB), mean over tracks"),
    (("vocals", "SDR"), "vocals SDR (dB), median over tracks"),
    (("vocals", "SIR"), "vocals SIR (dB)"),
    (("vocals", "SAR"), "vocals SAR (dB)"),
)


def _dig(d: Any, keys: Sequence[str]) -> float | None:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return None if d is None else float(d)


def separation_quality(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Figure `separation_quality`: magnitude SDR and museval vocals SDR/SIR/SAR per model (dots:
    seeds; error bar: mean and 95 % CI over seeds) between the mixture and the oracle IRM."""
    path = Path(run_dir) / "evaluation" / "result.json"
    if not path.exists():
        return []
    summary = runs.read_json(path).get("summary", {})
    groups: dict[str, list[str]] = {}
    for name in summary:
        groups.setdefault(name.split("/")[0], []).append(name)
    order = ["mixture"] + _models(g for g in groups if g not in REFERENCE_COLOURS) + ["oracle_irm"]
    order = [g for g in order if g in groups]
    panels = [
        (k, t) for k, t in QUALITY_PANELS if any(_dig(summary[p], k) is not None for p in summary)
    ]
    if not order or not panels:
        return []
    fig = Figure(figsize=(3.4 * len(panels) + 0.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {**MODEL_COLOURS, **REFERENCE_COLOURS}
    for ax, (keys, title) in zip(axes, panels, strict=True):
        values = {}
        for group in order:
            vals = np.asarray(
                [v for p in groups[group] if (v := _dig(summary[p], keys)) is not None]
            )
            values[group] = vals[np.isfinite(vals)]
        # The mixture as its own estimate has no artefacts: its SAR is ~100+ dB, which would flatten
        # every other point. Values beyond OFF_SCALE_DB are written as text at the panel's edge.
        shown = np.concatenate([v[np.abs(v) < OFF_SCALE_DB] for v in values.values()] + [[0.0]])
        pad = 0.08 * max(float(np.ptp(shown)), 1.0)
        ylim = (float(shown.min()) - pad, float(shown.max()) + pad)
        for g, group in enumerate(order):
            vals = values[group]
            if not vals.size:
                continue
            s = analysis.summarise(vals)
            if abs(s["mean"]) >= OFF_SCALE_DB:
                edge = ylim[1] if s["mean"] > 0 else ylim[0]
                ax.annotate(
                    f"{s['mean']:.0f} dB\n(off scale)",
                    (g, edge),
                    ha="center",
                    va="top" if s["mean"] > 0 else "bottom",
                    xytext=(0, -6 if s["mean"] > 0 else 6),
                    textcoords="offset points",
                    fontsize=8,
                    color=colours.get(group, "k"),
                )
                continue
            ax.errorbar(
                [g],
                [s["mean"]],
                yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]],
                fmt="s" if group in REFERENCE_COLOURS else "o",
                color=colours.get(group, "k"),
                capsize=4,
                ms=6,
            )
            ax.plot(np.full(vals.size, g), vals, ".", color=colours.get(group, "k"), alpha=0.4)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(
            [g.replace("oracle_irm", "oracle IRM") for g in order], rotation=30, ha="right"
        )
        ax.set_ylim(*ylim)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("dB")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Separation quality on the test tracks (vocals)")
    return save_figure(fig, out_dir, "separation_quality")


# --------------------------------------------------------------------------------------------------


def make_all(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    data: Any = None,
    with_spectrograms: bool = True,
    cache_root: str | Path | None = None,
) -> list[Path]:
    """Every figure whose inputs exist under `run_dir`, written to `out_dir` (PNG and PDF each);
    returns the written paths. `data` (a `ncajax.pipeline.Data`) feeds the spectrogram figure;
    without it the embedded corpus is reopened from the training config (cached)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist: run experiments/reproduce.py"
        )
    written: list[Path] = []
    written += direction_intervals(run_dir, out_dir)
    written += heldout_error(run_dir, out_dir)
    written += mapping_matrices(run_dir, out_dir)
    written += estimator_matrices(run_dir, out_dir)
    written += structure_metrics(run_dir, out_dir)
    written += loss_curves(run_dir, out_dir)
    written += linearity(run_dir, out_dir)
    written += separation_quality(run_dir, out_dir)
    if with_spectrograms:
        written += spectrograms(run_dir, out_dir, data=data, cache_root=cache_root)
    return written
