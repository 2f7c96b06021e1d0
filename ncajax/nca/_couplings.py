"""Mapping functions of frame-wise separators: one N x N matrix C with y ≈ x @ C.T.

`C[i, j]` is the weight of input bin j in output bin i. `fit_mapping(model, params, x, estimator)` distils
a trained separator (a flax module from `ncajax.models` with its params, or any JAX callable on
`(nb_frames, nb_bins)` frames) into C by one of four estimators, frozen option objects that check their
own options when made (defined in `ncajax._estimators`, public in `ncajax.nca`):

- `NCA(steps=600, learning_rate=1e-4, init="xavier_normal", bias_axis="input", snapshots=None)`: the
  authors' Neural Couplings Algorithm. With the frozen dense layers W_l (out x in), b_l and one
  learnable P_l (in x in) per layer, W~_l = relu((W_l + b_l 1^T) P_l^T) ⊙ W_l and C = W~_L ... W~_1.
  The P_l are fitted by full-batch Adam on the L1 error between the target and x C^T. The teacher's
  biases only enter the gates. For the skip-filtering `dae_sf` the product is built from the mask
  network's layers and fitted on the model's output x ⊙ m(x), as the authors did: the x ⊙ m term itself
  has no place in the product.
- `Student(steps=600, learning_rate=1e-4, init="xavier_normal", snapshots=None)`: C itself fitted by the
  same loss, optimiser and loop (the authors' baseline).
- `LeastSquares(ridge=None)`: closed-form least squares, C^T = (X^T X + ridge I)^-1 X^T Y, by default
  with a ridge at float32 rounding level on the per-bin-scaled normal equations (exact maps are
  recovered to ~1e-5).
- `MeanJacobian(chunk_size=256)`: the mean over frames of the exact Jacobian dy/dx, plus how far the
  per-frame Jacobians spread around it (`local_spread`); for `dae_sf` also its split into the mask and
  mask-Jacobian parts.

Each estimator family returns its own result type, holding only the fields it has: `IterativeFit` (NCA,
Student), `LeastSquaresFit`, `JacobianFit`, all `MappingFit`s (matrix, rel_l1_error, method).

This module holds the result types, the NCA product and loss, the two iterative single fits and
`fit_mapping` (input checks, then one fit per estimator family). The closed forms (`lstsq`,
`mean_jacobian`, `jacobian_stream`) live in `_closed_forms`, `apply_matrix`/`relative_l1` and the shared
input checks in `_common`.

An iterative fit can also keep C at chosen step counts (`snapshots`): the Adam scan then runs in
segments between them, so one fit of the largest count gives every shorter fit's matrix.

The NCA loss evaluates x C^T in the cheaper order for the shapes (`chain_order`): with clearly fewer fit
frames than bins (F <= 0.9 N for square layers) it pushes the frames through the gated layers, (..((x W~_1^T) W~_2^T)..), and never forms
C during the fit (forming it costs N^3 products, and their gradients, every step); otherwise it forms C.
C itself is formed once, after the fit. Both orders give the same numbers to float32 rounding.

The single fit of each method is written once as a pure function and `jax.vmap`-ed for K fits (x with a
leading K axis, params optionally too). The programs are `jax.jit` functions whose fit settings are static
arguments, so repeated calls with the same shapes and settings do not retrace. Every program runs at
full float32 matmul precision (`jax.default_matmul_precision("highest")`; GPUs would otherwise use TF32).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .. import models
from .._estimators import BIAS_AXES, INITS, NCA, Estimator, LeastSquares, Student
from . import _closed_forms as closed_forms
from . import _common as fit_common
from ._closed_forms import jacobian_stream
from ._common import HIGHEST, apply_matrix, over_fits, relative_l1

__all__ = ["BIAS_AXES", "CONVERGENCE_TOL", "CONVERGENCE_WINDOW", "INITS", "IterativeFit", "JacobianFit",
           "LeastSquaresFit", "MappingFit", "chain_order", "fit_mapping", "jacobian_stream", "nca_loss",
           "nca_matrix", "apply_matrix", "relative_l1"]

CONVERGENCE_WINDOW = 0.1  # fraction of the steps whose loss must be flat for `converged`
CONVERGENCE_TOL = 5e-3  # relative change of the mean loss between the two halves of that window
CHAIN_MARGIN = 0.1  # `chain_order`: the chain order only when it saves >= 10 % of the product's FLOPs


def _plain(v):
    """A JSON-ready value: None/str/bool/int/float as they are, tuples as lists, arrays as (nested) lists."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, tuple):
        return list(v)
    return np.asarray(v).tolist()


