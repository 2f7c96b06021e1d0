"""Compiled programs of the mapping fits: built once per static setting, K fits grouped in one program.

`program(single, in_axes, batched=..., **options)` is the jitted `single(*args, **options)`: one fit, or
K independent fits over the axes `in_axes` (`over_fits`: vmapped on accelerators, vmapped groups on CPU).
Programs are cached at module level by (single, in_axes, batched, grouped, options), so repeated calls
with the same shapes and settings reuse one compiled program instead of tracing again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

_CPU_GROUP_BYTES = 8 * 2**20


def program(
    single: Callable,
    in_axes: tuple = (),
    *,
    batched: bool = False,
    grouped: bool = True,
    **options,
) -> Callable:
    """The jitted program of `single(*args, **options)`, built once per setting (see `cached`).

    batched: K fits with their K axis on the arguments whose in_axes entry is 0 (None: shared by all
    fits); grouped=True runs them through `over_fits`, False through one plain `jax.vmap`. The options
    are static (hashable, bound before tracing); `single` and the options form the cache key.
    """
    return cached(_build, (single, in_axes, batched, grouped, tuple(sorted(options.items()))))


def _build(statics):
    single, in_axes, batched, grouped, options = statics
    one = functools.partial(single, **dict(options))
    if not batched:
        return jax.jit(one)
    return jax.jit(over_fits(one, in_axes) if grouped else jax.vmap(one, in_axes=in_axes))


def cached(builder: Callable, statics: tuple, **closure) -> Callable:
    """The jitted program `builder(statics, **closure)`, built once per `statics` (LRU of 64).

    When statics or closure cannot be hashed (an unhashable callable), the program is built uncached.
    """
    items = tuple(sorted(closure.items()))
    try:
        hash((statics, items))
    except TypeError:  # an unhashable callable: compile without caching
        return builder(statics, **closure)
    return _program_cache(builder, statics, items)


@functools.lru_cache(maxsize=64)
def _program_cache(builder, statics, closure_items):
    return builder(statics, **dict(closure_items))


def over_fits(single: Callable, in_axes: tuple) -> Callable:
    """K independent fits of `single` in one program: `jax.vmap` on accelerators; on CPU `lax.map` over
    groups of fits whose working set (~4 N^2 + 3 F N floats each) fits in ~8 MB of cache.

    vmapping all K fits at once on CPU multiplies the elementwise memory traffic (Adam, ReLU gates) by K
    and falls out of cache: 8 vmapped fits ran at 0.80x the throughput of 8 sequential ones, grouped fits at
    1.0x (benchmarks/RESULTS.md). Every group is still vmapped and the whole loop is one jitted program.
    The first argument is x `(K, nb_frames, nb_bins)`.
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
