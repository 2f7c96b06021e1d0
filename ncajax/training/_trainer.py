"""The jitted training programs: a pure single-seed `train_step`, vmapped over seeds, with data
parallelism over devices (`jax.sharding`), validation and early-stopping bookkeeping (`Trainer`).

The single-seed step is written once (`train_step`) and `jax.vmap`-ed over a leading seed axis; every leaf
of a `TrainState` produced here carries that axis (S seeds = S independent models, one optimizer state each).
Seed s of a run uses `jax.random.key(seed + s)` for its initial params and `FeatureCache.batch(step, B,
seed + s)` for its data, so a run of S seeds equals S one-seed runs. The run itself (epochs, checkpoints,
resume, results) is `ncajax.training`.

One seed on one device steps without the seed axis: `Trainer.unstack` drops the size-1 axis (once per
epoch), `Trainer.step` then runs the plain single-seed step, and `Trainer.stack` puts the axis back for
validation, early stopping and checkpoints. XLA:CPU runs that program 1.06-1.41x faster than the size-1
`vmap` (dae / dae_deep / dae_sf, N = 513 and 1025, batch 64 and 256; benchmarks/RESULTS.md); its numbers
equal the vmapped step's to float32 rounding (not bit for bit: the two programs fuse differently).

Recipes (`TrainConfig.recipe`). "raw": the model sees raw magnitudes and the loss compares raw y with
f(x). "standardised" (`Trainer(..., scaling=(s, t))`, s and t the per-bin RMS of the training mixture and
vocals): a DAE sees x / s and is trained to output y / t; `dae_sf`'s mask sees x / s and its estimate
x * m(x / s) is compared with y in units of t, i.e. (x / t) * m(x / s) against y / t. So every model's
loss is measured in per-bin standardised target units (each bin weighs alike), and for `dae_sf` t is a
per-bin loss weight only: the mask is dimensionless, nothing of t ends up in the model. After training,
`ncajax.models.fold_scaling` folds s (and, for the DAEs, t) into the first (and last) dense layer, giving
the plain architecture on raw magnitudes. Validation losses are in training units; magnitude SDRs always
in raw units. `TrainConfig.augment_gain_db > 0` multiplies each example's x and y by one random gain
(`augment_gain`), a pure function of (seed, step) like the batch itself, so resume stays bit-exact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array

from .. import models
from ..config import TrainConfig

EPS = 1e-8
VAL_CHUNK = 4096
# stream id of the gain augmentation: key = fold_in(fold_in(key(seed), AUGMENT_STREAM), step)
AUGMENT_STREAM = 0x6A1


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


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               mask_bias: float = 0.0) -> TrainState:
    """One seed's initial state; `mask_bias` != 0 starts a `SkipFilterDAE`'s mask output bias there
    (`models.with_mask_bias`, `TrainConfig.mask_bias`)."""
    params = models.init_params(model, key)
    if mask_bias:
        params = models.with_mask_bias(model, params, mask_bias)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        best_params=params,
        best_val=jnp.asarray(jnp.inf, jnp.float32),
        bad_epochs=jnp.zeros((), jnp.int32),
    )


def init_states(model: nn.Module, tx: optax.GradientTransformation, seeds: list[int],
                mask_bias: float = 0.0) -> TrainState:
    """Initial states of several seeds stacked on a leading axis."""
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    return jax.vmap(lambda k: init_state(model, tx, jax.random.wrap_key_data(k), mask_bias))(keys)


def make_forward(model: nn.Module, scaling=None):
    """`forward(params, x) -> y_hat / t`: the training-space prediction of raw mixture frames x.

    `scaling=None` (recipe "raw"): the model on raw magnitudes, t = 1. `scaling=(s, t)` (recipe
    "standardised", s, t the per-bin RMS of the training mixture and vocals): a `DAE` sees x / s and
    predicts y / t directly; a `SkipFilterDAE`'s mask sees x / s and the estimate x * m(x / s) is
    compared in target units, (x / t) * m(x / s) against y / t (the mask itself is dimensionless, so t
    only weights the loss per bin). `ncajax.models.fold_scaling` turns the params into ones that
    compute t * forward(params, x) on raw x.
    """
    if scaling is None:
        return model.apply
    s, t = (jnp.asarray(a, jnp.float32) for a in scaling)
    if isinstance(model, models.SkipFilterDAE):
        return lambda params, x: (x / t) * model.apply(params, x / s, method="mask")
    if isinstance(model, models.DAE):
        return lambda params, x: model.apply(params, x / s)
    raise ValueError(
        f"the standardised recipe folds into the built-in separators only, not {type(model).__name__}: "
        "use TrainConfig(recipe='raw') for a custom module"
    )


def augment_gain(x, y, seed, step, gain_db: float):
    """Multiply each example (row) of x and y by one random gain, uniform in dB on [-gain_db, gain_db];
    a pure function of (seed, step)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), AUGMENT_STREAM), step)
    db = jax.random.uniform(key, (x.shape[0], 1), jnp.float32, -gain_db, gain_db)
    g = jnp.power(jnp.float32(10.0), db / 20.0)
    return x * g, y * g


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, loss: str,
                    patience: int | None = None, *, scaling=None, gain_db: float = 0.0):
    """`train_step(state, batch, seed=0) -> (state, metrics)` for ONE seed; batch = (x, y), each
    (B, nb_bins) raw magnitudes.

    With `patience`, a seed whose early stopping has triggered (`bad_epochs >= patience`) keeps its
    params: seeds trained side by side stop exactly where each would stop alone. `scaling`: see
    `make_forward` (the loss is computed in units of y / t). `gain_db > 0`: each example gets a random
    gain (`augment_gain`) drawn from (seed, state.step).
    """
    frame_loss = loss_fn(loss)
    forward = make_forward(model, scaling)
    t = None if scaling is None else jnp.asarray(scaling[1], jnp.float32)

    def train_step(state: TrainState, batch, seed=0):
        x, y = batch
        if gain_db > 0:
            x, y = augment_gain(x, y, seed, state.step, gain_db)
        if t is not None:
            y = y / t

        def objective(params):
            return frame_loss(y, forward(params, x))

        value, grads = jax.value_and_grad(objective)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        if patience is not None:
            stopped = state.bad_epochs >= patience
            updates = jax.tree.map(lambda u: jnp.where(stopped, jnp.zeros_like(u), u), updates)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new, {"loss": value}

    return train_step


