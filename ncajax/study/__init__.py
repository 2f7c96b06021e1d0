"""The whole study: its one config, the stages chained as library calls, the typed results of a run
directory with their one loader, the one summary step and the verdict rules.

    StudyConfig                     the one study config: nests DataOptions, TrainOptions, FitOptions,
                                    EvaluateOptions, FigureOptions; round-trips through JSON
    run_study / run_corpora         the whole study on one corpus, or on K corpus seeds
    prepare_data / train_all / fit_all / evaluate_all
                                    one stage each, as library calls
    load_study(run_dir) -> StudyRun the one loader of a run directory's stage results
    summarise_run / write_summary   the one summary step: every interval, every mean ± CI over seeds
                                    and the verdict, computed once (RunSummary and the small
                                    dataclasses it holds: TableSummary, SeedStat, SeparationSummary,
                                    LinearitySummary, DeadUnitsSummary, UnitsSummary, ControlRow)
    conclusion / across_corpora     the verdict rules

Modules (private): `_options`, `_pipeline`, `_study`, `_results`, `_summary`, `_verdict`.
"""

from ._options import (
    DataOptions,
    EvaluateOptions,
    FigureOptions,
    FitOptions,
    StudyConfig,
    TrainOptions,
)
from ._pipeline import Data, evaluate_all, fit_all, load_separators, prepare_data, train_all
from ._results import (
    EvaluationResult,
    MappingRecord,
    MappingStage,
    RecipeControl,
    StudyRun,
    TrainResult,
    load_study,
    per_model,
)
from ._study import StudyOptions, run_corpora, run_study
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
    "Data",
    "DeadUnitsSummary",
    "DataOptions",
    "EvaluateOptions",
    "EvaluationResult",
    "FigureOptions",
    "FitOptions",
    "LinearitySummary",
    "MappingRecord",
    "MappingStage",
    "RecipeControl",
    "RunSummary",
    "SeedStat",
    "SeparationSummary",
    "StudyConfig",
    "StudyOptions",
    "StudyRun",
    "TableSummary",
    "TrainOptions",
    "TrainResult",
    "UnitsSummary",
    "across_corpora",
    "conclusion",
    "convergence_control",
    "evaluate_all",
    "fit_all",
    "load_separators",
    "load_study",
    "model_branch",
    "per_model",
    "prepare_data",
    "run_corpora",
    "run_study",
    "summarise_run",
    "train_all",
    "write_summary",
]
