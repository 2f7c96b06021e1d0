"""REPORT.md of a study run, computed from the numbers the stages saved, never from set conclusions.

Reads `<run>/train/<model>/` (config.json, meta.json, result.json), `<run>/mappings/` (result.json,
or metrics.jsonl of an unfinished stage) and `<run>/evaluation/result.json`, and writes a markdown
report: header and timings, separation quality, structure metrics of every mapping estimator, the
conclusion (is the DAEs' mapping more diagonal than the skip-filtering model's, per estimator and
overall), whether one matrix is a fair summary of each model, dead units, per-track spread and the
figures.

Every sentence of the conclusion is generated from comparisons of the saved numbers; `conclusion`
returns the same verdict as a dict (written as `<run>/conclusion.json` by `write_report`).

"Fidelity" throughout is the relative L1 error Σ|y - ŷ| / Σ|y| of the linear map against the model's
output (0 = exact; 1 = no better than predicting silence).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from .analysis import summarise
from .config import MODEL_NAMES
from .runs import read_json, read_metrics, write_json

__all__ = [
    "build_report",
    "write_report",
    "conclusion",
    "copy_outputs",
    "compare",
    "ci_overlap",
    "welch_ci",
]

PRIMARY = "weighted_diagonal_energy_ratio"
SECONDARY = "diagonal_energy_ratio"
DAE_MODELS = ("dae", "dae_deep")
SF_MODEL = "dae_sf"
AUTHORS_SETTING = "nca_authors"
CONVERGED_SETTING = "nca_converged"
# A relative L1 error at or above this is within 10 % of predicting silence. On held-out frames: the
# matrix describes the frames it was fitted on, not the model. On the fitted frames themselves: the
# fit failed, and the setting is "uninformative" (left out of the overall verdict).
POOR_FIDELITY = 0.9
# Local spread sqrt(mean ||J_t - Jbar||^2) / ||Jbar|| above this: the per-frame Jacobians differ
# from their mean by more than half its size, so no single matrix stands for the model.
POOR_SPREAD = 0.5
# Figure groups of `ncajax.plots`, in report order: (file-name prefix, caption). A file belongs to a
# group when its stem is the prefix or starts with prefix + "_" (e.g. mapping_matrices_nca_authors).
FIGURES = (
    ("mapping_matrices", "Mapping matrices per model"),
    ("estimator_matrices", "One model's mapping under every estimator"),
    ("structure_metrics", "Structure metrics with seed confidence intervals"),
    ("training_curves", "Training curves"),
    ("fit_loss_curves", "Loss curves of the iterative mapping fits"),
    ("spectrograms", "Spectrograms of a test excerpt"),
    ("linearity", "Per-frame Jacobian structure (is one matrix a fair summary?)"),
    ("separation_quality", "Separation quality"),
    ("per_track_structure", "Structure of the per-track fits"),
)
METRIC_LABELS = {
    "weighted_diagonal_energy_ratio": "weighted diag. ratio",
    "diagonal_energy_ratio": "diag. ratio",
    "weighted_near_diagonal_energy": "weighted near-diag.",
    "near_diagonal_energy": "near-diag.",
    "mean_coupling_distance_octaves": "coupling dist. (oct)",
    "mean_coupling_distance": "coupling dist. (bins)",
}


# --------------------------------------------------------------------------------------------------
# loading


def _read(path: Path) -> Any:
    return read_json(path) if path.exists() else None


def _load(run_dir: Path) -> dict:
    """Everything the report reads, plus notes on what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist: pass the --out of reproduce.py"
        )
    notes: list[str] = []
    train: dict[str, dict] = {}
    train_root = run_dir / "train"
    names = [m for m in MODEL_NAMES if (train_root / m).is_dir()]
    if train_root.is_dir():
        names += sorted(p.name for p in train_root.iterdir() if p.is_dir() and p.name not in names)
    for name in names:
        d = train_root / name
        train[name] = {
            "config": _read(d / "config.json"),
            "result": _read(d / "result.json"),
            "meta": _read(d / "meta.json"),
        }
        if not (train[name]["result"] or {}).get("finished"):
            notes.append(f"training of `{name}` has not finished (no complete result.json).")
    if not train:
        notes.append(f"no training runs under `{train_root}`.")

    mappings = None
    mdir = run_dir / "mappings"
    if (mdir / "config.json").exists():
        result = _read(mdir / "result.json")
        finished = result is not None
        records = result["records"] if finished else read_metrics(mdir)
        if not finished:
            notes.append(
                "the mapping stage has not finished: tables show the fits recorded so far "
                "(mappings/metrics.jsonl)."
            )
        by_key: dict[tuple, dict] = {}
        for r in records:  # a resumed stage may repeat a record: the last one wins
            by_key[(r["model"], r["setting"], r["kind"])] = r
        mappings = {
            "config": _read(mdir / "config.json"),
            "meta": _read(mdir / "meta.json"),
            "records": by_key,
            "result": result or {},
            "finished": finished,
        }
    else:
        notes.append(
            "no mapping stage results (`mappings/` is missing): no structure metrics and no "
            "conclusion."
        )

    evaluation = _read(run_dir / "evaluation" / "result.json")
    if evaluation is None:
        notes.append(
            "no separation evaluation (`evaluation/result.json` is missing): the separation "
            "table shows only the training stage's test magnitude SDR."
        )
    return {
        "run_dir": run_dir,
        "train": train,
        "mappings": mappings,
        "evaluation": evaluation,
        "eval_meta": _read(run_dir / "evaluation" / "meta.json"),
        "notes": notes,
    }


def _settings(mappings: dict | None) -> list[dict]:
    """The fit settings in the stage's order: dicts of name, method, steps, learning_rate, init."""
    if mappings is None:
        return []
    cfg = (mappings["config"] or {}).get("mapping", {})
    out = list(cfg.get("settings", []))
    known = {s["name"] for s in out}
    for (_, setting, kind), r in mappings["records"].items():
        if kind == "pooled" and setting not in known:
            out.append(r.get("settings") or {"name": setting, "method": r.get("method", "?")})
            known.add(setting)
    return out


def _models(data: dict) -> list[str]:
    names = list(data["train"])
    if data["mappings"] is not None:
        names += [m for m in (data["mappings"]["config"] or {}).get("models", []) if m not in names]
        names += sorted({k[0] for k in data["mappings"]["records"]} - set(names))
    return names


# --------------------------------------------------------------------------------------------------
# statistics


