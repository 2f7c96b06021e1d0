"""The one summary step of a study run: the verdict and every seed x song interval the report and the
figures show, computed once from the typed results (`ncajax.study`) and written to
`<run>/summary.json`.

`summarise(study) -> RunSummary` holds
- `conclusion`: the verdict (`ncajax.study.conclusion`; also written as `<run>/conclusion.json`),
  with every estimator's held-out-error intervals, directions, branches and the under-convergence
  control;
- `informative`: per mapping record (pooled fits and the zero / per-bin-gain baselines) the held-out
  error intervals the error table shows (the verdict's for fits it judged);
- `tables`: per mapping record and table (`"rel_l1_heldout"`, `"metrics.<name>"`,
  `"functional.keep_diag"`, `"part_metrics.<part>.<name>"`, `"linearity.<field>"`) a `TableSummary`:
  the interval over every cell (None where a cell is non-finite: the report writes "non-finite") and the
  interval over the seeds whose row is all finite, with their per-seed means (the figures' error bars
  and dots).
The report (`ncajax.report`) and the figures (`ncajax.plots`) render a `RunSummary`; neither computes
an interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PRIMARY_ESTIMATOR, PRIMARY_METRIC
from ..runs import write_json
from ..stats import seed_song_bootstrap
from . import _verdict as verdict
from ._results import MappingRecord, MappingStage, RecordKey, StudyRun, as_table, load_study

__all__ = ["TableSummary", "RunSummary", "summarise", "summarise_table", "write_summary", "SUMMARY_FILE",
           "LINEARITY_FIELDS"]

SUMMARY_FILE = "summary.json"
# the per-seed numbers of a model record's "linearity" list that the figures draw with intervals
LINEARITY_FIELDS = ("rel_l1_per_frame_linear", "rel_l1_mean_jacobian", "local_spread")


@dataclass(frozen=True)
class TableSummary:
    """One seed x song table `(n_seeds, n_songs)` (a per-seed list is one song), summarised once.

    interval: `stats.seed_song_bootstrap` of the whole table, None when a cell is non-finite.
    finite: every cell is finite. rows_interval: the interval over the seeds whose row is all finite
    (None when there are none); equal to `interval` when `finite`. per_seed: those seeds' means over
    songs `(n_finite_seeds,)`.
    """

    interval: dict | None
    finite: bool
    rows_interval: dict | None
    per_seed: tuple[float, ...]

    def to_json(self) -> dict:
        return {"interval": self.interval, "finite": self.finite, "rows_interval": self.rows_interval,
                "per_seed": list(self.per_seed)}


def summarise_table(value: Any) -> TableSummary | None:
    """`TableSummary` of a saved table (nested lists, None entries are non-finite); None for no table."""
    arr = as_table(value)
    if arr is None:
        return None
    arr = arr.reshape(arr.shape[0], -1)
    ok = np.all(np.isfinite(arr), axis=1)
    rows = arr[ok]
    if rows.size == 0:
        return TableSummary(None, False, None, ())
    iv = seed_song_bootstrap(rows)
    finite = bool(ok.all())
    return TableSummary(iv if finite else None, finite, iv, tuple(float(v) for v in rows.mean(axis=1)))


@dataclass(frozen=True)
class RunSummary:
    """Everything the report and the figures show that is computed, for one `StudyRun`."""

    study: StudyRun
    conclusion: dict
    informative: Mapping[RecordKey, dict]
    tables: Mapping[RecordKey, Mapping[str, TableSummary]]

    def table(self, model: str, setting: str, name: str, kind: str = "pooled") -> TableSummary | None:
        return (self.tables.get((model, setting, kind)) or {}).get(name)

    def to_json(self) -> dict:
        """The summary as JSON (record keys written "model/setting/kind")."""
        keys = dict.fromkeys([*self.informative, *self.tables])
        return {
            "run_dir": str(self.study.run_dir),
            "conclusion": self.conclusion,
            "records": {"/".join(k): {"informative": self.informative.get(k),
                                      "tables": {n: t.to_json() for n, t in (self.tables.get(k) or {}).items()}}
                        for k in keys},
        }


def _conclusion(mappings: MappingStage | None) -> dict:
    if mappings is None:
        return {"overall": {"verdict": "undetermined", "reason": "no mapping stage results",
                            "primary_estimator": PRIMARY_ESTIMATOR, "primary_metric": PRIMARY_METRIC},
                "settings": {}, "primary_secondary_metric": None}
    return verdict.conclusion(mappings.records, mappings.setting_names())


def _record_tables(rec: MappingRecord) -> dict[str, TableSummary]:
    """Every table of one record that the report or a figure shows with an interval."""
    named: dict[str, Any] = {}
    if rec.kind in ("pooled", "baseline"):
        named.update({k: rec.get(k) for k in ("rel_l1_heldout", "rel_l1_heldout_clipped")})
    if rec.kind == "pooled":
        named.update({f"metrics.{k}": v for k, v in (rec.get("metrics") or {}).items()})
        named.update({f"functional.{k}": v for k, v in (rec.get("functional") or {}).items()
                      if k in verdict.FUNCTIONAL_METRICS.values()})
        for part, metrics in rec.part_metrics.items():
            named.update({f"part_metrics.{part}.{k}": v for k, v in (metrics or {}).items()})
    if rec.kind == "model" and rec.get("linearity"):
        named.update({f"linearity.{k}": [s.get(k) for s in rec["linearity"]] for k in LINEARITY_FIELDS})
    out = {}
    for name, value in named.items():
        summary = summarise_table(value)
        if summary is not None:
            out[name] = summary
    return out


def _informative(mappings: MappingStage, concl: dict) -> dict[RecordKey, dict]:
    """The held-out error intervals of the error table: the verdict's for the fits it judged; the
    interval of the error alone (no comparison) for the baselines."""
    out: dict[RecordKey, dict] = {}
    for key, rec in mappings.records.items():
        model, setting, kind = key
        if kind == "baseline":
            out[key] = verdict.informative(rec, None)
        elif kind == "pooled":
            info = ((concl["settings"].get(setting) or {}).get("informative") or {}).get(model)
            out[key] = info if info is not None else verdict.informative(
                rec, mappings.record(model, "per_bin_gain", "baseline"))
    return out


def summarise(study: StudyRun) -> RunSummary:
    """The verdict and every interval of `study` (see the module docstring)."""
    concl = _conclusion(study.mappings)
    if study.mappings is None:
        return RunSummary(study, concl, {}, {})
    tables = {key: _record_tables(rec) for key, rec in study.mappings.records.items()}
    return RunSummary(study, concl, _informative(study.mappings, concl), {k: v for k, v in tables.items() if v})


def write_summary(summary: RunSummary, run_dir: str | Path | None = None) -> Path:
    """Write `summary.to_json()` to `<run>/summary.json` and the verdict to `<run>/conclusion.json`."""
    run_dir = Path(run_dir) if run_dir is not None else summary.study.run_dir
    write_json(run_dir / "conclusion.json", summary.conclusion)
    write_json(run_dir / SUMMARY_FILE, summary.to_json())
    return run_dir / SUMMARY_FILE


def summarise_run(run_dir: str | Path) -> RunSummary:
    """`summarise(load_study(run_dir))`."""
    return summarise(load_study(run_dir))
