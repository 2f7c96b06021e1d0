"""Closed-form mappings: least squares with its automatic ridge, the mean Jacobian, `jacobian_stream`.

`fit_mapping` (ncajax.nca) validates its inputs and dispatches `LeastSquares` and `MeanJacobian` here.

- `lstsq`: C^T = (X^T X + ridge)^-1 X^T Y; by default (ridge=None) the least Tikhonov term that keeps
  float32 stable on the Jacobi-scaled normal equations, grown tenfold on a Cholesky breakdown.
- `mean_jacobian`: the mean over frames of the exact Jacobian dy/dx, streamed in chunks of frames (K fits
  one after another), with the relative spread of the per-frame Jacobians around it; for `dae_sf`
  (y = x ⊙ m(x)) also its split into the mask part diag(m) and the mask-Jacobian part x ⊙ dm/dx.
- `jacobian_stream`: fn(J_t) for every frame, chunk by chunk.

The single fits are pure functions of arrays, compiled by `jax.jit` with their settings (the least-squares
mode, the Jacobian function and chunk) as static arguments, so repeated calls with the same shapes and
settings reuse one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve
from jaxtyping import Array, Float

from .. import models
from ._common import (
    HIGHEST,
    apply_matrix,
    check_chunk,
    check_frames,
    over_fits,
    relative_l1,
    resolve_model,
)


def lstsq(x: jax.Array, target: jax.Array, ridge: float | None):
    """Least-squares fit(s) of x `(nb_frames, nb_bins)` or `(K, ...)` -> (C, relative L1, ridge used).

    The ridge used has a K axis for K fits. G = X^T X, D = diag(G) (1 for a bin that is zero in every
    frame); ridge:
    None (default, automatic): the least Tikhonov term that keeps float32 stable, applied to the
        Jacobi-scaled Gram matrix: C^T = (G + mu D)^-1 X^T Y with mu = N * eps (eps of x's dtype;
        5.7e-6 for N = 48 in float32). It is scale-free (rescaling a bin does not change the fit)
        and biases an exactly linear teacher by ~ mu / (smallest eigenvalue of D^-1/2 G D^-1/2):
        recovered to ~1e-5 relative L1 in float32. If the Cholesky factor of that matrix breaks
        down (a pivot^2 below mu / 2, or non-finite; rank-deficient X), mu grows tenfold until it
        does not. The mu used is returned (`fit_mapping` records it in `LeastSquaresFit.ridge`).
    0: minimum-norm least squares (`jnp.linalg.lstsq`, SVD).
    > 0: ridge relative to the mean bin energy, C^T = (G + ridge tr(G)/N I)^-1 X^T Y (as given; no
        automatic increase), returned as given.
    Both Cholesky forms are solved with Jacobi scaling and one step of iterative refinement on the
    data-space residual X^T (Y - X C^T), so float32 reaches the float64 solution of that system.
    """
    if not np.any(np.asarray(x)):
        raise ValueError("x is all zeros: least squares has nothing to fit")
    mode = "auto" if ridge is None else ("exact" if ridge == 0 else "ridge")
    # automatic: mu starts at N * eps (see the docstring) and grows only on a breakdown.
    start = x.shape[-1] * float(jnp.finfo(x.dtype).eps) if ridge is None else ridge
    return _lstsq_program(x, target, jnp.asarray(start, x.dtype), mode=mode)


def mean_jacobian(model, apply, params, x, target, *, p_axis: int | None, chunk_size: int):
    """Mean Jacobian fit(s) -> (Jbar, relative spread, relative L1, parts), `chunk_size` frames at a time.

    apply: `fit_common.resolve_model(model, params)`; p_axis: the K axis of params (0) or None (shared).
    parts: {"mask", "mask_jacobian"} for a `dae_sf` model, empty otherwise. K fits (x `(K, F, N)`) run
    one after another through one compiled single-fit program, so only one `(chunk, N, N)` block of
    per-frame Jacobians exists at a time whatever K (vmapping the K fits would hold K of them); the
    results are stacked along a leading K axis and equal the vmapped ones to float32 rounding.
    """
    frame_jac = _FrameJacobian(model, apply, isinstance(model, models.SkipFilterDAE))
    chunk = min(chunk_size, x.shape[-2])
    program = functools.partial(_jacobian_program, frame_jac=frame_jac, chunk=chunk)
    if x.ndim == 2:
        return program(x, target, params)
    fits = []
    for k in range(x.shape[0]):
        params_k = params if p_axis is None else jax.tree_util.tree_map(lambda a, k=k: a[k], params)
        fits.append(program(x[k], target[k], params_k))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *fits)


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
    chunk_size Jacobians exist at a time. `fn` is a static argument of the compiled program: pass the same
    `fn` object to reuse it (a new closure each call compiles again).
    """
    apply = resolve_model(model, params)
    x = check_frames(x, model, name="x")
    if x.ndim != 2:
        raise ValueError(
            f"jacobian_stream takes one set of frames (nb_frames, nb_bins), got {x.shape}"
        )
    check_chunk(chunk_size)
    with jax.default_matmul_precision("highest"):
        return _stream_program(params, jnp.asarray(x), apply=apply, fn=fn, chunk=chunk_size)


