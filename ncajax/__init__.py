"""ncajax: what do neural singing-voice separators learn? Mapping functions of DAE separators in JAX.

One package per stage, so the file tree draws the data flow; every public name has one import path, its
package (each package's `__init__` lists them; modules with a leading underscore are private):

    ncajax.data         corpus or MUSDB18 -> checked tracks -> (nb_frames, nb_bins) magnitude caches
    ncajax.training     S seeds of a separator trained in one jitted program (`train_model`)
    ncajax.nca          a separator's mapping matrix: `fit_mapping(model, params, x, ...)` (NCA, student,
                        least squares, mean Jacobian), `apply_matrix`, `structure_metrics`, `map_frames`
    ncajax.separation   separating audio (`separate_file`) and its quality (`evaluate_tracks`, SiSEC)
    ncajax.results      a run read back (`load_study`, typed), the one summary step, the verdict rules
    ncajax.report       REPORT.md rendered from a run's summary
    ncajax.plots        the figures, from saved results and the summary
    ncajax.study        the one study config and the stages chained (`run_study`)
    ncajax.cli          the `ncajax` command and its subcommands, `ncajax-separate`, `ncajax-sisec`
    ncajax.pretrained   the shipped trained models

and the modules every stage shares: `config` (frozen stage configs, STFT presets), `models` (the
separators "dae", "dae_deep", "dae_sf": `build`, `predict`), `runs` (run directories), `checkpoints`
(Orbax) and `stats` (seed x song intervals).
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "checkpoints",
    "cli",
    "config",
    "data",
    "models",
    "nca",
    "plots",
    "pretrained",
    "report",
    "results",
    "runs",
    "separation",
    "stats",
    "study",
    "training",
]


def __getattr__(name: str):
    """Import a stage package on first use (`ncajax.nca`), so `import ncajax.cli` stays light."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
