"""The study's verdict, computed from the numbers the mapping stage saved (pure functions, no I/O).

The claim tested: "the DAEs' mappings are more diagonal than the skip-filtering model's". Rules, fixed
before any number is seen:

- One primary estimator (`config.PRIMARY_ESTIMATOR`, the authors' NCA run to convergence) and one
  primary metric (`config.PRIMARY_METRIC`); every other setting and metric is a secondary opinion.
- A direction (DAE minus `dae_sf` of the metric) counts only when its seed x song bootstrap interval
  (`ncajax.stats`) excludes 0; otherwise it is "undetermined", never "does not hold".
- A fitted mapping is *informative* for a model only when its held-out error is clearly below the best
  per-bin gain's (the interval of the paired difference lies below 0) and below the zero predictor's.
  Otherwise it describes no more than per-bin filtering of unseen songs, and its structure says
  nothing about couplings. An estimator's direction counts only when it is informative for every model
  compared and, for iterative fits, converged for at least half the seeds of every model.
- The mean Jacobian is not a fit: it is never gated by fit error (its errors are reported). The
  diag(m(x)) part of `dae_sf`'s Jacobian is diagonal by construction and never counts toward a
  direction: for `dae_sf` the Jacobian's direction uses its mask_jacobian part (diag(x) ∂m/∂x) alone.
- One prediction rule for every gate: the mapping, the per-bin gain and the zero predictor are all
  judged with their predictions clipped at 0 (the raw errors are reported beside them).
- Per model, one branch (`model_branch`): "couplings" (C clearly beats the per-bin gain and silence),
  "per_bin_filter_suffices" (C no better than the per-bin gain on unseen songs and diag(C) keeps at
  least `KEEP_SUFFICES` of C's advantage over silence), "no_linear_summary" (neither C nor the
  per-bin gain clearly beats silence), else "undetermined". The overall verdict is "holds" /
  "reversed" when the primary estimator counts; otherwise "no_linear_summary" when it is so for some
  model, else "per_bin_filter_suffices" when it is so for some model, else "undetermined".
"""

from __future__ import annotations

import numpy as np

from ..config import CONTROL_SETTINGS, KEEP_SUFFICES, NCA_AUTHORS, PRIMARY_ESTIMATOR, PRIMARY_METRIC
from ..stats import seed_song_bootstrap, sign

DAE_MODELS = ("dae", "dae_deep")
SF_MODEL = "dae_sf"
SECONDARY_METRIC = "diagonal_energy_ratio"
# The authors' own metric (the input-energy weighted diagonal energy ratio of C), and the metrics the
# under-convergence control reports its DAE − dae_sf intervals on.
AUTHORS_METRIC = "weighted_diagonal_energy_ratio"
CONTROL_METRICS = (PRIMARY_METRIC, AUTHORS_METRIC)
# metrics read from a record's "functional" tables (per seed x song), under their table names
FUNCTIONAL_METRICS = {"diagonal_keep": "keep_diag", "band_keep": "keep_band"}
BRANCHES = ("couplings", "per_bin_filter_suffices", "no_linear_summary", "undetermined")
VERDICTS = ("holds", "reversed", "per_bin_filter_suffices", "no_linear_summary", "undetermined")
# the Jacobian part of dae_sf that may count toward a direction (its diag(m) part never does)
SF_JACOBIAN_PART = "mask_jacobian"
CONVERGED_SHARE = 0.5
ORDERINGS = ("dae_more_diagonal", "sf_more_diagonal", "mixed", "undetermined")
# Structure that a setting has by construction, not by learning: flagged wherever it is shown.
BY_CONSTRUCTION = {
    ("jacobian", SF_MODEL): (
        "the Jacobian of x ⊙ m(x) is diag(m(x)) + diag(x) ∂m/∂x: its first part is diagonal by "
        "construction, so part of this matrix's diagonality is the architecture, not learning"
    ),
    ("jacobian:mask", SF_MODEL): "diag(m): diagonal by definition (ratio 1 by construction)",
}


def _table(record: dict, key: str) -> np.ndarray | None:
    value = record.get(key)
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr


