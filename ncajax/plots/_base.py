"""What every figure module shares: colours, setting labels, dB colour scales, saving, the run summary
a figure renders (`ncajax.results`) and the saved arrays of a study run directory."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float
from matplotlib.figure import Figure

from .. import runs
from ..config import (
    JACOBIAN,
    LSTSQ,
    MODEL_NAMES,
    NCA_AUTHORS,
    NCA_CONVERGED,
    NCA_OUTPUT_BIAS,
    NCA_UNIFORM,
    SETTING_NAMES,
    STUDENT_AUTHORS,
    STUDENT_CONVERGED,
)
from ..nca import _structure as analysis
from ..results._records import load_mapping_stage
from ..results._summary import RunSummary, TableSummary, summarise_run

MODEL_COLOURS = {"dae": "#1f77b4", "dae_deep": "#ff7f0e", "dae_sf": "#2ca02c"}
Source = str | Path | RunSummary
"""What a figure of the summary renders: a run directory (summarised on the fly) or its `RunSummary`."""
REFERENCE_COLOURS = {"mixture": "#7f7f7f", "oracle_irm": "#000000"}
TINY = 1e-12
"""Added to |C| before the logarithm, so exact zeros map to -240 dB instead of -inf."""
CMAP = "magma"
DPI = 150
"""Resolution of the PNG files."""
ROW_QUANTILE = 0.95
"""Matrix colour scales top out at this quantile of the per-output-bin maxima (see
`shared_db_limits`)."""

SETTING_ORDER = SETTING_NAMES
SETTING_LABELS = {
    NCA_AUTHORS: "NCA (authors)",
    NCA_CONVERGED: "NCA (converged)",
    NCA_OUTPUT_BIAS: "NCA (output-unit bias)",
    NCA_UNIFORM: "NCA (uniform init)",
    "per_bin_gain": "per-bin gain",
    "zero": "zero",
    STUDENT_AUTHORS: "student (authors)",
    STUDENT_CONVERGED: "student (converged)",
    LSTSQ: "least squares",
    JACOBIAN: "mean Jacobian",
    f"{JACOBIAN}:mask": "Jac. part diag(m)",
    f"{JACOBIAN}:mask_jacobian": "Jac. part diag(x) dm/dx",
}
PART_KEYS = {f"{JACOBIAN}:mask": "part_mask", f"{JACOBIAN}:mask_jacobian": "part_mask_jacobian"}


def setting_label(setting: str) -> str:
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


def summary_of(source: str | Path | RunSummary) -> RunSummary:
    """The run summary a figure renders: `source` itself, or the summary of the run directory it names
    (`ncajax.results.summarise_run`; `make_all` summarises once and passes it to every figure)."""
    return source if isinstance(source, RunSummary) else summarise_run(source)


def run_dir_of(source: str | Path | RunSummary) -> Path:
    """The run directory of a figure's `source` (a run directory or its `RunSummary`)."""
    return source.study.run_dir if isinstance(source, RunSummary) else Path(source)


def load_mapping_records(mappings_dir: str | Path) -> list[dict]:
    """The records of the mapping stage as saved (dicts), read by `ncajax.results._records.load_mapping_stage`
    (result.json, else metrics.jsonl of a stage still running; a resumed stage's last record of a key
    wins). A directory without a mapping stage -> []."""
    stage = load_mapping_stage(mappings_dir, [])
    return [] if stage is None else [dict(r.raw) for r in stage.records.values()]


def read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def frequencies_of(mappings_dir: Path, n_bins: int) -> np.ndarray:
    frames = read_npz(mappings_dir / "frames.npz")
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


def order_models(names) -> list[str]:
    """Built-in models first in their canonical order, then any others."""
    names = list(dict.fromkeys(names))
    return [m for m in MODEL_NAMES if m in names] + sorted(m for m in names if m not in MODEL_NAMES)


def order_settings(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [s for s in SETTING_ORDER if s in names] + [s for s in names if s not in SETTING_ORDER]



def errorbar_groups(
    ax,
    groups: Sequence[str],
    series: Mapping[str, Mapping[str, TableSummary | None]],
    colours: Mapping[str, str],
) -> None:
    """Per group (x) and series (hue): the per-seed points (mean over songs) and the mean with its 95 %
    seed x song interval as an error bar, as the summary computed them (`TableSummary.rows_interval`
    and `per_seed`: the seeds whose row is all finite); a missing table or one without a finite row
    draws nothing."""
    n = max(len(series), 1)
    width = 0.7
    for k, (name, per_group) in enumerate(series.items()):
        offset = (k - (n - 1) / 2) * width / n
        for g, group in enumerate(groups):
            table = per_group.get(group)
            if table is None or table.rows_interval is None:
                continue
            iv = table.rows_interval
            x = g + offset
            ax.errorbar([x], [iv["mean"]], yerr=[[iv["mean"] - iv["lo"]], [iv["hi"] - iv["mean"]]],
                        fmt="o", color=colours.get(name, "k"), capsize=3, ms=5,
                        label=name if name not in ax.get_legend_handles_labels()[1] else None)
            per_seed = np.asarray(table.per_seed, np.float64)
            ax.plot(np.full(per_seed.size, x), per_seed, ".", color=colours.get(name, "k"), alpha=0.35, ms=4)
    ax.set_xticks(range(len(groups)))
    ax.set_xlim(-0.6, len(groups) - 0.4)
