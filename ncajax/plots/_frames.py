"""The figures of a frames-only mapping analysis (`ncajax.nca.map_frames` / `map_callable`, `ncajax map`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..nca._frames import METHOD_LABELS, FrameMapping
from . import _base as base
from . import _matrices as matrices


def plot_frame_mapping(result: FrameMapping, out_dir: str | Path, *, zoom_hz: float | None = None,
                       dynamic_range_db: float = 60.0) -> list[Path]:
    """Two figures, PNG + PDF each, under out_dir; returns the written paths.

    `frame_mapping_matrices`: every method's C in dB (input frequency on x, output frequency on y, Hz;
    one colour scale; from 0 to `zoom_hz` when given) beside the best per-bin gain as a diagonal matrix.
    `frame_mapping_errors`: the held-out error of every C and of its diagonal diag(C), against the zero
    predictor and the best per-bin gain (predictions clipped at 0, lower is better).
    """
    names = list(result.methods)
    panels = {("C", m): result.methods[m].matrix for m in names}
    panels[("C", "per_bin_gain")] = np.diag(result.baselines["per_bin_gain"].gain)
    cols = [*names, "per_bin_gain"]
    labels = {m: f"{METHOD_LABELS.get(m, m)}\nheld-out err. {result.methods[m].heldout_error:.3f}" for m in names}
    labels["per_bin_gain"] = f"best per-bin gain\nheld-out err. {result.baselines['per_bin_gain'].heldout_error:.3f}"
    fig = matrices.draw_matrix_grid(panels, result.freqs, rows=["C"], cols=cols, row_labels={"C": "y ≈ C x"},
                                    col_labels=labels, zoom_hz=zoom_hz, dynamic_range_db=dynamic_range_db,
                                    title=f"mapping matrices from {result.source} "
                                          f"({result.split['n_fit_frames']} fit frames)")
    paths = base.save_figure(fig, out_dir, "frame_mapping_matrices")

    fig = Figure(figsize=(1.5 + 1.3 * (len(names) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    width = 0.38
    full = [result.methods[m].heldout_error for m in names]
    diag = [result.methods[m].functional["err_diag"] for m in names]
    bars = ax.bar(x - width / 2, full, width, label="C", color="#1f77b4")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    bars = ax.bar(x + width / 2, [np.nan if d is None else d for d in diag], width, label="diag(C)",
                  color="#aec7e8")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    for i, (name, colour) in enumerate((("per_bin_gain", "#2ca02c"), ("zero", "#7f7f7f"))):
        value = result.baselines[name].heldout_error
        bar = ax.bar([len(names) + i], [value], width * 1.4, color=colour,
                     label="best per-bin gain" if name == "per_bin_gain" else "zero (silence)")
        ax.bar_label(bar, fmt="%.3f", fontsize=8)
        ax.axhline(value, color=colour, lw=0.8, ls="--")
    ax.set_xticks(list(range(len(names) + 2)),
                  [METHOD_LABELS.get(m, m) for m in names] + ["per-bin gain", "zero"])
    ax.set_ylabel("held-out relative L1 error\n(clipped at 0; lower is better)")
    ax.set_ylim(0, max(1.05, 1.15 * max([v for v in full if np.isfinite(v)] + [1.0])))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    unit = {"song": "whole songs", "time_block": "the last frames (one block)", "given": "the frames given"}
    ax.set_title(f"held out: {unit.get(result.split['unit'], result.split['unit'])}, "
                 f"{result.split['n_heldout_frames']} frames", fontsize=10)
    return paths + base.save_figure(fig, out_dir, "frame_mapping_errors")
