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
- "lstsq": closed-form (ridge) least squares, C^T = (X^T X + ridge tr(X^T X)/N I)^-1 X^T Y.
- "jacobian": the mean over frames of the exact Jacobian dy/dx, plus how far the per-frame Jacobians
  spread around it (`local_spread`); for `dae_sf` also its split into the mask and mask-Jacobian parts.

The single fit of each method is written once as a pure function and `jax.vmap`-ed for K fits (x with a
leading K axis, params optionally too). Compiled programs are cached at module level by their static
settings, so repeated calls with the same shapes do not retrace. Every program runs at full float32
matmul precision (`jax.default_matmul_precision("highest")`; GPUs would otherwise use TF32).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import cho_factor, cho_solve
from jaxtyping import Array, Float

from . import models

METHODS = ("nca", "student", "lstsq", "jacobian")
INITS = ("xavier_normal", "uniform", "abs_xavier", "zeros")
BIAS_AXES = ("output", "input")
CONVERGENCE_WINDOW = 0.1  # fraction of the steps whose loss must be flat for `converged`
CONVERGENCE_TOL = 5e-3  # relative change of the mean loss between the two halves of that window

# Number of times each method's program has been traced (a test hook: same shapes -> no retrace).
_TRACES: collections.Counter = collections.Counter()
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class MappingFit:
    """The result of `fit_mapping`; K-fit results carry a leading K axis on every array.

    matrix: `(nb_bins, nb_bins)` or `(K, nb_bins, nb_bins)`, y ≈ x @ matrix.T.
    losses: the loss before each of the `steps` updates, `(steps,)` or `(K, steps)`; iterative methods
        only (None otherwise). The loss is the L1 error summed over bins and frames divided by nb_frames.
    fidelity: relative L1 error sum|y - x C^T| / sum|y| on the fitted frames; float or `(K,)`.
    converged: iterative methods only: the mean loss of the first and second half of the last 10 % of
        steps differ by at most 0.5 % (CONVERGENCE_TOL) relative; bool or `(K,)` (None otherwise).
    parts: extra matrices by name (jacobian on dae_sf: "mask", "mask_jacobian"); empty dict otherwise.
    local_spread: jacobian only: sqrt(mean_t ||J_t - Jbar||_F^2) / ||Jbar||_F; float or `(K,)`.
    """

    matrix: np.ndarray
    losses: np.ndarray | None
    fidelity: float | np.ndarray
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
            "fidelity": plain(self.fidelity),
            "final_loss": plain(final_loss),
            "converged": plain(self.converged),
            "local_spread": plain(self.local_spread),
        }


# --------------------------------------------------------------------------------------------------
# Public helpers


def predict(
    matrix: Float[Array, "*k nb_bins nb_bins"], x: Float[Array, "*k nb_frames nb_bins"]
) -> Float[Array, "*k nb_frames nb_bins"]:
    """Frames mapped by C: `x @ matrix.T`, batched over any leading K axes."""
    return jnp.matmul(x, jnp.swapaxes(matrix, -1, -2), precision=_HIGHEST)


def relative_l1(
    y: Float[Array, "*k nb_frames nb_bins"], y_hat: Float[Array, "*k nb_frames nb_bins"]
) -> Float[Array, "*k"]:
    """Relative L1 error sum|y - y_hat| / sum|y| over the last two axes (frames, bins)."""
    y, y_hat = jnp.asarray(y), jnp.asarray(y_hat)
    axes = (-2, -1) if y.ndim >= 2 else None
    err = jnp.sum(jnp.abs(y - y_hat), axis=axes)
    ref = jnp.sum(jnp.abs(y), axis=axes)
    # a silent target: 0 when the prediction is silent too, else inf (never NaN)
    return jnp.where(ref > 0, err / jnp.where(ref > 0, ref, 1.0), jnp.where(err > 0, jnp.inf, 0.0))