@dataclasses.dataclass(frozen=True)
class MappingFit:
    """What every `fit_mapping` result has; K-fit results carry a leading K axis on every array.

    matrix: `Float[ndarray, "*k nb_bins nb_bins"]`, y ≈ x @ matrix.T.
    rel_l1_error: relative L1 error sum|y - x C^T| / sum|y| on the fitted frames (lower is better);
        float, or `(K,)` for K fits.
    method: "nca", "student", "lstsq" or "jacobian".
    """

    matrix: np.ndarray
    rel_l1_error: float | np.ndarray

    @property
    def n_fits(self) -> int | None:
        """K for a vmapped fit, None for a single fit."""
        return self.matrix.shape[0] if self.matrix.ndim == 3 else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready scalars of the fit (per-fit values become lists for K fits)."""
        return {"method": self.method, "n_bins": int(self.matrix.shape[-1]), "n_fits": self.n_fits,
                "rel_l1_error": _plain(self.rel_l1_error)}


@dataclasses.dataclass(frozen=True)
class IterativeFit(MappingFit):
    """An `NCA` or `Student` fit: `MappingFit` plus the Adam loop's record.

    losses: `Float[ndarray, "*k steps"]`, the loss before each of the `steps` updates (the L1 error summed
        over bins and frames divided by nb_frames).
    converged: the mean loss of the first and second half of the last 10 % of steps differ by at most
        0.5 % (CONVERGENCE_TOL) relative; bool or `(K,)`.
    method, steps, learning_rate, init: the estimator's; bias_axis: NCA's (None for the student);
        seed: the init key's seed, an int or one per fit.
    snapshot_*: with the estimator's `snapshots` only (None otherwise): the step counts, C after that
        many Adam steps `Float[ndarray, "*k n_snap nb_bins nb_bins"]` and its relative L1 error on the
        fit frames `(*k, n_snap)`; step 0 is C at the initial P (or the initial student matrix).
    """

    losses: np.ndarray
    converged: bool | np.ndarray
    method: str
    steps: int
    learning_rate: float
    seed: int | tuple[int, ...]
    init: str
    bias_axis: str | None = None
    snapshot_steps: tuple[int, ...] | None = None
    snapshot_matrices: np.ndarray | None = None
    snapshot_rel_l1: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        snapshots = {} if self.snapshot_steps is None else {
            "snapshot_steps": list(self.snapshot_steps), "snapshot_rel_l1": _plain(self.snapshot_rel_l1)}
        return {**super().to_dict(), "steps": self.steps, "learning_rate": self.learning_rate,
                "seed": _plain(self.seed), "init": self.init, "bias_axis": self.bias_axis,
                "final_loss": _plain(self.losses[..., -1]), "converged": _plain(self.converged), **snapshots}


@dataclasses.dataclass(frozen=True)
class LeastSquaresFit(MappingFit):
    """A `LeastSquares` fit: `MappingFit` plus the ridge, as given or (ridge=None) the automatic mu
    actually used (a tuple when K fits used different ones)."""

    ridge: float | tuple[float, ...]
    method: ClassVar[str] = "lstsq"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "ridge": _plain(self.ridge)}


@dataclasses.dataclass(frozen=True)
class JacobianFit(MappingFit):
    """A `MeanJacobian` fit: `MappingFit` plus

    local_spread: sqrt(mean_t ||J_t - Jbar||_F^2) / ||Jbar||_F; float or `(K,)`.
    parts: the matrix's parts by name (`dae_sf`: "mask", "mask_jacobian", summing to it); {} otherwise.
    """

    local_spread: float | np.ndarray
    parts: dict[str, np.ndarray]
    method: ClassVar[str] = "jacobian"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "local_spread": _plain(self.local_spread)}


# --------------------------------------------------------------------------------------------------
# Public helpers (predict, relative_l1: ncajax.nca; jacobian_stream: ncajax.nca)


def nca_matrix(
    ps: Sequence[Float[Array, "in in"]],
    layers: Sequence[tuple[Float[Array, "in out"], Float[Array, " out"]]],
    *,
    bias_axis: str = "input",
) -> Float[Array, "nb_bins nb_bins"]:
    """The NCA product C = W~_L ... W~_1, W~_l = relu((W_l + bias) P_l^T) ⊙ W_l, W_l = kernel.T.

    `layers` are flax `(kernel (in, out), bias (out,))` pairs in forward order. bias_axis "output" adds
    b_l[i] to row i of W_l (per output unit); "input" adds b_l[j] to column j, the broadcast of the
    authors' PyTorch `W + b` (square layers only).
    """
    c = None
    for w_tilde in _gated_layers(ps, layers, bias_axis):
        c = w_tilde if c is None else jnp.matmul(w_tilde, c, precision=HIGHEST)
    return c


def _gated_layers(ps, layers, bias_axis: str) -> list[jax.Array]:
    """W~_l = relu((W_l + bias) P_l^T) ⊙ W_l for every layer, in forward order."""
    out = []
    for p, (kernel, bias) in zip(ps, layers, strict=True):
        w = kernel.T
        a = w + (bias[:, None] if bias_axis == "output" else bias[None, :])
        out.append(jax.nn.relu(jnp.matmul(a, p.T, precision=HIGHEST)) * w)
    return out


def chain_order(layers, n_frames: int) -> str:
    """How `nca_loss` evaluates x C^T from the shapes (static): "product" forms C = W~_L ... W~_1 and
    multiplies the frames by it; "chain" pushes the frames through the layers, (..((x W~_1^T) W~_2^T)..),
    and never forms C. The one with fewer matmul FLOPs per Adam step (forward and backward):

    product: sum_{l>=2} 3 out_l in_l N (C_l = W~_l C_{l-1} and its two gradients) + 2 F N^2 (x C^T, dC);
    chain:   sum_l F in_l out_l (forward) + sum_l F in_l out_l (dW~_l) + sum_{l>=2} F in_l out_l (dh).

    For square layers the two counts are equal at F = N and the chain is cheaper for F < N (512 frames at
    N = 1025: 6.5 instead of 8 N^3 per dae step, 13.5 instead of 18 for dae_deep). The chain is taken
    only when it saves at least CHAIN_MARGIN (10 %) of the product's FLOPs: near the tie (F = 512 at
    N = 513) the product measured faster (benchmarks/RESULTS.md, 2026-12-07). The mapping stage's fit
    sets have F >= 4 N, so it keeps the product. Both orders give the same loss and gradients up to
    float32 rounding.
    """
    dims = [tuple(int(d) for d in jnp.shape(kernel)[-2:]) for kernel, _ in layers]  # (in, out)
    n = dims[0][0]
    product = sum(3 * d_out * d_in * n for d_in, d_out in dims[1:]) + 2 * n_frames * n * n
    chain = sum(n_frames * d_in * d_out * (3 if i else 2) for i, (d_in, d_out) in enumerate(dims))
    return "chain" if chain <= (1.0 - CHAIN_MARGIN) * product else "product"


def _nca_predict(ps, x, layers, bias_axis: str, order: str = "auto") -> jax.Array:
    """x C^T for the NCA product C of (ps, layers), evaluated in `order` ("auto": `chain_order`)."""
    if order == "auto":
        order = chain_order(layers, x.shape[-2])
    if order == "product":
        return apply_matrix(nca_matrix(ps, layers, bias_axis=bias_axis), x)
    if order != "chain":
        raise ValueError(f"unknown order {order!r}; choose 'auto', 'product' or 'chain'")
    h = x
    for w_tilde in _gated_layers(ps, layers, bias_axis):
        h = jnp.matmul(h, w_tilde.T, precision=HIGHEST)
    return h


def nca_loss(
    ps: Sequence[Float[Array, "in in"]],
    x: Float[Array, "nb_frames nb_bins"],
    target: Float[Array, "nb_frames nb_bins"],
    layers: Sequence[tuple[Float[Array, "in out"], Float[Array, " out"]]],
    *,
    bias_axis: str = "input",
    order: str = "auto",
) -> Float[Array, ""]:
    """The NCA objective: sum |target - x C^T| (the authors' torch.norm p=1) divided by nb_frames.

    The division by the constant nb_frames keeps the value comparable across data sizes; Adam's steps
    are invariant to a constant loss scale apart from its epsilon, so the trajectory is the authors'.
    order: how x C^T is evaluated, "product" (form C, as the authors), "chain" (frames through the
    layers, C never formed) or "auto" (`chain_order`: the one with fewer FLOPs for these shapes).
    """
    y_hat = _nca_predict(ps, x, layers, bias_axis, order)
    return jnp.sum(jnp.abs(target - y_hat)) / x.shape[-2]


# --------------------------------------------------------------------------------------------------
# fit_mapping


def fit_mapping(
    model: Any,
    params: Any,
    x: Float[Array, "*k nb_frames nb_bins"],
    estimator: Estimator = NCA(),
    *,
    seed: int | Sequence[int] = 0,
    target: Float[Array, "*k nb_frames nb_bins"] | None = None,
    params_axis: int | None = None,
) -> IterativeFit | LeastSquaresFit | JacobianFit:
    """Fit the mapping matrix C (y ≈ x @ C.T) of a separator on magnitude frames x.

        fit = fit_mapping(model, params, x, NCA(steps=3000, learning_rate=1e-3))
        fit.matrix, fit.losses, fit.rel_l1_error

    model/params: a flax module from `ncajax.models.build` and its `model.init(...)` params, or any JAX
        callable f(x) -> y on `(nb_frames, nb_bins)` arrays with params=None (`NCA` needs layer weights,
        so it runs only on modules whose params are a stack of Dense layers).
    x: `(nb_frames, nb_bins)` non-negative frames -> one fit; `(K, nb_frames, nb_bins)` -> K independent
        fits in one vmapped program. params_axis=0: params carry a leading K axis too (K trained seeds);
        None: the same params for all K fits.
    estimator: the method and its options, checked when the estimator was made:
        `NCA(...)` (default: the authors' 600 steps at lr 1e-4) | `Student(...)`: Adam, `steps`
            full-batch steps at `learning_rate` in one `lax.scan` -> `IterativeFit`;
        `LeastSquares(ridge=None)`: closed form -> `LeastSquaresFit` (details and accuracy:
            `ncajax.nca.lstsq`);
        `MeanJacobian(chunk_size=256)`: the mean exact Jacobian, `chunk_size` frames at a time, K fits one
            after another; memory ~ chunk_size * N^2 floats whatever K (`config.jacobian_chunk_for` sizes
            a chunk to N) -> `JacobianFit`.
        The iterative starts (`init`): "xavier_normal" (authors', default): entries ~ N(0, 2 / (fan_in +
        fan_out)), untruncated as in PyTorch's xavier_normal_ (jax's own xavier_normal truncates); gates
        whose argument starts negative get no gradient and may stay shut. "uniform": every entry of P_l
        is 1 / in_features, so each gate starts at the mean of its row of W_l + b_l 1^T (student: every
        entry of C is 1 / N). "abs_xavier": |xavier_normal|. "zeros": student only. With `snapshots`
        (e.g. (0, 600, 3000, 10000) with steps=10000) the fit also returns C and its relative L1 error
        at those step counts (`IterativeFit.snapshot_*`); the Adam scan runs in segments between them,
        so the snapshot after n steps is the matrix of an ordinary n-step fit with the same seed (to
        float32 rounding).
    seed: key of the random init of the iterative estimators (`jax.random.key(seed)`, layer l uses
        `fold_in(key, l)`). K fits all use it (fit k equals the single fit with that seed) unless it is a
        sequence of K ints, one a fit.
    target: frames the mapping must reproduce, shaped like x; default: the model's output on x.
    """
    if not isinstance(estimator, Estimator):
        raise ValueError(
            f"estimator must be one of ncajax.nca's NCA, Student, LeastSquares, MeanJacobian, got "
            f"{type(estimator).__name__}; e.g. fit_mapping(model, params, x, NCA(steps=600, learning_rate=1e-4))"
        )
    if params_axis not in (None, 0):
        raise ValueError(f"params_axis must be 0 or None, got {params_axis!r}")
    apply = fit_common.resolve_model(model, params)
    x = fit_common.check_fit_frames(x, model, params, params_axis)
    p_axis = params_axis if x.ndim == 3 else None
    with jax.default_matmul_precision("highest"):
        target = fit_common.model_target(apply, params, x, target, p_axis)
        if isinstance(estimator, (NCA, Student)):
            return _fit_iterative(estimator, model, params, x, target, p_axis, seed)
        if isinstance(estimator, LeastSquares):
            return _fit_lstsq(x, target, estimator.ridge)
        return _fit_jacobian(model, apply, params, x, target, p_axis, estimator.chunk_size)


# --------------------------------------------------------------------------------------------------
# One result builder per estimator family


def _fit_iterative(est: NCA | Student, model, params, x, target, p_axis, seed) -> IterativeFit:
    """The `NCA` or `Student` fit(s): `steps` Adam steps from `init` in one program (with `snapshots`,
    the same steps in segments, C and its fit error kept after each snapshot's step count)."""
    keys, seed_record = _keys(seed, x.shape[0] if x.ndim == 3 else None)
    lr = jnp.asarray(est.learning_rate, x.dtype)
    statics = dict(steps=est.steps, init=est.init, snapshots=est.snapshots or ())
    if isinstance(est, NCA):
        layers = _nca_layers(model, params, x.shape[-1], est.bias_axis)
        out = _nca_program(x, target, layers, keys, lr, p_axis=p_axis, bias_axis=est.bias_axis, **statics)
    else:
        out = _student_program(x, target, keys, lr, **statics)
    matrix, losses, rel_err = out[:3]
    snap = {}
    if est.snapshots is not None:
        snap = {"snapshot_steps": est.snapshots, "snapshot_matrices": np.asarray(out[3]),
                "snapshot_rel_l1": np.asarray(out[4])}
    losses = np.asarray(losses)
    return IterativeFit(
        matrix=np.asarray(matrix), rel_l1_error=_scalar(rel_err), losses=losses, converged=_converged(losses),
        method=est.method, steps=est.steps, learning_rate=float(est.learning_rate), seed=seed_record,
        init=est.init, bias_axis=est.bias_axis if isinstance(est, NCA) else None, **snap,
    )


def _fit_lstsq(x, target, ridge) -> LeastSquaresFit:
    """The least-squares fit(s); ridge recorded as given, else the mu used (a tuple if fits differ)."""
    matrix, rel_err, used = closed_forms.lstsq(x, target, ridge)
    used = np.atleast_1d(np.asarray(used, np.float64))
    if ridge is not None:
        record = float(ridge)
    elif np.all(used == used[0]):
        record = float(used[0])
    else:
        record = tuple(float(u) for u in used)
    return LeastSquaresFit(matrix=np.asarray(matrix), rel_l1_error=_scalar(rel_err), ridge=record)


def _fit_jacobian(model, apply, params, x, target, p_axis, chunk_size) -> JacobianFit:
    """The mean-Jacobian fit(s): the mean Jacobian, its local spread and (dae_sf) its parts."""
    matrix, spread, rel_err, parts = closed_forms.mean_jacobian(
        model, apply, params, x, target, p_axis=p_axis, chunk_size=chunk_size
    )
    return JacobianFit(matrix=np.asarray(matrix), rel_l1_error=_scalar(rel_err), local_spread=_scalar(spread),
                       parts={k: np.asarray(v) for k, v in parts.items()})


# --------------------------------------------------------------------------------------------------
# Compiled programs: one fit, or K fits over a leading axis (`over_fits`); the settings are static


@functools.partial(jax.jit, static_argnames=("p_axis", "steps", "init", "bias_axis", "snapshots"))
def _nca_program(x, target, layers, keys, lr, *, p_axis, steps, init, bias_axis, snapshots):
    one = functools.partial(_nca_single, steps=steps, init=init, bias_axis=bias_axis, snapshots=snapshots)
    if x.ndim == 2:
        return one(x, target, layers, keys, lr)
    return over_fits(one, (0, 0, p_axis, 0, None))(x, target, layers, keys, lr)


@functools.partial(jax.jit, static_argnames=("steps", "init", "snapshots"))
def _student_program(x, target, keys, lr, *, steps, init, snapshots):
    one = functools.partial(_student_single, steps=steps, init=init, snapshots=snapshots)
    if x.ndim == 2:
        return one(x, target, keys, lr)
    return over_fits(one, (0, 0, 0, None))(x, target, keys, lr)


# --------------------------------------------------------------------------------------------------
# Iterative single fits (pure functions of arrays), jitted and vmapped above


def _l1(x, target, c):
    return jnp.sum(jnp.abs(target - apply_matrix(c, x))) / x.shape[-2]


def _init_matrix(key, n: int, init: str, dtype) -> jax.Array:
    if init == "uniform":
        return jnp.full((n, n), 1.0 / n, dtype)
    if init == "zeros":
        return jnp.zeros((n, n), dtype)
    # PyTorch's xavier_normal_: N(0, 2 / (fan_in + fan_out)), not truncated.
    p = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")(key, (n, n), dtype)
    return jnp.abs(p) if init == "abs_xavier" else p


def _adam_scan(loss_fn, theta, lr, steps: int):
    """`steps` full-batch Adam steps on loss_fn(theta); returns final theta and the loss before each."""
    opt = optax.adam(lr)
    (theta, _), losses = jax.lax.scan(_adam_step(loss_fn, opt), (theta, opt.init(theta)), None, length=steps)
    return theta, losses


def _adam_step(loss_fn, opt):
    def step(carry, _):
        theta, state = carry
        loss, grad = jax.value_and_grad(loss_fn)(theta)
        updates, state = opt.update(grad, state, theta)
        return (optax.apply_updates(theta, updates), state), loss

    return step


def _adam_segments(loss_fn, theta, lr, steps: int, snapshots: tuple[int, ...], snapshot_fn):
    """`_adam_scan` run as one scan per segment between the sorted `snapshots` (step counts in
    [0, steps]), the Adam state carried across: the same steps, so theta after n steps is the one an
    ordinary n-step scan reaches. Returns final theta, the loss before each step and snapshot_fn(theta)
    after each snapshot's step count, stacked on a leading axis (a pytree of stacked arrays)."""
    opt = optax.adam(lr)
    step = _adam_step(loss_fn, opt)
    carry, losses, taken, done = (theta, opt.init(theta)), [], [], 0
    for boundary in sorted({*snapshots, steps}):
        if boundary > done:
            carry, seg = jax.lax.scan(step, carry, None, length=boundary - done)
            losses.append(seg)
            done = boundary
        if boundary in snapshots:
            taken.append(snapshot_fn(carry[0]))
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *taken)
    return carry[0], jnp.concatenate(losses), stacked


