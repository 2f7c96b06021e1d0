"""The one summary step of a study run: the verdict, every seed x song interval and every mean ± CI
over seeds that the report and the figures show, computed once from the typed results
(`ncajax.results`) and written to `<run>/summary.json`.

`summarise(study) -> RunSummary` holds
- `conclusion`: the verdict (`ncajax.results.conclusion`; also written as `<run>/conclusion.json`),
  with every estimator's held-out-error intervals, directions, branches and the under-convergence
  control;
- `informative`: per mapping record (pooled fits and the zero / per-bin-gain baselines) the held-out
  error intervals the error table shows (the verdict's for fits it judged);
- `tables`: per mapping record and table (`"rel_l1_heldout"`, `"metrics.<name>"`,
  `"functional.<name>"`, `"part_metrics.<part>.<name>"`, `"linearity.<field>"`) a `TableSummary`:
  the interval over every cell (None where a cell is non-finite: the report writes "non-finite"), the
  interval over the seeds whose row is all finite with their per-seed means (the figures' error bars
  and dots) and the mean over the finite cells;
- `fit_error`: per pooled fit and baseline, the fit-frame error's mean ± Student-t CI over seeds
  (`SeedStat`);
- `separation`: the evaluation stage's scores per model and reference, the training stage's test
  improvement and the real-music SDR and its gain over the mixture, each a `SeedStat`
  (`SeparationSummary`);
- `linearity`, `dead_units`, `units`: per model the per-frame Jacobian facts (`LinearitySummary`), the
  dead ReLU units on the fit frames (`DeadUnitsSummary`) and the evaluation stage's output-unit facts
  (`UnitsSummary`: dead share, live share per octave band, homogeneity errors, across seeds);
- `recipe_control`: the rows of the recipe control (`ControlRow`).
The report (`ncajax.report`) and the figures (`ncajax.plots`) render a `RunSummary`; neither computes
an interval or a statistic over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PRIMARY_ESTIMATOR, PRIMARY_METRIC
from ..runs import write_json
from ..stats import seed_interval, seed_song_bootstrap
from . import _verdict as verdict
from ._records import (
    MappingRecord,
    MappingStage,
    RecordKey,
    StudyRun,
    as_table,
    load_study,
    per_model,
)

__all__ = ["TableSummary", "SeedStat", "SeparationSummary", "LinearitySummary", "DeadUnitsSummary",
           "UnitsSummary", "ControlRow", "RunSummary", "summarise", "summarise_table", "seed_stat",
           "write_summary", "SUMMARY_FILE", "LINEARITY_FIELDS", "POOR_SPREAD", "SEPARATION_SCORES",
           "FUNCTIONAL_ERRORS"]

SUMMARY_FILE = "summary.json"
# the per-seed numbers of a model record's "linearity" list that the figures draw with intervals
LINEARITY_FIELDS = ("rel_l1_per_frame_linear", "rel_l1_mean_jacobian", "local_spread")
# Local spread sqrt(mean ||J_t - Jbar||^2) / ||Jbar|| above this: the per-frame Jacobians differ
# from their mean by more than half its size, so no single matrix stands for the model.
POOR_SPREAD = 0.5
# the functional-diagonality error tables the report shows as means: C, diag(C), its band, silence
FUNCTIONAL_ERRORS = ("err_full", "err_diag", "err_band", "err_zero")
# the separation scores of the evaluation stage summarised per model and reference: name -> keys
SEPARATION_SCORES = {"mag_sdr": ("mag_sdr",), "vocals.SDR": ("vocals", "SDR"), "vocals.SIR": ("vocals", "SIR"),
                     "vocals.SAR": ("vocals", "SAR")}


@dataclass(frozen=True)
class TableSummary:
    """One seed x song table `(n_seeds, n_songs)` (a per-seed list is one song), summarised once.

    interval: `stats.seed_song_bootstrap` of the whole table, None when a cell is non-finite.
    finite: every cell is finite. rows_interval: the interval over the seeds whose row is all finite
    (None when there are none); equal to `interval` when `finite`. per_seed: those seeds' means over
    songs `(n_finite_seeds,)`. cell_mean: the mean over the finite cells (None when there are none);
    the mean over every cell when `finite`.
    """

    interval: dict | None
    finite: bool
    rows_interval: dict | None
    per_seed: tuple[float, ...]
    cell_mean: float | None = None

    def to_json(self) -> dict:
        return {"interval": self.interval, "finite": self.finite, "rows_interval": self.rows_interval,
                "per_seed": list(self.per_seed), "cell_mean": self.cell_mean}


def _finite_mean(value: Any) -> float | None:
    """The mean over the finite cells of a saved table (any shape; None entries are non-finite)."""
    arr = np.asarray(value if value is not None else [], np.float64)
    arr = arr[np.isfinite(arr)] if arr.size else arr
    return float(arr.mean()) if arr.size else None


def summarise_table(value: Any) -> TableSummary | None:
    """`TableSummary` of a saved table (nested lists, None entries are non-finite); None for no table
    or an empty one."""
    arr = as_table(value)
    if arr is None or arr.size == 0:
        return None
    cell_mean = _finite_mean(value)
    arr = arr.reshape(arr.shape[0], -1)
    ok = np.all(np.isfinite(arr), axis=1)
    rows = arr[ok]
    if rows.size == 0:
        return TableSummary(None, False, None, (), cell_mean)
    iv = seed_song_bootstrap(rows)
    finite = bool(ok.all())
    return TableSummary(iv if finite else None, finite, iv, tuple(float(v) for v in rows.mean(axis=1)), cell_mean)


@dataclass(frozen=True)
class SeedStat:
    """Mean and two-sided Student-t 95 % CI over seeds (`ncajax.stats.seed_interval`) of the finite values
    of a per-seed list; `values` are those values, `n` their number (lo = hi = mean for one seed)."""

    mean: float
    lo: float
    hi: float
    n: int
    values: tuple[float, ...]

    def shifted(self, by: float) -> SeedStat:
        """The same interval moved by `by` (a difference to a fixed reference, e.g. the mixture)."""
        return SeedStat(self.mean + by, self.lo + by, self.hi + by, self.n, tuple(v + by for v in self.values))

    def to_json(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "values": list(self.values)}


def seed_stat(values: Any) -> SeedStat | None:
    """`SeedStat` of the finite entries of a per-seed list (None entries are left out); None when
    there are none."""
    vals = [float(v) for v in (values or []) if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    s = seed_interval(np.asarray(vals))
    return SeedStat(s["mean"], s["lo"], s["hi"], s["n"], tuple(vals))


def _stats_json(stats: Mapping[str, SeedStat | None]) -> dict:
    return {k: (v.to_json() if v is not None else None) for k, v in stats.items()}


def _dig(d: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


@dataclass(frozen=True)
class SeparationSummary:
    """Separation quality across seeds.

    scores: per group of the evaluation stage's predictions (a model, or a reference such as
    "mixture", "oracle_irm"; the group of "<model>/seed<k>" is the model) and per score of
    `SEPARATION_SCORES` that some prediction of the group has, the `SeedStat` of its values (None when
    none is finite). test_improvement: per trained model, the training stage's test magnitude-SDR
    improvement. real_sdr / real_gain: per model, the vocals SDR on the real track(s) and its
    difference to the unprocessed mixture's (`real_mixture`); real_oracle_gain: the oracle IRM's.
    """

    scores: Mapping[str, Mapping[str, SeedStat | None]]
    test_improvement: Mapping[str, SeedStat | None]
    real_sdr: Mapping[str, SeedStat | None] = field(default_factory=dict)
    real_gain: Mapping[str, SeedStat | None] = field(default_factory=dict)
    real_mixture: float | None = None
    real_oracle: float | None = None
    real_oracle_gain: float | None = None

    def score(self, group: str, name: str) -> SeedStat | None:
        return (self.scores.get(group) or {}).get(name)

    def to_json(self) -> dict:
        return {"scores": {g: _stats_json(v) for g, v in self.scores.items()},
                "test_improvement": _stats_json(self.test_improvement),
                "real_sdr": _stats_json(self.real_sdr), "real_gain": _stats_json(self.real_gain),
                "real_mixture": self.real_mixture, "real_oracle": self.real_oracle,
                "real_oracle_gain": self.real_oracle_gain}


def _vocals_sdr(summary: Any) -> Any:
    return (summary.get("vocals") or {}).get("SDR") if summary else None


def _separation(study: StudyRun) -> SeparationSummary:
    ev = study.evaluation.summary if study.evaluation is not None else {}
    groups: dict[str, list[Any]] = {}
    for name, scores in ev.items():
        groups.setdefault(name.split("/")[0], []).append(scores)
    scores_of = {}
    for group, preds in groups.items():
        scores_of[group] = {name: seed_stat([_dig(p, keys) for p in preds])
                            for name, keys in SEPARATION_SCORES.items()
                            if any(_dig(p, keys) is not None for p in preds)}
    improvement = {m: seed_stat(t.get("test_improvement_db")) for m, t in study.train.items()}
    real = study.evaluation.real if study.evaluation is not None else None
    if not real:
        return SeparationSummary(scores_of, improvement)
    rev = real.get("summary", {})
    mix, irm = _vocals_sdr(rev.get("mixture")), _vocals_sdr(rev.get("oracle_irm"))
    sdr = {m: seed_stat([_vocals_sdr(v) for v in vals]) for m, vals in per_model(rev).items()}
    gain = {m: None if st is None or mix is None else st.shifted(-mix) for m, st in sdr.items()}
    return SeparationSummary(scores_of, improvement, sdr, gain, mix, irm,
                             None if irm is None or mix is None else irm - mix)


@dataclass(frozen=True)
class LinearitySummary:
    """Is one matrix a fair summary of a model: its per-frame Jacobian facts across the seeds analysed.

    local_spread, rel_l1_mean_jacobian, rel_l1_per_frame_linear: `SeedStat`s; zero_frames / n_frames:
    the all-zero Jacobians and the frames, summed over seeds; poor: the local spread's mean is above
    `POOR_SPREAD` (None without a spread); quantile_levels and quantiles: per structure metric, each
    quantile over frames averaged over seeds.
    """

    local_spread: SeedStat | None
    rel_l1_mean_jacobian: SeedStat | None
    rel_l1_per_frame_linear: SeedStat | None
    zero_frames: int
    n_frames: int
    poor: bool | None
    quantile_levels: tuple[float, ...]
    quantiles: Mapping[str, tuple[float, ...]]

    def to_json(self) -> dict:
        return {**_stats_json({k: getattr(self, k) for k in LINEARITY_FIELDS}),
                "zero_frames": self.zero_frames, "n_frames": self.n_frames, "poor": self.poor,
                "quantile_levels": list(self.quantile_levels),
                "quantiles": {k: list(v) for k, v in self.quantiles.items()}}


def _linearity(rec: MappingRecord) -> LinearitySummary:
    lin = rec["linearity"]
    spread = seed_stat([x.get("local_spread") for x in lin])
    quantiles = {}
    qs = [x.get("frame_metric_quantiles", {}) for x in lin]
    for metric in qs[0]:
        vals = [q[metric] for q in qs if q.get(metric) is not None]
        if vals:
            quantiles[metric] = tuple(float(v) for v in np.asarray(vals, dtype=float).mean(axis=0))
    return LinearitySummary(
        spread, seed_stat([x.get("rel_l1_mean_jacobian") for x in lin]),
        seed_stat([x.get("rel_l1_per_frame_linear") for x in lin]),
        sum(x.get("zero_jacobian_frames", 0) for x in lin), sum(x.get("n_frames", 0) for x in lin),
        None if spread is None else bool(spread.mean > POOR_SPREAD),
        tuple(lin[0].get("quantile_levels", [0.05, 0.25, 0.5, 0.75, 0.95])), quantiles)


@dataclass(frozen=True)
class DeadUnitsSummary:
    """The share of a model's ReLU units that output zero on every fit frame, across seeds: overall,
    of the output layer and per layer ("layer_<k>", in layer order); `error` says why a model has none
    (not a plain stack of dense layers)."""

    overall: SeedStat | None
    output: SeedStat | None
    layers: Mapping[str, SeedStat | None]
    error: str | None = None

    def to_json(self) -> dict:
        return {"overall": self.overall.to_json() if self.overall else None,
                "output": self.output.to_json() if self.output else None,
                "layers": _stats_json(self.layers), "error": self.error}


def _dead_units(rec: MappingRecord | None) -> DeadUnitsSummary | None:
    rec = rec or {}
    if rec.get("dead_units"):
        du = rec["dead_units"]
        layers = sorted((k for k in du[0] if k.startswith("layer_")), key=lambda k: int(k[6:]))
        return DeadUnitsSummary(seed_stat([d.get("overall") for d in du]), seed_stat([d.get("output") for d in du]),
                                {k: seed_stat([d.get(k) for d in du]) for k in layers})
    if rec.get("dead_units_error"):
        return DeadUnitsSummary(None, None, {}, str(rec["dead_units_error"]))
    return None


@dataclass(frozen=True)
class UnitsSummary:
    """A model's output units on the held-out test frames (the evaluation stage's "units"), across seeds:
    the dead share's mean and worst seed, the homogeneity error's mean per level factor alpha, and per
    octave band (`bands`, as the first seed recorded them) the live share's mean, min and max."""

    frames: int
    dead_share_mean: float
    dead_share_max: float
    homogeneity_mean: Mapping[str, float]
    bands: tuple[Mapping[str, Any], ...]
    live_share_mean: tuple[float, ...]
    live_share_min: tuple[float, ...]
    live_share_max: tuple[float, ...]

    def to_json(self) -> dict:
        return {"frames": self.frames, "dead_share_mean": self.dead_share_mean,
                "dead_share_max": self.dead_share_max, "homogeneity_mean": dict(self.homogeneity_mean),
                "bands": [dict(b) for b in self.bands], "live_share_mean": list(self.live_share_mean),
                "live_share_min": list(self.live_share_min), "live_share_max": list(self.live_share_max)}


