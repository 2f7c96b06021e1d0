"""What a finished study run holds, read back once and summarised once.

    load_study(run_dir) -> StudyRun   the one loader of a run directory's stage results, typed
                                      (TrainResult, MappingStage of MappingRecords, EvaluationResult,
                                      RecipeControl); its errors name the missing or corrupt file and the fix
    summarise_run / write_summary     the one summary step: the verdict's inputs and every interval and
                                      mean over seeds the report and figures show, computed once
                                      (summary.json, conclusion.json) -> RunSummary
    conclusion / across_corpora       the verdict rules (primary estimator and metric, one gate rule,
                                      branches per model, the under-convergence control, across corpora)

The report (`ncajax.report`) and the figures (`ncajax.plots`) render a RunSummary; neither computes.

Modules (private): `_records` (typed results, the loader), `_summary`, `_verdict`.
"""

from ._records import (
    EvaluationResult,
    MappingRecord,
    MappingStage,
    RecipeControl,
    StudyRun,
    TrainResult,
    load_study,
    per_model,
)
from ._summary import (
    ControlRow,
    DeadUnitsSummary,
    LinearitySummary,
    RunSummary,
    SeedStat,
    SeparationSummary,
    TableSummary,
    UnitsSummary,
    summarise_run,
    write_summary,
)
from ._verdict import across_corpora, conclusion, convergence_control, model_branch

__all__ = [
    "ControlRow",
    "DeadUnitsSummary",
    "EvaluationResult",
    "LinearitySummary",
    "MappingRecord",
    "MappingStage",
    "RecipeControl",
    "RunSummary",
    "SeedStat",
    "SeparationSummary",
    "StudyRun",
    "TableSummary",
    "TrainResult",
    "UnitsSummary",
    "across_corpora",
    "conclusion",
    "convergence_control",
    "load_study",
    "model_branch",
    "per_model",
    "summarise_run",
    "write_summary",
]
