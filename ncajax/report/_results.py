"""The REPORT.md sections on the models themselves: separation quality (test tracks and real music),
whether one matrix is a fair summary of a model (per-frame Jacobians), live and dead units and the
recipe control. Each renders the run's summary (`ncajax.results`): the means ± CI over seeds are its
`SeedStat`s, nothing is computed here."""

from __future__ import annotations

from ..config import PRIMARY_ESTIMATOR
from ..results._records import StudyRun
from ..results._summary import POOR_SPREAD, ControlRow, RunSummary
from ._format import METRIC_LABELS, fmt, fmt_pm, join_code, md_table


def _separation_rows(summary: RunSummary, ev: dict, has_bss: bool) -> list[list[str]]:
    """One row per model (mean ± CI over seeds), then the mixture and oracle IRM references."""
    sep = summary.separation
    rows = []
    for model in summary.study.models():
        row = [f"`{model}`"]
        if has_bss:
            row += [fmt_pm(sep.score(model, f"vocals.{k}"), 2) for k in ("SDR", "SIR", "SAR")]
        row += [fmt_pm(sep.score(model, "mag_sdr"), 2), fmt_pm(sep.test_improvement.get(model), 2)]
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


def separation_section(summary: RunSummary) -> list[str]:
    run = summary.study
    lines = ["## Separation quality", ""]
    ev = run.evaluation.summary if run.evaluation is not None else {}
    has_bss = any("vocals" in s for s in ev.values())
    label, scope = _scope(run)
    header = ["model"] + ([f"vocals SDR (dB, {label})", "SIR (dB)", "SAR (dB)"] if has_bss else [])
    header += ["magnitude SDR (dB)", "test mag. SDR improvement (dB, training stage)"]
    lines += md_table(header, _separation_rows(summary, ev, has_bss))
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


def real_music_section(summary: RunSummary) -> list[str]:
    run, sep = summary.study, summary.separation
    real = run.evaluation.real if run.evaluation is not None else None
    if not real:
        return []
    lines = ["### On real music", "",
             f"Every model, trained on the embedded corpus only, on the real MUSDB18 track(s) "
             f"{join_code(real.get('tracks', []))} (mono, resampled to the model's rate, so only the band the "
             "model hears: not comparable with published MUSDB18 results; `ncajax.separation` scores it in stereo "
             "at 44.1 kHz): vocals SDR (museval, median over 1 s windows), mean ± 95 % CI over seeds, and its "
             "improvement over the unprocessed mixture.", ""]
    rows = [[f"`{model}`", fmt_pm(sep.real_sdr.get(model), 2), fmt_pm(sep.real_gain.get(model), 2)]
            for model in run.models()]
    rows += [["*mixture*", fmt(sep.real_mixture, 2), "0.00"],
             ["*oracle IRM*", fmt(sep.real_oracle, 2), fmt(sep.real_oracle_gain, 2)]]
    return lines + md_table(["model", "vocals SDR (dB)", "improvement over the mixture (dB)"], rows)


def _linearity_rows(summary: RunSummary) -> tuple[list[list[str]], list[str]]:
    rows, sentences = [], []
    for model, lin in summary.linearity.items():
        spread, mean_j, frame = lin.local_spread, lin.rel_l1_mean_jacobian, lin.rel_l1_per_frame_linear
        rows.append([f"`{model}`", fmt_pm(spread), fmt_pm(mean_j), fmt_pm(frame), f"{lin.zero_frames}/{lin.n_frames}"])
        if spread is None:
            continue
        verdict_ = "a poor" if lin.poor else "a fair"
        s = f"- `{model}`: local spread {spread.mean:.2f} (threshold {POOR_SPREAD}): one matrix is {verdict_} summary."
        if mean_j is not None and frame is not None:
            s += (f" The per-frame linearisations reproduce its output with error {frame.mean:.3f}, "
                  f"the mean Jacobian with {mean_j.mean:.3f}.")
        sentences.append(s)
    return rows, sentences


def linearity_section(summary: RunSummary) -> list[str]:
    lines = ["## Is one matrix a fair summary?", ""]
    if not summary.linearity:
        return lines + ["_No per-frame Jacobian results in this run._"]
    lines += ["A mapping matrix is one linear map for all frames. The per-frame Jacobians J(xₜ) of a model show "
              "how far one matrix can stand for it: the *local spread* sqrt(mean‖Jₜ − J̄‖²) / ‖J̄‖, the "
              "relative L1 error of the mean Jacobian J̄ against that of the per-frame linearisations "
              "(xₜ ↦ Jₜxₜ), and quantiles over frames of the Jₜ's structure metrics. Frames whose Jacobian is "
              "all zero (every unit shut) are left out of the quantiles and counted. Mean ± 95 % CI over the "
              "seeds analysed.", ""]
    rows, sentences = _linearity_rows(summary)
    lines += md_table(["model", "local spread", "rel. L1 mean Jacobian", "rel. L1 per-frame linear",
                     "all-zero Jacobians (frames)"], rows)
    lines += [""] + sentences + ["", "Quantiles over frames of the per-frame Jacobians' structure metrics "
                                 "(each quantile averaged over seeds):", ""]
    qrows = [[f"`{model}`", METRIC_LABELS[metric], *(fmt(v) for v in lin.quantiles[metric])]
             for model, lin in summary.linearity.items() for metric in METRIC_LABELS if metric in lin.quantiles]
    levels = next(iter(summary.linearity.values())).quantile_levels
    return lines + md_table(["model", "metric", *(f"q{round(q * 100):02d}" for q in levels)], qrows)