def _nca_single(x, target, layers, key, lr, *, steps, init, bias_axis, snapshots=()):
    """One NCA fit; with `snapshots` also C and its fit error after each snapshot's step count."""
    ps = [
        _init_matrix(jax.random.fold_in(key, i), kernel.shape[0], init, x.dtype)
        for i, (kernel, _) in enumerate(layers)
    ]

    def loss_fn(ps):
        return nca_loss(ps, x, target, layers, bias_axis=bias_axis)

    def matrix_and_error(ps):
        c = nca_matrix(ps, layers, bias_axis=bias_axis)
        return c, relative_l1(target, apply_matrix(c, x))

    if snapshots:
        ps, losses, (snap_c, snap_err) = _adam_segments(loss_fn, ps, lr, steps, snapshots, matrix_and_error)
        c, err = matrix_and_error(ps)
        return c, losses, err, snap_c, snap_err
    ps, losses = _adam_scan(loss_fn, ps, lr, steps)
    c = nca_matrix(ps, layers, bias_axis=bias_axis)
    return c, losses, relative_l1(target, apply_matrix(c, x))


def _student_single(x, target, key, lr, *, steps, init, snapshots=()):
    """One student fit; with `snapshots` also C and its fit error after each snapshot's step count."""
    c0 = _init_matrix(key, x.shape[-1], init, x.dtype)

    def loss_fn(c):
        return _l1(x, target, c)

    if snapshots:
        c, losses, (snap_c, snap_err) = _adam_segments(
            loss_fn, c0, lr, steps, snapshots, lambda c: (c, relative_l1(target, apply_matrix(c, x))))
        return c, losses, relative_l1(target, apply_matrix(c, x)), snap_c, snap_err
    c, losses = _adam_scan(loss_fn, c0, lr, steps)
    return c, losses, relative_l1(target, apply_matrix(c, x))


