"""REPORT.md of a study run, written from the numbers the stages saved and the verdict computed from them.

Reads `<run>/train/<model>/` (config.json, meta.json, result.json), `<run>/mappings/` (result.json, or
metrics.jsonl of an unfinished stage) and `<run>/evaluation/result.json`; the verdict and its intervals
come from `ncajax.verdict` (rules) and `ncajax.stats` (seed x song bootstrap). This module only writes
Markdown. `rel. L1` throughout is the relative L1 error Σ|y - ŷ| / Σ|y| of a linear map against the
model's output: lower is better, 0 is exact, 1 is what predicting silence scores.
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

from . import verdict
from .analysis import summarise
from .config import MODEL_NAMES, PRIMARY_ESTIMATOR, PRIMARY_METRIC
from .runs import read_json, read_metrics, write_json
from .stats import seed_song_bootstrap

__all__ = ["build_report", "write_report", "conclusion", "copy_outputs", "corpora_section"]

# Local spread sqrt(mean ||J_t - Jbar||^2) / ||Jbar|| above this: the per-frame Jacobians differ
# from their mean by more than half its size, so no single matrix stands for the model.
POOR_SPREAD = 0.5
# Figure groups of `ncajax.plots`, in report order: (file-name prefix, caption). A file belongs to a
# group when its stem is the prefix or starts with prefix + "_" (e.g. mapping_matrices_nca_authors).
FIGURES = (
    ("direction_intervals", "DAE − dae_sf intervals per estimator (seed × song bootstrap)"),
    ("heldout_error", "Held-out error of every mapping against the baselines"),
    ("mapping_matrices", "Mapping matrices per model"),
    ("estimator_matrices", "One model's mapping under every estimator"),
    ("structure_metrics", "Structure metrics with seed × song intervals"),
    ("training_curves", "Training curves"),
    ("fit_loss_curves", "Loss curves of the iterative mapping fits"),
    ("spectrograms", "Spectrograms of a test excerpt"),
    ("linearity", "Per-frame Jacobian structure (is one matrix a fair summary?)"),
    ("separation_quality", "Separation quality"),
)
METRIC_LABELS = {
    "weighted_diagonal_energy_ratio": "weighted diag. ratio",
    "diagonal_energy_ratio": "diag. ratio",
    "weighted_near_diagonal_energy": "weighted near-diag.",
    "near_diagonal_energy": "near-diag.",
    "mean_coupling_distance_octaves": "coupling dist. (oct)",
    "mean_coupling_distance": "coupling dist. (bins)",
}
_STRUCT_COLS = ("weighted_diagonal_energy_ratio", "diagonal_energy_ratio", "weighted_near_diagonal_energy",
                "mean_coupling_distance_octaves")
ORDERING_TEXT = {
    "dae_more_diagonal": "DAEs more diagonal",
    "sf_more_diagonal": "`dae_sf` more diagonal",
    "mixed": "mixed",
    "undetermined": "undetermined",
}
VERDICT_TEXT = {
    "holds": "holds",
    "reversed": "is reversed (`dae_sf`'s mapping is the more diagonal)",
    "undetermined": "is undetermined",
}


# --------------------------------------------------------------------------------------------------
# loading


def _read(path: Path) -> Any:
    return read_json(path) if path.exists() else None


def _load_train(run_dir: Path, notes: list[str]) -> dict[str, dict]:
    train: dict[str, dict] = {}
    root = run_dir / "train"
    names = [m for m in MODEL_NAMES if (root / m).is_dir()]
    if root.is_dir():
        names += sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in names)
    for name in names:
        d = root / name
        train[name] = {"config": _read(d / "config.json"), "result": _read(d / "result.json"),
                       "meta": _read(d / "meta.json")}
        if not (train[name]["result"] or {}).get("finished"):
            notes.append(f"training of `{name}` has not finished (no complete result.json).")
    if not train:
        notes.append(f"no training runs under `{root}`.")
    return train


def _load_mappings(run_dir: Path, notes: list[str]) -> dict | None:
    mdir = run_dir / "mappings"
    if not (mdir / "config.json").exists():
        notes.append("no mapping stage results (`mappings/` is missing): no structure metrics and no verdict.")
        return None
    result = _read(mdir / "result.json")
    records = result["records"] if result is not None else read_metrics(mdir)
    if result is None:
        notes.append("the mapping stage has not finished: tables show the fits recorded so far "
                     "(mappings/metrics.jsonl).")
    by_key = {(r["model"], r["setting"], r["kind"]): r for r in records}  # a resumed stage: last wins
    return {"config": _read(mdir / "config.json"), "meta": _read(mdir / "meta.json"), "records": by_key,
            "result": result or {}, "finished": result is not None}


def _load(run_dir: Path) -> dict:
    """Everything the report reads, plus notes on what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist: pass the --out of reproduce.py")
    notes: list[str] = []
    train = _load_train(run_dir, notes)
    mappings = _load_mappings(run_dir, notes)
    evaluation = _read(run_dir / "evaluation" / "result.json")
    if evaluation is None:
        notes.append("no separation evaluation (`evaluation/result.json` is missing): the separation "
                     "table shows only the training stage's test magnitude SDR.")
    return {"run_dir": run_dir, "train": train, "mappings": mappings, "evaluation": evaluation,
            "eval_meta": _read(run_dir / "evaluation" / "meta.json"), "notes": notes}