def nca_matrix(
    ps: Sequence[Float[Array, "in in"]],
    layers: Sequence[tuple[Float[Array, "in out"], Float[Array, " out"]]],
    *,
    bias_axis: str = "output",
) -> Float[Array, "nb_bins nb_bins"]:
    """The NCA product C = W~_L ... W~_1, W~_l = relu((W_l + bias) P_l^T) ⊙ W_l, W_l = kernel.T.

    `layers` are flax `(kernel (in, out), bias (out,))` pairs in forward order. bias_axis "output" adds
    b_l[i] to row i of W_l (per output unit); "input" adds b_l[j] to column j, the broadcast of the
    authors' PyTorch `W + b` (square layers only).
    """
    c = None
    for p, (kernel, bias) in zip(ps, layers, strict=True):
        w = kernel.T
        a = w + (bias[:, None] if bias_axis == "output" else bias[None, :])
        w_tilde = jax.nn.relu(jnp.matmul(a, p.T, precision=_HIGHEST)) * w
        c = w_tilde if c is None else jnp.matmul(w_tilde, c, precision=_HIGHEST)
    return c


def nca_loss(
    ps: Sequence[Float[Array, "in in"]],
    x: Float[Array, "nb_frames nb_bins"],
    target: Float[Array, "nb_frames nb_bins"],
    layers: Sequence[tuple[Float[Array, "in out"], Float[Array, " out"]]],
    *,
    bias_axis: str = "output",
) -> Float[Array, ""]:
    """The NCA objective: sum |target - x C^T| (the authors' torch.norm p=1) divided by nb_frames.

    The division by the constant nb_frames keeps the value comparable across data sizes; Adam's steps
    are invariant to a constant loss scale apart from its epsilon, so the trajectory is the authors'.
    """
    return _l1(x, target, nca_matrix(ps, layers, bias_axis=bias_axis))


def per_frame_jacobians(
    model: Any, params: Any, x: Float[Array, "nb_frames nb_bins"], *, chunk_size: int = 256
) -> Float[Array, "nb_frames nb_bins nb_bins"]:
    """All per-frame Jacobians dy_t/dx_t (small inputs only: this holds nb_frames x N^2 numbers)."""
    return jacobian_stream(model, params, x, fn=_identity, chunk_size=chunk_size)