def _finite(table: np.ndarray | None) -> bool:
    return table is not None and table.size > 0 and bool(np.all(np.isfinite(table)))


def _errors(record: dict | None) -> np.ndarray | None:
    """The gated held-out error table: predictions clipped at 0 (raw when a record has no clipped one)."""
    if record is None:
        return None
    clipped = _table(record, "rel_l1_heldout_clipped")
    return clipped if clipped is not None else _table(record, "rel_l1_heldout")


def informative(record: dict, gain: dict | None, *, zero: dict | None = None, seed: int = 0) -> dict:
    """Held-out error (clipped at 0, as the baselines') of a mapping against the per-bin gain and the
    zero predictor (intervals of the paired differences); raw errors beside."""
    err = _errors(record)
    out: dict = {"is_fit": record.get("method") != "jacobian"}
    if not _finite(err):
        return {**out, "informative": False, "reason": "non-finite held-out error"}
    raw = _table(record, "rel_l1_heldout")
    if _finite(raw):
        out["heldout"] = seed_song_bootstrap(raw, seed=seed)
    out["heldout_clipped"] = seed_song_bootstrap(err, seed=seed)
    z = _errors(zero)
    if not _finite(z) or z.shape != err.shape:
        z = np.ones_like(err)  # relative L1 of silence is 1 wherever the teacher output is nonzero
    out["vs_zero"] = seed_song_bootstrap(err, z, paired_seeds=True, seed=seed)
    g = _errors(gain)
    if not _finite(g) or g.shape != err.shape:
        return {**out, "informative": False, "reason": "no per-bin-gain baseline on the same songs"}
    out["vs_gain"] = seed_song_bootstrap(err, g, paired_seeds=True, seed=seed)
    out["gain_vs_zero"] = seed_song_bootstrap(g, z, paired_seeds=True, seed=seed)
    ok = sign(out["vs_gain"]) < 0 and sign(out["vs_zero"]) < 0
    reason = None
    if not ok:
        reason = ("held-out error not clearly below the best per-bin gain's" if sign(out["vs_gain"]) >= 0
                  else "held-out error not clearly below the zero predictor's")
    return {**out, "informative": ok, "reason": reason}


def metric_table(record: dict, metric: str, *, model: str | None = None) -> np.ndarray | None:
    """The `(S, T)` table of `metric` in a pooled record: a structure metric from "metrics", a
    functional one (`FUNCTIONAL_METRICS`) from "functional". For `dae_sf`'s mean Jacobian, the table of
    its mask_jacobian part (the diag(m) part is diagonal by construction and never counts); None when
    that part has no such table."""
    if record.get("method") == "jacobian" and model == SF_MODEL:
        part = (record.get("part_metrics") or {}).get(SF_JACOBIAN_PART) or {}
        return _table(part, metric)
    if metric in FUNCTIONAL_METRICS:
        return _table(record.get("functional") or {}, FUNCTIONAL_METRICS[metric])
    return _table(record.get("metrics") or {}, metric)


def model_branch(records: dict, model: str, setting: str, *, seed: int = 0) -> dict:
    """Which of `BRANCHES` one model's mapping by `setting` falls in, with the intervals behind it."""
    rec = records.get((model, setting, "pooled"))
    if rec is None:
        return {"branch": "undetermined", "reason": f"no {setting} fit for {model}"}
    inf = informative(rec, records.get((model, "per_bin_gain", "baseline")),
                      zero=records.get((model, "zero", "baseline")), seed=seed)
    out: dict = {"informative": inf}
    keep = _table(rec.get("functional") or {}, "keep_diag")
    if _finite(keep):
        out["keep_diag"] = seed_song_bootstrap(keep, seed=seed)
    band = _table(rec.get("functional") or {}, "keep_band")
    if _finite(band):
        out["keep_band"] = seed_song_bootstrap(band, seed=seed)
    if "vs_zero" not in inf or "vs_gain" not in inf:
        return {**out, "branch": "undetermined", "reason": inf.get("reason")}
    c_beats_zero, gain_beats_zero = sign(inf["vs_zero"]) < 0, sign(inf["gain_vs_zero"]) < 0
    c_beats_gain = sign(inf["vs_gain"]) < 0
    if not c_beats_zero and not gain_beats_zero:
        branch, reason = "no_linear_summary", "neither the mapping nor the per-bin gain clearly beats silence"
    elif c_beats_zero and c_beats_gain:
        branch, reason = "couplings", None
    elif not c_beats_gain and "keep_diag" in out and out["keep_diag"]["lo"] >= KEEP_SUFFICES:
        branch = "per_bin_filter_suffices"
        reason = f"no better than the per-bin gain and diag(C) keeps ≥ {KEEP_SUFFICES:.0%} of its advantage"
    else:
        branch, reason = "undetermined", "the intervals leave it open"
    return {**out, "branch": branch, "reason": reason}


