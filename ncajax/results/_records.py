"""Typed results of a study run, and the one loader that reads a run directory into them.

A study run directory (`experiments/reproduce.py --out`, `ncajax.study.run_study`) holds one folder per
stage; `load_study(run_dir)` reads all of them into a frozen `StudyRun`:

- `train/<model>/{config,meta,result}.json` -> `TrainResult` per model
- `mappings/{config,meta,result}.json` (or `metrics.jsonl` of an unfinished stage) -> `MappingStage`,
  whose `records` are `MappingRecord`s keyed by (model, setting, kind)
- `evaluation/{result,meta}.json` -> `EvaluationResult`
- `control/{train,mappings}` (the recipe control) -> `RecipeControl`
- `timings.json` -> `StudyRun.timings`

Nothing here computes an interval: that is `ncajax.results` (the one summary step the report and the
figures render). A stage that has not run leaves a note in `StudyRun.notes` (the report prints them); a
missing run directory raises FileNotFoundError and a corrupt JSON file a ValueError naming the file and
the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MODEL_NAMES
from ..runs import RECIPE_CONTROL_DIR, read_json, read_metrics

__all__ = [
    "TrainResult",
    "MappingRecord",
    "MappingStage",
    "EvaluationResult",
    "RecipeControl",
    "StudyRun",
    "load_study",
    "load_mapping_stage",
    "read_optional_json",
]

RecordKey = tuple[str, str, str]  # (model, setting, kind)
"""Kinds of mapping records: "pooled" (one estimator's fits), "baseline" (zero / per-bin gain),
"model" (per-model facts: dead units, linearity) and "control" (under-convergence snapshots)."""


def read_optional_json(path: Path) -> Any:
    """The JSON at `path`, or None when it does not exist. A file that does not parse raises a
    ValueError naming it: it was cut by a kill or edited by hand."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is corrupt ({err}): delete {path.parent} and rerun that stage "
            "(experiments/reproduce.py reuses every finished stage)"
        ) from err


def as_table(value: Any) -> np.ndarray | None:
    """A saved seed x song table as float64 `(n_seeds, n_songs)` (a per-seed list is one song;
    None entries become NaN), or None when there is no table."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr


# --------------------------------------------------------------------------------------------------
# stages


@dataclass(frozen=True)
class TrainResult:
    """One model's training run (`train/<model>/`): its config, meta (git commit, versions) and
    result (seeds, test magnitude SDR); None for a file the run has not written."""

    model: str
    config: Mapping[str, Any] | None
    result: Mapping[str, Any] | None
    meta: Mapping[str, Any] | None

    @property
    def finished(self) -> bool:
        return bool((self.result or {}).get("finished"))

    @property
    def seeds(self) -> list[int]:
        return list((self.result or {}).get("seeds", []))

    def get(self, key: str, default: Any = None) -> Any:
        """A field of result.json (`test_improvement_db`, `test_mixture_mag_sdr_db`, ...)."""
        return (self.result or {}).get(key, default)


@dataclass(frozen=True)
class MappingRecord:
    """One record of the mapping stage: one estimator (`setting`) of one model, every seed inside.

    The saved per-seed x per-song tables (`rel_l1_heldout`, `metrics[...]`, `functional[...]`, ...) are
    read as `(n_seeds, n_songs)` float64 by `table`, `metric`, `functional_table` and `part_metric`; the
    verdict rules (`ncajax.results`) read a record through `get`, as they read the stage's plain dicts.
    """

    model: str
    setting: str
    kind: str
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, rec: Mapping[str, Any], source: Path) -> MappingRecord:
        missing = [k for k in ("model", "setting", "kind") if k not in rec]
        if missing:
            raise ValueError(f"a mapping record in {source} has no {', '.join(missing)}: the file is not a "
                             "mapping stage's output; rerun the mapping stage (experiments/fit_mappings.py)")
        return cls(str(rec["model"]), str(rec["setting"]), str(rec["kind"]), rec)

    @property
    def key(self) -> RecordKey:
        return (self.model, self.setting, self.kind)

    @property
    def method(self) -> str | None:
        return self.raw.get("method")

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def table(self, key: str) -> np.ndarray | None:
        """A top-level seed x song table, e.g. "rel_l1_heldout_clipped"."""
        return as_table(self.raw.get(key))

    def metric(self, name: str) -> np.ndarray | None:
        """A structure metric's seed x song table ("metrics")."""
        return as_table((self.raw.get("metrics") or {}).get(name))

    def functional_table(self, name: str) -> np.ndarray | None:
        """A functional-diagonality table ("functional": err_full, keep_diag, ...)."""
        return as_table((self.raw.get("functional") or {}).get(name))

    @property
    def part_metrics(self) -> Mapping[str, Mapping[str, Any]]:
        """The structure metrics of `dae_sf`'s Jacobian parts, {part: {metric: table}}."""
        return self.raw.get("part_metrics") or {}