def _units(u: Mapping[str, Any]) -> UnitsSummary:
    dead = np.asarray(u["dead_share"], np.float64)
    homog = u.get("homogeneity") or {}
    per_seed = u["live_by_octave"]
    share = np.asarray([[b["live_share"] for b in seed] for seed in per_seed], np.float64)
    return UnitsSummary(u.get("frames"), float(dead.mean()), float(dead.max()),
                        {a: float(np.mean(v)) for a, v in homog.items()}, tuple(per_seed[0]),
                        *(tuple(float(v) for v in f(share, axis=0)) for f in (np.mean, np.min, np.max)))


@dataclass(frozen=True)
class ControlRow:
    """One row of the recipe control: a model mapped by the primary estimator, trained with the earlier
    recipe (`stage` "control") or the study's ("study"). dead_output: the dead output share on the fit
    frames across seeds; heldout_clipped, keep_diag, weighted_diagonal_energy_ratio: means over the
    finite seed x song cells (None when there are none); n_seeds: the held-out table's seeds."""

    model: str
    stage: str
    dead_output: SeedStat | None
    heldout_clipped: float | None
    keep_diag: float | None
    weighted_diagonal_energy_ratio: float | None
    n_seeds: int

    def to_json(self) -> dict:
        return {"model": self.model, "stage": self.stage,
                "dead_output": self.dead_output.to_json() if self.dead_output else None,
                "heldout_clipped": self.heldout_clipped, "keep_diag": self.keep_diag,
                "weighted_diagonal_energy_ratio": self.weighted_diagonal_energy_ratio, "n_seeds": self.n_seeds}