def _finite(values) -> list[float]:
    return [float(v) for v in (values or []) if v is not None and math.isfinite(float(v))]


def _stat(values) -> dict | None:
    """Mean and Student-t 95 % CI over seeds of the finite values, or None when there are none."""
    vals = _finite(values)
    if not vals:
        return None
    s = summarise(np.asarray(vals))
    return {"mean": s["mean"], "lo": s["lo"], "hi": s["hi"], "n": s["n"], "values": vals}


def ci_overlap(a: dict, b: dict) -> bool | None:
    """Whether the intervals [a.lo, a.hi] and [b.lo, b.hi] share a point.

    None when either statistic has fewer than two seeds (`n` < 2): its "interval" is a point, not a
    spread estimate, so neither overlap nor separation can be claimed.
    """
    if min(a.get("n", 2), b.get("n", 2)) < 2:
        return None
    return bool(a["lo"] <= b["hi"] and b["lo"] <= a["hi"])


def welch_ci(a, b, *, confidence: float = 0.95) -> list[float] | None:
    """Welch (unequal-variance) t confidence interval of mean(a) - mean(b), or None.

    `a`, `b`: (n_seeds,) values. None with fewer than two values in either or when the interval is
    not finite (e.g. both samples without spread).
    """
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return None
    with np.errstate(all="ignore"):
        ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    lo, hi = float(ci.low), float(ci.high)
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None


def compare(dae: dict[str, dict], sf: dict) -> dict:
    """Is every DAE's statistic above the skip-filtering model's?

    `dae`: {model: stat} with stat = {"mean", "lo", "hi"} (from `_stat`), `sf` likewise for dae_sf.
    Returns direction ("dae_more_diagonal" when every DAE mean is above sf's, "sf_more_diagonal"
    when every one is below, else "mixed"), holds (direction is dae_more_diagonal), margin (the
    smallest DAE mean minus sf's mean: > 0 iff it holds), overlap (some DAE's CI overlaps sf's;
    None with one seed), separated (every DAE's Welch 95 % CI of DAE - SF excludes 0 on the side
    of the direction; None when a Welch CI cannot be computed, e.g. one seed or no "values") and
    per model {"margin", "overlap", "diff_ci"}.
    """
    if not dae:
        raise ValueError("compare needs at least one DAE statistic")
    per = {
        m: {
            "margin": s["mean"] - sf["mean"],
            "overlap": ci_overlap(s, sf),
            "diff_ci": (
                welch_ci(s["values"], sf["values"]) if "values" in s and "values" in sf else None
            ),
        }
        for m, s in dae.items()
    }
    diffs = [p["margin"] for p in per.values()]
    direction = (
        "dae_more_diagonal"
        if all(d > 0 for d in diffs)
        else "sf_more_diagonal"
        if all(d < 0 for d in diffs)
        else "mixed"
    )
    overlaps = [p["overlap"] for p in per.values()]
    cis = [p["diff_ci"] for p in per.values()]
    if any(c is None for c in cis):
        separated = None
    elif direction == "dae_more_diagonal":
        separated = all(c[0] > 0 for c in cis)
    elif direction == "sf_more_diagonal":
        separated = all(c[1] < 0 for c in cis)
    else:
        separated = False
    return {
        "direction": direction,
        "holds": direction == "dae_more_diagonal",
        "margin": min(diffs),
        "overlap": None if any(o is None for o in overlaps) else any(overlaps),
        "separated": separated,
        "per_model": per,
    }


def _metric_stat(record: dict | None, key: str) -> dict | None:
    if record is None:
        return None
    return _stat([m.get(key) for m in record.get("metrics", [])])


def _converged(record: dict) -> tuple[int, int] | None:
    flags = record.get("converged") or []
    if not flags or all(f is None for f in flags):
        return None
    return sum(bool(f) for f in flags), len(flags)


# --------------------------------------------------------------------------------------------------
# the conclusion


def _setting_verdict(data: dict, setting: dict, role: str) -> dict:
    name = setting["name"]
    recs = {
        m: data["mappings"]["records"].get((m, name, "pooled")) for m in (*DAE_MODELS, SF_MODEL)
    }
    out: dict[str, Any] = {
        "role": role,
        "method": setting.get("method"),
        "init": setting.get("init"),
        "steps": setting.get("steps"),
        "learning_rate": setting.get("learning_rate"),
    }
    missing = [m for m, r in recs.items() if r is None]
    if missing:
        return {
            **out,
            "holds": None,
            "direction": "missing",
            "margin": None,
            "overlap": None,
            "separated": None,
            "informative": None,
            "reason": f"no pooled fit of {', '.join(missing)}",
        }
    for key, label in ((PRIMARY, None), (SECONDARY, "unweighted")):
        stats = {m: _metric_stat(recs[m], key) for m in recs}
        if any(s is None for s in stats.values()):
            cmp = {
                "holds": None,
                "direction": "missing",
                "margin": None,
                "overlap": None,
                "separated": None,
            }
        else:
            cmp = compare({m: stats[m] for m in DAE_MODELS}, stats[SF_MODEL])
        cmp["means"] = {m: (s["mean"] if s else None) for m, s in stats.items()}
        cmp["ci"] = {m: ([s["lo"], s["hi"]] if s else None) for m, s in stats.items()}
        if label is None:
            out.update(cmp)
        else:
            out[label] = cmp
    out["fidelity_fit"] = {m: _mean(recs[m].get("fidelity_fit")) for m in recs}
    out["fidelity_heldout"] = {m: _mean(recs[m].get("fidelity_heldout")) for m in recs}
    out["describes_only_fitted"] = sorted(
        m for m, v in out["fidelity_heldout"].items() if v is not None and v >= POOR_FIDELITY
    )
    conv = {m: _converged(recs[m]) for m in recs}
    out["converged"] = (
        None
        if all(c is None for c in conv.values())
        else {m: list(c) if c else None for m, c in conv.items()}
    )
    out["informative"], out["reason"] = _informative(out["fidelity_fit"], conv)
    return out


def _informative(fit: dict, conv: dict) -> tuple[bool, str | None]:
    """Whether a setting's fits can count as evidence, and why not.

    Uninformative: some model's mean relative L1 error on its own fitted frames is >= POOR_FIDELITY,
    or the setting is iterative and not one fit converged (over all models and seeds).
    """
    why = []
    poor = {m: v for m, v in fit.items() if v is not None and v >= POOR_FIDELITY}
    if poor:
        worst = max(poor, key=poor.get)
        why.append(
            "the fit does not reproduce the model even on its fitted frames "
            f"(rel. L1 {poor[worst]:.3f} for `{worst}`)"
        )
    known = [c for c in conv.values() if c is not None]
    if known and sum(c[0] for c in known) == 0:
        why.append("no fit converged")
    return (not why), ("; ".join(why) or None)


