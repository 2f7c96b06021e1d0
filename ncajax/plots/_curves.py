"""Training and fit loss curves, and the separation quality of the evaluation stage (rendered from the
run's summary, `ncajax.results`: its means and CIs over seeds are computed there, not here)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import runs
from . import _base as base
from ._base import (
    MODEL_COLOURS,
    REFERENCE_COLOURS,
    Source,
    order_models,
    order_settings,
    read_npz,
    setting_label,
    summary_of,
)

# --------------------------------------------------------------------------------------------------
# loss curves


def _train_history(train_dir: Path) -> list[dict]:
    return [r for r in runs.read_metrics(train_dir) if "train_loss" in r]


def _loss_name(train_dir: Path) -> str | None:
    """The loss a training run recorded ("mse", "l1", ...), None when it is not recorded."""
    try:
        return ((runs.read_json(train_dir / "config.json").get("train") or {}).get("loss")
                or None)
    except (OSError, ValueError):
        return None


def loss_curves(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """`training_curves`: train (solid) and validation (dashed) loss per epoch and seed, per model;
    `fit_loss_curves`: the loss of every iterative mapping fit (NCA, student) per Adam step, a panel
    per setting, colour = model (seeds overlaid)."""
    run_dir = Path(run_dir)
    written: list[Path] = []
    histories = {
        m: _train_history(run_dir / "train" / m)
        for m in order_models(p.name for p in (run_dir / "train").glob("*") if p.is_dir())
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
            loss = _loss_name(run_dir / "train" / m)
            ax.set_title(f"{m} ({train.shape[1]} seeds)" + (f", {loss} loss" if loss else ""), fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        axes[0].set_ylabel("loss (training units)")
        fig.suptitle("Training of the separators (each panel its own loss; train batches are augmented)")
        written += base.save_figure(fig, out_dir, "training_curves")

    mdir = run_dir / "mappings"
    losses: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted((mdir / "matrices").glob("*__*.npz")):
        model, setting = path.stem.split("__", 1)
        arrays = read_npz(path)
        if arrays is not None and "losses" in arrays:
            losses.setdefault(setting, {})[model] = arrays["losses"]
    if losses:
        settings = order_settings(losses)
        ncols = min(3, len(settings))
        nrows = math.ceil(len(settings) / ncols)
        fig = Figure(figsize=(4.0 * ncols, 3.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, setting in zip(axes, settings, strict=False):
            for m in order_models(losses[setting]):
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
            ax.set_title(setting_label(setting), fontsize=10)
            ax.set_xlabel("Adam step")
            ax.set_ylabel("fit loss")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        for ax in axes[len(settings) :]:
            ax.set_axis_off()
        fig.suptitle("Loss of the iterative mapping fits (all seeds)")
        written += base.save_figure(fig, out_dir, "fit_loss_curves")
    return written


# --------------------------------------------------------------------------------------------------
# separation quality

OFF_SCALE_DB = 60.0
"""Separation scores beyond ±this (dB) are written as text instead of stretching the axis."""
QUALITY_PANELS = (
    ("mag_sdr", "magnitude SDR (dB), mean over tracks"),
    ("vocals.SDR", "vocals SDR (dB), median over tracks"),
    ("vocals.SIR", "vocals SIR (dB)"),
    ("vocals.SAR", "vocals SAR (dB)"),
)
"""(score of `ncajax.results`'s `SeparationSummary`, panel title)."""


def separation_quality(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `separation_quality`: magnitude SDR and museval vocals SDR/SIR/SAR per model (dots:
    seeds; error bar: mean and 95 % CI over seeds, the summary's `SeedStat`) between the mixture and
    the oracle IRM. `source`: a run directory or its `RunSummary`."""
    summary = summary_of(source)
    if summary.study.evaluation is None:
        return []
    scores = summary.separation.scores
    order = ["mixture"] + order_models(g for g in scores if g not in REFERENCE_COLOURS) + ["oracle_irm"]
    order = [g for g in order if g in scores]
    panels = [(k, t) for k, t in QUALITY_PANELS if any(k in s for s in scores.values())]
    if not order or not panels:
        return []
    fig = Figure(figsize=(3.4 * len(panels) + 0.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {**MODEL_COLOURS, **REFERENCE_COLOURS}
    for ax, (key, title) in zip(axes, panels, strict=True):
        stats = {group: scores[group].get(key) for group in order}
        values = {group: np.asarray(s.values if s is not None else (), np.float64) for group, s in stats.items()}
        # The mixture as its own estimate has no artefacts: its SAR is ~100+ dB, which would flatten
        # every other point. Values beyond OFF_SCALE_DB are written as text at the panel's edge.
        shown = np.concatenate([v[np.abs(v) < OFF_SCALE_DB] for v in values.values()] + [[0.0]])
        pad = 0.08 * max(float(np.ptp(shown)), 1.0)
        ylim = (float(shown.min()) - pad, float(shown.max()) + pad)
        for g, group in enumerate(order):
            vals, s = values[group], stats[group]
            if s is None:
                continue
            if abs(s.mean) >= OFF_SCALE_DB:
                edge = ylim[1] if s.mean > 0 else ylim[0]
                ax.annotate(
                    f"{s.mean:.0f} dB\n(off scale)",
                    (g, edge),
                    ha="center",
                    va="top" if s.mean > 0 else "bottom",
                    xytext=(0, -6 if s.mean > 0 else 6),
                    textcoords="offset points",
                    fontsize=8,
                    color=colours.get(group, "k"),
                )
                continue
            ax.errorbar(
                [g],
                [s.mean],
                yerr=[[s.mean - s.lo], [s.hi - s.mean]],
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
    return base.save_figure(fig, out_dir, "separation_quality")


