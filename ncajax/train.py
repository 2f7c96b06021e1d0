"""Training of the separators: a pure, jitted `train_step`, S seeds vmapped in one program, data
parallelism over devices with `jax.sharding`, validation, early stopping, Orbax checkpoints and resume.

The single-seed step is written once (`train_step`) and `jax.vmap`-ed over a leading seed axis; every leaf
of a `TrainState` produced here carries that axis (S seeds = S independent models, one optimizer state each).
Seed s of a run uses `jax.random.key(seed + s)` for its initial params and `FeatureCache.batch(step, B,
seed + s)` for its data, so a run of S seeds equals S one-seed runs, and a run resumed from a checkpoint sees
exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float
from tqdm.auto import tqdm

from . import checkpoints, models, runs
from .config import ModelConfig, STFTConfig, TrainConfig, from_dict, to_dict
from .prefetch import Prefetch

EPS = 1e-8
VAL_CHUNK = 4096


class TrainState(struct.PyTreeNode):
    """Everything a run needs to continue bit-exactly: params, optimizer state, early-stopping state."""

    step: jax.Array
    params: Any
    opt_state: Any
    best_params: Any
    best_val: jax.Array
    bad_epochs: jax.Array


def loss_fn(name: str) -> Callable[[Array, Array], Array]:
    """Frame loss averaged over frames and bins: "mse", "l1", or "gkl" (generalised KL divergence)."""
    if name == "mse":
        return lambda y, y_hat: jnp.mean((y - y_hat) ** 2)
    if name == "l1":
        return lambda y, y_hat: jnp.mean(jnp.abs(y - y_hat))
    if name == "gkl":
        return lambda y, y_hat: jnp.mean(
            y * (jnp.log(y + EPS) - jnp.log(y_hat + EPS)) - y + y_hat
        )
    raise ValueError(f"unknown loss {name!r}; choose 'mse', 'l1' or 'gkl'")


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(cfg.learning_rate)


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """One seed's initial state."""
    params = models.init_params(model, key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        best_params=params,
        best_val=jnp.asarray(jnp.inf, jnp.float32),
        bad_epochs=jnp.zeros((), jnp.int32),
    )


def init_states(model: nn.Module, tx: optax.GradientTransformation, seeds: list[int]) -> TrainState:
    """Initial states of several seeds stacked on a leading axis."""
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    return jax.vmap(lambda k: init_state(model, tx, jax.random.wrap_key_data(k)))(keys)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, loss: str,
                    patience: int | None = None):
    """`train_step(state, batch) -> (state, metrics)` for ONE seed; batch = (x, y), each (B, nb_bins).

    With `patience`, a seed whose early stopping has triggered (`bad_epochs >= patience`) keeps its
    params: seeds trained side by side stop exactly where each would stop alone.
    """
    frame_loss = loss_fn(loss)

    def train_step(state: TrainState, batch):
        x, y = batch

        def objective(params):
            return frame_loss(y, model.apply(params, x))

        value, grads = jax.value_and_grad(objective)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        if patience is not None:
            stopped = state.bad_epochs >= patience
            updates = jax.tree.map(lambda u: jnp.where(stopped, jnp.zeros_like(u), u), updates)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new, {"loss": value}

    return train_step


def make_eval(model: nn.Module, loss: str):
    """`evaluate(params, x, y) -> (loss_sum, err2_sum, ref2_sum)` for ONE seed on a chunk of frames."""
    frame_loss = loss_fn(loss)

    def evaluate(params, x, y):
        y_hat = model.apply(params, x)
        return (
            frame_loss(y, y_hat) * x.shape[0],
            jnp.sum((y - y_hat) ** 2),
            jnp.sum(y**2),
        )

    return evaluate


