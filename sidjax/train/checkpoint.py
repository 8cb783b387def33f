"""Orbax checkpoints of the train state, split so later stages can take params alone.

A checkpoint step holds three items:
  params: the model parameters (restored alone by `init_from` in a later stage),
  rest:   step, optimiser state and RNG,
  meta:   JSON: data-iterator position, early-stopping state, anything host-side.
Arrays are restored straight onto their target shardings (the abstract tree
carries them), so nothing is gathered on one device.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

CKPT_DIR = "ckpt"  # Latest checkpoints, for resuming.
BEST_DIR = "best"  # The best checkpoint by the eval metric, for the next stage.


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs that carry the target shardings, for sharded restore."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def make_manager(directory: str, keep: int, async_save: bool = True) -> ocp.CheckpointManager:
    """A manager for one directory. Its multi-process barriers carry a key of its own: the
    trainer's `ckpt/` and `best/` managers often save the same step at once, and orbax's
    default keys (`..._async_write_complete.<step>`) would collide.

    The step directory is created before `save` returns (the arrays are still written in
    the background): created asynchronously, a directory that cannot be made (disk full, a
    path that became a file) left orbax's signalling threads waiting 300 s for a signal
    that never came, holding the process at exit (measured: 5 minutes per failed save)."""
    directory = os.path.abspath(directory)
    key = hashlib.sha256(directory.encode()).hexdigest()[:12]
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
        async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=f"{os.path.basename(directory)}-{key}"),
    )
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, params: Any, rest: Any | None,
         meta: dict) -> None:
    items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if rest is not None:
        items["rest"] = ocp.args.StandardSave(rest)
    manager.save(step, args=ocp.args.Composite(**items), force=True)


def restore(manager: ocp.CheckpointManager, step: int, abstract_params: Any,
            abstract_rest: Any | None) -> tuple[Any, Any, dict]:
    """Restores (params, rest, meta) of `step`; rest is None when not asked for."""
    items = {"params": ocp.args.StandardRestore(abstract_params), "meta": ocp.args.JsonRestore()}
    if abstract_rest is not None:
        items["rest"] = ocp.args.StandardRestore(abstract_rest)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored["params"], restored.get("rest") if abstract_rest is not None else None, dict(
        restored["meta"] or {}
    )


def find_checkpoint_dir(path: str) -> str:
    """Accepts a manager directory or a workdir holding `best/` or `ckpt/`; returns the manager dir.

    A workdir prefers `best/` (the selected checkpoint of a finished stage) over `ckpt/`.
    """
    path = os.path.abspath(path)
    for candidate in (os.path.join(path, BEST_DIR), os.path.join(path, CKPT_DIR), path):
        if os.path.isdir(candidate) and _steps_in(candidate):
            return candidate
    raise FileNotFoundError(
        f"No checkpoint found at '{path}': expected a directory of numbered checkpoint steps, "
        f"or a workdir with '{BEST_DIR}/' or '{CKPT_DIR}/' inside. Check config.ckpt.init_from."
    )


def _steps_in(directory: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def load_params(path: str, abstract_params: Any | None = None) -> Any:
    """Params of the latest step under `path` (see find_checkpoint_dir).

    Without `abstract_params` the arrays come back as stored (single-device
    numpy-backed); with it they land on its shardings.
    """
    directory = find_checkpoint_dir(path)
    manager = ocp.CheckpointManager(directory)
    step = manager.latest_step()
    logging.info("Loading params from %s step %d", directory, step)
    if abstract_params is None:
        restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))
    else:
        restored = manager.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
        )
    manager.close()
    return restored["params"]