def jacobian_stream(
    model: Any,
    params: Any,
    x: Float[Array, "nb_frames nb_bins"],
    *,
    fn: Callable[[jax.Array], Any],
    chunk_size: int = 256,
) -> Any:
    """fn(J_t) for every frame, J_t = dy_t/dx_t `(N, N)`, computed chunk by chunk (memory bounded).

    `model`/`params` as in `fit_mapping` (a callable with params=None works). `fn` maps one Jacobian to a
    pytree of arrays (typically scalars); the result stacks them along a leading nb_frames axis. Only
    chunk_size Jacobians exist at a time. Pass the same `fn` object to reuse the compiled program.
    """
    apply, model_key = _resolve_model(model, params)
    x = _check_frames(x, model, name="x")
    if x.ndim != 2:
        raise ValueError(
            f"jacobian_stream takes one set of frames (nb_frames, nb_bins), got {x.shape}"
        )
    _check_chunk(chunk_size)
    program = _cached(_build_stream, (model_key, fn, chunk_size), apply=apply, fn=fn)
    with jax.default_matmul_precision("highest"):
        return program(params, jnp.asarray(x))


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
    bias_axis: str = "output",
    ridge: float = 1e-3,
    chunk_size: int = 256,
    params_axis: int | None = None,
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
        "lstsq" (closed form, relative `ridge`; 0 -> minimum-norm least squares) or "jacobian"
        (mean exact Jacobian, `chunk_size` frames at a time; memory ~ K * chunk_size * N^2 floats).
    init: starting point of the iterative methods.
        "xavier_normal" (authors', default): entries ~ N(0, 2 / (fan_in + fan_out)), untruncated as in
            PyTorch's xavier_normal_ (jax's own xavier_normal truncates). Gates whose argument starts
            negative get no gradient and may stay shut.
        "uniform": every entry of P_l is 1 / in_features, so each gate starts at the mean of its row of
            W_l + b_l 1^T (student: every entry of C is 1 / N).
        "abs_xavier": |xavier_normal|, a non-negative random start that keeps more gates open.
        "zeros": student only (an all-zero P shuts every gate and NCA could not move).
    seed: key of the random init (`jax.random.key(seed)`, layer l uses `fold_in(key, l)`). For K fits
        every fit uses this same seed, so fit k equals the single fit with that seed; pass a sequence of
        K ints to give each fit its own seed.
    bias_axis: "output" (bias per output unit, default) or "input" (the authors' PyTorch broadcast,
        b[j] added to column j; square layers only).
    """
    _check_options(method, steps, learning_rate, init, bias_axis, ridge, chunk_size, params_axis)
    apply, model_key = _resolve_model(model, params)
    x = _check_frames(x, model, name="x")
    batched = x.ndim == 3
    n_fits = x.shape[0] if batched else None
    if params_axis is not None:
        if not batched:
            raise ValueError("params_axis=0 needs x with a leading K axis (K, nb_frames, nb_bins)")
        if params is None:
            raise ValueError("params_axis=0 needs params with a leading K axis; params is None")
        for leaf in jax.tree_util.tree_leaves(params):
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n_fits:
                raise ValueError(
                    f"params_axis=0 but a params leaf has shape {jnp.shape(leaf)}, not a leading axis "
                    f"of K={n_fits} (x.shape[0]); stack K params or pass params_axis=None"
                )
    p_axis = params_axis if batched else None
    x = jnp.asarray(x)

    with jax.default_matmul_precision("highest"):
        if target is None:
            target = _cached(_build_outputs, (model_key, batched, p_axis), apply=apply)(params, x)
        else:
            target = _check_frames(target, None, name="target", negative_ok=True)
            if target.shape != x.shape:
                raise ValueError(f"target shape {target.shape} differs from x shape {x.shape}")
            target = jnp.asarray(target, x.dtype)

        record = dict(method=method, steps=None, learning_rate=None, seed=None, init=None)
        losses = converged = local_spread = None
        parts: dict[str, np.ndarray] = {}
        if method in ("nca", "student"):
            keys, seed_record = _keys(seed, n_fits)
            lr = jnp.asarray(learning_rate, x.dtype)
            record.update(
                steps=steps, learning_rate=float(learning_rate), seed=seed_record, init=init
            )
            if method == "nca":
                layers = _nca_layers(model, params, x.shape[-1], bias_axis)
                statics = ("nca", batched, p_axis, steps, init, bias_axis)
                program = _cached(_build_nca, statics)
                matrix, losses, fidelity = program(x, target, layers, keys, lr)
                record["bias_axis"] = bias_axis
            else:
                program = _cached(_build_student, ("student", batched, steps, init))
                matrix, losses, fidelity = program(x, target, keys, lr)
            losses = np.asarray(losses)
            converged = _converged(losses)
        elif method == "lstsq":
            if not np.any(np.asarray(x)):
                raise ValueError("x is all zeros: least squares has nothing to fit")
            program = _cached(_build_lstsq, ("lstsq", batched, ridge == 0))
            matrix, fidelity = program(x, target, jnp.asarray(ridge, x.dtype))
            record["ridge"] = float(ridge)
        else:
            is_sf = isinstance(model, models.SkipFilterDAE)
            statics = ("jacobian", model_key, batched, p_axis, min(chunk_size, x.shape[-2]), is_sf)
            program = _cached(_build_jacobian, statics, model=model, apply=apply)
            matrix, spread, fidelity, raw_parts = program(x, target, params)
            local_spread = _scalar(spread)
            parts = {k: np.asarray(v) for k, v in raw_parts.items()}

    return MappingFit(
        matrix=np.asarray(matrix),
        losses=losses,
        fidelity=_scalar(fidelity),
        converged=converged,
        parts=parts,
        local_spread=local_spread,
        **record,
    )


# --------------------------------------------------------------------------------------------------
# Single fits (pure functions of arrays), vmapped by the program builders below


def _l1(x, target, c):
    return jnp.sum(jnp.abs(target - predict(c, x))) / x.shape[-2]


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

    def step(carry, _):
        theta, state = carry
        loss, grad = jax.value_and_grad(loss_fn)(theta)
        updates, state = opt.update(grad, state, theta)
        return (optax.apply_updates(theta, updates), state), loss

    (theta, _), losses = jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)
    return theta, losses


def _nca_single(x, target, layers, key, lr, *, steps, init, bias_axis):
    ps = [
        _init_matrix(jax.random.fold_in(key, i), kernel.shape[0], init, x.dtype)
        for i, (kernel, _) in enumerate(layers)
    ]

    def loss_fn(ps):
        return nca_loss(ps, x, target, layers, bias_axis=bias_axis)

    ps, losses = _adam_scan(loss_fn, ps, lr, steps)
    c = nca_matrix(ps, layers, bias_axis=bias_axis)
    return c, losses, relative_l1(target, predict(c, x))


def _student_single(x, target, key, lr, *, steps, init):
    c0 = _init_matrix(key, x.shape[-1], init, x.dtype)
    c, losses = _adam_scan(lambda c: _l1(x, target, c), c0, lr, steps)
    return c, losses, relative_l1(target, predict(c, x))


def _lstsq_single(x, target, ridge, *, exact):
    n = x.shape[-1]
    if exact:
        ct = jnp.linalg.lstsq(x, target)[0]
    else:
        gram = jnp.matmul(x.T, x, precision=_HIGHEST)
        rhs = jnp.matmul(x.T, target, precision=_HIGHEST)
        a = gram + ridge * jnp.trace(gram) / n * jnp.eye(n, dtype=x.dtype)
        # Jacobi scaling (exactly equivalent) and one step of iterative refinement keep float32 accurate.
        d = jnp.sqrt(jnp.diag(a))
        a_s = a / d[:, None] / d[None, :]
        rhs_s = rhs / d[:, None]
        factor = cho_factor(a_s, lower=True)
        z = cho_solve(factor, rhs_s)
        z = z + cho_solve(factor, rhs_s - jnp.matmul(a_s, z, precision=_HIGHEST))
        ct = z / d[:, None]
    c = ct.T
    return c, relative_l1(target, predict(c, x))


def _chunks(x, chunk: int):
    """x `(T, N)` padded to whole chunks: `(n_chunks, chunk, N)` and 0/1 weights `(n_chunks, chunk)`."""
    t = x.shape[0]
    n_chunks = -(-t // chunk)
    pad = n_chunks * chunk - t
    xp = jnp.pad(x, ((0, pad), (0, 0))).reshape(n_chunks, chunk, x.shape[1])
    w = (jnp.arange(n_chunks * chunk) < t).astype(x.dtype).reshape(n_chunks, chunk)
    return xp, w


def _jacobian_single(x, target, params, *, frame_jac, chunk):
    """Mean Jacobian, relative spread and part sums, streaming chunks (Chan's parallel variance)."""
    t, n = x.shape
    xs, ws = _chunks(x, chunk)
    frame_jacs = jax.vmap(frame_jac, in_axes=(None, 0))

    def body(carry, inputs):
        count, mean, m2, part_sums = carry
        xc, wc = inputs
        jac, parts = frame_jacs(params, xc)
        nb = jnp.sum(wc)
        mean_b = jnp.einsum("t,tij->ij", wc, jac) / nb
        m2_b = jnp.sum(wc * jnp.sum((jac - mean_b) ** 2, axis=(1, 2)))
        total = count + nb
        delta = mean_b - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2_b + jnp.sum(delta**2) * count * nb / total
        part_sums = jax.tree_util.tree_map(
            lambda s, p: s + jnp.tensordot(wc, p, axes=1), part_sums, parts
        )
        return (total, mean, m2, part_sums), None

    _, parts0 = jax.eval_shape(frame_jacs, params, xs[0])
    part_sums0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape[1:], s.dtype), parts0)
    zero = jnp.zeros((), x.dtype)
    init = (zero, jnp.zeros((n, n), x.dtype), zero, part_sums0)
    (_, jbar, m2, part_sums), _ = jax.lax.scan(body, init, (xs, ws))
    dev, norm = jnp.sqrt(jnp.maximum(m2 / t, 0.0)), jnp.linalg.norm(jbar)
    spread = jnp.where(norm > 0, dev / jnp.where(norm > 0, norm, 1.0), jnp.where(dev > 0, jnp.inf, 0.0))
    parts = {}
    if part_sums:
        parts = {
            "mask": jnp.diag(part_sums["mask"] / t),
            "mask_jacobian": part_sums["mask_jacobian"] / t,
        }
    return jbar, spread, relative_l1(target, predict(jbar, x)), parts