@dataclass(frozen=True)
class MappingStage:
    """The mapping stage (`mappings/`): config, meta, the result's header (fit and held-out songs) and
    the records; `finished` is False for a stage read from metrics.jsonl (still running or cut)."""

    path: Path
    config: Mapping[str, Any] | None
    meta: Mapping[str, Any] | None
    result: Mapping[str, Any]
    finished: bool
    records: Mapping[RecordKey, MappingRecord]

    def record(self, model: str, setting: str, kind: str = "pooled") -> MappingRecord | None:
        return self.records.get((model, setting, kind))

    def of_kind(self, kind: str) -> Iterator[MappingRecord]:
        return (r for r in self.records.values() if r.kind == kind)

    @property
    def mapping_config(self) -> Mapping[str, Any]:
        return (self.config or {}).get("mapping") or {}

    def settings(self) -> list[dict]:
        """The fit settings in the stage's order (dicts of name, method, steps, learning_rate, init, ...),
        then those of pooled records the config does not list."""
        out = list(self.mapping_config.get("settings", []))
        known = {s["name"] for s in out}
        for r in self.of_kind("pooled"):
            if r.setting not in known:
                out.append(r.get("settings") or {"name": r.setting, "method": r.get("method", "?")})
                known.add(r.setting)
        return out

    def setting_names(self) -> list[str]:
        return [s["name"] for s in self.settings()]


@dataclass(frozen=True)
class EvaluationResult:
    """The evaluation stage (`evaluation/result.json`): `summary` maps a prediction name ("mixture",
    "oracle_irm", "<model>/seed<k>") to its scores; `units`, `real`, `loudness`, `per_track` as saved."""

    result: Mapping[str, Any]
    meta: Mapping[str, Any] | None

    @property
    def summary(self) -> Mapping[str, Any]:
        return self.result.get("summary", {})

    @property
    def units(self) -> Mapping[str, Any] | None:
        return self.result.get("units")

    @property
    def real(self) -> Mapping[str, Any] | None:
        return self.result.get("real")

    def get(self, key: str, default: Any = None) -> Any:
        return self.result.get(key, default)