def _settings(mappings: dict | None) -> list[dict]:
    """The fit settings in the stage's order (dicts of name, method, steps, learning_rate, init, ...)."""
    if mappings is None:
        return []
    out = list(((mappings["config"] or {}).get("mapping") or {}).get("settings", []))
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


def _conclusion(data: dict) -> dict:
    if data["mappings"] is None:
        return {"overall": {"verdict": "undetermined", "reason": "no mapping stage results",
                            "primary_estimator": PRIMARY_ESTIMATOR, "primary_metric": PRIMARY_METRIC},
                "settings": {}, "primary_secondary_metric": None}
    names = [s["name"] for s in _settings(data["mappings"])]
    return verdict.conclusion(data["mappings"]["records"], names)


def conclusion(run_dir: str | Path) -> dict:
    """The verdict of the run in `run_dir` as a dict (see `ncajax.verdict.conclusion`)."""
    return _conclusion(_load(Path(run_dir)))


# --------------------------------------------------------------------------------------------------
# formatting


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—" if x is None else str(x)
    return f"{x:.{digits}f}"


def _iv(interval: dict | None, digits: int = 3) -> str:
    """'mean [lo, hi]' of a bootstrap interval."""
    if not interval:
        return "—"
    return f"{interval['mean']:.{digits}f} [{interval['lo']:.{digits}f}, {interval['hi']:.{digits}f}]"


def _finite(values) -> list[float]:
    return [float(v) for v in (values or []) if v is not None and math.isfinite(float(v))]


def _stat(values) -> dict | None:
    """Mean and Student-t 95 % CI over seeds of the finite values, or None when there are none."""
    vals = _finite(values)
    if not vals:
        return None
    s = summarise(np.asarray(vals))
    return {"mean": s["mean"], "lo": s["lo"], "hi": s["hi"], "n": s["n"]}


def _pm(stat: dict | None, digits: int = 3) -> str:
    """'mean ± half-width' of a Student-t 95 % CI over seeds (just the mean for one seed)."""
    if stat is None:
        return "—"
    half = (stat["hi"] - stat["lo"]) / 2
    return _f(stat["mean"], digits) if stat["n"] < 2 else f"{stat['mean']:.{digits}f} ± {half:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _describe(setting: dict) -> str:
    method = setting.get("method")
    if method in ("nca", "student"):
        what = "NCA" if method == "nca" else "linear student (N×N matrix)"
        text = (f"{what}, {setting.get('steps')} Adam steps at lr {setting.get('learning_rate'):g}, "
                f"{setting.get('init')} init")
        if method == "nca":
            text += (", bias broadcast over input columns (the authors' `W + b`)"
                     if setting.get("bias_axis") == "input" else ", bias per output unit (a variant)")
        if setting.get("name") == "nca_authors":
            text += ": the authors' defaults"
        if setting.get("name") == PRIMARY_ESTIMATOR:
            text += ": **the primary estimator**"
        return text
    return {"lstsq": "least squares (closed form)",
            "jacobian": "mean exact Jacobian over the fit frames (not a fit)"}.get(method, str(method))