def make_eval(model: nn.Module, loss: str, scaling=None):
    """`evaluate(params, x, y) -> (loss_sum, err2_sum, ref2_sum)` for ONE seed on a chunk of frames: the
    loss in training units (see `make_forward`), the squared errors in raw magnitudes."""
    frame_loss = loss_fn(loss)
    forward = make_forward(model, scaling)
    t = None if scaling is None else jnp.asarray(scaling[1], jnp.float32)

    def evaluate(params, x, y):
        y_hat = forward(params, x)
        if t is None:
            lval, raw = frame_loss(y, y_hat), y_hat
        else:
            lval, raw = frame_loss(y / t, y_hat), y_hat * t
        return (
            lval * x.shape[0],
            jnp.sum((y - raw) ** 2),
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

    def __init__(self, model: nn.Module, cfg: TrainConfig, mesh: jax.sharding.Mesh | None = None,
                 scaling=None):
        """`scaling`: the per-bin `(s, t)` of the "standardised" recipe (`ncajax.training` computes it from
        the training cache), or None for raw magnitudes. A "per_model" loss is resolved for the module
        (`TrainConfig.for_model` of `models.builtin_name(model)`)."""
        cfg = cfg.for_model(models.builtin_name(model))
        self.model, self.cfg, self.mesh = model, cfg, mesh
        self.scaling = scaling
        self.tx = optimizer(cfg)
        self.seeds = [cfg.seed + s for s in range(cfg.n_seeds)]
        self.seed_array = jnp.asarray(self.seeds, jnp.int32)
        one_seed = make_train_step(model, self.tx, cfg.loss, cfg.patience, scaling=scaling,
                                   gain_db=cfg.augment_gain_db)
        step = jax.vmap(one_seed)
        # one seed, one device: the step without the seed axis (see the module docstring)
        self._single = mesh is None and len(self.seeds) == 1
        if self._single:
            def plain(state, batch, seed):
                state, metrics = one_seed(state, (batch[0][0], batch[1][0]), seed)
                return state, {k: v[None] for k, v in metrics.items()}

            self._plain_step = jax.jit(plain, donate_argnums=0)
            self._seed0 = self.seed_array[0]
            self._unstack = jax.jit(lambda st: jax.tree.map(lambda v: v[0], st), donate_argnums=0)
            self._stack = jax.jit(lambda st: jax.tree.map(lambda v: v[None], st), donate_argnums=0)
        evaluate = jax.vmap(make_eval(model, cfg.loss, scaling), in_axes=(0, None, None))
        if mesh is None:
            self._step = jax.jit(step, donate_argnums=0)
            self.evaluate = jax.jit(evaluate)
        else:
            replicated = NamedSharding(mesh, P())
            self.batch_sharding = NamedSharding(mesh, P(None, "data"))
            self._step = jax.jit(step, donate_argnums=0, out_shardings=replicated)
            self.evaluate = jax.jit(evaluate, out_shardings=replicated)
            self.replicated = replicated
        self.update_best = jax.jit(
            jax.vmap(functools.partial(update_best, patience=cfg.patience)), donate_argnums=0
        )

    def step(self, state: TrainState, batch):
        """One jitted step of every seed: `(state, (x, y)) -> (state, metrics)`, batch `(S, B, nb_bins)`,
        metrics `{"loss": (S,)}`. `state` is donated. It is stacked over seeds (as `init` gives it) or, with
        one seed on one device, the faster unstacked working layout of `unstack`; the step returns the
        layout it was given."""
        if state.step.ndim == 0:
            if not self._single:
                raise ValueError(
                    f"state has no seed axis, but this Trainer steps {len(self.seeds)} seed(s)"
                    f"{'' if self.mesh is None else ' over a device mesh'}: pass the stacked state of "
                    "Trainer.init() (only one seed on one device has the unstacked layout)"
                )
            return self._plain_step(state, batch, self._seed0)
        return self._step(state, batch, self.seed_array)

    def unstack(self, state: TrainState) -> TrainState:
        """The working layout `step` runs fastest on: with one seed on one device, `state` without its
        size-1 seed axis; otherwise `state` itself. Donates `state`; `stack` undoes it exactly."""
        return self._unstack(state) if self._single and state.step.ndim == 1 else state

    def stack(self, state: TrainState) -> TrainState:
        """`state` stacked over seeds again (the layout of `init`, validation, early stopping and
        checkpoints); the inverse of `unstack`. Donates `state`."""
        return self._stack(state) if self._single and state.step.ndim == 0 else state

    def init(self) -> TrainState:
        state = init_states(self.model, self.tx, self.seeds, self.cfg.mask_bias)
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

    def make_batch(self, cache, step: int):
        """The `(S, B, nb_bins)` inputs and targets of `step`: seed s's minibatch in row block s, from
        `cache.batch(step, B, s)` (a `FeatureCache`, or `features.RemixBatches` for the stem remix)."""
        pairs = [cache.batch(step, self.cfg.batch_size, s) for s in self.seeds]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def abstract_state(self) -> TrainState:
        return jax.eval_shape(lambda: init_states(self.model, self.tx, self.seeds, self.cfg.mask_bias))

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