def update_best(state: TrainState, val: jax.Array, patience: int | None = None) -> TrainState:
    """Keep the params with the lowest validation loss; count epochs without improvement (one seed).
    A seed that has already stopped (`bad_epochs >= patience`) is left as it is."""
    stopped = False if patience is None else state.bad_epochs >= patience
    better = (val < state.best_val) & ~stopped
    best_params = jax.tree.map(lambda new, old: jnp.where(better, new, old), state.params, state.best_params)
    return state.replace(
        best_params=best_params,
        best_val=jnp.where(better, val, state.best_val),
        bad_epochs=jnp.where(stopped, state.bad_epochs, jnp.where(better, 0, state.bad_epochs + 1)),
    )


def data_mesh(batch_size: int) -> jax.sharding.Mesh | None:
    """A 1-D mesh over all devices for data parallelism, or None on one device."""
    n = jax.device_count()
    if n == 1:
        return None
    if batch_size % n:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the {n} devices for data-parallel training"
        )
    return jax.make_mesh((n,), ("data",))


class Trainer:
    """The jitted programs of one (model, train config, seeds, mesh): built once, reused every step."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, mesh: jax.sharding.Mesh | None = None):
        self.model, self.cfg, self.mesh = model, cfg, mesh
        self.tx = optimizer(cfg)
        self.seeds = [cfg.seed + s for s in range(cfg.n_seeds)]
        step = jax.vmap(make_train_step(model, self.tx, cfg.loss, cfg.patience))
        evaluate = jax.vmap(make_eval(model, cfg.loss), in_axes=(0, None, None))
        if mesh is None:
            self.step = jax.jit(step, donate_argnums=0)
            self.evaluate = jax.jit(evaluate)
        else:
            replicated = NamedSharding(mesh, P())
            self.batch_sharding = NamedSharding(mesh, P(None, "data"))
            self.step = jax.jit(step, donate_argnums=0, out_shardings=replicated)
            self.evaluate = jax.jit(evaluate, out_shardings=replicated)
            self.replicated = replicated
        self.update_best = jax.jit(
            jax.vmap(functools.partial(update_best, patience=cfg.patience)), donate_argnums=0
        )

    def init(self) -> TrainState:
        state = init_states(self.model, self.tx, self.seeds)
        # params and best_params start equal; give them separate buffers so the step can donate both.
        state = state.replace(best_params=jax.tree.map(jnp.copy, state.best_params))
        return self.place_state(state)

    def place_state(self, state: TrainState) -> TrainState:
        return state if self.mesh is None else jax.device_put(state, self.replicated)

    def place_batch(self, batch):
        """Shard the (S, B, nb_bins) batch over the mesh's data axis.

        Every process computes the same global batch (a pure function of the step); with several
        processes (`jax.distributed.initialize()`), each contributes the rows of its own devices.
        """
        if self.mesh is None:
            return batch
        if jax.process_count() == 1:
            return jax.device_put(batch, self.batch_sharding)
        rows = batch[0].shape[1] // jax.process_count()
        lo = jax.process_index() * rows
        return jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(
                self.batch_sharding, a[:, lo : lo + rows], a.shape
            ),
            batch,
        )

    def abstract_state(self) -> TrainState:
        return jax.eval_shape(lambda: init_states(self.model, self.tx, self.seeds))

    def validate(self, params, cache) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and magnitude SDR (dB) per seed over all frames of `cache`."""
        loss = err = ref = 0.0
        for start in range(0, cache.n_frames, VAL_CHUNK):
            x = np.asarray(cache.mixture[start : start + VAL_CHUNK])
            y = np.asarray(cache.vocals[start : start + VAL_CHUNK])
            lsum, esum, rsum = self.evaluate(params, x, y)
            loss, err, ref = loss + np.asarray(lsum), err + np.asarray(esum), ref + np.asarray(rsum)
        return loss / cache.n_frames, 10 * np.log10(np.maximum(ref, 1e-30) / np.maximum(err, 1e-30))