def per_model(predictions: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{model: [value per seed]} of a {prediction name: value} map whose seeded predictions are
    named "<model>/seed<k>" (the evaluation stage's names); references (mixture, oracle) are left out."""
    out: dict[str, list[Any]] = {}
    for name, value in predictions.items():
        if "/seed" in name:
            out.setdefault(name.rsplit("/seed", 1)[0], []).append(value)
    return out


@dataclass(frozen=True)
class RecipeControl:
    """The study's recipe control (`control/`): models trained with the earlier recipe, mapped by the
    primary estimator; `train_config` is the first control model's training config."""

    mappings: MappingStage | None
    train_config: Mapping[str, Any] | None


@dataclass(frozen=True)
class StudyRun:
    """A study run directory, every stage typed; `notes` say what has not run or not finished."""

    run_dir: Path
    train: Mapping[str, TrainResult]
    mappings: MappingStage | None
    evaluation: EvaluationResult | None
    recipe_control: RecipeControl | None
    timings: Mapping[str, float] | None
    notes: tuple[str, ...]

    def models(self) -> list[str]:
        """The trained models, then the mapping stage's (config order), then any with records only."""
        names = list(self.train)
        if self.mappings is not None:
            names += [m for m in (self.mappings.config or {}).get("models", []) if m not in names]
            names += sorted({k[0] for k in self.mappings.records} - set(names))
        return names

    def train_config(self) -> Mapping[str, Any]:
        """The first model's training config with a config.json ({} when none has one)."""
        return next((t.config for t in self.train.values() if t.config), None) or {}


# --------------------------------------------------------------------------------------------------
# the loader


def _load_train(root: Path, notes: list[str]) -> dict[str, TrainResult]:
    names = [m for m in MODEL_NAMES if (root / m).is_dir()]
    if root.is_dir():
        names += sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in names)
    train = {}
    for name in names:
        d = root / name
        train[name] = TrainResult(name, read_optional_json(d / "config.json"),
                                  read_optional_json(d / "result.json"), read_optional_json(d / "meta.json"))
        if not train[name].finished:
            notes.append(f"training of `{name}` has not finished (no complete result.json).")
    if not train:
        notes.append(f"no training runs under `{root}`.")
    return train


def load_mapping_stage(mdir: str | Path, notes: list[str] | None = None) -> MappingStage | None:
    """The mapping stage in `mdir`, or None (with a note) when it has no config.json. Its records come
    from result.json, else from metrics.jsonl (an unfinished stage; a resumed stage's last record of a
    key wins)."""
    mdir = Path(mdir)
    notes = notes if notes is not None else []
    if not (mdir / "config.json").exists():
        notes.append("no mapping stage results (`mappings/` is missing): no structure metrics and no verdict.")
        return None
    result = read_optional_json(mdir / "result.json")
    if result is not None and "records" not in result:
        raise ValueError(f"{mdir / 'result.json'} has no \"records\": delete it and rerun the mapping stage")
    raw = result["records"] if result is not None else read_metrics(mdir)
    source = mdir / ("result.json" if result is not None else "metrics.jsonl")
    if result is None:
        notes.append("the mapping stage has not finished: tables show the fits recorded so far "
                     "(mappings/metrics.jsonl).")
    records: dict[RecordKey, MappingRecord] = {}
    for rec in raw:
        r = MappingRecord.from_json(rec, source)
        records[r.key] = r
    return MappingStage(mdir, read_optional_json(mdir / "config.json"), read_optional_json(mdir / "meta.json"),
                        result or {}, result is not None, records)


def _load_recipe_control(control: Path) -> RecipeControl | None:
    if not (control / "mappings" / "config.json").exists():
        return None
    first = next((d for d in sorted((control / "train").glob("*")) if (d / "config.json").exists()), None)
    return RecipeControl(load_mapping_stage(control / "mappings", []),
                         read_optional_json(first / "config.json") if first is not None else None)


def load_study(run_dir: str | Path) -> StudyRun:
    """Read the study run in `run_dir` into a `StudyRun` (see the module docstring for the files).

    Raises FileNotFoundError when `run_dir` does not exist and ValueError for a corrupt file; a stage
    that has not run is None with a note in `notes`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist: pass the --out of reproduce.py")
    notes: list[str] = []
    train = _load_train(run_dir / "train", notes)
    mappings = load_mapping_stage(run_dir / "mappings", notes)
    result = read_optional_json(run_dir / "evaluation" / "result.json")
    evaluation = None
    if result is None:
        notes.append("no separation evaluation (`evaluation/result.json` is missing): the separation "
                     "table shows only the training stage's test magnitude SDR.")
    else:
        evaluation = EvaluationResult(result, read_optional_json(run_dir / "evaluation" / "meta.json"))
    return StudyRun(run_dir, train, mappings, evaluation, _load_recipe_control(run_dir / RECIPE_CONTROL_DIR),
                    read_optional_json(run_dir / "timings.json"), tuple(notes))
