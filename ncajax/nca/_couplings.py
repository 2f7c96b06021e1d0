"""Mapping functions of frame-wise separators: one N x N matrix C with y ≈ x @ C.T.

`C[i, j]` is the weight of input bin j in output bin i. `fit_mapping` distils a trained separator (a flax
module from `ncajax.models` with its params, or any JAX callable on `(nb_frames, nb_bins)` frames) into C
by one of four methods:

- "nca": the authors' Neural Couplings Algorithm. With the frozen dense layers W_l (out x in), b_l and one
  learnable P_l (in x in) per layer, W~_l = relu((W_l + b_l 1^T) P_l^T) ⊙ W_l and C = W~_L ... W~_1.
  The P_l are fitted by full-batch Adam on the L1 error between the target and x C^T. The teacher's
  biases only enter the gates. For the skip-filtering `dae_sf` the product is built from the mask
  network's layers and fitted on the model's output x ⊙ m(x), as the authors did: the x ⊙ m term itself
  has no place in the product.
- "student": C itself fitted by the same loss, optimiser and loop (the authors' baseline).
- "lstsq": closed-form least squares, C^T = (X^T X + ridge I)^-1 X^T Y, by default with a ridge at
  float32 rounding level on the per-bin-scaled normal equations (exact maps are recovered to ~1e-5).
- "jacobian": the mean over frames of the exact Jacobian dy/dx, plus how far the per-frame Jacobians
  spread around it (`local_spread`); for `dae_sf` also its split into the mask and mask-Jacobian parts.

This module holds `MappingFit`, the NCA product and loss, the two iterative single fits and
`fit_mapping` (input checks, then one record builder per method family). The closed forms ("lstsq",
"jacobian", `jacobian_stream`) live in `ncajax.nca`, `predict`/`relative_l1` and the shared input
checks in `ncajax.nca`; all three public helpers are importable from here too.

An iterative fit can also keep C at chosen step counts (`snapshots`): the Adam scan then runs in
segments between them, so one fit of the largest count gives every shorter fit's matrix.

The NCA loss evaluates x C^T in the cheaper order for the shapes (`chain_order`): with clearly fewer fit
frames than bins (F <= 0.9 N for square layers) it pushes the frames through the gated layers, (..((x W~_1^T) W~_2^T)..), and never forms
C during the fit (forming it costs N^3 products, and their gradients, every step); otherwise it forms C.
C itself is formed once, after the fit. Both orders give the same numbers to float32 rounding.

The single fit of each method is written once as a pure function and `jax.vmap`-ed for K fits (x with a
leading K axis, params optionally too). Compiled programs are cached at module level by their static
settings (`ncajax.nca`), so repeated calls with the same shapes do not retrace. Every program runs at
full float32 matmul precision (`jax.default_matmul_precision("highest")`; GPUs would otherwise use TF32).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .. import models
from ..config import METHODS
from . import _closed_forms as closed_forms
from . import _common as fit_common
from . import _programs as programs
from ._closed_forms import jacobian_stream
from ._common import HIGHEST, apply_matrix, relative_l1

__all__ = ["BIAS_AXES", "CONVERGENCE_TOL", "CONVERGENCE_WINDOW", "INITS", "METHODS", "MappingFit",
           "chain_order", "fit_mapping", "jacobian_stream", "nca_loss", "nca_matrix", "apply_matrix", "relative_l1"]

INITS = ("xavier_normal", "uniform", "abs_xavier", "zeros")
BIAS_AXES = ("output", "input")
CONVERGENCE_WINDOW = 0.1  # fraction of the steps whose loss must be flat for `converged`
CONVERGENCE_TOL = 5e-3  # relative change of the mean loss between the two halves of that window
CHAIN_MARGIN = 0.1  # `chain_order`: the chain order only when it saves >= 10 % of the product's FLOPs


@dataclasses.dataclass(frozen=True)
class MappingFit:
    """The result of `fit_mapping`; K-fit results carry a leading K axis on every array.

    matrix: `(nb_bins, nb_bins)` or `(K, nb_bins, nb_bins)`, y ≈ x @ matrix.T.
    losses: the loss before each of the `steps` updates, `(steps,)` or `(K, steps)`; iterative methods
        only (None otherwise). The loss is the L1 error summed over bins and frames divided by nb_frames.
    rel_l1_error: relative L1 error sum|y - x C^T| / sum|y| on the fitted frames (lower is better);
        float or `(K,)`.
    converged: iterative methods only: the mean loss of the first and second half of the last 10 % of
        steps differ by at most 0.5 % (CONVERGENCE_TOL) relative; bool or `(K,)` (None otherwise).
    parts: extra matrices by name (jacobian on dae_sf: "mask", "mask_jacobian"); empty dict otherwise.
    local_spread: jacobian only: sqrt(mean_t ||J_t - Jbar||_F^2) / ||Jbar||_F; float or `(K,)`.
    """

    matrix: np.ndarray
    losses: np.ndarray | None
    rel_l1_error: float | np.ndarray
    converged: bool | np.ndarray | None
    parts: dict[str, np.ndarray]
    local_spread: float | np.ndarray | None
    method: str
    steps: int | None
    learning_rate: float | None
    seed: int | tuple[int, ...] | None
    init: str | None
    bias_axis: str | None = None
    ridge: float | None = None
    # iterative fits run with `snapshots` only (None otherwise): the step counts, C after that many Adam
    # steps `(n_snap, N, N)` or `(K, n_snap, N, N)`, and its relative L1 error on the fit frames
    # `(n_snap,)` or `(K, n_snap)`; step 0 is C at the initial P (or the initial student matrix)
    snapshot_steps: tuple[int, ...] | None = None
    snapshot_matrices: np.ndarray | None = None
    snapshot_rel_l1: np.ndarray | None = None

    @property
    def n_fits(self) -> int | None:
        """K for a vmapped fit, None for a single fit."""
        return self.matrix.shape[0] if self.matrix.ndim == 3 else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready scalars of the fit (per-fit values become lists for K fits)."""

        def plain(v):
            if v is None or isinstance(v, (str, bool, int, float)):
                return v
            if isinstance(v, tuple):
                return list(v)
            return np.asarray(v).tolist()

        final_loss = None if self.losses is None else self.losses[..., -1]
        snapshots = {} if self.snapshot_steps is None else {
            "snapshot_steps": list(self.snapshot_steps), "snapshot_rel_l1": plain(self.snapshot_rel_l1)}
        return {
            "method": self.method,
            "n_bins": int(self.matrix.shape[-1]),
            "n_fits": self.n_fits,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "seed": plain(self.seed),
            "init": self.init,
            "bias_axis": self.bias_axis,
            "ridge": self.ridge,
            "rel_l1_error": plain(self.rel_l1_error),
            "final_loss": plain(final_loss),
            "converged": plain(self.converged),
            "local_spread": plain(self.local_spread),
            **snapshots,
        }


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
    *,
    method: str = "nca",
    steps: int = 600,
    learning_rate: float = 1e-4,
    seed: int | Sequence[int] = 0,
    target: Float[Array, "*k nb_frames nb_bins"] | None = None,
    init: str = "xavier_normal",
    bias_axis: str = "input",
    ridge: float | None = None,
    chunk_size: int = 256,
    params_axis: int | None = None,
    snapshots: Sequence[int] | None = None,
) -> MappingFit:
    """Fit the mapping matrix C (y ≈ x @ C.T) of a separator on magnitude frames x.

    model/params: a flax module from `ncajax.models.build` and its `model.init(...)` params, or any JAX
        callable f(x) -> y on `(nb_frames, nb_bins)` arrays with params=None ("nca" needs layer weights,
        so it runs only on modules whose params are a stack of Dense layers).
    x: `(nb_frames, nb_bins)` non-negative frames -> one fit; `(K, nb_frames, nb_bins)` -> K independent
        fits in one vmapped program. params_axis=0: params carry a leading K axis too (K trained seeds);
        None: the same params for all K fits.
    target: frames the mapping must reproduce, shaped like x; default: the model's output on x.
    method: "nca" | "student" (Adam, `steps` full-batch steps at `learning_rate`, in one `lax.scan`),
        "lstsq" (closed form, see `ridge`) or "jacobian" (mean exact Jacobian, `chunk_size` frames at a
        time, K fits one after another; memory ~ chunk_size * N^2 floats whatever K, see
        `config.jacobian_chunk_for` for a chunk sized to N).
    ridge: "lstsq" only. None (default): the least Tikhonov term mu on the Jacobi-scaled normal equations
        that keeps float32 stable (N * eps, grown tenfold on a Cholesky breakdown; `MappingFit.ridge`
        records it, a tuple when K fits differ); 0: minimum-norm least squares (SVD); > 0: a fixed ridge
        relative to the mean bin energy. Details and accuracy: `ncajax.nca.lstsq`.
    init: starting point of the iterative methods.
        "xavier_normal" (authors', default): entries ~ N(0, 2 / (fan_in + fan_out)), untruncated as in
            PyTorch's xavier_normal_ (jax's own xavier_normal truncates). Gates whose argument starts
            negative get no gradient and may stay shut.
        "uniform": every entry of P_l is 1 / in_features, so each gate starts at the mean of its row of
            W_l + b_l 1^T (student: every entry of C is 1 / N).
        "abs_xavier": |xavier_normal|, a non-negative random start that keeps more gates open.
        "zeros": student only (an all-zero P shuts every gate and NCA could not move).
    seed: key of the random init (`jax.random.key(seed)`, layer l uses `fold_in(key, l)`). K fits all
        use it (fit k equals the single fit with that seed) unless it is a sequence of K ints, one a fit.
    bias_axis: "input" (default: the authors' PyTorch `W + b` broadcast, b[j] added to column j; square
        layers only) or "output" (a named variant: b[i] added to row i, per output unit; any shape).
    snapshots: "nca"/"student" only: step counts in [0, steps] (e.g. (0, 600, 3000, 10000) with
        steps=10000) at which the fit also returns C and its relative L1 error on x
        (`MappingFit.snapshot_*`); 0 is C at the initial P. The Adam scan runs in segments between
        them, so the snapshot after n steps is the matrix of an ordinary n-step fit with the same seed
        (to float32 rounding). None (default): one scan, no snapshots.
    """
    _check_options(method, steps, learning_rate, init, bias_axis, ridge, chunk_size, params_axis)
    snapshots = _check_snapshots(method, steps, snapshots)
    apply = fit_common.resolve_model(model, params)
    x = fit_common.check_fit_frames(x, model, params, params_axis)
    p_axis = params_axis if x.ndim == 3 else None
    with jax.default_matmul_precision("highest"):
        target = fit_common.model_target(apply, params, x, target, p_axis)
        if method in ("nca", "student"):
            options = dict(steps=steps, learning_rate=learning_rate, seed=seed, init=init, snapshots=snapshots)
            fields = _fit_iterative(method, model, params, x, target, p_axis, bias_axis, **options)
        elif method == "lstsq":
            fields = _fit_lstsq(x, target, ridge)
        else:
            fields = _fit_jacobian(model, apply, params, x, target, p_axis, chunk_size)
    return MappingFit(**fields)


