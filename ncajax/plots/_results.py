"""Figures of the mapping stage's numbers: structure metrics, the verdict's intervals, the held-out
error against the baselines, and how linear each model is (per-frame Jacobians).

Every figure renders a run's `ncajax.results.RunSummary` (a run directory is summarised first): the
intervals are the summary's, none is computed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..config import JACOBIAN
from ..results import _verdict as verdict
from ..results._summary import RunSummary
from . import _base as base
from ._base import (
    MODEL_COLOURS,
    PART_KEYS,
    Source,
    errorbar_groups,
    order_models,
    order_settings,
    setting_label,
    summary_of,
)

STRUCTURE_PANELS = (
    ("weighted_diagonal_energy_ratio", None, "diagonal energy ratio\n(input-energy weighted)"),
    ("diagonal_energy_ratio", None, "diagonal energy ratio"),
    ("weighted_near_diagonal_energy", "near_diagonal_energy", "energy within ±k bins of diagonal"),
    ("mean_coupling_distance_octaves", None, "mean coupling distance (octaves)"),
)


def _metric_columns(summary: RunSummary) -> dict[tuple[str, str], tuple[dict, str, str]]:
    """(model, column) -> (the saved metrics, setting, summary table prefix), columns = settings and
    dae_sf's Jacobian parts ("<setting>:<part>")."""
    table: dict[tuple[str, str], tuple[dict, str, str]] = {}
    stage = summary.study.mappings
    for r in stage.of_kind("pooled") if stage is not None else ():
        if not r.get("metrics"):
            continue
        table[(r.model, r.setting)] = (r["metrics"], r.setting, "metrics.")
        for part, metrics in r.part_metrics.items():
            table[(r.model, f"{r.setting}:{part}")] = (metrics, r.setting, f"part_metrics.{part}.")
    return table


def structure_metrics(source: Source, out_dir: str | Path) -> list[Path]:
    """Per estimator (x) and model (colour): the structure metrics of the fits, mean and 95 % seed x
    song interval (dots: seeds, averaged over songs). Figure `structure_metrics`."""
    summary = summary_of(source)
    columns = _metric_columns(summary)
    if not columns:
        return []
    table = {k: v[0] for k, v in columns.items()}
    models = order_models(m for m, _ in table)
    settings = order_settings(s for _, s in table if ":" not in s)
    cols = settings + [c for c in PART_KEYS if any((m, c) in table for m in models)]
    fig = Figure(figsize=(max(9.0, 1.0 * len(cols) * 2), 7.5), layout="constrained")
    axes = fig.subplots(2, 2, squeeze=False).ravel()
    sample = next(iter(table.values()))
    for ax, (key, fallback, title) in zip(axes, STRUCTURE_PANELS, strict=True):
        name = key if key in sample else fallback
        if name is None or name not in sample:
            ax.set_axis_off()
            continue
        series = {m: {c: summary.table(m, columns[(m, c)][1], columns[(m, c)][2] + name)
                      for c in cols if (m, c) in table} for m in models}
        errorbar_groups(ax, cols, series, MODEL_COLOURS)
        ax.set_xticklabels([setting_label(c) for c in cols], rotation=35, ha="right", fontsize=8)
        ax.set_title(title if name == key else f"{title} (unweighted)", fontsize=10)
        ax.set_ylabel("octaves" if "octaves" in name else "share of squared weights (0–1)", fontsize=8)
        if "ratio" in name or "energy" in name:
            ax.set_ylim(-0.03, 1.05)
            ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Structure of the mapping matrices (mean and 95 % seed × song interval; dots: seeds)")
    return base.save_figure(fig, out_dir, "structure_metrics")


def _pooled_settings(summary: RunSummary) -> list[str]:
    stage = summary.study.mappings
    return order_settings(r.setting for r in stage.of_kind("pooled")) if stage is not None else []