def direction(metric_tables: dict[str, np.ndarray], *, seed: int = 0) -> dict:
    """Per DAE: interval of mean(metric_DAE) - mean(metric_SF) (seeds drawn per model, songs shared)
    and its sign; and the ordering those signs make."""
    out: dict = {"intervals": {}, "signs": {}}
    sf = metric_tables.get(SF_MODEL)
    for dae in DAE_MODELS:
        a = metric_tables.get(dae)
        if not (_finite(a) and _finite(sf)) or a.shape[1] != sf.shape[1]:
            continue
        iv = seed_song_bootstrap(a, sf, seed=seed)
        out["intervals"][dae], out["signs"][dae] = iv, sign(iv)
    signs = list(out["signs"].values())
    if len(signs) < len(DAE_MODELS):
        ordering = "undetermined"
    elif all(s > 0 for s in signs):
        ordering = "dae_more_diagonal"
    elif all(s < 0 for s in signs):
        ordering = "sf_more_diagonal"
    elif any(s > 0 for s in signs) and any(s < 0 for s in signs):
        ordering = "mixed"
    else:
        ordering = "undetermined"
    out["ordering"] = ordering
    return out


def _converged(record: dict) -> tuple[int, int] | None:
    conv = record.get("converged") or []
    flags = [c for c in conv if c is not None]
    return (sum(bool(c) for c in flags), len(flags)) if flags else None


def setting_verdict(records: dict, setting: str, *, metric: str = PRIMARY_METRIC, seed: int = 0) -> dict:
    """One estimator: informative per model, convergence, direction, and whether it counts.

    `records`: {(model, setting, kind): record} of a mapping stage.
    """
    models = (*DAE_MODELS, SF_MODEL)
    recs = {m: records.get((m, setting, "pooled")) for m in models}
    missing = [m for m, r in recs.items() if r is None]
    out: dict = {"setting": setting, "metric": metric,
                 "role": "primary" if setting == PRIMARY_ESTIMATOR and metric == PRIMARY_METRIC else "secondary"}
    if missing:
        return {**out, "ordering": "undetermined", "counts": False,
                "reason": f"no fit for {', '.join(missing)}"}
    out["method"] = recs[SF_MODEL].get("method")
    out["informative"] = {m: informative(r, records.get((m, "per_bin_gain", "baseline")),
                                         zero=records.get((m, "zero", "baseline")), seed=seed)
                          for m, r in recs.items()}
    out["converged"] = {m: _converged(r) for m, r in recs.items()}
    out["branches"] = {m: model_branch(records, m, setting, seed=seed)["branch"] for m in models}
    out.update(direction({m: metric_table(r, metric, model=m) for m, r in recs.items()}, seed=seed))
    out["by_construction"] = BY_CONSTRUCTION.get((setting, SF_MODEL))
    reasons = []
    if out["method"] != "jacobian":
        shy = [f"{m} ({v['reason']})" for m, v in out["informative"].items() if not v["informative"]]
        if shy:
            reasons.append(f"uninformative on held-out songs for {', '.join(shy)}")
        slow = [m for m, c in out["converged"].items() if c is not None and c[0] < CONVERGED_SHARE * c[1]]
        if slow:
            reasons.append(f"fewer than half the fits converged for {', '.join(slow)}")
    if out["method"] == "jacobian" and metric_table(recs[SF_MODEL], metric, model=SF_MODEL) is None:
        reasons.append(f"dae_sf's Jacobian has no {SF_JACOBIAN_PART} table of {metric} (its diag(m) part "
                       "never counts toward a direction)")
    elif out["ordering"] in ("undetermined", "mixed"):
        missing = [d for d in DAE_MODELS if d not in out["intervals"]]
        if missing:  # the reason only: the rule (no interval, no direction) is unchanged
            reasons.append(f"no DAE − dae_sf interval of {metric} for {', '.join(missing)}: a table has "
                           "non-finite cells (for a keep share: the mapping does not beat silence on some "
                           "seed × song, so there is nothing to keep)")
        else:
            reasons.append("a DAE − dae_sf interval includes 0" if out["ordering"] == "undetermined"
                           else "the DAEs disagree in direction")
    out["counts"] = out["ordering"] in ("dae_more_diagonal", "sf_more_diagonal") and not reasons
    out["reason"] = "; ".join(reasons) or None
    return out


