"""The REPORT.md sections on the models themselves: separation quality (test tracks and real music),
whether one matrix is a fair summary of a model (per-frame Jacobians) and dead units."""

from __future__ import annotations

import numpy as np

from ..config import PRIMARY_ESTIMATOR
from ..study._results import MappingStage, StudyRun, per_model
from ._format import METRIC_LABELS, POOR_SPREAD, fmt, fmt_pm, join_code, md_table, seed_stat


def _separation_rows(run: StudyRun, ev: dict, has_bss: bool) -> list[list[str]]:
    """One row per model (mean ± CI over seeds), then the mixture and oracle IRM references."""
    seeds_of = per_model(ev)
    rows = []

    def bss(summs, key):
        return seed_stat([(s.get("vocals") or {}).get(key) for s in summs])

    for model in run.models():
        summs = seeds_of.get(model, [])
        train = run.train.get(model)
        row = [f"`{model}`"]
        if has_bss:
            row += [fmt_pm(bss(summs, k), 2) for k in ("SDR", "SIR", "SAR")]
        row += [
            fmt_pm(seed_stat([s.get("mag_sdr") for s in summs]), 2),
            fmt_pm(seed_stat(train.get("test_improvement_db") if train is not None else None), 2),
        ]
        rows.append(row)
    for ref in ("mixture", "oracle_irm"):
        if ref in ev:
            s = ev[ref]
            row = [
                f"*{ref}*" + (" (evaluation stage, mean over tracks)" if ref == "mixture" else "")
            ]
            if has_bss:
                row += [fmt((s.get("vocals") or {}).get(k), 2) for k in ("SDR", "SIR", "SAR")]
            row += [fmt(s.get("mag_sdr"), 2), "—"]
            rows.append(row)
    return rows


SISEC_HOW = (
    "SiSEC 2018-comparable numbers (stereo, at the tracks' own rate, full band, museval's per-track JSON, "
    "median over frames then tracks, with nSDR): `ncajax.separation.evaluate_sisec(ncajax.separation.model_separator"
    "(RUN_DIR, seed_index=k), ncajax.separation.stereo_tracks(MUSDB_ROOT, \"test\"), OUT)`, or "
    "`ncajax-sisec evaluate RUN_DIR --root MUSDB_ROOT --out OUT` (one OUT per model and seed; "
    "`ncajax-sisec aggregate OUT...` across seeds)."
)


def _scope(run: StudyRun) -> tuple[str, str]:
    """("mono, 8 kHz", the sentence saying what the evaluation stage's numbers are and are not)."""
    cfg = run.train_config()
    rate = (cfg.get("stft") or {}).get("sample_rate")
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    dataset = data.get("dataset") or "the study's dataset"
    dataset = f"the {dataset}" if dataset.startswith("embedded") else dataset
    at = f"{rate / 1000:g} kHz" if rate else "the model's rate"
    band = f", the band up to {rate / 2000:g} kHz" if rate else ""
    sentence = (f"**Scope of these numbers:** mono (channels averaged), at the model's rate ({at}{band}), on "
                f"{dataset}'s test songs: a yardstick between the study's models, **not comparable with "
                "published MUSDB18 (SiSEC 2018, MDX) results**, which score stereo at 44.1 kHz over the "
                "whole band.")
    return f"mono, {at}", sentence


def _training_recipes(run: StudyRun) -> str:
    """One sentence naming each model's training recipe as its run recorded it (the loss differs between
    the model families in the "study" recipe, a difference between the study's subjects)."""
    parts = []
    for name, tr in run.train.items():
        cfg = (tr.config or {}).get("train") or {}
        if not cfg:
            continue
        bias = cfg.get("mask_bias", 0.0)
        extra = f", mask bias start {bias:g}" if name == "dae_sf" and bias else ""
        parts.append(f"`{name}` {cfg.get('recipe', '?')}, loss {cfg.get('loss', '?')}"
                     f", ±{cfg.get('augment_gain_db', 0):g} dB gain{extra}")
    if not parts:
        return ""
    losses = {((tr.config or {}).get("train") or {}).get("loss") for tr in run.train.values()} - {None}
    why = (" The models train with different losses: MSE keeps the DAEs' output units alive, L1 with a "
           "mask-bias start `dae_sf`'s mask units, so the loss is a difference between the study's subjects "
           "(README, \"The training recipe\")." if len(losses) > 1 else "")
    return "Training (as each run recorded it): " + "; ".join(parts) + "." + why


