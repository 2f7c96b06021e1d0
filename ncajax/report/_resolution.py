"""The resolution ladder across study runs: one rung per STFT preset (`fast`, `mid`, `paper`), each a
finished study run directory, compared on what the issue "separators worth studying" asks: dead output
units, separation quality, the primary metric's DAE − dae_sf intervals and the verdict.

`summarise(rungs)` reads each run with `ncajax.results.load_study` and takes its numbers from the run's
summary (`ncajax.results.summarise_run`: nothing is computed here) into a JSON-ready dict;
`section(summary)` renders it as the report's "Resolution" section.
"""

from __future__ import annotations

from pathlib import Path

from ..config import PRIMARY_ESTIMATOR, PRIMARY_METRIC
from ..results._summary import RunSummary, summarise_run
from ._format import fmt_iv, md_table

__all__ = ["summarise", "section"]


def rung(summary: RunSummary) -> dict:
    """The facts of one rung from its run's summary: preset and STFT, per trained model (sorted) the
    seeds, the dead output share (mean and worst seed), the mean training-stage test improvement and
    vocals SDR over seeds, the primary estimator's intervals and branches, the verdict and wall time."""
    study = summary.study
    models = sorted(m for m, t in study.train.items() if t.result is not None)
    if not models:
        raise FileNotFoundError(f"{study.run_dir} has no finished training run: run the study there to the end first")
    first = study.train[models[0]].config or {}
    stft = first["stft"]
    sep = summary.separation
    per_model = {}
    for m in models:
        units = summary.units.get(m)
        improvement, sdr = sep.test_improvement.get(m), sep.score(m, "vocals.SDR")
        per_model[m] = {
            "n_seeds": len(study.train[m].get("test_mag_sdr_db") or []),
            "dead_share": units.dead_share_mean if units is not None else None,
            "dead_share_max": units.dead_share_max if units is not None else None,
            "test_improvement_db": improvement.mean if improvement is not None else None,
            "vocals_sdr": sdr.mean if sdr is not None else None,
        }
    primary = (summary.conclusion.get("settings") or {}).get(PRIMARY_ESTIMATOR) or {}
    ev = study.evaluation.summary if study.evaluation is not None else {}
    mix = (ev.get("mixture") or {}).get("vocals") or {}
    return {
        "run_dir": str(study.run_dir), "preset": first["data"].get("preset"), "sample_rate": stft["sample_rate"],
        "n_bins": stft["n_fft"] // 2 + 1, "models": per_model, "mixture_vocals_sdr": mix.get("SDR"),
        "primary_intervals": primary.get("intervals"), "primary_counts": primary.get("counts"),
        "branches": primary.get("branches"), "verdict": (summary.conclusion.get("overall") or {}).get("verdict"),
        "wall_s": (study.timings or {}).get("total"),
    }


def _rung(run_dir: Path) -> dict:
    if not (run_dir / "conclusion.json").exists():  # written at the end of the study: a finished run
        raise FileNotFoundError(f"{run_dir} has no conclusion.json: run the study there to the end first")
    return rung(summarise_run(run_dir))


def summarise(rungs: dict[str, str | Path]) -> dict:
    """{rung name: run directory} -> {"primary_estimator", "primary_metric", "rungs": {name: facts}}."""
    if not rungs:
        raise ValueError("give at least one rung: NAME=RUN_DIR")
    return {"primary_estimator": PRIMARY_ESTIMATOR, "primary_metric": PRIMARY_METRIC,
            "rungs": {name: _rung(Path(d)) for name, d in rungs.items()}}


def _f(v, digits=3, suffix=""):
    return "—" if v is None else f"{v:.{digits}f}{suffix}"


def section(summary: dict) -> list[str]:
    """The report's "Resolution" section."""
    rungs = summary["rungs"]
    lines = ["## Resolution", "",
             "The study at each rung of the resolution ladder that was run (`--preset`; each rung its own "
             "corpus at the preset's sample rate, its own training and fits). Dead output share on the "
             "held-out test frames (mean over seeds, worst seed in brackets); vocals SDR (BSS Eval v4, "
             "median over windows and songs, mean over seeds) and the training stage's magnitude-SDR gain "
             f"over the mixture on the test songs; the primary metric `{summary['primary_metric']}` of the "
             f"primary estimator `{summary['primary_estimator']}`: DAE − `dae_sf` mean [95 % seed × song "
             "interval]; the verdict; the study's wall time.", ""]
    models = sorted({m for r in rungs.values() for m in r["models"]})
    rows = []
    for name, r in rungs.items():
        for m in models:
            f = r["models"].get(m) or {}
            rows.append([f"`{name}` ({r['sample_rate'] / 1000:g} kHz, N = {r['n_bins']})", f"`{m}`",
                         str(f.get("n_seeds", "—")),
                         f"{_f(f.get('dead_share'))} ({_f(f.get('dead_share_max'))})",
                         _f(f.get("vocals_sdr"), 2), _f(f.get("test_improvement_db"), 2)])
    lines += md_table(["rung", "model", "seeds", "dead output share", "vocals SDR (dB)",
                       "test mag. SDR gain (dB)"], rows)
    lines += [""]
    rows = []
    for name, r in rungs.items():
        ivs = r.get("primary_intervals") or {}
        branches = r.get("branches") or {}
        rows.append([f"`{name}`", *(fmt_iv(ivs.get(d)) for d in ("dae", "dae_deep")),
                     ", ".join(f"{m}: {b}" for m, b in branches.items()) or "—",
                     f"**{r.get('verdict')}**", _f(r.get("mixture_vocals_sdr"), 2),
                     "—" if r.get("wall_s") is None else f"{r['wall_s'] / 60:.1f} min"])
    lines += md_table(["rung", "dae − dae_sf", "dae_deep − dae_sf", "branch per model", "verdict",
                       "mixture vocals SDR (dB)", "wall time"], rows)
    return lines