def dead_units_section(summary: RunSummary) -> list[str]:
    lines = ["## Dead units", ""]
    if summary.study.mappings is None:
        return lines + ["_No mapping stage results in this run._"]
    rows, errs = [], []
    for model, du in summary.dead_units.items():
        if du.error is not None:
            errs.append(f"- `{model}`: not a plain stack of dense layers ({du.error}).")
            continue
        per_layer = ", ".join(f"{k[6:]}: {fmt_pm(st, 2)}" for k, st in du.layers.items())
        rows.append([f"`{model}`", fmt_pm(du.overall), fmt_pm(du.output), per_layer])
    if rows:
        lines += ["Share of ReLU units that output zero on every fit frame (mean ± 95 % CI over seeds):", ""]
        lines += md_table(["model", "overall", "output layer", "per layer"], rows)
    return lines + errs


def _octave_label(band: dict) -> str:
    lo, hi = band["lo_hz"], band["hi_hz"]
    if hi == 0:
        return "0 Hz"
    return f"{lo / 1000:.2g}-{hi / 1000:.2g} kHz" if lo >= 1000 else f"{lo:.0f}-{hi:.0f} Hz"


def live_units_section(summary: RunSummary) -> list[str]:
    """Dead output units on the held-out songs, the live share per octave band and the homogeneity
    errors, per model (the summary of the evaluation stage's "units")."""
    lines = ["## Live output units and level robustness", ""]
    units = summary.units
    if not units:
        return lines + ["_This run's evaluation has no unit facts (evaluated before they were recorded)._"]
    rows, bands_rows = [], []
    bands = None
    for model in summary.study.models():
        u = units.get(model)
        if u is None:
            continue
        homog = u.homogeneity_mean
        rows.append([f"`{model}`", f"{u.dead_share_mean:.3f}", f"{u.dead_share_max:.3f}",
                     *(fmt(homog[a], 3) if a in homog else "—" for a in ("0.25", "4"))])
        bands = u.bands
        bands_rows.append([f"`{model}`", *(f"{v:.2f}" for v in u.live_share_mean)])
    lines += [
        f"Output units (for `dae_sf` its mask units) that are zero on every frame of the {next(iter(units.values())).frames:,} "
        "held-out test frames, per model (mean and worst seed), and the homogeneity error "
        "‖f(αx) − αf(x)‖ / ‖αf(x)‖ at α = ¼ and 4 (0 for a map that scales with its input's level; "
        "mean over seeds). Target: at most 5 % dead output units for every model.", "",
    ]
    lines += md_table(["model", "dead output share (mean)", "worst seed", "homogeneity α = ¼", "α = 4"], rows)
    if bands is not None:
        lines += ["", "Live share of output units per octave band (mean over seeds):", ""]
        lines += md_table(["model", *(f"{_octave_label(b)} ({b['n_units']})" for b in bands)], bands_rows)
    return lines


CONTROL_LABELS = {"control": "raw magnitudes, MSE (before)", "study": "the study's recipe"}


def _control_row(row: ControlRow) -> list[str]:
    """One row of the recipe control: dead output share on the fit frames and the primary estimator's
    held-out error (clipped), diagonal keep and weighted diagonal energy ratio, means over seeds × songs."""
    return [f"`{row.model}`", CONTROL_LABELS.get(row.stage, row.stage), fmt_pm(row.dead_output),
            *(fmt(v) if v is not None else "—" for v in (row.heldout_clipped, row.keep_diag,
                                                         row.weighted_diagonal_energy_ratio)),
            str(row.n_seeds)]


def recipe_control_section(summary: RunSummary) -> list[str]:
    """What dying output units did to the mappings: the models trained with the recipe before
    2026-12-05 (raw magnitudes, MSE; about a fifth to a half of the DAEs' output units die) against the
    study's models, under the primary estimator (the `control/` stage of the study)."""
    control = summary.study.recipe_control
    lines = ["## What dying units did to the mappings", ""]
    if not control:
        return lines + ["_This run has no recipe control (`control/`): run the study with the control on._"]
    recipe = ((control.train_config or {}).get("train") or {})
    rows = [_control_row(r) for r in summary.recipe_control]
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
