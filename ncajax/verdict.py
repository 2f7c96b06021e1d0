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
- The mean Jacobian is not a fit: it is never gated by fit error (its errors are reported).
"""

from __future__ import annotations

import numpy as np

from .config import PRIMARY_ESTIMATOR, PRIMARY_METRIC
from .stats import seed_song_bootstrap, sign

DAE_MODELS = ("dae", "dae_deep")
SF_MODEL = "dae_sf"
SECONDARY_METRIC = "diagonal_energy_ratio"
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


def informative(record: dict, gain: dict | None, *, seed: int = 0) -> dict:
    """Held-out error of a mapping against the per-bin gain and the zero predictor (intervals)."""
    err = _table(record, "rel_l1_heldout")
    out: dict = {"is_fit": record.get("method") != "jacobian"}
    if not _finite(err):
        return {**out, "informative": False, "reason": "non-finite held-out error"}
    out["heldout"] = seed_song_bootstrap(err, seed=seed)
    clipped = _table(record, "rel_l1_heldout_clipped")
    if _finite(clipped):
        out["heldout_clipped"] = seed_song_bootstrap(clipped, seed=seed)
    out["vs_zero"] = seed_song_bootstrap(err - 1.0, seed=seed)
    g = None if gain is None else _table(gain, "rel_l1_heldout")
    if not _finite(g) or g.shape != err.shape:
        return {**out, "informative": False, "reason": "no per-bin-gain baseline on the same songs"}
    out["vs_gain"] = seed_song_bootstrap(err, g, paired_seeds=True, seed=seed)
    ok = sign(out["vs_gain"]) < 0 and sign(out["vs_zero"]) < 0
    reason = None
    if not ok:
        reason = ("held-out error not clearly below the best per-bin gain's" if sign(out["vs_gain"]) >= 0
                  else "held-out error not clearly below the zero predictor's")
    return {**out, "informative": ok, "reason": reason}


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
    out["informative"] = {m: informative(r, records.get((m, "per_bin_gain", "baseline")), seed=seed)
                          for m, r in recs.items()}
    out["converged"] = {m: _converged(r) for m, r in recs.items()}
    out.update(direction({m: _table(r.get("metrics", {}), metric) for m, r in recs.items()}, seed=seed))
    out["by_construction"] = BY_CONSTRUCTION.get((setting, SF_MODEL))
    reasons = []
    if out["method"] != "jacobian":
        shy = [f"{m} ({v['reason']})" for m, v in out["informative"].items() if not v["informative"]]
        if shy:
            reasons.append(f"uninformative on held-out songs for {', '.join(shy)}")
        slow = [m for m, c in out["converged"].items() if c is not None and c[0] < CONVERGED_SHARE * c[1]]
        if slow:
            reasons.append(f"fewer than half the fits converged for {', '.join(slow)}")
    if out["ordering"] in ("undetermined", "mixed"):
        reasons.append("a DAE − dae_sf interval includes 0" if out["ordering"] == "undetermined"
                       else "the DAEs disagree in direction")
    out["counts"] = out["ordering"] in ("dae_more_diagonal", "sf_more_diagonal") and not reasons
    out["reason"] = "; ".join(reasons) or None
    return out


def conclusion(records: dict, settings: list[str], *, seed: int = 0) -> dict:
    """The verdict of one study run: every setting on the primary metric, the primary estimator also
    on the secondary metric, and the overall verdict (the primary estimator's)."""
    per_setting = {s: setting_verdict(records, s, seed=seed) for s in settings}
    secondary = None
    if PRIMARY_ESTIMATOR in settings:
        secondary = setting_verdict(records, PRIMARY_ESTIMATOR, metric=SECONDARY_METRIC, seed=seed)
    primary = per_setting.get(PRIMARY_ESTIMATOR)
    if primary is None:
        overall = {"verdict": "undetermined", "reason": f"the primary estimator {PRIMARY_ESTIMATOR} was not run"}
    elif not primary["counts"]:
        overall = {"verdict": "undetermined", "reason": primary["reason"]}
    else:
        overall = {"verdict": "holds" if primary["ordering"] == "dae_more_diagonal" else "reversed",
                   "reason": None}
    overall.update(primary_estimator=PRIMARY_ESTIMATOR, primary_metric=PRIMARY_METRIC)
    agree = [s for s, v in per_setting.items() if s != PRIMARY_ESTIMATOR and v["counts"]]
    overall["secondary_counting"] = {s: per_setting[s]["ordering"] for s in agree}
    return {"overall": overall, "settings": per_setting, "primary_secondary_metric": secondary}


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
    counts = {v: sum(x == v for x in verdicts.values()) for v in ("holds", "reversed", "undetermined")}
    return {"n_corpora": len(conclusions), "verdicts": verdicts, "verdict_counts": counts,
            "settings": per_setting}