def _mean(values) -> float | None:
    s = _stat(values)
    return None if s is None else s["mean"]


def _initialisation(verdicts: dict, settings: list[dict]) -> list[dict]:
    """NCA settings that differ only in the init of P, with the verdict under each init."""
    groups: dict[tuple, list[dict]] = {}
    for s in settings:
        if s.get("method") == "nca" and s["name"] in verdicts:
            groups.setdefault(
                (s.get("steps"), s.get("learning_rate"), s.get("bias_axis")), []
            ).append(s)
    out = []
    for (steps, lr, _), members in groups.items():
        inits = {s.get("init") for s in members}
        if len(inits) < 2:
            continue
        per = {
            s["name"]: {
                k: verdicts[s["name"]].get(k)
                for k in (
                    "init",
                    "holds",
                    "direction",
                    "margin",
                    "overlap",
                    "separated",
                    "fidelity_fit",
                    "fidelity_heldout",
                    "informative",
                )
            }
            for s in members
        }
        known = {v["holds"] for v in per.values() if v["holds"] is not None}
        directions = {v["direction"] for v in per.values() if v["direction"] != "missing"}
        out.append(
            {
                "steps": steps,
                "learning_rate": lr,
                "settings": per,
                "depends_on_init": len(known) > 1 if known else None,
                "direction_depends_on_init": len(directions) > 1 if directions else None,
            }
        )
    return out


def conclusion(run_dir: str | Path) -> dict:
    """The machine-readable verdict: are the DAEs' mappings more diagonal than dae_sf's?

    Returns {setting: {"holds", "direction", "margin", "overlap", "separated", "per_model",
    "means", "ci", "unweighted": {...}, "fidelity_fit", "fidelity_heldout", "describes_only_fitted",
    "converged", "informative", "reason", "role", ...}, ..., "overall": {"holds", "verdict",
    "supporting", "contradicting", "mixed", "uninformative", "missing", "separated", "clear",
    "fidelity_caveat", "initialisation", "authors_defaults_converged", "reason"}}.
    The primary metric is the input-energy-weighted diagonal energy ratio. A setting is
    uninformative (its "informative" is False, "reason" says why) when some model's fit error on its
    own fitted frames is >= POOR_FIDELITY or none of its iterative fits converged; uninformative
    settings are listed apart and do not count. Overall "does not hold" when an informative setting
    contradicts the finding or finds a mixed ordering; "holds" when the authors' NCA setting and the
    converged NCA are informative and support it and no informative setting disagrees; else
    "undetermined".
    """
    return _conclusion(_load(Path(run_dir)))


def _conclusion(data: dict) -> dict:
    settings = _settings(data["mappings"])
    out: dict[str, Any] = {}
    overall: dict[str, Any] = {
        "holds": False,
        "primary_metric": PRIMARY,
        "required": [AUTHORS_SETTING, CONVERGED_SETTING],
    }
    models = _models(data)
    absent = [m for m in (*DAE_MODELS, SF_MODEL) if m not in models]
    if data["mappings"] is None or not settings or absent:
        why = (
            "no mapping stage results"
            if data["mappings"] is None or not settings
            else f"models {', '.join(absent)} were not part of this run"
        )
        overall.update(
            verdict="undetermined",
            reason=why,
            supporting=[],
            contradicting=[],
            mixed=[],
            uninformative=[],
            missing=[],
            separated=[],
            clear=[],
            second_opinions=[],
            fidelity_caveat=[],
            initialisation=[],
            authors_defaults_converged=None,
        )
        out["overall"] = overall
        return out
    for s in settings:
        role = (
            "authors"
            if s["name"] == AUTHORS_SETTING
            else "converged"
            if s["name"] == CONVERGED_SETTING
            else "second_opinion"
        )
        out[s["name"]] = _setting_verdict(data, s, role)
    verdicts = dict(out)
    missing = [k for k in overall["required"] if k not in verdicts or verdicts[k]["holds"] is None]
    missing += [k for k, v in verdicts.items() if v["holds"] is None and k not in missing]
    uninformative = [
        k for k, v in verdicts.items() if v["informative"] is False and k not in missing
    ]
    counted = {k: v for k, v in verdicts.items() if v["informative"] and k not in missing}
    supporting = [k for k, v in counted.items() if v["direction"] == "dae_more_diagonal"]
    contradicting = [k for k, v in counted.items() if v["direction"] == "sf_more_diagonal"]
    mixed = [k for k, v in counted.items() if v["direction"] == "mixed"]
    second = [k for k, v in verdicts.items() if v["role"] == "second_opinion"]
    required_ok = all(k in supporting for k in overall["required"])
    if contradicting:
        verdict = "does not hold"
        reason = (
            f"informative estimators {', '.join(contradicting)} find dae_sf more diagonal than "
            "the DAEs"
        )
    elif mixed:
        verdict = "does not hold"
        reason = (
            f"informative estimators {', '.join(mixed)} find only one DAE more diagonal than dae_sf"
        )
    elif required_ok:
        verdict, reason = "holds", "every informative estimator finds the DAEs more diagonal"
    else:
        lacking = [k for k in overall["required"] if k not in supporting]
        why = [
            f"{k}: "
            + (
                "missing"
                if k in missing
                else verdicts[k]["reason"]
                if k in uninformative
                else "no support"
            )
            for k in lacking
        ]
        verdict = "undetermined"
        reason = (
            "no informative estimator contradicts the finding, but the required settings give "
            f"no informative support ({'; '.join(why)})"
        )
    auth = verdicts.get(AUTHORS_SETTING)
    overall.update(
        holds=verdict == "holds",
        verdict=verdict,
        reason=reason,
        supporting=supporting,
        contradicting=contradicting,
        mixed=mixed,
        uninformative=uninformative,
        missing=missing,
        second_opinions=second,
        separated=[k for k in supporting if verdicts[k]["separated"]],
        clear=[k for k in contradicting if verdicts[k]["separated"]],
        fidelity_caveat=[k for k, v in verdicts.items() if v.get("describes_only_fitted")],
        initialisation=_initialisation(verdicts, settings),
        authors_defaults_converged=None if auth is None else auth.get("converged"),
    )
    out["overall"] = overall
    return out