def _branch_verdict(primary: dict) -> dict:
    """The overall verdict when the primary estimator does not count: from its per-model branches."""
    branches = primary.get("branches") or {}
    for branch in ("no_linear_summary", "per_bin_filter_suffices"):
        hit = [m for m, b in branches.items() if b == branch]
        if hit:
            return {"verdict": branch, "models": hit, "reason": primary["reason"]}
    return {"verdict": "undetermined", "reason": primary["reason"]}


def conclusion(records: dict, settings: list[str], *, seed: int = 0, primary: str = PRIMARY_ESTIMATOR) -> dict:
    """The verdict of one study run: every setting on the primary metric, the primary estimator also
    on the secondary metric, and the overall verdict (the primary estimator's, `primary` to judge by
    another setting, e.g. for maps without dense layers)."""
    per_setting = {s: setting_verdict(records, s, seed=seed) for s in settings}
    secondary = None
    if primary in settings:
        secondary = setting_verdict(records, primary, metric=SECONDARY_METRIC, seed=seed)
    first = per_setting.get(primary)
    if first is None:
        overall = {"verdict": "undetermined", "reason": f"the primary estimator {primary} was not run"}
    elif not first["counts"]:
        overall = _branch_verdict(first)
    else:
        overall = {"verdict": "holds" if first["ordering"] == "dae_more_diagonal" else "reversed",
                   "reason": None}
    overall.update(primary_estimator=primary, primary_metric=PRIMARY_METRIC)
    agree = [s for s, v in per_setting.items() if s != primary and v["counts"]]
    overall["secondary_counting"] = {s: per_setting[s]["ordering"] for s in agree}
    return {"overall": overall, "settings": per_setting, "primary_secondary_metric": secondary,
            "convergence_control": convergence_control(records, seed=seed)}


def _seed_mean(values) -> float | None:
    """Mean of the finite entries of a per-seed list or a seed x song table (None if there are none)."""
    arr = np.asarray(values if values is not None else [], dtype=np.float64).ravel()  # None -> NaN
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def control_groups(records: dict) -> dict[tuple[str, int], dict[str, dict]]:
    """The under-convergence control records of a stage, {(setting, steps): {model: record}}, read from
    the records of kind "control" (`ncajax.nca`: one per model, setting and step count)."""
    out: dict[tuple[str, int], dict[str, dict]] = {}
    for (model, _, kind), rec in records.items():
        info = rec.get("control") if kind == "control" else None
        if info:
            out.setdefault((info["setting"], int(info["steps"])), {})[model] = rec
    return out


