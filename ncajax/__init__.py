"""ncajax: what do neural singing-voice separators learn? Mapping functions of DAE separators in JAX.

The small public API:
    ncajax.models.build(name, n_bins)          the separators "dae", "dae_deep", "dae_sf"
    ncajax.nca.fit_mapping(model, params, x)   a separator's mapping matrix ("nca", "student", "lstsq",
                                               "jacobian"); K fits vmapped
    ncajax.analysis.structure_metrics(C)       how diagonal / inter-frequency a mapping is
    ncajax.frames.map_frames(X, Y, ...)        any separator's mapping from its frames alone (lstsq,
                                               student), judged on held-out frames; map_callable for
                                               a JAX callable, load_frames for .npy/.npz files
    ncajax.train.train_model(...)              train S seeds of a separator in one program
    ncajax.pipeline.prepare_data(...)          corpus or MUSDB18 -> feature caches
"""

from . import analysis, config, models, nca
from .analysis import structure_metrics
from .models import build, dense_layers
from .nca import MappingFit, fit_mapping

__version__ = "0.1.0"

__all__ = [
    "MappingFit",
    "analysis",
    "build",
    "config",
    "dense_layers",
    "fit_mapping",
    "models",
    "nca",
    "structure_metrics",
]