# --------------------------------------------------------------------------------------------------
# Input checks and bookkeeping


def _nca_layers(model, params, n_bins: int, bias_axis: str):
    if not isinstance(model, nn.Module):
        raise ValueError(
            "NCA needs the model's dense-layer weights, which a bare callable does not expose; "
            "pass a flax module with its params, or use Student(), LeastSquares() or MeanJacobian()"
        )
    try:
        layers = models.dense_layers(params)
    except ValueError as err:
        raise ValueError(f"NCA cannot list the model's dense layers: {err}") from err
    prev = n_bins
    for i, (kernel, bias) in enumerate(layers):
        n_in, n_out = kernel.shape[-2:]
        if n_in != prev:
            raise ValueError(f"dense layer {i} takes {n_in} inputs but the previous stage gives {prev}")
        if bias.shape[-1] != n_out:
            raise ValueError(f"dense layer {i}: bias {bias.shape} does not match kernel {kernel.shape}")
        if bias_axis == "input" and n_in != n_out:
            raise ValueError(
                f"bias_axis='input' adds b[j] to column j (the authors' PyTorch broadcast), which needs "
                f"square layers; layer {i} is {n_out} x {n_in}. Use bias_axis='output' or hidden=N"
            )
        prev = n_out
    if prev != n_bins:
        raise ValueError(f"the last dense layer gives {prev} outputs, not n_bins={n_bins}")
    return [(jnp.asarray(k), jnp.asarray(b)) for k, b in layers]