def _control_row(model: str, stage: str, mappings: MappingStage | None) -> ControlRow | None:
    if mappings is None:
        return None
    fit = mappings.record(model, PRIMARY_ESTIMATOR)
    if fit is None:
        return None
    facts = mappings.record(model, "-", "model") or {}
    return ControlRow(model, stage, seed_stat([d.get("output") for d in facts.get("dead_units") or []]),
                      _finite_mean(fit.get("rel_l1_heldout_clipped")),
                      _finite_mean((fit.get("functional") or {}).get("keep_diag")),
                      _finite_mean((fit.get("metrics") or {}).get("weighted_diagonal_energy_ratio")),
                      len(fit.get("rel_l1_heldout_clipped") or []))


def _recipe_control(study: StudyRun) -> tuple[ControlRow, ...]:
    control = study.recipe_control
    if not control:
        return ()
    rows = (_control_row(model, stage, m) for model in study.models()
            for stage, m in (("control", control.mappings), ("study", study.mappings)))
    return tuple(r for r in rows if r is not None)


@dataclass(frozen=True)
class RunSummary:
    """Everything the report and the figures show that is computed, for one `StudyRun` (see the module
    docstring)."""

    study: StudyRun
    conclusion: dict
    informative: Mapping[RecordKey, dict]
    tables: Mapping[RecordKey, Mapping[str, TableSummary]]
    fit_error: Mapping[RecordKey, SeedStat | None] = field(default_factory=dict)
    separation: SeparationSummary = field(default_factory=lambda: SeparationSummary({}, {}))
    linearity: Mapping[str, LinearitySummary] = field(default_factory=dict)
    dead_units: Mapping[str, DeadUnitsSummary] = field(default_factory=dict)
    units: Mapping[str, UnitsSummary] = field(default_factory=dict)
    recipe_control: tuple[ControlRow, ...] = ()

    def table(self, model: str, setting: str, name: str, kind: str = "pooled") -> TableSummary | None:
        return (self.tables.get((model, setting, kind)) or {}).get(name)

    def to_json(self) -> dict:
        """The summary as JSON (record keys written "model/setting/kind")."""
        keys = dict.fromkeys([*self.informative, *self.tables, *self.fit_error])
        fit = {k: (v.to_json() if v is not None else None) for k, v in self.fit_error.items()}
        return {
            "run_dir": str(self.study.run_dir),
            "conclusion": self.conclusion,
            "records": {"/".join(k): {"informative": self.informative.get(k), "fit_error": fit.get(k),
                                      "tables": {n: t.to_json() for n, t in (self.tables.get(k) or {}).items()}}
                        for k in keys},
            "separation": self.separation.to_json(),
            "linearity": {m: v.to_json() for m, v in self.linearity.items()},
            "dead_units": {m: v.to_json() for m, v in self.dead_units.items()},
            "units": {m: v.to_json() for m, v in self.units.items()},
            "recipe_control": [r.to_json() for r in self.recipe_control],
        }