# --------------------------------------------------------------------------------------------------
# formatting


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—" if x is None else str(x)
    return f"{x:.{digits}f}"


def _pm(stat: dict | None, digits: int = 3) -> str:
    """'mean ± half-width' of a 95 % CI (just the mean for one seed)."""
    if stat is None:
        return "—"
    half = (stat["hi"] - stat["lo"]) / 2
    return (
        _f(stat["mean"], digits)
        if stat["n"] < 2
        else f"{stat['mean']:.{digits}f} ± {half:.{digits}f}"
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _describe(setting: dict) -> str:
    method = setting.get("method")
    if method in ("nca", "student"):
        what = "NCA" if method == "nca" else "student matrix"
        text = (
            f"{what}, {setting.get('steps')} steps at lr {setting.get('learning_rate'):g}, "
            f"{setting.get('init')} init"
        )
        if setting["name"] == AUTHORS_SETTING:
            text += " (the authors' defaults)"
        return text
    return {
        "lstsq": "least squares (closed form)",
        "jacobian": "mean Jacobian over the fit frames",
    }.get(method, str(method))


def _join(items: list[str]) -> str:
    items = [f"`{i}`" for i in items]
    if len(items) <= 1:
        return "".join(items) or "none"
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------------
# sections


def _header(data: dict, concl: dict, timings: dict | None) -> list[str]:
    lines = ["# Mapping functions of DAE singing-voice separators: study report", ""]
    cfg = next((t["config"] for t in data["train"].values() if t["config"]), None) or {}
    ds = cfg.get("data", {})
    stft = cfg.get("stft") or ((data["mappings"] or {}).get("config") or {}).get("stft") or {}
    tracks = ds.get("tracks", {})
    counts = (
        ", ".join(f"{len(v)} {k}" for k, v in tracks.items()) if tracks else "track counts unknown"
    )
    lines.append(f"- **Dataset:** {ds.get('dataset', 'unknown')} ({counts} tracks)")
    if stft:
        lines.append(
            f"- **Preset / STFT:** `{ds.get('preset', '?')}`: {stft.get('sample_rate')} Hz, "
            f"n_fft {stft.get('n_fft')} ({stft.get('n_fft', 0) // 2 + 1} bins), hop "
            f"{stft.get('hop_length')}, {stft.get('window')} window"
        )
    seeds = sorted(
        {s for t in data["train"].values() for s in (t["result"] or {}).get("seeds", [])}
    )
    lines.append(
        f"- **Seeds:** {', '.join(map(str, seeds)) or 'unknown'} per model "
        f"({', '.join(f'`{m}`' for m in data['train']) or 'no models'})"
    )
    epochs = {m: (t["result"] or {}).get("epochs") for m, t in data["train"].items()}
    if any(v is not None for v in epochs.values()):
        lines.append("- **Epochs trained:** " + ", ".join(f"`{m}` {v}" for m, v in epochs.items()))
    metas = {f"train/{m}": t["meta"] for m, t in data["train"].items()}
    metas["mappings"] = (data["mappings"] or {}).get("meta")
    metas["evaluation"] = data["eval_meta"]
    commits = {k: v.get("git_commit", "unknown") for k, v in metas.items() if v}
    unique = sorted(set(commits.values()))
    if len(unique) == 1:
        lines.append(f"- **Git commit:** `{unique[0]}`")
    elif unique:
        by_commit = {c: [k for k, v in commits.items() if v == c] for c in unique}
        lines.append(
            "- **Git commits (they differ between stages):** "
            + "; ".join(f"`{c}` ({', '.join(stages)})" for c, stages in by_commit.items())
        )
    started = sorted(v.get("started", "") for v in metas.values() if v and v.get("started"))
    if started:
        lines.append(f"- **Stages run:** {started[0]} to {started[-1]}")
    lines.append(f"- **Report generated:** {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    m = data["mappings"]
    if m is not None:
        mc = (m["config"] or {}).get("mapping", {})
        res = m["result"]
        fit_t, held_t = res.get("fit_tracks"), res.get("heldout_tracks")
        tr = (
            f"; fitted on tracks {', '.join(fit_t)}, held out {', '.join(held_t)}"
            if fit_t and held_t
            else ""
        )
        lines.append(
            f"- **Mapping fits:** {mc.get('n_fit_frames')} pooled frames, "
            f"{mc.get('n_heldout_frames')} held-out frames, band k = {mc.get('band_k')}{tr}"
        )
    overall = concl["overall"]
    n_settings = len(concl) - 1
    caveat = ""
    if overall["fidelity_caveat"]:
        caveat = (
            f"; caveat: in {len(overall['fidelity_caveat'])} of {n_settings} settings some matrix "
            f"is no better than silence on held-out frames (rel. L1 ≥ {POOR_FIDELITY})"
        )
    lines.append(
        f"- **Verdict** (computed; see the Conclusion): \"the DAEs' mappings are more diagonal "
        f"than `{SF_MODEL}`'s\" **{overall['verdict']}**"
        + (
            f" (supporting: {_join(overall['supporting'])}; contradicting: "
            f"{_join(overall['contradicting'])}; mixed: {_join(overall['mixed'])}; "
            f"left out as uninformative fits: {_join(overall['uninformative'])})"
            if any(
                overall.get(k) for k in ("supporting", "contradicting", "mixed", "uninformative")
            )
            else ""
        )
        + caveat
    )
    if data["notes"]:
        lines += ["", "**Notes on this run:**", ""] + [f"- {n}" for n in data["notes"]]
    if timings:
        lines += ["", "### Stage timings", ""]
        lines += _table(
            ["stage", "wall time (s)"], [[k, _f(float(v), 1)] for k, v in timings.items()]
        )
    return lines


def _separation(data: dict) -> list[str]:
    lines = ["## Separation quality", ""]
    ev = (data["evaluation"] or {}).get("summary", {})
    per_model: dict[str, list[dict]] = {}
    for pred, summ in ev.items():
        if "/seed" in pred:
            per_model.setdefault(pred.rsplit("/seed", 1)[0], []).append(summ)
    has_bss = any("vocals" in s for s in ev.values())
    header = ["model"] + (["vocals SDR (dB)", "SIR (dB)", "SAR (dB)"] if has_bss else [])
    header += ["magnitude SDR (dB)", "test mag. SDR improvement (dB, training stage)"]
    rows = []

    def bss(summs, key):
        return _stat([(s.get("vocals") or {}).get(key) for s in summs])

    for model in _models(data):
        summs = per_model.get(model, [])
        train_res = (data["train"].get(model) or {}).get("result") or {}
        row = [f"`{model}`"]
        if has_bss:
            row += [_pm(bss(summs, k), 2) for k in ("SDR", "SIR", "SAR")]
        row += [
            _pm(_stat([s.get("mag_sdr") for s in summs]), 2),
            _pm(_stat(train_res.get("test_improvement_db")), 2),
        ]
        rows.append(row)
    for ref in ("mixture", "oracle_irm"):
        if ref in ev:
            s = ev[ref]
            row = [
                f"*{ref}*" + (" (evaluation stage, mean over tracks)" if ref == "mixture" else "")
            ]
            if has_bss:
                row += [_f((s.get("vocals") or {}).get(k), 2) for k in ("SDR", "SIR", "SAR")]
            row += [_f(s.get("mag_sdr"), 2), "—"]
            rows.append(row)
    lines += _table(header, rows)
    mix = next(
        (
            t["result"].get("test_mixture_mag_sdr_db")
            for t in data["train"].values()
            if t["result"] and t["result"].get("test_mixture_mag_sdr_db") is not None
        ),
        None,
    )
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
    ]
    if data["evaluation"] is None:
        lines += [
            "",
            "_No evaluation results in this run: run the evaluation stage for museval and "
            "magnitude SDR on the test tracks._",
        ]
    elif not has_bss:
        lines += ["", "_museval was skipped in this run (--no-bss): magnitude SDR only._"]
    return lines


_STRUCT_COLS = (
    "weighted_diagonal_energy_ratio",
    "diagonal_energy_ratio",
    "weighted_near_diagonal_energy",
    "mean_coupling_distance_octaves",
)


def _structure(data: dict) -> list[str]:
    lines = ["## Structure of the mapping matrices", ""]
    m = data["mappings"]
    if m is None:
        return lines + ["_No mapping stage results in this run._"]
    header = [
        "setting",
        "model",
        *(METRIC_LABELS[c] for c in _STRUCT_COLS),
        "rel. L1 fit",
        "rel. L1 held-out",
        "converged",
    ]
    rows = []
    for s in _settings(m):
        for model in _models(data):
            r = m["records"].get((model, s["name"], "pooled"))
            if r is None:
                continue
            conv = _converged(r)
            rows.append(
                [
                    f"`{s['name']}`",
                    f"`{model}`",
                    *(_pm(_metric_stat(r, c)) for c in _STRUCT_COLS),
                    _pm(_stat(r.get("fidelity_fit"))),
                    _pm(_stat(r.get("fidelity_heldout"))),
                    "—" if conv is None else f"{conv[0]}/{conv[1]}",
                ]
            )
    lines += _table(header, rows)
    lines += [
        "",
        "Each cell: mean ± 95 % CI over the seeds of the model (one fit per seed). "
        "Weighted metrics weight input bin j by the mean input power of the fit frames; "
        "near-diagonal counts |i - j| <= k bins. The relative L1 error of the linear map "
        "x -> x Cᵀ against the model's output is given on the fitted frames and on frames of "
        "held-out test tracks (0 = exact, 1 = as good as predicting silence). *Converged*: "
        "seeds whose iterative fit met the stopping criterion.",
        "",
        "Settings:",
        "",
    ]
    lines += [f"- `{s['name']}`: {_describe(s)}" for s in _settings(m)]
    parts = [
        (model, r)
        for (model, setting, kind), r in m["records"].items()
        if kind == "pooled" and r.get("part_metrics")
    ]
    if parts:
        lines += [
            "",
            "Parts of a Jacobian (the skip-filtering model's mask term and the term from "
            "the mask's own Jacobian):",
            "",
        ]
        prow = []
        for model, r in parts:
            for part, rows_ in r["part_metrics"].items():
                prow.append(
                    [
                        f"`{r['setting']}`",
                        f"`{model}`",
                        f"`{part}`",
                        *(_pm(_stat([x.get(c) for x in rows_])) for c in _STRUCT_COLS),
                    ]
                )
        lines += _table(
            ["setting", "model", "part", *(METRIC_LABELS[c] for c in _STRUCT_COLS)], prow
        )
    return lines


def _para(lines: list[str], text: str) -> None:
    """Append `text` as its own markdown paragraph."""
    lines += [text, ""]


def _ci_text(v: dict, model: str) -> str:
    lo, hi = v["ci"][model]
    return f"{v['means'][model]:.3f} [{lo:.3f}, {hi:.3f}]"


def _overlap_text(v: dict) -> str:
    if v["overlap"] is None:
        return "one seed: no spread estimate"
    return "the 95 % seed CIs overlap" if v["overlap"] else "the 95 % seed CIs do not overlap"


def _welch_text(v: dict) -> str:
    cis = {m: p.get("diff_ci") for m, p in v["per_model"].items()}
    if any(c is None for c in cis.values()):
        return ""
    parts = ", ".join(f"`{m}` [{c[0]:+.3f}, {c[1]:+.3f}]" for m, c in cis.items())
    excl = [m for m, c in cis.items() if c[0] > 0 or c[1] < 0]
    which = (
        "every one excludes 0"
        if len(excl) == len(cis)
        else "none excludes 0"
        if not excl
        else f"only {_join(excl)} excludes 0"
    )
    return f"; Welch 95 % CI of DAE − SF: {parts} ({which})"


def _verdict_sentence(name: str, v: dict) -> str:
    if v["direction"] == "missing":
        return f"- `{name}`: cannot be compared ({v.get('reason', 'metrics missing')})."
    daes = " and ".join(f"`{m}` {_ci_text(v, m)}" for m in DAE_MODELS)
    sf = f"`{SF_MODEL}` {_ci_text(v, SF_MODEL)}"
    if v["direction"] == "dae_more_diagonal":
        head = f"**supports** the finding: {daes} are both more diagonal than {sf}"
    elif v["direction"] == "sf_more_diagonal":
        head = f"**contradicts** the finding: {daes} are both *less* diagonal than {sf}"
    else:
        above = [m for m in DAE_MODELS if v["per_model"][m]["margin"] > 0]
        head = f"**mixed**: only {_join(above)} is more diagonal than `{SF_MODEL}` ({daes}; {sf})"
    text = (
        f"- `{name}` {head}; smallest DAE − SF margin {v['margin']:+.3f}, {_overlap_text(v)}"
        f"{_welch_text(v)}."
    )
    if v.get("informative") is False:
        text += f" **Uninformative** (left out of the overall verdict): {v['reason']}."
    u = v["unweighted"]
    if u["direction"] != "missing":
        agree = "the same" if u["direction"] == v["direction"] else "a different"
        cis = {None: "one seed", True: "CIs overlap", False: "CIs do not overlap"}[u["overlap"]]
        text += (
            f" The unweighted diagonal ratio gives {agree} ordering "
            f"({u['direction'].replace('_', ' ')}, margin {u['margin']:+.3f}, {cis})."
        )
    held = v["fidelity_heldout"]
    fit = v["fidelity_fit"]
    fid = ", ".join(f"`{m}` {_f(fit[m])} / {_f(held[m])}" for m in (*DAE_MODELS, SF_MODEL))
    text += f" Relative L1 error fit / held-out: {fid}."
    both = [m for m in v["describes_only_fitted"] if fit[m] is not None and fit[m] >= POOR_FIDELITY]
    only = [m for m in v["describes_only_fitted"] if m not in both]
    if only:
        text += (
            f" Held-out error ≥ {POOR_FIDELITY} for {_join(only)}: "
            + (
                "that matrix describes only the frames it was"
                if len(only) == 1
                else "those matrices describe only the frames they were"
            )
            + " fitted on."
        )
    if both:
        text += (
            f" Fit and held-out error both ≥ {POOR_FIDELITY} for {_join(both)}: the fit "
            "reproduces neither the fitted nor the held-out frames."
        )
    if v.get("converged"):
        conv = ", ".join(f"`{m}` {c[0]}/{c[1]}" for m, c in v["converged"].items() if c)
        text += f" Converged seeds: {conv}."
    return text


def _required_status(name: str, concl: dict, overall: dict) -> str:
    if name in overall["missing"]:
        why = concl[name].get("reason", "metrics missing") if name in concl else "not run"
        return f"could not be compared (missing: {why})"
    v = concl[name]
    if v["informative"] is False:
        return f"is uninformative ({v['reason']})"
    if v["holds"]:
        return "supports it"
    return f"does not support it ({v['direction'].replace('_', ' ')})"


def _conclusion_section(data: dict, concl: dict) -> list[str]:
    lines = ["## Conclusion (computed from the tables above)", ""]
    overall = concl["overall"]
    if overall["verdict"] == "undetermined" and len(concl) == 1:
        return lines + [f"_The conclusion cannot be computed: {overall['reason']}._"]
    lines += [
        "**Claim examined** (Mimilakis et al., 2020): the plain DAEs (`dae`, `dae_deep`) learn "
        "mapping functions that are more diagonal (closer to a per-bin filter) than the "
        "skip-filtering model "
        f"(`{SF_MODEL}`).",
        "",
        "**Primary metric:** the input-energy-weighted diagonal energy ratio "
        "Σᵢ Cᵢᵢ² eᵢ / Σᵢⱼ Cᵢⱼ² eⱼ. "
        "Weights on input bins that are (nearly) silent in the data are not constrained by any fit "
        "(whatever their value, the output on the data barely changes), yet the unweighted ratio "
        "counts them like any other and they can dominate it; weighting column j by the input "
        "power eⱼ counts each coupling in proportion to how much it acts on the data. "
        "The unweighted ratio "
        "is reported alongside. Values below: mean [95 % CI] over seeds.",
        "",
        "### Per estimator",
        "",
    ]
    for name, v in concl.items():
        if name != "overall":
            lines.append(_verdict_sentence(name, v))
    lines += ["", "### Overall", ""]
    sup, con, mix = overall["supporting"], overall["contradicting"], overall["mixed"]
    if overall["uninformative"]:
        _para(
            lines,
            "Left out as uninformative (the per-setting sentences above give the numbers): "
            + "; ".join(f"`{k}`: {concl[k]['reason']}" for k in overall["uninformative"])
            + ".",
        )
    counts = (
        f"Supporting: {_join(sup)}. Contradicting: {_join(con)}. Mixed: {_join(mix)}. "
        f"Uninformative: {_join(overall['uninformative'])}."
    )
    if overall["verdict"] == "holds":
        _para(
            lines,
            "**The finding holds** on this run: the authors' NCA setting, the converged NCA and "
            "every informative second opinion find the DAEs more diagonal than "
            f"`{SF_MODEL}` by the weighted diagonal energy ratio. {counts}",
        )
        if len(overall["separated"]) < len(sup):
            noisy = [k for k in sup if k not in overall["separated"]]
            _para(
                lines,
                f"For {_join(noisy)} the Welch 95 % CI of the DAE − SF difference does not "
                "exclude 0 for every DAE (or cannot be computed).",
            )
    else:
        req = [f"`{k}` {_required_status(k, concl, overall)}" for k in overall["required"]]
        head = (
            "**The finding does NOT hold** on this run as a robust result"
            if overall["verdict"] == "does not hold"
            else "**Undetermined:** the informative evidence is insufficient"
        )
        _para(lines, f"{head}: {'; '.join(req)}. {counts}")
        clear = overall.get("clear", [])
        if clear:
            _para(
                lines,
                f"For {_join(clear)} the Welch 95 % CI of DAE − SF excludes 0 for every DAE, on "
                f"the side of the reverse ordering (`{SF_MODEL}` more diagonal).",
            )
    if overall["fidelity_caveat"]:
        _para(
            lines,
            f"Caveat: for {_join(overall['fidelity_caveat'])} at least one model's held-out "
            f"relative L1 error is ≥ {POOR_FIDELITY}, i.e. the matrix reproduces the model on "
            "unseen frames no better than predicting silence; such a matrix is a description of "
            "its fitted frames, and its structure is weak evidence about the model itself.",
        )
    iterative = {
        k: v["converged"] for k, v in concl.items() if k != "overall" and v.get("converged")
    }
    if iterative:
        parts = []
        for k, conv in iterative.items():
            done = sum(c[0] for c in conv.values() if c)
            total = sum(c[1] for c in conv.values() if c)
            parts.append(f"`{k}` {done}/{total}")
        auth = iterative.get(AUTHORS_SETTING)
        head = ""
        if auth:
            done = sum(c[0] for c in auth.values() if c)
            total = sum(c[1] for c in auth.values() if c)
            head = (
                f"At the authors' defaults (`{AUTHORS_SETTING}`) "
                + (
                    "every fit converged"
                    if done == total
                    else "no fit converged"
                    if done == 0
                    else f"only {done} of {total} fits converged"
                )
                + ". "
            )
        _para(
            lines,
            f"{head}Iterative fits that converged (fits over all models and seeds): "
            + ", ".join(parts)
            + ".",
        )
    lines += ["", "### Does the contrast depend on the NCA initialisation?", ""]
    if not overall["initialisation"]:
        lines.append("_No pair of NCA settings differing only in the initialisation of P was run._")
    for group in overall["initialisation"]:
        rows = []
        for name, g in group["settings"].items():
            rows.append(
                [
                    f"`{name}`",
                    str(g["init"]),
                    g["direction"].replace("_", " "),
                    _f(g["margin"]),
                    "—" if g["overlap"] is None else ("yes" if g["overlap"] else "no"),
                    *(
                        f"{_f((g['fidelity_fit'] or {}).get(m))} / "
                        f"{_f((g['fidelity_heldout'] or {}).get(m))}"
                        for m in (*DAE_MODELS, SF_MODEL)
                    ),
                ]
            )
        lines += [f"NCA at {group['steps']} steps, lr {group['learning_rate']:g}:", ""]
        lines += _table(
            [
                "setting",
                "init",
                "direction",
                "margin",
                "CIs overlap",
                *(f"`{m}` rel. L1 fit / held-out" for m in (*DAE_MODELS, SF_MODEL)),
            ],
            rows,
        )
        dep = group["depends_on_init"]
        per_init = "; ".join(
            f"{g['init']}: {g['direction'].replace('_', ' ')}"
            + ("" if g["informative"] is not False else " (uninformative)")
            for g in group["settings"].values()
        )
        if dep is None:
            sentence = "Not enough results to tell."
        elif dep:
            sentence = f"The DAE-vs-SF verdict **depends on the initialisation** of P ({per_init})."
        elif group["direction_depends_on_init"]:
            sentence = (
                "The finding fails under every initialisation tried, but the ordering differs "
                f"between initialisations: {per_init}."
            )
        else:
            held = next(g["holds"] for g in group["settings"].values() if g["holds"] is not None)
            sentence = (
                f"The finding {'holds' if held else 'fails'} under every initialisation "
                f"tried, with the same ordering ({per_init})."
            )
        lines += ["", sentence, ""]
    return lines


def _linearity(data: dict) -> list[str]:
    lines = ["## Is one matrix a fair summary?", ""]
    m = data["mappings"]
    recs = (
        {}
        if m is None
        else {
            model: r
            for (model, _, kind), r in m["records"].items()
            if kind == "model" and r.get("linearity")
        }
    )
    if not recs:
        return lines + ["_No per-frame Jacobian results in this run._"]
    lines += [
        "A mapping matrix is one linear map for all frames. Each model's per-frame Jacobians J(xₜ) "
        "show how far a single matrix can stand for it: the *local spread* "
        "sqrt(mean‖Jₜ − J̄‖²) / ‖J̄‖, the relative L1 error of the mean Jacobian J̄ "
        "(x -> x J̄ᵀ) against that of the per-frame linearisations (xₜ -> Jₜ xₜ), and quantiles "
        "over frames of the structure metrics of the Jₜ. Mean ± 95 % CI over seeds.",
        "",
    ]
    rows, sentences = [], []
    for model, r in recs.items():
        lin = r["linearity"]
        spread = _stat([x.get("local_spread") for x in lin])
        mean_j = _stat([x.get("fidelity_mean_jacobian") for x in lin])
        frame = _stat([x.get("fidelity_per_frame_linear") for x in lin])
        rows.append([f"`{model}`", _pm(spread), _pm(mean_j), _pm(frame)])
        if spread is None:
            continue
        verdict = (
            "one matrix is a poor summary of this model on these frames"
            if spread["mean"] > POOR_SPREAD
            else "one matrix is a fair summary of this model on these frames"
        )
        s = f"- `{model}`: local spread {spread['mean']:.2f} (threshold {POOR_SPREAD}): {verdict}."
        if mean_j is not None and frame is not None:
            better = "lower" if frame["mean"] < mean_j["mean"] else "not lower"
            s += (
                " The per-frame linearisations reproduce its output with error "
                f"{frame['mean']:.3f}, "
                f"{better} than the mean Jacobian's {mean_j['mean']:.3f}"
            )
            s += " (no better than predicting silence)." if mean_j["mean"] >= POOR_FIDELITY else "."
        sentences.append(s)
    lines += _table(
        ["model", "local spread", "rel. L1 mean Jacobian", "rel. L1 per-frame linear"], rows
    )
    lines += (
        [""]
        + sentences
        + [
            "",
            "Quantiles over frames of the per-frame Jacobians' structure "
            "metrics (each quantile averaged over seeds):",
            "",
        ]
    )
    qrows = []
    for model, r in recs.items():
        qs = [x.get("frame_metric_quantiles", {}) for x in r["linearity"]]
        for metric in (k for k in METRIC_LABELS if k in qs[0]):
            arr = np.asarray([q[metric] for q in qs if metric in q], dtype=float)
            qrows.append([f"`{model}`", METRIC_LABELS[metric], *(_f(v) for v in arr.mean(axis=0))])
    levels = next(iter(recs.values()))["linearity"][0].get(
        "quantile_levels", [0.05, 0.25, 0.5, 0.75, 0.95]
    )
    lines += _table(["model", "metric", *(f"q{round(q * 100):02d}" for q in levels)], qrows)
    return lines


def _dead_units_and_tracks(data: dict) -> list[str]:
    lines = ["## Dead units and per-track fits", ""]
    m = data["mappings"]
    if m is None:
        return lines + ["_No mapping stage results in this run._"]
    rows, errs = [], []
    for model in _models(data):
        r = m["records"].get((model, "-", "model"))
        if r is None:
            continue
        if r.get("dead_units"):
            du = r["dead_units"]
            layers = sorted((k for k in du[0] if k.startswith("layer_")), key=lambda k: int(k[6:]))
            per_layer = ", ".join(
                f"{k[6:]}: {_pm(_stat([d.get(k) for d in du]), 2)}" for k in layers
            )
            rows.append(
                [
                    f"`{model}`",
                    _pm(_stat([d.get("overall") for d in du])),
                    _pm(_stat([d.get("output") for d in du])),
                    per_layer,
                ]
            )
        elif r.get("dead_units_error"):
            errs.append(
                f"- `{model}`: not a plain stack of dense layers ({r['dead_units_error']})."
            )
    if rows:
        lines += [
            "Share of ReLU units that output zero on every fit frame (mean ± 95 % CI over seeds):",
            "",
        ]
        lines += _table(["model", "overall", "output layer", "per layer"], rows)
    lines += errs
    per_track = [(k, r) for k, r in m["records"].items() if k[2] == "per_track"]
    if not per_track:
        return lines
    lines += [
        "",
        "Fits on one track at a time (seed 0 of each model): the spread of the diagonal "
        "ratios across the fit tracks (min – max) and the median held-out relative L1 error.",
        "",
    ]
    prow = []
    for (model, setting, _), r in per_track:
        w = _finite([x.get(PRIMARY) for x in r.get("metrics", [])])
        u = _finite([x.get(SECONDARY) for x in r.get("metrics", [])])
        held = _finite(r.get("fidelity_heldout", []))
        prow.append(
            [
                f"`{setting}`",
                f"`{model}`",
                str(len(r.get("metrics", []))),
                f"{_f(min(w))} – {_f(max(w))}" if w else "—",
                f"{_f(min(u))} – {_f(max(u))}" if u else "—",
                _f(float(np.median(held)) if held else None),
            ]
        )
    prow.sort(key=lambda row: row[0])
    lines += _table(
        [
            "setting",
            "model",
            "tracks",
            "weighted diag. ratio",
            "diag. ratio",
            "held-out rel. L1 (median)",
        ],
        prow,
    )
    lines += [""] + _per_track_agreement(m)
    return lines


def _per_track_agreement(m: dict) -> list[str]:
    """On how many fit tracks both DAEs are more diagonal than dae_sf, per per-track setting."""
    out = []
    settings = sorted({k[1] for k in m["records"] if k[2] == "per_track"})
    for s in settings:
        recs = {mod: m["records"].get((mod, s, "per_track")) for mod in (*DAE_MODELS, SF_MODEL)}
        if any(r is None for r in recs.values()):
            continue
        vals = {mod: [x.get(PRIMARY) for x in r["metrics"]] for mod, r in recs.items()}
        n = min(len(v) for v in vals.values())
        usable = [t for t in range(n) if len(_finite([v[t] for v in vals.values()])) == len(vals)]
        k = sum(all(vals[d][t] > vals[SF_MODEL][t] for d in DAE_MODELS) for t in usable)
        n = len(usable)
        out.append(
            f"- `{s}`: on {k} of {n} fit tracks both DAEs are more diagonal than `{SF_MODEL}` "
            "by the weighted diagonal ratio."
        )
    return out


def _figures(data: dict, link_base: str) -> list[str]:
    lines = ["## Figures", ""]
    fig_dir = data["run_dir"] / "figures"
    pngs = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    if not pngs:
        return lines + [
            "_No figures in this run (`figures/` is empty or missing; they are made by "
            "`ncajax.plots.make_all`)._"
        ]
    ordered, seen = [], set()
    for prefix, caption in FIGURES:
        for p in pngs:
            if p.stem not in seen and (p.stem == prefix or p.stem.startswith(prefix + "_")):
                suffix = p.stem[len(prefix) + 1 :]
                ordered.append((p.stem, f"{caption}: `{suffix}`" if suffix else caption))
                seen.add(p.stem)
    ordered += [(p.stem, p.stem.replace("_", " ")) for p in pngs if p.stem not in seen]
    for name, caption in ordered:
        link = f"{link_base}/{name}.png" if link_base else f"{name}.png"
        pdf = fig_dir / f"{name}.pdf"
        pdf_link = f" ([PDF]({link[:-4]}.pdf))" if pdf.exists() else ""
        lines += [f"### {caption}{pdf_link}", "", f"![{name}]({link})", ""]
    return lines


# --------------------------------------------------------------------------------------------------
# public entry points


def build_report(
    run_dir: str | Path, *, timings: dict | None = None, figures_link: str = "figures"
) -> str:
    """The markdown report of the run in `run_dir`.

    `timings`: {stage: seconds} for the timings table. `figures_link`: the path from the report's
    folder to `<run>/figures` (the default suits `<run>/REPORT.md`). Missing stages leave a note in
    the report instead of failing; a missing `run_dir` raises FileNotFoundError.
    """
    data = _load(Path(run_dir))
    return _render(data, _conclusion(data), timings, figures_link)


def _render(data: dict, concl: dict, timings: dict | None, figures_link: str) -> str:
    sections = [
        _header(data, concl, timings),
        _separation(data),
        _structure(data),
        _conclusion_section(data, concl),
        _linearity(data),
        _dead_units_and_tracks(data),
        _figures(data, figures_link),
    ]
    text = "\n".join("\n".join(s).rstrip() + "\n" for s in sections).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(run_dir: str | Path, path: str | Path, *, timings: dict | None = None) -> Path:
    """Write `build_report(run_dir)` to `path` and the conclusion to `<run>/conclusion.json`."""
    run_dir, path = Path(run_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = Path(os.path.relpath(run_dir.resolve() / "figures", path.parent.resolve())).as_posix()
    data = _load(run_dir)
    concl = _conclusion(data)
    path.write_text(_render(data, concl, timings, link))
    write_json(run_dir / "conclusion.json", concl)
    return path


def copy_outputs(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy `<run>/REPORT.md` and the figures `<run>/figures/*.png|pdf` into `dest` (flat).

    The copied report's figure links are rewritten to point at the copies next to it. Returns the
    paths written. Raises FileNotFoundError when REPORT.md has not been written yet.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    report = run_dir / "REPORT.md"
    if not report.exists():
        raise FileNotFoundError(
            f"{report} does not exist: call write_report(run_dir, run_dir / "
            "'REPORT.md') before copy_outputs"
        )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    text = report.read_text()
    fig_dir = run_dir / "figures"
    figs = sorted([*fig_dir.glob("*.png"), *fig_dir.glob("*.pdf")]) if fig_dir.is_dir() else []
    for f in figs:
        written.append(Path(shutil.copy2(f, dest / f.name)))
        text = text.replace(f"](figures/{f.name})", f"]({f.name})")
    (dest / "REPORT.md").write_text(text)
    written.append(dest / "REPORT.md")
    return written