# --------------------------------------------------------------------------------------------------
# Program builders (jitted, cached by static settings)


def _cached(builder, statics: tuple, **closure):
    """The jitted program `builder(statics, **closure)`, built once per `statics` (LRU of 64)."""
    items = tuple(sorted(closure.items()))
    try:
        hash((statics, items))
    except TypeError:  # an unhashable callable: compile without caching
        return builder(statics, **closure)
    return _program_cache(builder, statics, items)


@functools.lru_cache(maxsize=64)
def _program_cache(builder, statics, closure_items):
    return builder(statics, **dict(closure_items))


_CPU_GROUP_BYTES = 8 * 2**20


def _over_fits(single, in_axes):
    """K independent fits of `single` in one program: `jax.vmap` on accelerators; on CPU `lax.map` over
    groups of fits whose working set (~4 N^2 + 3 F N floats each) fits in ~8 MB of cache.

    vmapping all K fits at once on CPU multiplies the elementwise memory traffic (Adam, ReLU gates) by K
    and falls out of cache: 8 vmapped fits ran at 0.80x the throughput of 8 sequential ones, grouped fits at
    1.0x (benchmarks/RESULTS.md). Every group is still vmapped and the whole loop is one jitted program.
    """
    vmapped = jax.vmap(single, in_axes=in_axes)

    def fit(*args):
        x = args[0]
        n_fits, n_frames, n_bins = x.shape
        if jax.default_backend() != "cpu":
            return vmapped(*args)
        per_fit = (4 * n_bins * n_bins + 3 * n_frames * n_bins) * x.dtype.itemsize
        group = max(1, _CPU_GROUP_BYTES // per_fit)
        if group >= n_fits:
            return vmapped(*args)
        mapped = [a for a, ax in zip(args, in_axes, strict=True) if ax == 0]

        def body(ms):
            it = iter(ms)
            return single(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes, strict=True)])

        # batch_size=1 would vmap a size-1 axis (extra transposes around every dot): plain map then.
        return jax.lax.map(body, mapped, batch_size=None if group == 1 else group)

    return fit