def _join(items) -> str:
    items = [f"`{i}`" for i in items]
    if len(items) <= 1:
        return "".join(items) or "none"
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------------
# sections


def verdict_sentence(concl: dict) -> str:
    """The verdict in one sentence, with the primary estimator's intervals."""
    overall = concl["overall"]
    primary = concl["settings"].get(PRIMARY_ESTIMATOR) or {}
    ivs = primary.get("intervals") or {}
    detail = "; ".join(f"{m} − dae_sf {_iv(iv)}" for m, iv in ivs.items())
    text = (f"\"The DAEs' mappings are more diagonal than `dae_sf`'s\" **{VERDICT_TEXT[overall['verdict']]}** "
            f"by the primary estimator `{overall['primary_estimator']}` on the primary metric "
            f"`{overall['primary_metric']}`")
    if detail:
        text += f" ({detail}; mean [95 % seed × song bootstrap interval])"
    if overall.get("reason"):
        text += f": {overall['reason']}"
    return text + "."


def _header(data: dict, concl: dict, timings: dict | None) -> list[str]:
    lines = ["# Mapping functions of DAE singing-voice separators: study report", ""]
    cfg = next((t["config"] for t in data["train"].values() if t["config"]), None) or {}
    ds = cfg.get("data", {})
    stft = cfg.get("stft") or ((data["mappings"] or {}).get("config") or {}).get("stft") or {}
    tracks = ds.get("tracks", {})
    counts = ", ".join(f"{len(v)} {k}" for k, v in tracks.items()) if tracks else "track counts unknown"
    corpus = ds.get("corpus") or {}
    seed_txt = f", corpus seed {corpus['seed']}" if "seed" in corpus else ""
    lines.append(f"- **Dataset:** {ds.get('dataset', 'unknown')} ({counts} tracks{seed_txt})")
    if stft:
        lines.append(f"- **Preset / STFT:** `{ds.get('preset', '?')}`: {stft.get('sample_rate')} Hz, n_fft "
                     f"{stft.get('n_fft')} ({stft.get('n_fft', 0) // 2 + 1} bins), hop {stft.get('hop_length')}, "
                     f"{stft.get('window')} window")
    seeds = sorted({s for t in data["train"].values() for s in (t["result"] or {}).get("seeds", [])})
    lines.append(f"- **Seeds:** {len(seeds)} per model ({', '.join(map(str, seeds)) or 'unknown'}) for "
                 f"{', '.join(f'`{m}`' for m in data['train']) or 'no models'}")
    metas = {f"train/{m}": t["meta"] for m, t in data["train"].items()}
    metas["mappings"] = (data["mappings"] or {}).get("meta")
    metas["evaluation"] = data["eval_meta"]
    commits = sorted({v.get("git_commit", "unknown") for v in metas.values() if v})
    if commits:
        lines.append(f"- **Git commit{'s' if len(commits) > 1 else ''}:** " + ", ".join(f"`{c}`" for c in commits))
    lines.append(f"- **Report generated:** {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    m = data["mappings"]
    if m is not None:
        res, mc = m["result"], ((m["config"] or {}).get("mapping") or {})
        lines.append(
            f"- **Mapping protocol:** each matrix fitted on {res.get('n_fit_frames', mc.get('n_fit_frames'))} "
            f"frames pooled over {len(res.get('fit_songs', [])) or '?'} songs of the training split; judged on "
            f"{len(res.get('heldout_songs', [])) or '?'} unseen test songs "
            f"({mc.get('heldout_frames_per_song')} frames each); every NCA/student fit with its own "
            "initialisation key; intervals: 95 % seed × song bootstrap")
    lines += ["", "**Verdict:** " + verdict_sentence(concl)]
    if data["notes"]:
        lines += ["", "**Notes on this run:**", ""] + [f"- {n}" for n in data["notes"]]
    if timings:
        lines += ["", "### Stage timings", ""]
        lines += _table(["stage", "wall time (s)"], [[k, _f(float(v), 1)] for k, v in timings.items()])
    return lines


def _informative_cell(v: dict) -> str:
    inf = v.get("informative") or {}
    marks = []
    for model, i in inf.items():
        mark = "yes" if i.get("informative") else "no"
        marks.append(f"{model}: {mark}")
    return ", ".join(marks) or "—"


def _converged_cell(v: dict) -> str:
    conv = v.get("converged") or {}
    if all(c is None for c in conv.values()):
        return "—"
    return ", ".join(f"{m}: {c[0]}/{c[1]}" for m, c in conv.items() if c is not None)


def _conclusion_section(data: dict, concl: dict) -> list[str]:
    lines = ["## Conclusion", ""]
    if not concl["settings"]:
        return lines + ["_No mapping stage results: no verdict._"]
    lines += [verdict_sentence(concl), ""]
    lines += [
        f"Rules, fixed in `ncajax/verdict.py` before the numbers: the primary estimator is `{PRIMARY_ESTIMATOR}` "
        "(the authors' NCA computation, run to convergence) and the primary metric is the weighted diagonal "
        "energy ratio; every other row is a secondary opinion. A direction counts only when its 95 % seed × "
        "song bootstrap interval of DAE − `dae_sf` excludes 0; a fitted mapping counts only when its error on "
        "unseen songs is clearly below the best per-bin gain's (then its off-diagonal part carries something "
        "a per-bin filter does not) and, for iterative fits, at least half its fits converged. The mean "
        "Jacobian is not a fit and is not gated by fit error.",
        "",
    ]
    rows = []
    for name, v in concl["settings"].items():
        ivs = v.get("intervals") or {}
        rows.append([f"`{name}`" + (" (primary)" if name == PRIMARY_ESTIMATOR else ""),
                     *(_iv(ivs.get(m)) for m in verdict.DAE_MODELS), ORDERING_TEXT[v["ordering"]],
                     _informative_cell(v), _converged_cell(v),
                     "yes" if v["counts"] else f"no: {v.get('reason') or '—'}"])
    lines += _table(["estimator", "dae − dae_sf", "dae_deep − dae_sf", "direction",
                     "informative (held-out < per-bin gain)", "converged", "counts"], rows)
    sec = concl.get("primary_secondary_metric")
    if sec and sec.get("intervals"):
        lines += ["", f"The primary estimator on the secondary metric (`{sec['metric']}`, unweighted): "
                  + "; ".join(f"{m} − dae_sf {_iv(iv)}" for m, iv in sec["intervals"].items())
                  + f" ({ORDERING_TEXT[sec['ordering']]})."]
    flags = [(n, v["by_construction"]) for n, v in concl["settings"].items() if v.get("by_construction")]
    if flags:
        lines += [""] + [f"- **By construction, not learning:** `{n}` on `dae_sf`: {t}." for n, t in flags]
    counting = concl["overall"].get("secondary_counting") or {}
    if counting:
        lines += ["", "Secondary estimators whose direction counts: "
                  + "; ".join(f"`{s}` {ORDERING_TEXT[o]}" for s, o in counting.items()) + "."]
    else:
        lines += ["", "No secondary estimator's direction counts under these rules."]
    return lines


def _error_row(name: str, model: str, rec: dict, info: dict | None) -> list[str]:
    info = info or {}
    return [f"`{name}`", f"`{model}`", _pm(_stat(rec.get("rel_l1_fit"))),
            _iv(info.get("heldout")), _iv(info.get("heldout_clipped")), _iv(info.get("vs_gain")),
            "—" if not info else ("yes" if info.get("informative") else "no")]


def _errors_section(data: dict, concl: dict) -> list[str]:
    lines = ["## Error on unseen songs against two baselines", ""]
    m = data["mappings"]
    if m is None:
        return lines + ["_No mapping stage results in this run._"]
    rows = []
    for model in _models(data):
        for b in ("zero", "per_bin_gain"):
            rec = m["records"].get((model, b, "baseline"))
            if rec is not None:
                info = verdict.informative(rec, None)
                rows.append([f"*{b}* (baseline)", f"`{model}`", _pm(_stat(rec.get("rel_l1_fit"))),
                             _iv(info.get("heldout")), _iv(info.get("heldout_clipped")), "—", "—"])
        for s in _settings(m):
            rec = m["records"].get((model, s["name"], "pooled"))
            if rec is not None:
                info = ((concl["settings"].get(s["name"]) or {}).get("informative") or {}).get(model)
                if info is None:
                    info = verdict.informative(rec, m["records"].get((model, "per_bin_gain", "baseline")))
                rows.append(_error_row(s["name"], model, rec, info))
    lines += _table(["estimator", "model", "rel. L1 fitted frames", "rel. L1 held-out songs",
                     "held-out, clipped at 0", "held-out − per-bin gain", "informative"], rows)
    lines += ["", "Relative L1 error of x ↦ Cx against the model's output (lower is better): on the "
              "fitted frames (mean ± Student-t 95 % CI over seeds) and on the unseen test songs (mean "
              "[95 % seed × song bootstrap interval]), raw and with the prediction clipped at 0 (a "
              "magnitude cannot be negative). *zero*: predicting silence (1 by definition). *per_bin_gain*: "
              "the best diagonal matrix (least squares per bin) on the same fit frames. A mapping whose "
              "held-out error is not clearly below the per-bin gain's describes no inter-frequency coupling "
              "that carries over to unseen songs, whatever its off-diagonal entries look like."]
    return lines


def _structure(data: dict) -> list[str]:
    lines = ["## Structure of the mapping matrices", ""]
    m = data["mappings"]
    if m is None:
        return lines + ["_No mapping stage results in this run._"]
    rows = []
    for s in _settings(m):
        for model in _models(data):
            r = m["records"].get((model, s["name"], "pooled"))
            if r is None:
                continue
            rows.append([f"`{s['name']}`", f"`{model}`", *(_metric_iv(r.get("metrics"), c) for c in _STRUCT_COLS)])
    lines += _table(["estimator", "model", *(METRIC_LABELS[c] for c in _STRUCT_COLS)], rows)
    lines += ["", "Each cell: mean [95 % seed × song bootstrap interval]. Weighted metrics weight input bin "
              "j by the mean input power of each held-out song; near-diagonal counts |i − j| ≤ k bins.", "",
              "Estimators:", ""]
    lines += [f"- `{s['name']}`: {_describe(s)}" for s in _settings(m)]
    prow = []
    for (model, setting, kind), r in m["records"].items():
        for part, metrics in (r.get("part_metrics") or {}).items() if kind == "pooled" else ():
            flag = verdict.BY_CONSTRUCTION.get((f"{setting}:{part}", model))
            prow.append([f"`{setting}`", f"`{model}`", f"`{part}`" + (" (diagonal by construction)" if flag else ""),
                         *(_metric_iv(metrics, c) for c in _STRUCT_COLS)])
    if prow:
        lines += ["", "Parts of the skip-filtering model's Jacobian, diag(m) + diag(x) ∂m/∂x:", ""]
        lines += _table(["estimator", "model", "part", *(METRIC_LABELS[c] for c in _STRUCT_COLS)], prow)
    return lines


def _metric_iv(metrics: dict | None, key: str) -> str:
    table = (metrics or {}).get(key)
    if table is None:
        return "—"
    arr = np.asarray(table, dtype=float)
    if not np.all(np.isfinite(arr)):
        return "non-finite"
    return _iv(seed_song_bootstrap(arr))


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





def _real_music(data: dict) -> list[str]:
    real = (data["evaluation"] or {}).get("real")
    if not real:
        return []
    ev = real.get("summary", {})

    def sdr(summary):
        return (summary.get("vocals") or {}).get("SDR") if summary else None

    mix, irm = sdr(ev.get("mixture")), sdr(ev.get("oracle_irm"))
    lines = ["### On real music", "",
             f"Every model, trained on the embedded corpus only, on the real MUSDB18 track(s) "
             f"{_join(real.get('tracks', []))} (resampled to the model's rate): vocals SDR (museval, "
             "median over 1 s windows), mean ± 95 % CI over seeds, and its improvement over the unprocessed "
             "mixture.", ""]
    rows = []
    for model in _models(data):
        vals = [sdr(v) for k, v in ev.items() if k.rsplit("/seed", 1)[0] == model and "/seed" in k]
        st = _stat(vals)
        gain = None if st is None or mix is None else {**st, "mean": st["mean"] - mix, "lo": st["lo"] - mix,
                                                        "hi": st["hi"] - mix}
        rows.append([f"`{model}`", _pm(st, 2), _pm(gain, 2)])
    rows += [["*mixture*", _f(mix, 2), "0.00"], ["*oracle IRM*", _f(irm, 2), _f(None if irm is None or mix is None
                                                                                 else irm - mix, 2)]]
    return lines + _table(["model", "vocals SDR (dB)", "improvement over the mixture (dB)"], rows)


def _linearity_rows(recs: dict) -> tuple[list[list[str]], list[str]]:
    rows, sentences = [], []
    for model, r in recs.items():
        lin = r["linearity"]
        spread = _stat([x.get("local_spread") for x in lin])
        mean_j = _stat([x.get("rel_l1_mean_jacobian") for x in lin])
        frame = _stat([x.get("rel_l1_per_frame_linear") for x in lin])
        dead = sum(x.get("zero_jacobian_frames", 0) for x in lin)
        total = sum(x.get("n_frames", 0) for x in lin)
        rows.append([f"`{model}`", _pm(spread), _pm(mean_j), _pm(frame), f"{dead}/{total}"])
        if spread is None:
            continue
        verdict_ = "a poor" if spread["mean"] > POOR_SPREAD else "a fair"
        s = f"- `{model}`: local spread {spread['mean']:.2f} (threshold {POOR_SPREAD}): one matrix is {verdict_} summary."
        if mean_j is not None and frame is not None:
            s += (f" The per-frame linearisations reproduce its output with error {frame['mean']:.3f}, "
                  f"the mean Jacobian with {mean_j['mean']:.3f}.")
        sentences.append(s)
    return rows, sentences


def _linearity(data: dict) -> list[str]:
    lines = ["## Is one matrix a fair summary?", ""]
    m = data["mappings"]
    recs = {} if m is None else {model: r for (model, _, kind), r in m["records"].items()
                                 if kind == "model" and r.get("linearity")}
    if not recs:
        return lines + ["_No per-frame Jacobian results in this run._"]
    lines += ["A mapping matrix is one linear map for all frames. The per-frame Jacobians J(xₜ) of a model show "
              "how far one matrix can stand for it: the *local spread* sqrt(mean‖Jₜ − J̄‖²) / ‖J̄‖, the "
              "relative L1 error of the mean Jacobian J̄ against that of the per-frame linearisations "
              "(xₜ ↦ Jₜxₜ), and quantiles over frames of the Jₜ's structure metrics. Frames whose Jacobian is "
              "all zero (every unit shut) are left out of the quantiles and counted. Mean ± 95 % CI over the "
              "seeds analysed.", ""]
    rows, sentences = _linearity_rows(recs)
    lines += _table(["model", "local spread", "rel. L1 mean Jacobian", "rel. L1 per-frame linear",
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
                              *(_f(v) for v in np.asarray(vals, dtype=float).mean(axis=0))])
    levels = next(iter(recs.values()))["linearity"][0].get("quantile_levels", [0.05, 0.25, 0.5, 0.75, 0.95])
    return lines + _table(["model", "metric", *(f"q{round(q * 100):02d}" for q in levels)], qrows)


def _dead_units(data: dict) -> list[str]:
    lines = ["## Dead units", ""]
    m = data["mappings"]
    if m is None:
        return lines + ["_No mapping stage results in this run._"]
    rows, errs = [], []
    for model in _models(data):
        r = m["records"].get((model, "-", "model")) or {}
        if r.get("dead_units"):
            du = r["dead_units"]
            layers = sorted((k for k in du[0] if k.startswith("layer_")), key=lambda k: int(k[6:]))
            per_layer = ", ".join(f"{k[6:]}: {_pm(_stat([d.get(k) for d in du]), 2)}" for k in layers)
            rows.append([f"`{model}`", _pm(_stat([d.get("overall") for d in du])),
                         _pm(_stat([d.get("output") for d in du])), per_layer])
        elif r.get("dead_units_error"):
            errs.append(f"- `{model}`: not a plain stack of dense layers ({r['dead_units_error']}).")
    if rows:
        lines += ["Share of ReLU units that output zero on every fit frame (mean ± 95 % CI over seeds):", ""]
        lines += _table(["model", "overall", "output layer", "per layer"], rows)
    return lines + errs


def corpora_section(summary: dict) -> list[str]:
    """Markdown of `verdict.across_corpora`: the verdict and each estimator's direction per corpus seed."""
    n = summary["n_corpora"]
    vc = summary["verdict_counts"]
    lines = ["## Across corpus seeds", "",
             f"The whole study (corpus, training, fits, verdict) on {n} corpus seeds "
             f"({', '.join(f'`{k}`' for k in summary['verdicts'])}): the primary verdict holds on {vc['holds']}, "
             f"is reversed on {vc['reversed']} and undetermined on {vc['undetermined']} of {n}.", ""]
    corpora = list(summary["verdicts"])
    rows = [["**verdict** (primary)", *(f"**{summary['verdicts'][k]}**" for k in corpora), "—"]]
    for s, v in summary["settings"].items():
        cells = []
        for k in corpora:
            o = v["orderings"].get(k)
            counted = v["reasons"].get(k) is None and o in ("dae_more_diagonal", "sf_more_diagonal")
            cells.append("—" if o is None else ORDERING_TEXT[o] + ("" if counted else " (does not count)"))
        tally = (f"DAEs more diagonal {v['counted']['dae_more_diagonal']}, dae_sf more diagonal "
                 f"{v['counted']['sf_more_diagonal']}, not counted {v['not_counted']}")
        rows.append([f"`{s}`" + (" (primary)" if s == PRIMARY_ESTIMATOR else ""), *cells, tally])
    lines += _table(["estimator", *corpora, f"of {n} corpora"], rows)
    lines += ["", "A cell says which direction the estimator's intervals give on that corpus and whether it counts "
              "(informative on held-out songs, converged, both DAEs on one side of 0)."]
    return lines


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


def build_report(run_dir: str | Path, *, timings: dict | None = None, figures_link: str = "figures",
                 corpora: dict | None = None) -> str:
    """The markdown report of the run in `run_dir`.

    `timings`: {stage: seconds} for the timings table. `figures_link`: the path from the report's
    folder to `<run>/figures` (the default suits `<run>/REPORT.md`). `corpora`: a
    `verdict.across_corpora` summary to include. Missing stages leave a note in the report instead of
    failing; a missing `run_dir` raises FileNotFoundError.
    """
    data = _load(Path(run_dir))
    return _render(data, _conclusion(data), timings, figures_link, corpora)


def _render(data: dict, concl: dict, timings: dict | None, figures_link: str, corpora: dict | None) -> str:
    sections = [_header(data, concl, timings), _conclusion_section(data, concl)]
    if corpora:
        sections.append(corpora_section(corpora))
    sections += [_errors_section(data, concl), _structure(data), _separation(data) + [""] + _real_music(data), _linearity(data),
                 _dead_units(data), _figures(data, figures_link)]
    text = "\n".join("\n".join(s).rstrip() + "\n" for s in sections).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(run_dir: str | Path, path: str | Path, *, timings: dict | None = None,
                 corpora: dict | None = None) -> Path:
    """Write `build_report(run_dir)` to `path` and the verdict to `<run>/conclusion.json`."""
    run_dir, path = Path(run_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = Path(os.path.relpath(run_dir.resolve() / "figures", path.parent.resolve())).as_posix()
    data = _load(run_dir)
    concl = _conclusion(data)
    path.write_text(_render(data, concl, timings, link, corpora))
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