def _conclusion(mappings: MappingStage | None) -> dict:
    if mappings is None:
        return {"overall": {"verdict": "undetermined", "reason": "no mapping stage results",
                            "primary_estimator": PRIMARY_ESTIMATOR, "primary_metric": PRIMARY_METRIC},
                "settings": {}, "primary_secondary_metric": None}
    return verdict.conclusion(mappings.records, mappings.setting_names())


def _record_tables(rec: MappingRecord) -> dict[str, TableSummary]:
    """Every table of one record that the report or a figure shows with an interval or a mean."""
    named: dict[str, Any] = {}
    if rec.kind in ("pooled", "baseline"):
        named.update({k: rec.get(k) for k in ("rel_l1_heldout", "rel_l1_heldout_clipped")})
    if rec.kind == "pooled":
        named.update({f"metrics.{k}": v for k, v in (rec.get("metrics") or {}).items()})
        named.update({f"functional.{k}": v for k, v in (rec.get("functional") or {}).items()
                      if k in (*verdict.FUNCTIONAL_METRICS.values(), *FUNCTIONAL_ERRORS)})
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
    """The verdict, every interval and every statistic over seeds of `study` (see the module docstring)."""
    concl = _conclusion(study.mappings)
    units = (study.evaluation.units if study.evaluation is not None else None) or {}
    common = {"separation": _separation(study), "recipe_control": _recipe_control(study),
              "units": {m: _units(u) for m, u in units.items() if u}}
    m = study.mappings
    if m is None:
        return RunSummary(study, concl, {}, {}, **common)
    tables = {key: _record_tables(rec) for key, rec in m.records.items()}
    fit_error = {rec.key: seed_stat(rec.get("rel_l1_fit")) for rec in m.records.values()
                 if rec.kind in ("pooled", "baseline")}
    linearity = {r.model: _linearity(r) for r in m.of_kind("model") if r.get("linearity")}
    dead = {model: d for model in study.models() if (d := _dead_units(m.record(model, "-", "model"))) is not None}
    return RunSummary(study, concl, _informative(m, concl), {k: v for k, v in tables.items() if v},
                      fit_error=fit_error, linearity=linearity, dead_units=dead, **common)


def write_summary(summary: RunSummary, run_dir: str | Path | None = None) -> Path:
    """Write `summary.to_json()` to `<run>/summary.json` and the verdict to `<run>/conclusion.json`."""
    run_dir = Path(run_dir) if run_dir is not None else summary.study.run_dir
    write_json(run_dir / "conclusion.json", summary.conclusion)
    write_json(run_dir / SUMMARY_FILE, summary.to_json())
    return run_dir / SUMMARY_FILE


def summarise_run(run_dir: str | Path) -> RunSummary:
    """`summarise(load_study(run_dir))`."""
    return summarise(load_study(run_dir))
