"""REPORT.md of a study run, written from the numbers the stages saved and the verdict computed from them.

Reads `<run>/train/<model>/` (config.json, meta.json, result.json), `<run>/mappings/` (result.json, or
metrics.jsonl of an unfinished stage) and `<run>/evaluation/result.json`; the verdict and its intervals
come from `ncajax.verdict` (rules) and `ncajax.stats` (seed x song bootstrap). This module loads a run
and holds the public entry points; the Markdown sections are written by `ncajax.report_sections` (the
run, the verdict, the mapping errors and structure, the figures) and `ncajax.report_results`
(separation, linearity, dead units), with the shared formats in `ncajax.report_format`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from . import verdict
from .config import MODEL_NAMES, PRIMARY_ESTIMATOR, PRIMARY_METRIC
from .report_format import settings_of
from .report_results import (
    dead_units_section,
    linearity_section,
    live_units_section,
    real_music_section,
    recipe_control_section,
    separation_section,
)
from .report_sections import (
    conclusion_section,
    convergence_control_section,
    corpora_section,
    errors_section,
    figures_section,
    functional_section,
    header_section,
    structure_section,
    verdict_sentence,
)
from .resolution import section as resolution_section
from .runs import RECIPE_CONTROL_DIR, read_json, read_metrics, write_json

__all__ = ["build_report", "write_report", "conclusion", "copy_outputs", "corpora_section", "verdict_sentence"]


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
            "eval_meta": _read(run_dir / "evaluation" / "meta.json"), "notes": notes,
            "recipe_control": _load_recipe_control(run_dir / RECIPE_CONTROL_DIR)}


def _load_recipe_control(control: Path) -> dict | None:
    """The study's recipe control (`<run>/control/`: the models trained with the earlier recipe and their
    primary-estimator mappings), or None when the run has none."""
    if not (control / "mappings" / "config.json").exists():
        return None
    first = next((d for d in sorted((control / "train").glob("*")) if (d / "config.json").exists()), None)
    return {"mappings": _load_mappings(control, []),
            "train_config": _read(first / "config.json") if first is not None else None}


def _conclusion(data: dict) -> dict:
    if data["mappings"] is None:
        return {"overall": {"verdict": "undetermined", "reason": "no mapping stage results",
                            "primary_estimator": PRIMARY_ESTIMATOR, "primary_metric": PRIMARY_METRIC},
                "settings": {}, "primary_secondary_metric": None}
    names = [s["name"] for s in settings_of(data["mappings"])]
    return verdict.conclusion(data["mappings"]["records"], names)


def conclusion(run_dir: str | Path) -> dict:
    """The verdict of the run in `run_dir` as a dict (see `ncajax.verdict.conclusion`)."""
    return _conclusion(_load(Path(run_dir)))


# --------------------------------------------------------------------------------------------------
# public entry points


def build_report(run_dir: str | Path, *, timings: dict | None = None, figures_link: str = "figures",
                 corpora: dict | None = None, resolution: dict | None = None) -> str:
    """The markdown report of the run in `run_dir`.

    `timings`: {stage: seconds} for the timings table. `figures_link`: the path from the report's
    folder to `<run>/figures` (the default suits `<run>/REPORT.md`). `corpora`: a
    `verdict.across_corpora` summary to include. Missing stages leave a note in the report instead of
    failing; a missing `run_dir` raises FileNotFoundError. `resolution`: a `resolution.summarise`
    summary of the ladder's rungs to include.
    """
    data = _load(Path(run_dir))
    return _render(data, _conclusion(data), timings, figures_link, corpora, resolution)


def _render(data: dict, concl: dict, timings: dict | None, figures_link: str, corpora: dict | None,
            resolution: dict | None = None) -> str:
    sections = [header_section(data, concl, timings), conclusion_section(data, concl)]
    if corpora:
        sections.append(corpora_section(corpora))
    if resolution:
        sections.append(resolution_section(resolution))
    sections += [errors_section(data, concl), functional_section(data, concl), convergence_control_section(data, concl),
                 structure_section(data),
                 separation_section(data) + [""] + real_music_section(data), linearity_section(data),
                 live_units_section(data), recipe_control_section(data), dead_units_section(data), figures_section(data, figures_link)]
    text = "\n".join("\n".join(s).rstrip() + "\n" for s in sections).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(run_dir: str | Path, path: str | Path, *, timings: dict | None = None,
                 corpora: dict | None = None, resolution: dict | None = None) -> Path:
    """Write `build_report(run_dir)` to `path` and the verdict to `<run>/conclusion.json`."""
    run_dir, path = Path(run_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = Path(os.path.relpath(run_dir.resolve() / "figures", path.parent.resolve())).as_posix()
    data = _load(run_dir)
    concl = _conclusion(data)
    path.write_text(_render(data, concl, timings, link, corpora, resolution))
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
