"""What every mapping fit shares: `apply_matrix`, `relative_l1`, the model calling convention, input checks
and `over_fits` (K fits in one program).

`_couplings` (the iterative fits and `fit_mapping`) and `_closed_forms` (least squares, the mean
Jacobian, `jacobian_stream`) both build on this module; `apply_matrix` is re-exported by `ncajax.nca`,
its public home.

Compiled programs are `jax.jit` functions with their settings as static arguments: JAX keeps one
compiled program per (static settings, shapes), so repeated calls with the same shapes do not retrace.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _structure as analysis

HIGHEST = jax.lax.Precision.HIGHEST
_CPU_GROUP_BYTES = 8 * 2**20


def apply_matrix(
    matrix: Float[Array, "*k nb_bins nb_bins"], x: Float[Array, "*k nb_frames nb_bins"]
) -> Float[Array, "*k nb_frames nb_bins"]:
    """Frames mapped by C: `x @ matrix.T`, batched over any leading K axes."""
    return jnp.matmul(x, jnp.swapaxes(matrix, -1, -2), precision=HIGHEST)


def relative_l1(
    y: Float[Array, "*k nb_frames nb_bins"], y_hat: Float[Array, "*k nb_frames nb_bins"]
) -> Float[Array, "*k"]:
    """`analysis.relative_l1` over the last two axes (frames, bins): one error per fit."""
    return analysis.relative_l1(y, y_hat, axis=(-2, -1))


def resolve_model(model: Any, params: Any) -> Callable:
    """apply(params, frames) -> frames for a flax module (its `apply`) or a bare callable f(frames).

    The result is hashable (and equal across calls) whenever the model is: a static argument of the
    compiled programs.
    """
    if isinstance(model, nn.Module):
        if params is None:
            raise ValueError(
                f"{type(model).__name__} is a flax module and needs its params "
                "(model.init(...) or a restored checkpoint); params=None is for bare callables"
            )
        return model.apply
    if not callable(model):
        raise ValueError(f"model must be a flax module or a callable, got {type(model).__name__}")
    if params is not None:
        raise ValueError(
            "params were given for a bare callable; pass params=None (close over them) or a flax module"
        )
    return _CallableApply(model)


@dataclasses.dataclass(frozen=True)
class _CallableApply:
    """A bare callable f(frames) in the module calling convention apply(params, frames)."""

    f: Callable

    def __call__(self, params, x):
        return self.f(x)


def check_frames(x, model, *, name: str, negative_ok: bool = False) -> np.ndarray:
    """x as a finite floating NumPy array `(nb_frames, nb_bins)` or `(K, nb_frames, nb_bins)` with at
    least one frame, the model's n_bins (when it declares one) and, unless negative_ok, no negative value.
    """
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


def check_chunk(chunk_size) -> None:
    """chunk_size (frames per Jacobian chunk) must be a positive integer."""
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def check_fit_frames(x, model, params, params_axis) -> jax.Array:
    """The frames x checked (see `fit_common.check_frames`), with params_axis=0 matched against K."""
    x = check_frames(x, model, name="x")
    if params_axis is not None:
        n_fits = x.shape[0] if x.ndim == 3 else None
        if n_fits is None:
            raise ValueError("params_axis=0 needs x with a leading K axis (K, nb_frames, nb_bins)")
        if params is None:
            raise ValueError("params_axis=0 needs params with a leading K axis; params is None")
        for leaf in jax.tree_util.tree_leaves(params):
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n_fits:
                raise ValueError(
                    f"params_axis=0 but a params leaf has shape {jnp.shape(leaf)}, not a leading axis "
                    f"of K={n_fits} (x.shape[0]); stack K params or pass params_axis=None"
                )
    return jnp.asarray(x)


def model_target(apply, params, x, target, p_axis) -> jax.Array:
    """The given target checked against x, or by default the model's output on x (one program)."""
    if target is None:
        return _model_output(params, x, apply=apply, p_axis=p_axis)
    target = check_frames(target, None, name="target", negative_ok=True)
    if target.shape != x.shape:
        raise ValueError(f"target shape {target.shape} differs from x shape {x.shape}")
    return jnp.asarray(target, x.dtype)


@functools.partial(jax.jit, static_argnames=("apply", "p_axis"))
def _model_output(params, x, *, apply, p_axis):
    """apply(params, x), vmapped over a leading K axis of x (and of params when p_axis is 0)."""
    if x.ndim == 2:
        return apply(params, x)
    return jax.vmap(apply, in_axes=(p_axis, 0))(params, x)


def over_fits(single: Callable, in_axes: tuple) -> Callable:
    """K independent fits of `single` in one program: `jax.vmap` on accelerators; on CPU `lax.map` over
    groups of fits whose working set (~4 N^2 + 3 F N floats each) fits in ~8 MB of cache.

    vmapping all K fits at once on CPU multiplies the elementwise memory traffic (Adam, ReLU gates) by K
    and falls out of cache: 8 vmapped fits ran at 0.80x the throughput of 8 sequential ones, grouped fits at
    1.0x (benchmarks/RESULTS.md). Every group is still vmapped and the whole loop is one jitted program.
    The first argument is x `(K, nb_frames, nb_bins)`. Call it inside a jitted function (it reads the
    backend and group size when traced).
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
