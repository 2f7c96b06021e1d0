"""The training stage: S seeds of one separator trained in one jitted program, with early stopping,
resume and Orbax checkpoints.

    train_model(model_name, cache, cfg, out_dir)   train and checkpoint; returns a `TrainedRun`
    load_trained(run_dir)                          a finished run: model, params (seeds stacked), scaling
    Trainer                                        the pure step `step(state, batch) -> (state, metrics)`
                                                   (donated state, seeds vmapped) and its evaluation

Modules (private): `_trainer` (losses, optimiser, the jitted step), `_train` (the run loop).
"""

from ._train import Trained, TrainedRun, load_params, load_trained, train_model
from ._trainer import (
    Trainer,
    TrainState,
    augment_gain,
    init_state,
    init_states,
    loss_fn,
    magnitude_sdr_of_mixture,
    make_train_step,
    optimizer,
)

__all__ = [
    "TrainState",
    "Trained",
    "TrainedRun",
    "Trainer",
    "augment_gain",
    "init_state",
    "init_states",
    "load_params",
    "load_trained",
    "loss_fn",
    "magnitude_sdr_of_mixture",
    "make_train_step",
    "optimizer",
    "train_model",
]