def _keys(seed, n_fits):
    """Init keys: one `jax.random.key(seed)` (single fit) or K keys (same seed unless a sequence)."""
    if isinstance(seed, (int, np.integer)):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        seeds = None if n_fits is None else [int(seed)] * n_fits
        record: int | tuple[int, ...] = int(seed)
    else:
        seeds = [int(s) for s in seed]
        if n_fits is None or len(seeds) != n_fits:
            raise ValueError(
                f"a sequence of seeds needs x with a leading K axis of the same length; got "
                f"{len(seeds)} seeds for x with K={n_fits}"
            )
        if min(seeds) < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seeds}")
        record = tuple(seeds)
    if seeds is None:
        return jax.random.key(int(seed)), record
    return jnp.stack([jax.random.key(s) for s in seeds]), record


def _converged(losses: np.ndarray) -> bool | np.ndarray:
    """Flat loss: mean of the 2nd half of the last 10 % of steps within CONVERGENCE_TOL (relative) of the 1st."""
    steps = losses.shape[-1]
    window = max(2, math.ceil(CONVERGENCE_WINDOW * steps))
    if steps < 2:
        flat = np.zeros(losses.shape[:-1], bool)
    else:
        tail = losses[..., -window:]
        half = tail.shape[-1] // 2
        first = tail[..., :half].mean(-1)
        second = tail[..., half:].mean(-1)
        flat = np.abs(second - first) <= CONVERGENCE_TOL * np.maximum(np.abs(first), 1e-30)
    return bool(flat) if flat.ndim == 0 else flat


def _scalar(v):
    a = np.asarray(v)
    return float(a) if a.ndim == 0 else a