def separation_section(run: StudyRun) -> list[str]:
    lines = ["## Separation quality", ""]
    ev = run.evaluation.summary if run.evaluation is not None else {}
    has_bss = any("vocals" in s for s in ev.values())
    label, scope = _scope(run)
    header = ["model"] + ([f"vocals SDR (dB, {label})", "SIR (dB)", "SAR (dB)"] if has_bss else [])
    header += ["magnitude SDR (dB)", "test mag. SDR improvement (dB, training stage)"]
    lines += md_table(header, _separation_rows(run, ev, has_bss))
    mix = next((t.get("test_mixture_mag_sdr_db") for t in run.train.values()
                if t.get("test_mixture_mag_sdr_db") is not None), None)
    lines += [
        "",
        "Models: mean ± 95 % CI (Student t) over seeds. "
        + (
            "museval BSS Eval v4 on the waveforms: median over 1 s windows, then median over "
            "tracks. "
            if has_bss
            else ""
        )
        + "Magnitude SDR (evaluation stage): mean over test tracks. The last column is the "
        "training stage's improvement of the test magnitude SDR over the mixture, both pooled "
        "over all test frames"
        + (
            f" (the training stage's pooled mixture magnitude SDR: {mix:.2f} dB; the "
            "*mixture* row above is the evaluation stage's mean over tracks, so the two differ)."
            if mix is not None
            else "."
        ),
        "",
        f"{scope} {SISEC_HOW}",
    ]
    if recipes := _training_recipes(run):
        lines += ["", recipes]
    if run.evaluation is None:
        lines += [
            "",
            "_No evaluation results in this run: run the evaluation stage for museval and "
            "magnitude SDR on the test tracks._",
        ]
    elif not has_bss:
        lines += ["", "_museval was skipped in this run (--no-bss): magnitude SDR only._"]
    return lines


def real_music_section(run: StudyRun) -> list[str]:
    real = run.evaluation.real if run.evaluation is not None else None
    if not real:
        return []
    ev = real.get("summary", {})

    def sdr(summary):
        return (summary.get("vocals") or {}).get("SDR") if summary else None

    mix, irm = sdr(ev.get("mixture")), sdr(ev.get("oracle_irm"))
    lines = ["### On real music", "",
             f"Every model, trained on the embedded corpus only, on the real MUSDB18 track(s) "
             f"{join_code(real.get('tracks', []))} (mono, resampled to the model's rate, so only the band the "
             "model hears: not comparable with published MUSDB18 results; `ncajax.separation` scores it in stereo "
             "at 44.1 kHz): vocals SDR (museval, median over 1 s windows), mean ± 95 % CI over seeds, and its "
             "improvement over the unprocessed mixture.", ""]
    rows, seeds_of = [], per_model(ev)
    for model in run.models():
        vals = [sdr(v) for v in seeds_of.get(model, [])]
        st = seed_stat(vals)
        gain = None if st is None or mix is None else {**st, "mean": st["mean"] - mix, "lo": st["lo"] - mix,
                                                        "hi": st["hi"] - mix}
        rows.append([f"`{model}`", fmt_pm(st, 2), fmt_pm(gain, 2)])
    rows += [["*mixture*", fmt(mix, 2), "0.00"], ["*oracle IRM*", fmt(irm, 2), fmt(None if irm is None or mix is None
                                                                                 else irm - mix, 2)]]
    return lines + md_table(["model", "vocals SDR (dB)", "improvement over the mixture (dB)"], rows)


def _linearity_rows(recs: dict) -> tuple[list[list[str]], list[str]]:
    rows, sentences = [], []
    for model, r in recs.items():
        lin = r["linearity"]
        spread = seed_stat([x.get("local_spread") for x in lin])
        mean_j = seed_stat([x.get("rel_l1_mean_jacobian") for x in lin])
        frame = seed_stat([x.get("rel_l1_per_frame_linear") for x in lin])
        dead = sum(x.get("zero_jacobian_frames", 0) for x in lin)
        total = sum(x.get("n_frames", 0) for x in lin)
        rows.append([f"`{model}`", fmt_pm(spread), fmt_pm(mean_j), fmt_pm(frame), f"{dead}/{total}"])
        if spread is None:
            continue
        verdict_ = "a poor" if spread["mean"] > POOR_SPREAD else "a fair"
        s = f"- `{model}`: local spread {spread['mean']:.2f} (threshold {POOR_SPREAD}): one matrix is {verdict_} summary."
        if mean_j is not None and frame is not None:
            s += (f" The per-frame linearisations reproduce its output with error {frame['mean']:.3f}, "
                  f"the mean Jacobian with {mean_j['mean']:.3f}.")
        sentences.append(s)
    return rows, sentences


