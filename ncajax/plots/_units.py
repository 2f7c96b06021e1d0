"""The separators' output units and level robustness, from the evaluation stage's result: the live share
of output units per octave band (`live_units`, with the homogeneity errors; its statistics over seeds
are the run summary's, `ncajax.results`) and the per-song separation gain against the song's loudness
(`sdr_vs_loudness`, a per-song mean over seeds and a least-squares line, drawn from the saved
per-track scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import runs
from . import _base as base
from ._base import MODEL_COLOURS, Source, order_models, summary_of


def _evaluation(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "evaluation" / "result.json"
    return runs.read_json(path) if path.exists() else None


def live_units(source: Source, out_dir: str | Path) -> list[Path]:
    """Figure `live_units`: left, the share of output units alive on the held-out songs per octave band
    (x: band centre, Hz, log), one line per model (mean over seeds, band of min-max over seeds); right,
    the homogeneity error per model at alpha = 1/4 and 4 (bars: mean over seeds; dots: seeds). The
    statistics over seeds are the summary's (`ncajax.results`'s `UnitsSummary`). `source`: a run directory
    or its `RunSummary`."""
    summary = summary_of(source)
    summaries = summary.units
    if not summaries:
        return []
    units = summary.study.evaluation.units
    models = order_models(summaries)
    fig = Figure(figsize=(10.5, 3.8), layout="constrained")
    ax, hx = fig.subplots(1, 2, width_ratios=[2.2, 1.0])
    for m in models:
        u = summaries[m]
        keep = [k for k, b in enumerate(u.bands) if b["hi_hz"] > 0]
        centre = np.asarray([np.sqrt(u.bands[k]["lo_hz"] * u.bands[k]["hi_hz"]) for k in keep])
        colour = MODEL_COLOURS.get(m, "k")
        ax.plot(centre, [u.live_share_mean[k] for k in keep], "o-", color=colour,
                label=f"{m} (dead {u.dead_share_mean:.1%})")
        ax.fill_between(centre, [u.live_share_min[k] for k in keep], [u.live_share_max[k] for k in keep],
                        color=colour, alpha=0.15)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.axhline(0.95, color="0.5", ls=":", lw=1.0, label="95 % live (target)")
    ax.set_xlabel("octave band centre (Hz)")
    ax.set_ylabel("live share of output units")
    ax.set_title("Output units alive on the held-out songs", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    alphas = sorted(units[models[0]]["homogeneity"], key=float)
    width = 0.8 / max(1, len(alphas))
    for k, a in enumerate(alphas):
        for i, m in enumerate(models):
            vals = np.asarray(units[m]["homogeneity"][a], np.float64)
            xpos = i + (k - (len(alphas) - 1) / 2) * width
            hx.bar(xpos, summaries[m].homogeneity_mean[a], width * 0.9, color=MODEL_COLOURS.get(m, "k"),
                   alpha=0.45 if k == 0 else 0.85, label=f"α = {float(a):g}" if i == 0 else None)
            hx.plot(np.full(vals.shape, xpos), vals, "k.", ms=3)
    hx.set_xticks(range(len(models)), models)
    hx.set_ylabel("‖f(αx) − αf(x)‖ / ‖αf(x)‖")
    hx.set_xlabel("model")
    hx.set_title("Homogeneity error (0: scales with level)", fontsize=10)
    hx.grid(axis="y", alpha=0.3)
    hx.legend(fontsize=8)
    return base.save_figure(fig, out_dir, "live_units")


def sdr_vs_loudness(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Figure `sdr_vs_loudness`: per test song, the magnitude-SDR gain over the mixture (dB, mean over
    seeds) against the song's mixture loudness (RMS, dBFS), one colour per model, with a least-squares
    line; a level-robust separator has a flat line."""
    ev = _evaluation(Path(run_dir))
    if not ev or not ev.get("loudness"):
        return []
    per_track = ev["per_track"]
    loud = ev["loudness"]
    mix = per_track.get("mixture") or {}
    groups: dict[str, list[dict]] = {}
    for pred, tracks in per_track.items():
        if "/seed" in pred:
            groups.setdefault(pred.rsplit("/seed", 1)[0], []).append(tracks)
    if not groups:
        return []
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for m in order_models(groups):
        xs, ys = [], []
        for name, level in loud.items():
            ref = (mix.get(name) or {}).get("mag_sdr")
            vals = [t[name]["mag_sdr"] for t in groups[m] if name in t and t[name].get("mag_sdr") is not None]
            if ref is None or not vals or not np.all(np.isfinite(vals)) or not np.isfinite(ref):
                continue
            xs.append(level)
            ys.append(float(np.mean(vals)) - ref)
        if not xs:
            continue
        xs, ys = np.asarray(xs), np.asarray(ys)
        colour = MODEL_COLOURS.get(m, "k")
        slope = np.polyfit(xs, ys, 1) if len(xs) > 1 else None
        label = m if slope is None else f"{m} ({slope[0]:+.2f} dB per dB)"
        ax.plot(xs, ys, "o", color=colour, ms=4, alpha=0.8, label=label)
        if slope is not None:
            grid = np.linspace(xs.min(), xs.max(), 2)
            ax.plot(grid, np.polyval(slope, grid), "-", color=colour, lw=1.2)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("song loudness: mixture RMS (dBFS)")
    ax.set_ylabel("magnitude-SDR gain over the mixture (dB)")
    ax.set_title("Separation gain per held-out song against its loudness (mean over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return base.save_figure(fig, out_dir, "sdr_vs_loudness")
