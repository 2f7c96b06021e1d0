"""The whole study: its one config and the stages chained.

    StudyConfig                     the one study config: nests DataOptions, TrainOptions, FitOptions,
                                    EvaluateOptions, FigureOptions; round-trips through JSON
    run_study / run_corpora         the whole study on one corpus, or on K corpus seeds (data, training,
                                    mapping, evaluation, then the summary, the report and the figures)
    prepare_data / train_all / fit_all / evaluate_all
                                    one stage each, as library calls

A finished run is read back, summarised and judged by `ncajax.results`.

Modules (private): `_options`, `_pipeline`, `_study`.
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
from ._study import StudyOptions, run_corpora, run_study

__all__ = [
    "Data",
    "DataOptions",
    "EvaluateOptions",
    "FigureOptions",
    "FitOptions",
    "StudyConfig",
    "StudyOptions",
    "TrainOptions",
    "evaluate_all",
    "fit_all",
    "load_separators",
    "prepare_data",
    "run_corpora",
    "run_study",
    "train_all",
]