def _build_nca(statics):
    method, batched, p_axis, steps, init, bias_axis = statics
    single = functools.partial(_nca_single, steps=steps, init=init, bias_axis=bias_axis)
    fit = _over_fits(single, (0, 0, p_axis, 0, None)) if batched else single

    def program(x, target, layers, keys, lr):
        _TRACES[method] += 1
        return fit(x, target, layers, keys, lr)

    return jax.jit(program)


def _build_student(statics):
    method, batched, steps, init = statics
    single = functools.partial(_student_single, steps=steps, init=init)
    fit = _over_fits(single, (0, 0, 0, None)) if batched else single

    def program(x, target, keys, lr):
        _TRACES[method] += 1
        return fit(x, target, keys, lr)

    return jax.jit(program)


def _build_lstsq(statics):
    method, batched, exact = statics
    single = functools.partial(_lstsq_single, exact=exact)
    fit = _over_fits(single, (0, 0, None)) if batched else single

    def program(x, target, ridge):
        _TRACES[method] += 1
        return fit(x, target, ridge)

    return jax.jit(program)


def _build_jacobian(statics, *, model, apply):
    method, _, batched, p_axis, chunk, is_sf = statics
    if is_sf:

        def mask(params, v):
            return model.apply(params, v[None], method="mask")[0]

        def frame_jac(params, v):
            m = mask(params, v)
            jm = jax.jacfwd(mask, argnums=1)(params, v)
            part = v[:, None] * jm
            return jnp.diag(m) + part, {"mask": m, "mask_jacobian": part}

    else:

        def frame_jac(params, v):
            return jax.jacfwd(lambda u: apply(params, u[None])[0])(v), {}

    single = functools.partial(_jacobian_single, frame_jac=frame_jac, chunk=chunk)
    fit = jax.vmap(single, in_axes=(0, 0, p_axis)) if batched else single

    def program(x, target, params):
        _TRACES[method] += 1
        return fit(x, target, params)

    return jax.jit(program)


