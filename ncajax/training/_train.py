"""Training runs of the separators: `train_model` runs the epochs of `ncajax.training.Trainer` (S seeds
vmapped in one program), validates, stops early, writes metrics and Orbax checkpoints and resumes from
them; `load_trained` restores a run.

A run resumed from a checkpoint sees exactly the data an uninterrupted run would: the minibatch of
step t (and its random gains) is a pure function of (seed, t).

With the "standardised" recipe (the default) the run computes the per-bin RMS s, t of the training cache
once and stores them in `scaling.json`; checkpoints hold the training-space params (so resume is
bit-exact), and every params the run hands out (`TrainedRun.params`, `load_params`, `load_trained`) have
the scaling folded in (`ncajax.models.fold_scaling`): the plain architecture on raw magnitudes, so NCA,
evaluation and every later stage need no change. config.json records it as
"normalisation": "per_bin_rms_folded"; result.json adds the folded params' own test SDR
(`test_mag_sdr_db_folded`, equal to `test_mag_sdr_db` up to float rounding). Runs written before the
recipe options existed load as recipe "raw". A custom module trains on raw magnitudes (normalisation
None): the fold is defined for the built-in separators only.

With a stem-remix option on (`TrainConfig.augment_remix` or `augment_stem_gain_db` > 0) the training
batches come from the stems cache of the training tracks (`features.StemsCache.remix_batch`, built next
to the training cache on first use, or passed as `train_stems`); the per-bin scaling, validation and test
stay on the real, un-augmented magnitude caches.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import checkpoints, models, runs
from ..config import ModelConfig, STFTConfig, TrainConfig, from_dict, to_dict
from ..data import _features as features
from ..data._prefetch import Prefetch
from ._trainer import Trainer, TrainState, data_mesh, magnitude_sdr_of_mixture

__all__ = ["SCALING_FILE", "TrainedRun", "TrainState", "Trained", "Trainer", "load_params",
           "load_trained", "run_config", "train_model"]

SCALING_FILE = "scaling.json"
# what run_config records under "normalisation" for the standardised recipe
PER_BIN_RMS = "per_bin_rms_folded"


def run_config(model_cfg: ModelConfig, train_cfg: TrainConfig, stft: STFTConfig, data: dict,
               *, standardised: bool | None = None) -> dict:
    """The config a training run directory and its checkpoints are keyed by.

    "normalisation": None when the model trains on raw magnitudes; "per_bin_rms_folded" for the
    standardised recipe (the per-bin RMS `s`, `t` of the training frames are in `scaling.json` of the
    run; the params the run hands out have them folded in, so the model is used on raw magnitudes).
    `standardised=None` follows `train_cfg.recipe`.
    """
    if standardised is None:
        standardised = train_cfg.recipe == "standardised"
    return {
        "model": to_dict(model_cfg),
        "train": to_dict(train_cfg),
        "stft": to_dict(stft),
        "data": data,
        "normalisation": PER_BIN_RMS if standardised else None,
    }


def _uses_scaling(model: nn.Module, train_cfg: TrainConfig) -> bool:
    """Whether the standardised recipe applies: it folds into the built-in separators only; a custom
    module trains on raw magnitudes (its config records normalisation None)."""
    return train_cfg.recipe == "standardised" and isinstance(model, (models.DAE, models.SkipFilterDAE))


def _run_scaling(run_dir: Path, train_cache) -> tuple[np.ndarray, np.ndarray]:
    """The run's per-bin `(s, t)`: read from scaling.json, or computed once from the training cache and
    written there (float32 values survive the JSON round trip exactly)."""
    path = Path(run_dir) / SCALING_FILE
    if path.exists():
        return _read_scaling(run_dir)
    s, t = features.per_bin_rms(train_cache)
    runs.write_json(path, {"input_rms": [float(v) for v in s], "target_rms": [float(v) for v in t],
                           "frames": int(train_cache.n_frames)})
    return s, t


def _read_scaling(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(run_dir) / SCALING_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: this run was trained with the standardised recipe and needs its "
            "per-bin scaling to be used on raw magnitudes; train it again into a fresh directory"
        )
    d = runs.read_json(path)
    return np.asarray(d["input_rms"], np.float32), np.asarray(d["target_rms"], np.float32)


def _folded(model: nn.Module, params, scaling):
    return params if scaling is None else models.fold_scaling(model, params, *scaling)


@dataclass
class TrainedRun:
    run_dir: Path
    params: Any  # best params per seed, leading seed axis
    result: dict


def train_model(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    stft: STFTConfig,
    train_cache,
    valid_cache,
    test_cache,
    run_dir: Path,
    *,
    data: dict | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    model: nn.Module | None = None,
    train_stems: features.StemsCache | None = None,
) -> TrainedRun:
    """Train `train_cfg.n_seeds` seeds of one model in one vmapped program, resuming from `run_dir`.

    Writes into `run_dir`: config.json, meta.json, metrics.jsonl (one line per epoch), checkpoints/ (Orbax,
    latest + best), result.json (best validation loss and test magnitude SDR per seed, the mixture
    baseline, wall time). A finished run with the same config is reused as is.
    `stop_after_epochs` ends this call early (as an interruption would), for tests and time-boxed runs.
    `model`: a custom flax module mapping `(..., nb_bins) -> (..., nb_bins)` to train instead of the
    built-in named by `model_cfg.name` (its repr is recorded in the config; restore it with
    `load_trained(run_dir, model=...)`).
    `train_stems`: the stems cache of the training tracks for a remix option of `train_cfg` (default:
    `features.stems_cache_for(train_cache)`, built on first use); unused without remix.
    """
    if train_cache.n_bins != model_cfg.n_bins:
        raise ValueError(
            f"features have {train_cache.n_bins} bins but the model expects n_bins={model_cfg.n_bins}: "
            "build the model for the preset the features were computed with"
        )
    custom = model is not None
    # the run records the loss it trains with ("per_model" resolved for this model's name)
    train_cfg = train_cfg.for_model(model_cfg.name)
    if custom and train_cfg.mask_bias and not isinstance(model, models.SkipFilterDAE):
        # a custom module keeps its own initialisation; its run records that no mask-bias start was used
        train_cfg = replace(train_cfg, mask_bias=0.0)
    # an unknown model name fails here, before a run directory is written that would block the fix
    model = model if model is not None else models.from_config(model_cfg)
    standardised = _uses_scaling(model, train_cfg)
    config = run_config(model_cfg, train_cfg, stft, data or {}, standardised=standardised)
    if custom:
        config["custom_module"] = repr(model)
    if (done := runs.finished_result(run_dir, config)) is not None:
        return TrainedRun(Path(run_dir), load_params(run_dir, model=model), done)
    batches = _train_batches(train_cfg, train_cache, train_stems, progress)
    runs.open_run(run_dir, config)
    scaling = _run_scaling(run_dir, train_cache) if standardised else None

    trainer = Trainer(model, train_cfg, data_mesh(train_cfg.batch_size), scaling=scaling)
    spe = train_cache.steps_per_epoch(train_cfg.batch_size)
    if train_cfg.max_steps_per_epoch is not None:
        spe = min(spe, train_cfg.max_steps_per_epoch)
    loop = _Loop(trainer, Path(run_dir), config, spe)
    desc = f"train {model_cfg.name} x{train_cfg.n_seeds} seeds"
    _run_epochs(loop, batches, valid_cache, stop_after_epochs, progress, desc)
    best = _folded(model, loop.state.best_params, scaling)
    if loop.epoch < train_cfg.max_epochs and not loop.stopped_early:
        return TrainedRun(Path(run_dir), best, {"finished": False, "epoch": loop.epoch})

    result = loop.test_result(test_cache)
    if scaling is not None:
        # the folded params, as every later stage sees them, on raw magnitudes: the same estimates
        raw_trainer = Trainer(model, train_cfg)
        folded_sdr = raw_trainer.validate(best, test_cache)[1]
        result["test_mag_sdr_db_folded"] = folded_sdr.tolist()
    runs.finish(run_dir, result)
    if progress:
        sdr, gain = np.asarray(result["test_mag_sdr_db"]), np.asarray(result["test_improvement_db"])
        print(
            f"[{model_cfg.name}] test magnitude SDR {np.round(sdr, 2).tolist()} dB per seed "
            f"(mixture {result['test_mixture_mag_sdr_db']:.2f} dB, improvement "
            f"{np.round(gain, 2).tolist()} dB)"
        )
    return TrainedRun(Path(run_dir), best, result)


def _train_batches(train_cfg: TrainConfig, train_cache, train_stems, progress: bool):
    """Where training batches come from: the magnitude cache, or with a remix option its stems
    (`features.RemixBatches`), checked to hold the same frames."""
    if not train_cfg.remixes:
        return train_cache
    if train_stems is None:
        train_stems = features.stems_cache_for(train_cache, progress=progress)
    else:
        features.check_same_frames(train_stems, train_cache)
    return train_stems.remixer(train_cfg.augment_remix, train_cfg.augment_stem_gain_db)


@dataclass
class _Loop:
    """The epoch loop of one `train_model` call: where it writes and where it stands."""

    trainer: Trainer
    run_dir: Path
    config: dict
    spe: int  # steps per epoch
    state: Any = None
    epoch: int = 0
    stopped_early: bool = False
    elapsed0: float = 0.0  # wall time of earlier calls on this run
    t0: float = 0.0

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def resume(self, mngr) -> None:
        """Restore the latest checkpoint (or initialise) and drop the metrics of later epochs."""
        start = self.epoch = mngr.latest_step() or 0
        if start:
            abstract = self.trainer.abstract_state()
            self.state = self.trainer.place_state(
                checkpoints.restore(mngr, start, abstract, self.config)
            )
        else:
            self.state = self.trainer.init()
        # records of epochs after the last checkpoint (a kill between the two writes) are redone
        runs.truncate_metrics(self.run_dir, lambda r: r.get("epoch", 0) <= start)
        history = runs.read_metrics(self.run_dir)
        self.elapsed0 = history[-1]["elapsed_s"] if history else 0.0
        self.t0 = time.perf_counter()

    def train_epoch(self, train_cache, bar) -> np.ndarray:
        """The steps of one epoch from `train_cache` (a `FeatureCache` or `features.RemixBatches`);
        returns the mean training loss per seed."""
        losses = []
        steps = range(self.epoch * self.spe, (self.epoch + 1) * self.spe)
        work = self.trainer.unstack(self.state)  # the step's fastest layout (one seed: no seed axis)
        try:
            for batch in Prefetch(functools.partial(self.trainer.make_batch, train_cache), steps, 4):
                work, metrics = self.trainer.step(work, self.trainer.place_batch(batch))
                losses.append(metrics["loss"])
                bar.update(1)
        finally:  # keep a usable state if interrupted (unless the interrupt caught `work` donated)
            if not jax.tree.leaves(work)[0].is_deleted():
                self.state = self.trainer.stack(work)
        train_loss = np.mean(np.stack([np.asarray(v) for v in losses]), axis=0)
        if not np.all(np.isfinite(train_loss)):
            raise FloatingPointError(
                f"training loss became non-finite in epoch {self.epoch + 1} ({train_loss.tolist()}): "
                f"lower the learning rate (now {self.trainer.cfg.learning_rate}) or check the features "
                "for NaN/Inf. The last good checkpoint is kept in "
                f"{self.run_dir / 'checkpoints'}."
            )
        return train_loss

    def end_epoch(self, mngr, valid_cache, train_loss: np.ndarray) -> np.ndarray:
        """Validate, keep the best params, record the epoch and checkpoint it; the validation loss."""
        val_loss, val_sdr = self.trainer.validate(self.state.params, valid_cache)
        self.state = self.trainer.update_best(self.state, jnp.asarray(val_loss, jnp.float32))
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "step": int(self.epoch * self.spe),
            "train_loss": train_loss.tolist(),
            "val_loss": val_loss.tolist(),
            "val_mag_sdr_db": val_sdr.tolist(),
            "best_val": np.asarray(self.state.best_val).tolist(),
            "stopped": (np.asarray(self.state.bad_epochs) >= self.trainer.cfg.patience).tolist(),
            "elapsed_s": self.elapsed(),
        }
        # metrics first: a kill before the checkpoint lands only repeats this epoch on resume
        runs.append_metrics(self.run_dir, record)
        metrics = {"val_loss": float(np.mean(val_loss))}
        checkpoints.save(mngr, self.epoch, self.state, self.config, metrics=metrics)
        return val_loss

    def test_result(self, test_cache) -> dict:
        """result.json of a finished run: the best params scored on the test frames."""
        test_loss, test_sdr = self.trainer.validate(self.state.best_params, test_cache)
        mixture_sdr = magnitude_sdr_of_mixture(test_cache)
        return {
            "finished": True,
            "epochs": self.epoch,
            "steps": int(self.epoch * self.spe),
            "stopped_early": self.stopped_early,
            "seeds": self.trainer.seeds,
            "best_val_loss": np.asarray(self.state.best_val).tolist(),
            "test_loss": test_loss.tolist(),
            "test_mag_sdr_db": test_sdr.tolist(),
            "test_mixture_mag_sdr_db": mixture_sdr,
            "test_improvement_db": (test_sdr - mixture_sdr).tolist(),
            "wall_s": self.elapsed(),
        }


def _run_epochs(loop: _Loop, train_cache, valid_cache, stop_after_epochs: int | None,
                progress: bool, desc: str) -> None:
    """Resume `loop` and train epochs until max_epochs, early stopping of every seed, or
    `stop_after_epochs` epochs in this call."""
    cfg = loop.trainer.cfg
    mngr = checkpoints.manager(loop.run_dir / "checkpoints")
    bar = None
    try:
        loop.resume(mngr)
        start_epoch = loop.epoch
        bar = tqdm(total=cfg.max_epochs * loop.spe, initial=start_epoch * loop.spe,
                   disable=not progress, unit="step", desc=desc, dynamic_ncols=True)
        while loop.epoch < cfg.max_epochs:
            if stop_after_epochs is not None and loop.epoch - start_epoch >= stop_after_epochs:
                break
            if bool(np.all(np.asarray(loop.state.bad_epochs) >= cfg.patience)):
                loop.stopped_early = True
                break
            train_loss = loop.train_epoch(train_cache, bar)
            val_loss = loop.end_epoch(mngr, valid_cache, train_loss)
            bar.set_postfix(train=f"{np.mean(train_loss):.4g}", val=f"{np.mean(val_loss):.4g}",
                            refresh=False)
    finally:
        if bar is not None:
            bar.close()
        mngr.close()


@dataclass
class Trained:
    """A trained run: the model, the best params of each seed (leading seed axis) and its config."""

    model: nn.Module
    params: Any
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    stft: STFTConfig
    config: dict
    result: dict

    def seed_params(self, s: int):
        return jax.tree.map(lambda a: a[s], self.params)


def _restore_state(run_dir: Path, model: nn.Module | None = None):
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a training run directory (no config.json): "
            "train first with experiments/train_separators.py"
        )
    config = runs.read_json(run_dir / "config.json")
    model_cfg = from_dict(ModelConfig, config["model"])
    # runs written before the recipe options existed trained on raw magnitudes without augmentation
    old = {"recipe": "raw", "augment_gain_db": 0.0, "augment_remix": 0.0, "augment_stem_gain_db": 0.0}
    train_cfg = from_dict(TrainConfig, {**old, **config["train"]})
    if model is None and "custom_module" in config:
        raise ValueError(
            f"{run_dir} holds a custom module ({config['custom_module'][:80]}...): pass it as model="
        )
    trainer = Trainer(model if model is not None else models.from_config(model_cfg), train_cfg)
    mngr = checkpoints.manager(run_dir / "checkpoints")
    try:
        step = mngr.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"no checkpoint in {run_dir / 'checkpoints'}: the run has not saved yet"
            )
        state = checkpoints.restore(mngr, step, trainer.abstract_state(), config)
    finally:
        mngr.close()
    if config.get("normalisation") == PER_BIN_RMS:
        # checkpoints hold the training-space params (resume stays bit-exact); hand out the folded ones
        folded = _folded(trainer.model, state.best_params, _read_scaling(run_dir))
        state = state.replace(best_params=folded)
    return config, model_cfg, train_cfg, trainer, state


def load_params(run_dir: Path, *, model: nn.Module | None = None):
    """The best params of every seed (leading seed axis), on raw magnitudes (any scaling folded in)."""
    return _restore_state(run_dir, model)[4].best_params


def load_trained(run_dir: Path, *, expect: dict | None = None, model: nn.Module | None = None) -> Trained:
    """Restore the best params of every seed of a finished training run.

    `expect`: optional {field: value} of the model config (e.g. {"name": "dae", "n_bins": 257}) the
    checkpoint must match; a mismatch raises ValueError naming the field. `model`: the custom module a
    run was trained with (see `train_model`).
    """
    config, model_cfg, train_cfg, trainer, state = _restore_state(run_dir, model)
    if expect:
        checkpoints.check_config({**config["model"], **expect}, config["model"], str(run_dir))
    result_path = Path(run_dir) / "result.json"
    result = runs.read_json(result_path) if result_path.exists() else {"finished": False}
    return Trained(
        model=trainer.model,
        params=state.best_params,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        stft=from_dict(STFTConfig, config["stft"]),
        config=config,
        result=result,
    )