def direction_intervals(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `direction_intervals`: per estimator (rows), the 95 % seed x song interval of
    DAE − dae_sf on the primary metric for each DAE; filled markers where the estimator counts
    (informative and converged), hollow where it does not. Right of 0: the DAE is more diagonal."""
    summary = summary_of(source)
    concl = summary.conclusion
    rows = [(s, concl["settings"][s]) for s in _pooled_settings(summary)]
    if not any("method" in v for _, v in rows):  # no setting has been fitted for every model yet
        return []
    fig = Figure(figsize=(8.0, 0.55 * len(rows) + 1.8), layout="constrained")
    ax = fig.subplots()
    for i, (_, v) in enumerate(rows):
        if not v.get("intervals"):  # e.g. a metric table with non-finite cells: say so on the row
            ax.text(0.02, i, "no interval (the reason is in the report's conclusion table)", fontsize=8,
                    va="center", color="0.35", transform=ax.get_yaxis_transform())
            continue
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
    if not any(v.get("intervals") for _, v in rows):
        ax.set_xlim(-1.0, 1.0)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([setting_label(s) + (" (primary)" if s == concl["overall"]["primary_estimator"] else "")
                        for s, _ in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # top to bottom, half a row of margin
    ax.set_xlabel(f"{concl['overall']['primary_metric'].replace('_', ' ')}: DAE − dae_sf (difference of shares)")
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Verdict: {concl['overall']['verdict']} (filled: the estimator counts; hollow: it does not)",
                 fontsize=10)
    return base.save_figure(fig, out_dir, "direction_intervals")


def _pooled_grid(summary: RunSummary, field: str):
    """The models and settings (the study's order) of the pooled mapping records that have `field`, and
    a figure with two panels side by side (settings on x); None when no record has it."""
    stage = summary.study.mappings
    pooled = [r for r in stage.of_kind("pooled") if r.get(field)] if stage is not None else []
    if not pooled:
        return None
    models = order_models(r.model for r in pooled)
    settings = order_settings(r.setting for r in pooled)
    fig = Figure(figsize=(max(8.0, 1.3 * len(settings) + 3), 4.8), layout="constrained")
    return models, settings, fig, fig.subplots(1, 2, squeeze=False)[0]


def heldout_error(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `heldout_error`: per estimator (x) and model (colour), the relative L1 error on the
    unseen test songs (mean and 95 % seed x song interval), with each model's per-bin-gain baseline
    (dashed) and the zero predictor (1, dotted)."""
    summary = summary_of(source)
    grid = _pooled_grid(summary, "rel_l1_heldout")
    if grid is None:
        return []
    models, settings, fig, axes = grid
    for ax, key, title in ((axes[0], "rel_l1_heldout", "raw x ↦ Cx"),
                           (axes[1], "rel_l1_heldout_clipped", "prediction clipped at 0")):
        series = {m: {s: summary.table(m, s, key) for s in settings} for m in models}
        errorbar_groups(ax, settings, series, MODEL_COLOURS)
        for m in models:
            gain = summary.table(m, "per_bin_gain", key, kind="baseline")  # mean over seeds x songs
            if gain is not None:
                ax.axhline(gain.cell_mean if gain.finite else float("nan"), color=MODEL_COLOURS.get(m, "k"),
                           ls="--", lw=0.9, label=f"per-bin gain ({m})")
        ax.axhline(1.0, color="0.4", ls=":", lw=1.0, label="zero predictor")
        ax.set_xticklabels([setting_label(s) for s in settings], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("relative L1 error on unseen songs (lower is better)", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("Does the mapping describe the model on unseen songs? (95 % seed × song intervals)")
    return base.save_figure(fig, out_dir, "heldout_error")


# --------------------------------------------------------------------------------------------------
# linearity of the models (issue 8)

LINEARITY_PANELS = (
    ("weighted_diagonal_energy_ratio", "diagonal energy ratio (weighted)"),
    ("diagonal_energy_ratio", "diagonal energy ratio"),
    ("near_diagonal_energy", "energy within ±k bins of diagonal"),
    ("mean_coupling_distance", "mean coupling distance (bins)"),
)


def linearity(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `linearity`: per model, the distribution over frames (seeds pooled; violins) of the
    structure metrics of the per-frame Jacobians J(x_t), with the same metric of the mean Jacobian
    per seed (black x); and per model the relative L1 error of the per-frame linearisations
    J(x_t) x_t against that of the single mean Jacobian, and the local spread of J(x_t)."""
    summary = summary_of(source)
    stage = summary.study.mappings
    recs = {r.model: r for r in stage.of_kind("model") if r.get("linearity")} if stage is not None else {}
    if not recs:
        return []
    facts = {m: r["linearity"] for m, r in recs.items()}
    models = order_models(facts)
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
            mean_jac = summary.table(m, JACOBIAN, f"metrics.{name}")
            if mean_jac is not None:
                ys = np.asarray(mean_jac.per_seed, np.float64)  # the seeds' means over songs (finite rows)
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
    def seeds(m: str, field: str):
        return summary.table(m, recs[m].setting, f"linearity.{field}", kind="model")

    fid = {
        "per-frame J(x_t) x_t": {m: seeds(m, "rel_l1_per_frame_linear") for m in models},
        "mean Jacobian": {m: seeds(m, "rel_l1_mean_jacobian") for m in models},
    }
    errorbar_groups(
        axes[4], models, fid, {"per-frame J(x_t) x_t": "#9467bd", "mean Jacobian": "k"}
    )
    axes[4].set_xticklabels(models)
    axes[4].set_title("relative L1 error of the linear maps", fontsize=10)
    axes[4].set_ylim(bottom=0)
    axes[4].legend(fontsize=8)
    axes[4].grid(axis="y", alpha=0.3)
    spread = {"local spread": {m: seeds(m, "local_spread") for m in models}}
    errorbar_groups(axes[5], models, spread, {"local spread": "#d62728"})
    axes[5].set_xticklabels(models)
    axes[5].set_title("local spread  sqrt(mean ||J_t − J̄||²) / ||J̄||", fontsize=10)
    axes[5].set_ylim(bottom=0)
    axes[5].grid(axis="y", alpha=0.3)
    fig.suptitle(
        "How linear is each model? Per-frame Jacobians J(x_t) (frames and seeds pooled; "
        "error bars: mean and 95 % CI over seeds)"
    )
    return base.save_figure(fig, out_dir, "linearity")




# --------------------------------------------------------------------------------------------------
# functional diagonality


def keep_shares(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `keep_shares`: per estimator (x) and model (colour), the share of the mapping's held-out
    advantage over silence that its diagonal (left) and its band part (right) keep, mean and 95 % seed
    x song interval (dots: seeds; seed rows where C does not beat silence are left out)."""
    summary = summary_of(source)
    grid = _pooled_grid(summary, "functional")
    if grid is None:
        return []
    models, settings, fig, axes = grid
    for ax, key, title in ((axes[0], "keep_diag", "diagonal diag(C)"), (axes[1], "keep_band", "band part of C")):
        series = {m: {s: summary.table(m, s, f"functional.{key}") for s in settings} for m in models}
        errorbar_groups(ax, settings, series, MODEL_COLOURS)
        ax.axhline(1.0, color="0.4", ls=":", lw=1.0)
        ax.axhline(0.0, color="0.6", ls="-", lw=0.8)
        ax.set_xticklabels([setting_label(s) for s in settings], rotation=35, ha="right", fontsize=8)
        ax.set_xlabel("estimator", fontsize=8)
        ax.set_ylabel("kept share of C's advantage over silence\n(err_zero − err_part) / (err_zero − err_C)",
                      fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Functional diagonality on unseen songs (1: the part alone does what C does; 95 % seed × song "
                 "intervals)")
    return base.save_figure(fig, out_dir, "keep_shares")


# --------------------------------------------------------------------------------------------------
# the under-convergence control

CONTROL_LINESTYLES = ("--", "-", ":", "-.")
CONTROL_MARKERS = ("s", "o", "^", "D")


def _control_x(steps: np.ndarray, offset: float, linthresh: float) -> np.ndarray:
    """Step counts nudged apart for overlapping series: by a factor on the log part of the symlog axis,
    by a share of linthresh at 0."""
    steps = np.asarray(steps, np.float64)
    return np.where(steps > 0, steps * (1.0 + 0.03 * offset), 0.03 * linthresh * offset)


def convergence_control(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `convergence_control`: against the number of Adam steps on P (symmetric-log axis, 0 = P
    frozen at its initialisation), per control setting (line style): left, the fit error per model
    (colour; mean over seeds, dots: seeds); middle and right, the DAE − dae_sf interval per DAE of the
    primary metric and of the authors' weighted diagonal energy ratio (95 % seed × song bootstrap
    interval). From `verdict.convergence_control`; [] when the stage ran no control."""
    summary = summary_of(source)
    control = summary.conclusion.get("convergence_control")
    if not control:
        return []
    groups = verdict.control_groups(summary.study.mappings.records)
    settings = list(dict.fromkeys(r["setting"] for r in control["rows"]))
    all_steps = sorted({r["steps"] for r in control["rows"]})
    positive = [s for s in all_steps if s > 0]
    linthresh = float(min(positive)) if positive else 1.0
    fig = Figure(figsize=(15.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 1 + len(control["metrics"]), squeeze=False)[0]
    models = order_models(m for r in control["rows"] for m in r["fit_error"])
    n_fit, n_iv = len(settings) * len(models), len(settings) * len(verdict.DAE_MODELS)
    for si, setting in enumerate(settings):
        rows = [r for r in control["rows"] if r["setting"] == setting]
        steps = np.array([r["steps"] for r in rows], np.float64)
        ls, mk = CONTROL_LINESTYLES[si % len(CONTROL_LINESTYLES)], CONTROL_MARKERS[si % len(CONTROL_MARKERS)]
        for mi, m in enumerate(models):
            c = MODEL_COLOURS.get(m, "k")
            mean = np.array([np.nan if r["fit_error"].get(m) is None else r["fit_error"][m] for r in rows])
            x = _control_x(steps, si * len(models) + mi - (n_fit - 1) / 2, linthresh)
            axes[0].plot(x, mean, ls=ls, marker=mk, color=c, label=f"{m}, {setting_label(setting)}")
            for xi, r in zip(x, rows, strict=True):
                per_seed = np.asarray((groups[(setting, r["steps"])].get(m) or {}).get("rel_l1_fit") or [],
                                      np.float64)
                axes[0].plot(np.full(per_seed.size, xi), per_seed, ".", color=c, alpha=0.3, ms=3)
        for ax, metric in zip(axes[1:], control["metrics"], strict=True):
            for k, dae in enumerate(verdict.DAE_MODELS):
                ivs = [r["directions"][metric]["intervals"].get(dae) for r in rows]
                keep = [i for i, iv in enumerate(ivs) if iv is not None]
                if not keep:
                    continue
                x = _control_x(steps[keep], si * len(verdict.DAE_MODELS) + k - (n_iv - 1) / 2, linthresh)
                mean = np.array([ivs[i]["mean"] for i in keep])
                err = np.array([[ivs[i]["mean"] - ivs[i]["lo"], ivs[i]["hi"] - ivs[i]["mean"]] for i in keep]).T
                ax.errorbar(x, mean, yerr=err, ls=ls, marker=mk, color=MODEL_COLOURS.get(dae, "k"), capsize=3,
                            ms=5, label=f"{dae} − dae_sf, {setting_label(setting)}")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.6)
        ax.set_xlim(-0.5 * linthresh, max(all_steps) * 1.6 if positive else 1.0)
        ax.set_xticks(all_steps)
        ax.set_xticklabels([f"{s:,}" + ("\n(P frozen)" if s == 0 else "") for s in all_steps], fontsize=8)
        ax.set_xlabel("Adam steps on P (symmetric-log axis)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative L1 error on the fit frames (ratio, lower is better)", fontsize=9)
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("fit error (mean over seeds; dots: seeds)", fontsize=10)
    axes[0].legend(fontsize=7, loc="best")
    for ax, metric in zip(axes[1:], control["metrics"], strict=True):
        ax.axhline(0.0, color="0.3", lw=0.9)
        name = metric.replace("_", " ")
        ax.set_ylabel(f"DAE − dae_sf of the {name}\n(difference of shares, 0–1 scale)", fontsize=9)
        ax.set_title(name + (" (primary)" if metric == control["metrics"][0] else " (the authors' metric)"),
                     fontsize=10)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7, loc="best")
        else:  # no finite table on this metric (e.g. C never beats silence on some seed x song)
            ax.text(0.5, 0.5, "no finite interval", transform=ax.transAxes, ha="center", color="0.4")
    frozen = "reproduces" if control["frozen_p_reproduces_authors"] else "does not reproduce"
    fig.suptitle(f"Under-convergence control: fit error and DAE − dae_sf against fit steps (95 % seed × song "
                 f"intervals; above 0: the DAE is more diagonal). Frozen P {frozen} the authors' direction.",
                 fontsize=10)
    return base.save_figure(fig, out_dir, "convergence_control")