def _build_outputs(statics, *, apply):
    _, batched, p_axis = statics
    fit = jax.vmap(apply, in_axes=(p_axis, 0)) if batched else apply
    return jax.jit(fit)


def _build_stream(statics, *, apply, fn):
    _, _, chunk = statics

    def program(params, x):
        _TRACES["jacobian_stream"] += 1
        t = x.shape[0]
        xs, _ = _chunks(x, min(chunk, t))
        jac = jax.vmap(jax.jacfwd(lambda u: apply(params, u[None])[0]))
        out = jax.lax.map(lambda xc: jax.vmap(fn)(jac(xc)), xs)
        return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:t], out)

    return jax.jit(program)


def _identity(j):
    return j


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
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a non-negative number, got {ridge!r}")
    _check_chunk(chunk_size)
    if params_axis not in (None, 0):
        raise ValueError(f"params_axis must be 0 or None, got {params_axis!r}")


def _check_chunk(chunk_size):
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _resolve_model(model, params):
    """(apply(params, frames) -> frames, hashable cache key) for a flax module or a bare callable."""
    if isinstance(model, nn.Module):
        if params is None:
            raise ValueError(
                f"{type(model).__name__} is a flax module and needs its params "
                "(model.init(...) or a restored checkpoint); params=None is for bare callables"
            )
        return model.apply, model
    if not callable(model):
        raise ValueError(f"model must be a flax module or a callable, got {type(model).__name__}")
    if params is not None:
        raise ValueError(
            "params were given for a bare callable; pass params=None (close over them) or a flax module"
        )
    return _CallableApply(model), model


@dataclasses.dataclass(frozen=True)
class _CallableApply:
    """A bare callable f(frames) in the module calling convention apply(params, frames)."""

    f: Callable

    def __call__(self, params, x):
        return self.f(x)


def _check_frames(x, model, *, name: str, negative_ok: bool = False) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be (nb_frames, nb_bins) or (K, nb_frames, nb_bins), got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if arr.shape[-2] < 1:
        raise ValueError(f"{name} has no frames (shape {arr.shape})")
    n_bins = getattr(model, "n_bins", None)
    if n_bins is not None and arr.shape[-1] != n_bins:
        raise ValueError(f"{name} has {arr.shape[-1]} bins but the model takes n_bins={n_bins}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf; clean the features before fitting")
    if not negative_ok and np.any(arr < 0):
        raise ValueError(
            f"{name} has negative values (min {arr.min():.3g}); pass magnitude frames |STFT| >= 0"
        )
    return arr


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
            raise ValueError(
                f"dense layer {i} takes {n_in} inputs but the previous stage gives {prev}"
            )
        if bias.shape[-1] != n_out:
            raise ValueError(
                f"dense layer {i}: bias {bias.shape} does not match kernel {kernel.shape}"
            )
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