# --------------------------------------------------------------------------------------------------
# One record builder per method family: the MappingFit fields of its fit(s)


def _record(method: str, matrix, rel_err, **fields) -> dict[str, Any]:
    """MappingFit fields: matrix and error as NumPy; the others None ({} for parts) unless given."""
    record = dict(losses=None, converged=None, parts={}, local_spread=None, steps=None,
                  learning_rate=None, seed=None, init=None)
    record.update(fields)
    return dict(method=method, matrix=np.asarray(matrix), rel_l1_error=_scalar(rel_err), **record)


def _fit_iterative(method, model, params, x, target, p_axis, bias_axis, *, steps, learning_rate,
                   seed, init, snapshots=None) -> dict[str, Any]:
    """The "nca" or "student" fit(s): `steps` Adam steps from `init` in one program (with `snapshots`,
    the same steps in segments, C and its fit error kept after each snapshot's step count)."""
    batched = x.ndim == 3
    keys, seed_record = _keys(seed, x.shape[0] if batched else None)
    lr = jnp.asarray(learning_rate, x.dtype)
    # the option only when asked for: ordinary fits keep their program (and cache key) unchanged
    snap = {} if snapshots is None else {"snapshots": snapshots}
    if method == "nca":
        layers = _nca_layers(model, params, x.shape[-1], bias_axis)
        program = programs.program(
            _nca_single, (0, 0, p_axis, 0, None), batched=batched,
            steps=steps, init=init, bias_axis=bias_axis, **snap,
        )
        out = program(x, target, layers, keys, lr)
    else:
        program = programs.program(
            _student_single, (0, 0, 0, None), batched=batched, steps=steps, init=init, **snap
        )
        out = program(x, target, keys, lr)
    matrix, losses, rel_err = out[:3]
    if snapshots is not None:
        snap = {"snapshot_steps": snapshots, "snapshot_matrices": np.asarray(out[3]),
                "snapshot_rel_l1": np.asarray(out[4])}
    losses = np.asarray(losses)
    return _record(
        method, matrix, rel_err, losses=losses, converged=_converged(losses), steps=steps,
        learning_rate=float(learning_rate), seed=seed_record, init=init,
        bias_axis=bias_axis if method == "nca" else None, **snap,
    )


