"""Figures of the study, drawn from the saved results of a study run directory alone.

Nothing here trains, fits or runs a model, and nothing computes an interval or a mean ± CI over
seeds: the figures with such numbers (structure metrics, verdict intervals, held-out error, keep
shares, linearity, the under-convergence control, separation quality, live units) render the run's
`ncajax.results.RunSummary` (give them the summary or a run directory, which is then read by
`ncajax.results.load_study` and summarised); the others read the saved arrays of
`<run>/train/<model>/`, `<run>/mappings/` and `<run>/evaluation/` (see `experiments/reproduce.py`),
the spectrogram figure the excerpt the evaluation stage saved (`evaluation/spectrograms.npz`).

Every figure is saved as `<name>.png` and `<name>.pdf` by its function, which returns the written
paths, or `[]` when its inputs do not exist. `make_all` draws every figure it can. Figures use the
object-oriented Matplotlib API (`matplotlib.figure.Figure`, the Agg canvas), never pyplot, so
nothing global changes and no figure outlives its save.

Conventions: mapping matrices `C[i, j]` (output bin i, input bin j) are drawn with the input
frequency on x and the output frequency on y, origin lower, in dB (`log_magnitude_db`) with one
colour scale per figure (`shared_db_limits`), so the panels of the three models are comparable.

Modules: `base` (colours, labels, colour scales, saving, reading a run), `matrices`, `results`
(structure metrics, verdict intervals, held-out error, linearity, the under-convergence control), `curves` (loss curves,
separation quality) and `spectrograms`.
"""

from __future__ import annotations

from pathlib import Path

from ._base import (
    MODEL_COLOURS,
    SETTING_LABELS,
    SETTING_ORDER,
    bin_edges_extent,
    load_mapping_records,
    log_magnitude_db,
    save_figure,
    shared_db_limits,
    summary_of,
)
from ._curves import loss_curves, separation_quality
from ._frames import plot_frame_mapping
from ._matrices import MatrixView, draw_matrix_grid, estimator_matrices, mapping_matrices
from ._results import (
    convergence_control,
    direction_intervals,
    heldout_error,
    keep_shares,
    linearity,
    structure_metrics,
)
from ._spectrograms import draw_spectrograms, spectrogram_panels, spectrograms
from ._units import live_units, sdr_vs_loudness

__all__ = [
    "MODEL_COLOURS",
    "SETTING_LABELS",
    "SETTING_ORDER",
    "log_magnitude_db",
    "shared_db_limits",
    "bin_edges_extent",
    "save_figure",
    "load_mapping_records",
    "summary_of",
    "MatrixView",
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
    "keep_shares",
    "convergence_control",
    "live_units",
    "sdr_vs_loudness",
    "make_all",
    "plot_frame_mapping",
]


def make_all(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every figure whose inputs exist under `run_dir`, written to `out_dir` (PNG and PDF each);
    returns the written paths. The run is read and summarised once (`ncajax.results.summarise_run`);
    the figures of the mapping stage render that summary."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist: run experiments/reproduce.py"
        )
    summary = summary_of(run_dir)
    written: list[Path] = []
    for figure in (direction_intervals, heldout_error, keep_shares, convergence_control):
        written += figure(summary, out_dir)
    for figure in (mapping_matrices, estimator_matrices):
        written += figure(run_dir, out_dir)
    written += structure_metrics(summary, out_dir)
    written += loss_curves(run_dir, out_dir)
    written += linearity(summary, out_dir)
    written += separation_quality(summary, out_dir)
    written += spectrograms(run_dir, out_dir)
    written += live_units(summary, out_dir)
    written += sdr_vs_loudness(run_dir, out_dir)
    return written
