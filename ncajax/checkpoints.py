"""Orbax checkpointing in one place: a `CheckpointManager` with `args=`, config checked on restore.

Each checkpoint step holds two items: `state` (any pytree, `StandardSave`) and `config` (`JsonSave`). The
manager keeps the latest checkpoint and the best one by a metric (`preservation_policy`); Orbax writes to a
temporary directory and renames it when complete, so a kill during a save leaves the previous checkpoint
usable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from .config import mismatch

__all__ = [
    "check_config",
    "manager",
    "restore",
    "restore_config",
    "save",
]


def manager(directory: Path, *, best_metric: str | None = "val_loss") -> ocp.CheckpointManager:
    """A CheckpointManager at `directory` keeping the newest step and the best by `best_metric`
    (lower is better); saves are synchronous, so a returned `save` is on disk."""
    policies: list[Any] = [pp.LatestN(n=1)]
    if best_metric is not None:
        policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric], reverse=True, n=1))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=False,
        create=True,
    )
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for args in (ocp.args.StandardSave, ocp.args.StandardRestore):
        registry.add("state", args, ocp.StandardCheckpointHandler)
    for args in (ocp.args.JsonSave, ocp.args.JsonRestore):
        registry.add("config", args, ocp.JsonCheckpointHandler)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options, handler_registry=registry)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, config: dict,
         metrics: dict | None = None) -> None:
    mngr.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)),
        metrics=metrics,
    )
    mngr.wait_until_finished()


def restore_config(mngr: ocp.CheckpointManager, step: int) -> dict:
    out = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return out["config"]


def check_config(expected: dict, found: dict, where: str) -> None:
    """Raise ValueError naming every field where a checkpoint's config differs from the expected one."""
    diff = mismatch(json.loads(json.dumps(expected)), found)
    if diff:
        raise ValueError(
            f"checkpoint {where} was written with a different configuration: {'; '.join(diff)}. "
            "Use the configuration it was trained with, or point to the matching run directory."
        )


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any, expected_config: dict) -> Any:
    """Restore `state` at `step` into the structure/shapes/dtypes of `abstract_state` (e.g. from
    `jax.eval_shape`), after checking the stored config equals `expected_config`."""
    check_config(expected_config, restore_config(mngr, step), f"{mngr.directory}/{step}")
    _check_param_shapes(mngr, step, abstract_state)
    try:
        out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"checkpoint {mngr.directory}/{step} does not match the expected parameter structure "
            f"or shapes ({err}). It was written by another model or size."
        ) from err
    return out["state"]


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _param_shapes(tree) -> dict[str, tuple]:
    """`{"encoder_0/kernel": shape, ...}` of the leaves under a top-level `params` entry."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if path and _key_name(path[0]) == "params":
            out["/".join(_key_name(k) for k in path[1:])] = tuple(leaf.shape)
    return out


def _check_param_shapes(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
    """Compare the stored params' names and shapes (the checkpoint's metadata) with the expected ones
    before restoring.

    A mismatch then raises one clear ValueError listing the differing layers, instead of Orbax
    failing half-way through a restore (which leaves orphaned async reads behind).
    """
    step_dir = f"{mngr.directory}/{step}"
    expected = _param_shapes(abstract_state)
    if not expected:
        return
    try:
        meta = mngr.item_metadata(step)["state"]
        stored = _param_shapes(getattr(meta, "tree", meta))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return  # unreadable metadata: the restore itself reports the problem
    diff = [f"{k}: in the model, not in the checkpoint" for k in sorted(set(expected) - set(stored))]
    diff += [f"{k}: in the checkpoint, not in the model" for k in sorted(set(stored) - set(expected))]
    diff += [
        f"{k}: checkpoint shape {stored[k]}, model shape {expected[k]}"
        for k in sorted(set(stored) & set(expected))
        if stored[k] != expected[k]
    ]
    if diff:
        raise ValueError(
            f"checkpoint {step_dir} does not match the expected parameter structure or shapes "
            f"({'; '.join(diff[:6])}). It was written by another model or size: restore it with "
            "the model configuration it was trained with."
        )