def linearity_section(run: StudyRun) -> list[str]:
    lines = ["## Is one matrix a fair summary?", ""]
    m = run.mappings
    recs = {} if m is None else {r.model: r for r in m.of_kind("model") if r.get("linearity")}
    if not recs:
        return lines + ["_No per-frame Jacobian results in this run._"]
    lines += ["A mapping matrix is one linear map for all frames. The per-frame Jacobians J(xₜ) of a model show "
              "how far one matrix can stand for it: the *local spread* sqrt(mean‖Jₜ − J̄‖²) / ‖J̄‖, the "
              "relative L1 error of the mean Jacobian J̄ against that of the per-frame linearisations "
              "(xₜ ↦ Jₜxₜ), and quantiles over frames of the Jₜ's structure metrics. Frames whose Jacobian is "
              "all zero (every unit shut) are left out of the quantiles and counted. Mean ± 95 % CI over the "
              "seeds analysed.", ""]
    rows, sentences = _linearity_rows(recs)
    lines += md_table(["model", "local spread", "rel. L1 mean Jacobian", "rel. L1 per-frame linear",
                     "all-zero Jacobians (frames)"], rows)
    lines += [""] + sentences + ["", "Quantiles over frames of the per-frame Jacobians' structure metrics "
                                 "(each quantile averaged over seeds):", ""]
    qrows = []
    for model, r in recs.items():
        qs = [x.get("frame_metric_quantiles", {}) for x in r["linearity"]]
        for metric in (k for k in METRIC_LABELS if k in qs[0]):
            vals = [q[metric] for q in qs if q.get(metric) is not None]
            if vals:
                qrows.append([f"`{model}`", METRIC_LABELS[metric],
                              *(fmt(v) for v in np.asarray(vals, dtype=float).mean(axis=0))])
    levels = next(iter(recs.values()))["linearity"][0].get("quantile_levels", [0.05, 0.25, 0.5, 0.75, 0.95])
    return lines + md_table(["model", "metric", *(f"q{round(q * 100):02d}" for q in levels)], qrows)


def dead_units_section(run: StudyRun) -> list[str]:
    lines = ["## Dead units", ""]
    m = run.mappings
    if m is None:
        return lines + ["_No mapping stage results in this run._"]
    rows, errs = [], []
    for model in run.models():
        r = m.record(model, "-", "model") or {}
        if r.get("dead_units"):
            du = r["dead_units"]
            layers = sorted((k for k in du[0] if k.startswith("layer_")), key=lambda k: int(k[6:]))
            per_layer = ", ".join(f"{k[6:]}: {fmt_pm(seed_stat([d.get(k) for d in du]), 2)}" for k in layers)
            rows.append([f"`{model}`", fmt_pm(seed_stat([d.get("overall") for d in du])),
                         fmt_pm(seed_stat([d.get("output") for d in du])), per_layer])
        elif r.get("dead_units_error"):
            errs.append(f"- `{model}`: not a plain stack of dense layers ({r['dead_units_error']}).")
    if rows:
        lines += ["Share of ReLU units that output zero on every fit frame (mean ± 95 % CI over seeds):", ""]
        lines += md_table(["model", "overall", "output layer", "per layer"], rows)
    return lines + errs


def _octave_label(band: dict) -> str:
    lo, hi = band["lo_hz"], band["hi_hz"]
    if hi == 0:
        return "0 Hz"
    return f"{lo / 1000:.2g}-{hi / 1000:.2g} kHz" if lo >= 1000 else f"{lo:.0f}-{hi:.0f} Hz"