def convergence_control(records: dict, *, seed: int = 0, authors: str = NCA_AUTHORS) -> dict | None:
    """The under-convergence control: per control setting and step count, the DAE − dae_sf interval
    (`direction`) of each of CONTROL_METRICS (the primary metric and the authors' weighted diagonal
    energy ratio) and per model the mean fit error (relative L1 on the fit frames) and mean held-out error
    (clipped at 0); None when the stage ran no control.

    `frozen_p_reproduces_authors`: the step-0 control (P frozen at its initialisation, no Adam step)
    gives the authors' direction. Per metric, the authors' direction is the ordering of the `authors`
    setting's pooled fits (its control snapshot at the authors' step count when the stage has no pooled
    fit); it is a counting direction when both DAE − dae_sf intervals exclude 0 on the same side.
    `reproduces[metric]`: None where the authors' direction does not count, else whether the step-0
    ordering is the same. The flag is true when it is the same on every metric where the authors'
    direction counts, and that is at least one of them.
    """
    groups = control_groups(records)
    if not groups:
        return None
    order = {s: i for i, s in enumerate(CONTROL_SETTINGS)}
    rows = []
    for (setting, steps), recs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)),
                                                                          kv[0][0], kv[0][1])):
        models = [m for m in (*DAE_MODELS, SF_MODEL) if m in recs] + sorted(set(recs) - {*DAE_MODELS, SF_MODEL})
        rows.append({
            "setting": setting, "steps": steps,
            "learning_rate": next(iter(recs.values()))["control"].get("learning_rate"),
            "fit_error": {m: _seed_mean(recs[m].get("rel_l1_fit")) for m in models},
            "heldout_error": {m: _seed_mean(_errors(recs[m])) for m in models},
            "directions": {metric: direction({m: metric_table(r, metric, model=m) for m, r in recs.items()},
                                             seed=seed) for metric in CONTROL_METRICS},
        })
    frozen = next((r for r in rows if r["steps"] == 0 and r["setting"] == authors),
                  next((r for r in rows if r["steps"] == 0), None))
    pooled = {m: records.get((m, authors, "pooled")) for m in (*DAE_MODELS, SF_MODEL)}
    authors_steps = next((r.get("settings", {}).get("steps") for r in pooled.values() if r), None)
    if all(pooled.values()):
        source = "pooled"
        authors_dirs = {metric: direction({m: metric_table(r, metric, model=m) for m, r in pooled.items()},
                                          seed=seed)["ordering"] for metric in CONTROL_METRICS}
    else:
        row = next((r for r in rows if r["setting"] == authors and r["steps"] == authors_steps), None)
        source = None if row is None else "control"
        authors_dirs = {metric: (row["directions"][metric]["ordering"] if row else "undetermined")
                        for metric in CONTROL_METRICS}
    reproduces: dict[str, bool | None] = {}
    for metric in CONTROL_METRICS:
        counting = authors_dirs[metric] in ("dae_more_diagonal", "sf_more_diagonal")
        step0 = frozen["directions"][metric]["ordering"] if frozen else None
        reproduces[metric] = (step0 == authors_dirs[metric]) if counting and frozen else None
    flags = [v for v in reproduces.values() if v is not None]
    return {
        "metrics": list(CONTROL_METRICS),
        "rows": rows,
        "frozen_p": {
            "authors_setting": authors, "authors_source": source,
            "authors": authors_dirs,
            "step0": {metric: (frozen["directions"][metric]["ordering"] if frozen else None)
                      for metric in CONTROL_METRICS},
            "reproduces": reproduces,
        },
        "frozen_p_reproduces_authors": bool(flags) and all(flags),
    }


def across_corpora(conclusions: dict[str, dict]) -> dict:
    """How often each ordering holds across corpus seeds, per estimator and for the overall verdict.

    `conclusions`: {corpus label: `conclusion(...)` of the study on that corpus}.
    """
    if not conclusions:
        raise ValueError("no corpus conclusions to summarise")
    settings = list(dict.fromkeys(s for c in conclusions.values() for s in c["settings"]))  # the study's order
    per_setting = {}
    for s in settings:
        rows = {k: c["settings"].get(s) for k, c in conclusions.items()}
        counted = {k: v["ordering"] for k, v in rows.items() if v and v["counts"]}
        per_setting[s] = {
            "counted": {o: sum(v == o for v in counted.values()) for o in ORDERINGS[:2]},
            "not_counted": sum(1 for v in rows.values() if not (v and v["counts"])),
            "orderings": {k: (v["ordering"] if v else None) for k, v in rows.items()},
            "reasons": {k: (v.get("reason") if v else "missing") for k, v in rows.items()},
        }
    verdicts = {k: c["overall"]["verdict"] for k, c in conclusions.items()}
    counts = {v: sum(x == v for x in verdicts.values()) for v in VERDICTS}
    return {"n_corpora": len(conclusions), "verdicts": verdicts, "verdict_counts": counts,
            "settings": per_setting}