def magnitude_sdr_of_mixture(cache) -> float:
    err = ref = 0.0
    for start in range(0, cache.n_frames, VAL_CHUNK):
        x = np.asarray(cache.mixture[start : start + VAL_CHUNK], np.float64)
        y = np.asarray(cache.vocals[start : start + VAL_CHUNK], np.float64)
        err, ref = err + np.sum((y - x) ** 2), ref + np.sum(y**2)
    return float(10 * np.log10(max(ref, 1e-30) / max(err, 1e-30)))


def run_config(model_cfg: ModelConfig, train_cfg: TrainConfig, stft: STFTConfig, data: dict) -> dict:
    """The config a training run directory and its checkpoints are keyed by."""
    return {
        "model": to_dict(model_cfg),
        "train": to_dict(train_cfg),
        "stft": to_dict(stft),
        "data": data,
        "normalisation": None,  # raw magnitudes in, raw magnitudes out (see docs/architecture.md)
    }


@dataclass
class TrainResult:
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
) -> TrainResult:
    """Train `train_cfg.n_seeds` seeds of one model in one vmapped program, resuming from `run_dir`.

    Writes into `run_dir`: config.json, meta.json, metrics.jsonl (one line per epoch), checkpoints/ (Orbax,
    latest + best), result.json (best validation loss and test magnitude SDR per seed, the mixture
    baseline, wall time). A finished run with the same config is reused as is.
    `stop_after_epochs` ends this call early (as an interruption would), for tests and time-boxed runs.
    `model`: a custom flax module mapping `(..., nb_bins) -> (..., nb_bins)` to train instead of the
    built-in named by `model_cfg.name` (its repr is recorded in the config; restore it with
    `load_trained(run_dir, model=...)`).
    """
    if train_cache.n_bins != model_cfg.n_bins:
        raise ValueError(
            f"features have {train_cache.n_bins} bins but the model expects n_bins={model_cfg.n_bins}: "
            "build the model for the preset the features were computed with"
        )
    config = run_config(model_cfg, train_cfg, stft, data or {})
    if model is not None:
        config["custom_module"] = repr(model)
    # an unknown model name fails here, before a run directory is written that would block the fix
    model = model if model is not None else models.from_config(model_cfg)
    if (done := runs.finished_result(run_dir, config)) is not None:
        return TrainResult(Path(run_dir), load_params(run_dir, model=model), done)
    runs.open_run(run_dir, config)

    trainer = Trainer(model, train_cfg, data_mesh(train_cfg.batch_size))
    spe = train_cache.steps_per_epoch(train_cfg.batch_size)
    if train_cfg.max_steps_per_epoch is not None:
        spe = min(spe, train_cfg.max_steps_per_epoch)

    def make_batch(step: int):
        pairs = [train_cache.batch(step, train_cfg.batch_size, s) for s in trainer.seeds]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    mngr = checkpoints.manager(Path(run_dir) / "checkpoints")
    bar = None
    try:
        start_epoch = mngr.latest_step() or 0
        if start_epoch:
            state = trainer.place_state(
                checkpoints.restore(mngr, start_epoch, trainer.abstract_state(), config)
            )
        else:
            state = trainer.init()
        # records of epochs after the last checkpoint (a kill between the two writes) are redone
        runs.truncate_metrics(run_dir, lambda r: r.get("epoch", 0) <= start_epoch)
        history = runs.read_metrics(run_dir)
        elapsed0 = history[-1]["elapsed_s"] if history else 0.0
        t0 = time.perf_counter()
        bar = tqdm(total=train_cfg.max_epochs * spe, initial=start_epoch * spe, disable=not progress,
                   unit="step", desc=f"train {model_cfg.name} x{train_cfg.n_seeds} seeds",
                   dynamic_ncols=True)
        epoch = start_epoch
        stopped_early = False
        while epoch < train_cfg.max_epochs:
            if stop_after_epochs is not None and epoch - start_epoch >= stop_after_epochs:
                break
            if bool(np.all(np.asarray(state.bad_epochs) >= train_cfg.patience)):
                stopped_early = True
                break
            losses = []
            for batch in Prefetch(make_batch, range(epoch * spe, (epoch + 1) * spe), 4):
                state, metrics = trainer.step(state, trainer.place_batch(batch))
                losses.append(metrics["loss"])
                bar.update(1)
            train_loss = np.mean(np.stack([np.asarray(v) for v in losses]), axis=0)
            if not np.all(np.isfinite(train_loss)):
                raise FloatingPointError(
                    f"training loss became non-finite in epoch {epoch + 1} ({train_loss.tolist()}): "
                    f"lower the learning rate (now {train_cfg.learning_rate}) or check the features "
                    "for NaN/Inf. The last good checkpoint is kept in "
                    f"{Path(run_dir) / 'checkpoints'}."
                )
            val_loss, val_sdr = trainer.validate(state.params, valid_cache)
            state = trainer.update_best(state, jnp.asarray(val_loss, jnp.float32))
            epoch += 1
            record = {
                "epoch": epoch,
                "step": int(epoch * spe),
                "train_loss": train_loss.tolist(),
                "val_loss": val_loss.tolist(),
                "val_mag_sdr_db": val_sdr.tolist(),
                "best_val": np.asarray(state.best_val).tolist(),
                "stopped": (np.asarray(state.bad_epochs) >= train_cfg.patience).tolist(),
                "elapsed_s": elapsed0 + time.perf_counter() - t0,
            }
            # metrics first: a kill before the checkpoint lands only repeats this epoch on resume
            runs.append_metrics(run_dir, record)
            checkpoints.save(mngr, epoch, state, config, metrics={"val_loss": float(np.mean(val_loss))})
            bar.set_postfix(train=f"{np.mean(train_loss):.4g}", val=f"{np.mean(val_loss):.4g}",
                            refresh=False)
    finally:
        if bar is not None:
            bar.close()
        mngr.close()

    if epoch < train_cfg.max_epochs and not stopped_early:
        return TrainResult(Path(run_dir), state.best_params, {"finished": False, "epoch": epoch})

    test_loss, test_sdr = trainer.validate(state.best_params, test_cache)
    mixture_sdr = magnitude_sdr_of_mixture(test_cache)
    result = {
        "finished": True,
        "epochs": epoch,
        "steps": int(epoch * spe),
        "stopped_early": stopped_early,
        "seeds": trainer.seeds,
        "best_val_loss": np.asarray(state.best_val).tolist(),
        "test_loss": test_loss.tolist(),
        "test_mag_sdr_db": test_sdr.tolist(),
        "test_mixture_mag_sdr_db": mixture_sdr,
        "test_improvement_db": (test_sdr - mixture_sdr).tolist(),
        "wall_s": elapsed0 + time.perf_counter() - t0,
    }
    runs.finish(run_dir, result)
    if progress:
        print(
            f"[{model_cfg.name}] test magnitude SDR {np.round(test_sdr, 2).tolist()} dB per seed "
            f"(mixture {mixture_sdr:.2f} dB, improvement "
            f"{np.round(test_sdr - mixture_sdr, 2).tolist()} dB)"
        )
    return TrainResult(Path(run_dir), state.best_params, result)


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
    train_cfg = from_dict(TrainConfig, config["train"])
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
    return config, model_cfg, train_cfg, trainer, state


def load_params(run_dir: Path, *, model: nn.Module | None = None):
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


@functools.lru_cache(maxsize=32)
def _jitted_apply(model: nn.Module):
    return jax.jit(model.apply)


def predict(model: nn.Module, params, x: Float[Array, "nb_frames nb_bins"], *, chunk: int = 8192):
    """Model output on many frames, in chunks (params of ONE seed). Returns NumPy (nb_frames, nb_bins)."""
    apply = _jitted_apply(model)
    x = np.asarray(x, np.float32)
    out = [np.asarray(apply(params, x[i : i + chunk])) for i in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros_like(x)
