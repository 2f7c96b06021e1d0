"""What every mapping fit shares: `apply_matrix`, `relative_l1`, the model calling convention and input checks.

`ncajax.nca` (the iterative fits and `fit_mapping`) and `ncajax.nca` (least squares, the mean
Jacobian, `jacobian_stream`) both build on this module; `apply_matrix` and `relative_l1` are re-exported by
`ncajax.nca`, their public home.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _programs as programs
from . import _structure as analysis

HIGHEST = jax.lax.Precision.HIGHEST


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

    The result is hashable (and equal across calls) whenever the model is, so it keys compiled programs.
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
        program = programs.program(apply, (p_axis, 0), batched=x.ndim == 3, grouped=False)
        return program(params, x)
    target = check_frames(target, None, name="target", negative_ok=True)
    if target.shape != x.shape:
        raise ValueError(f"target shape {target.shape} differs from x shape {x.shape}")
    return jnp.asarray(target, x.dtype)