# --------------------------------------------------------------------------------------------------
# Compiled programs (settings static)


@functools.partial(jax.jit, static_argnames=("mode",))
def _lstsq_program(x, target, ridge, *, mode):
    """One least-squares fit, or K over a leading axis of x and target (`over_fits`)."""
    one = functools.partial(_lstsq_single, mode=mode)
    return one(x, target, ridge) if x.ndim == 2 else over_fits(one, (0, 0, None))(x, target, ridge)


@functools.partial(jax.jit, static_argnames=("frame_jac", "chunk"))
def _jacobian_program(x, target, params, *, frame_jac, chunk):
    return _jacobian_single(x, target, params, frame_jac=frame_jac, chunk=chunk)


@functools.partial(jax.jit, static_argnames=("apply", "fn", "chunk"))
def _stream_program(params, x, *, apply, fn, chunk):
    return _stream_single(params, x, apply=apply, fn=fn, chunk=chunk)


# --------------------------------------------------------------------------------------------------
# Single fits (pure functions of arrays)


def _lstsq_single(x, target, ridge, *, mode):
    """One least-squares fit -> (C, relative L1 error, ridge used); `mode` as in `fit_mapping`'s ridge:
    "exact" (0: SVD lstsq), "ridge" (G + ridge tr(G)/N I) or "auto" (G + mu diag(G), mu from `ridge`)."""
    n = x.shape[-1]
    if mode == "exact":
        c = jnp.linalg.lstsq(x, target)[0].T
        return c, relative_l1(target, apply_matrix(c, x)), ridge
    gram = jnp.matmul(x.T, x, precision=HIGHEST)
    rhs = jnp.matmul(x.T, target, precision=HIGHEST)
    diag = jnp.diag(gram)
    if mode == "auto":
        # Jacobi scale d = sqrt(diag G) (1 for silent bins): the term mu d^2 is mu I on the scaled G.
        d = jnp.sqrt(jnp.where(diag > jnp.finfo(x.dtype).tiny, diag, 1.0))
    else:
        d = jnp.sqrt(diag + ridge * jnp.trace(gram) / n)
    g_s = gram / d[:, None] / d[None, :]
    rhs_s = rhs / d[:, None]

    def solve(r):
        """C^T for ridge r, and whether its Cholesky factor held (finite, every pivot^2 >= shift / 2)."""
        shift = r if mode == "auto" else r * jnp.trace(gram) / n / (d * d)  # the term on scaled G
        penalty = shift * d * d  # the term added to G's diagonal
        factor = cho_factor(g_s + jnp.diag(jnp.broadcast_to(shift, (n,))), lower=True)
        ct = cho_solve(factor, rhs_s) / d[:, None]
        # One step of iterative refinement on the data-space residual (more accurate than rhs - G C^T).
        fit_res = target - jnp.matmul(x, ct, precision=HIGHEST)
        res = jnp.matmul(x.T, fit_res, precision=HIGHEST) - penalty[:, None] * ct
        ct = ct + cho_solve(factor, res / d[:, None]) / d[:, None]
        pivots = jnp.diag(factor[0])
        ok = jnp.all(jnp.isfinite(ct)) & jnp.all(pivots * pivots >= 0.5 * shift)
        return ct, ok

    ct, ok = solve(ridge)
    if mode == "auto":
        # A breakdown (rank-deficient X, rounding in G beyond mu): mu grows tenfold, up to 1.
        def grow(state):
            r = state[0] * 10
            return (r, *solve(r))

        ridge, ct, ok = jax.lax.while_loop(lambda s: ~s[2] & (s[0] < 1), grow, (ridge, ct, ok))
    c = ct.T
    return c, relative_l1(target, apply_matrix(c, x)), ridge


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
    return jbar, spread, relative_l1(target, apply_matrix(jbar, x)), parts


@dataclasses.dataclass(frozen=True)
class _FrameJacobian:
    """One frame's Jacobian J = dy/dx `(N, N)` and its parts: the `frame_jac` of `_jacobian_single`.

    skip_filter (`dae_sf`, y = x ⊙ m(x)): J = diag(m) + x ⊙ dm/dx, parts {"mask": m, "mask_jacobian":
    x ⊙ dm/dx}; otherwise J = jacfwd of apply and no parts. Hashable: a static argument of the compiled
    program.
    """

    model: Any
    apply: Callable
    skip_filter: bool

    def __call__(self, params, v):
        if not self.skip_filter:
            return jax.jacfwd(lambda u: self.apply(params, u[None])[0])(v), {}

        def mask(params, v):
            return self.model.apply(params, v[None], method="mask")[0]

        m = mask(params, v)
        jm = jax.jacfwd(mask, argnums=1)(params, v)
        part = v[:, None] * jm
        return jnp.diag(m) + part, {"mask": m, "mask_jacobian": part}


def _stream_single(params, x, *, apply, fn, chunk):
    """fn(J_t) stacked over the frames of x, J_t by jacfwd of apply, `chunk` frames at a time."""
    t = x.shape[0]
    xs, _ = _chunks(x, min(chunk, t))
    jac = jax.vmap(jax.jacfwd(lambda u: apply(params, u[None])[0]))
    out = jax.lax.map(lambda xc: jax.vmap(fn)(jac(xc)), xs)
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:t], out)