def live_units_section(run: StudyRun) -> list[str]:
    """Dead output units on the held-out songs, the live share per octave band and the homogeneity
    errors, per model (from the evaluation stage's "units")."""
    lines = ["## Live output units and level robustness", ""]
    units = run.evaluation.units if run.evaluation is not None else None
    if not units:
        return lines + ["_This run's evaluation has no unit facts (evaluated before they were recorded)._"]
    rows, bands_rows = [], []
    bands = None
    for model in run.models():
        u = units.get(model)
        if not u:
            continue
        dead = np.asarray(u["dead_share"], np.float64)
        homog = u.get("homogeneity") or {}
        rows.append([f"`{model}`", f"{dead.mean():.3f}", f"{dead.max():.3f}",
                     *(fmt(float(np.mean(homog[a])), 3) if a in homog else "—" for a in ("0.25", "4"))])
        per_seed = u["live_by_octave"]
        bands = per_seed[0]
        share = np.mean([[b["live_share"] for b in seed] for seed in per_seed], axis=0)
        bands_rows.append([f"`{model}`", *(f"{v:.2f}" for v in share)])
    lines += [
        f"Output units (for `dae_sf` its mask units) that are zero on every frame of the {next(iter(units.values()))['frames']:,} "
        "held-out test frames, per model (mean and worst seed), and the homogeneity error "
        "‖f(αx) − αf(x)‖ / ‖αf(x)‖ at α = ¼ and 4 (0 for a map that scales with its input's level; "
        "mean over seeds). Target: at most 5 % dead output units for every model.", "",
    ]
    lines += md_table(["model", "dead output share (mean)", "worst seed", "homogeneity α = ¼", "α = 4"], rows)
    if bands is not None:
        lines += ["", "Live share of output units per octave band (mean over seeds):", ""]
        lines += md_table(["model", *(f"{_octave_label(b)} ({b['n_units']})" for b in bands)], bands_rows)
    return lines


def _control_row(label: str, model: str, mappings: MappingStage | None) -> list[str] | None:
    """One row of the recipe control: dead output share on the fit frames and the primary estimator's
    held-out error (clipped), diagonal keep and weighted diagonal energy ratio, means over seeds × songs."""
    if mappings is None:
        return None
    facts = mappings.record(model, "-", "model") or {}
    fit = mappings.record(model, PRIMARY_ESTIMATOR)
    if fit is None:
        return None
    dead = seed_stat([d.get("output") for d in facts.get("dead_units") or []])

    def mean_of(table):
        arr = np.asarray(table if table is not None else [], np.float64)
        arr = arr[np.isfinite(arr)] if arr.size else arr
        return fmt(float(arr.mean())) if arr.size else "—"

    fn = fit.get("functional") or {}
    return [f"`{model}`", label, fmt_pm(dead), mean_of(fit.get("rel_l1_heldout_clipped")),
            mean_of(fn.get("keep_diag")), mean_of((fit.get("metrics") or {}).get("weighted_diagonal_energy_ratio")),
            str(len(fit.get("rel_l1_heldout_clipped") or []))]


def recipe_control_section(run: StudyRun) -> list[str]:
    """What dying output units did to the mappings: the models trained with the recipe before
    2026-12-05 (raw magnitudes, MSE; about a fifth to a half of the DAEs' output units die) against the
    study's models, under the primary estimator (the `control/` stage of the study)."""
    control = run.recipe_control
    lines = ["## What dying units did to the mappings", ""]
    if not control:
        return lines + ["_This run has no recipe control (`control/`): run the study with the control on._"]
    rows = []
    recipe = ((control.train_config or {}).get("train") or {})
    for model in run.models():
        for label, m in (("raw magnitudes, MSE (before)", control.mappings),
                         ("the study's recipe", run.mappings)):
            row = _control_row(label, model, m)
            if row is not None:
                rows.append(row)
    if not rows:
        return lines + ["_The recipe control's mapping stage has no records yet._"]
    lines += [f"The same models trained with the earlier recipe (`recipe={recipe.get('recipe', 'raw')!r}`, "
              f"`loss={recipe.get('loss', 'mse')!r}`, {recipe.get('n_seeds', '?')} seeds) and mapped by the primary "
              f"estimator `{PRIMARY_ESTIMATOR}` on the same frames. Dead output share on the fit frames (mean ± "
              "95 % CI over seeds); held-out relative L1 error (clipped) and weighted diagonal energy ratio, means "
              "over seeds × unseen songs; diagonal keep, mean over the seed × song cells where the mapping "
              "beats silence (it is undefined elsewhere; below 0, diag(C) alone is worse than silence). A dead output row of C is zero whatever the "
              "estimator, so a half-dead DAE's mapping is diagonal-looking on a smaller support.", ""]
    lines += md_table(["model", "training", "dead output share", "held-out error", "diagonal keep",
                       "weighted diag. ratio", "seeds"], rows)
    return lines