def _fit_lstsq(x, target, ridge) -> dict[str, Any]:
    """The "lstsq" fit(s); ridge recorded as given, else the mu used (a tuple if fits differ)."""
    matrix, rel_err, used = closed_forms.lstsq(x, target, ridge)
    used = np.atleast_1d(np.asarray(used, np.float64))
    if ridge is not None:
        record = float(ridge)
    elif np.all(used == used[0]):
        record = float(used[0])
    else:
        record = tuple(float(u) for u in used)
    return _record("lstsq", matrix, rel_err, ridge=record)


def _fit_jacobian(model, apply, params, x, target, p_axis, chunk_size) -> dict[str, Any]:
    """The "jacobian" fit(s): the mean Jacobian, its local spread and (dae_sf) its parts."""
    matrix, spread, rel_err, parts = closed_forms.mean_jacobian(
        model, apply, params, x, target, p_axis=p_axis, chunk_size=chunk_size
    )
    parts = {k: np.asarray(v) for k, v in parts.items()}
    return _record("jacobian", matrix, rel_err, local_spread=_scalar(spread), parts=parts)


# --------------------------------------------------------------------------------------------------
# Iterative single fits (pure functions of arrays), jitted and vmapped by `ncajax.nca`


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


def _check_options(method, steps, learning_rate, init, bias_axis, ridge, chunk_size, params_axis):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method in ("nca", "student"):
        if not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if not (np.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
        if method == "nca" and init == "zeros":
            raise ValueError(
                "init='zeros' shuts every NCA gate (relu(0) = 0) so no gradient flows; "
                "use 'xavier_normal', 'uniform' or 'abs_xavier'"
            )
    if bias_axis not in BIAS_AXES:
        raise ValueError(f"unknown bias_axis {bias_axis!r}; choose one of {BIAS_AXES}")
    if ridge is not None and not (
        isinstance(ridge, (int, float, np.integer, np.floating))
        and not isinstance(ridge, bool)
        and np.isfinite(ridge)
        and ridge >= 0
    ):
        raise ValueError(f"ridge must be None (automatic) or a non-negative number, got {ridge!r}")
    fit_common.check_chunk(chunk_size)
    if params_axis not in (None, 0):
        raise ValueError(f"params_axis must be 0 or None, got {params_axis!r}")


def _check_snapshots(method, steps, snapshots) -> tuple[int, ...] | None:
    """The snapshot step counts as a sorted tuple of distinct ints in [0, steps], or None."""
    if snapshots is None:
        return None
    if method not in ("nca", "student"):
        raise ValueError(f"snapshots are for the iterative methods 'nca' and 'student', not {method!r}")
    try:
        values = [operator.index(n) for n in snapshots]
    except TypeError:
        raise ValueError(f"snapshots must be a sequence of step counts (integers), got {snapshots!r}") from None
    if not values or min(values) < 0 or max(values) > steps or len(set(values)) != len(values):
        raise ValueError(
            f"snapshots must be distinct step counts in [0, steps={steps}], at least one, got {list(values)}"
        )
    return tuple(sorted(int(n) for n in values))


def _nca_layers(model, params, n_bins: int, bias_axis: str):
    if not isinstance(model, nn.Module):
        raise ValueError(
            "method 'nca' needs the model's dense-layer weights, which a bare callable does not expose; "
            "pass a flax module with its params, or use method 'student', 'lstsq' or 'jacobian'"
        )
    try:
        layers = models.dense_layers(params)
    except ValueError as err:
        raise ValueError(f"method 'nca' cannot list the model's dense layers: {err}") from err
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
