"""Multi-process (multi-host) helpers: who writes files, how host data meets global arrays.

sidjax runs SPMD: every process executes the same program and calls every jitted function
in the same order. The rules the stages follow, all through this module:

- Files (side outputs, caches, exports, reports) are written by process 0 only, inside
  `main_writes(...)`, which ends with a barrier, so every process can read them right after.
  The workdir must be shared by all processes (NFS, a shared disk, or one machine).
- Host work whose result other processes need (a trained tokenizer, tokenisation, SIDs) is
  done by process 0 and written to the workdir, then read back by everyone; small results
  go through `broadcast`.
- Per-row host work (rollout rewards, evaluation) is sharded: each process handles its
  `process_share` of the rows and `gather_rows` / `gather_objects` collect them in order.
- Global arrays are built from per-process pieces with `mesh.global_rows`, and read back
  to numpy with `local_rows` (this process's rows) or `to_host` (the whole array,
  everywhere); `run_on_rows` does both around a function call.

With one process every helper reduces to the plain single-host operation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from sidjax.train.mesh import batch_divisor, global_rows


def is_main() -> bool:
    """True on the process that writes files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier of the same name."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def main_writes(name: str) -> Iterator[bool]:
    """`with main_writes("sid-data") as writer: if writer: ...write...`; then a barrier.

    Yields True on process 0 only. Every process must enter it (it ends in a barrier), so
    decide whether to enter with `exists`, never with a per-process check of the file.
    """
    yield is_main()
    barrier(f"sidjax:{name}")


def exists(path: str) -> bool:
    """Whether `path` exists, as process 0 sees it, on every process (a collective).

    A per-process `os.path.exists` races: a fast process 0 may already have written the
    file when a slow process looks, and the two would then take different branches.
    """
    return bool(broadcast(os.path.exists(path)))


def finished_summary(path: str, stage: str) -> dict | None:
    """The JSON summary a finished stage left at `path` (a rerun returns it and skips the
    stage), or None when the stage has not finished. Every process reads the same file."""
    if not exists(path):
        return None
    logging.info("%s already done (%s); skipping.", stage, path)
    with open(path) as f:
        return json.load(f)


def broadcast(obj: Any) -> Any:
    """Process 0's value of a picklable object, on every process."""
    if jax.process_count() == 1:
        return obj
    payload = np.frombuffer(pickle.dumps(obj), np.uint8) if is_main() else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int64(payload.size)))
    buffer = np.zeros(size, np.uint8)
    if is_main():
        buffer[:] = payload
    data = multihost_utils.broadcast_one_to_all(buffer)
    return pickle.loads(np.asarray(data, np.uint8).tobytes())


def global_max(value: int) -> int:
    """The largest of every process's `value` (e.g. the padded length of a sharded batch)."""
    if jax.process_count() == 1:
        return int(value)
    return int(np.max(multihost_utils.process_allgather(np.int64(value))))


def to_host(tree: Any) -> Any:
    """Full numpy copies of (possibly multi-process) arrays, on every process.

    A collective when an array spans processes: every process must call it.
    """

    def get(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable or x.sharding.is_fully_replicated:
            return np.asarray(jax.device_get(x))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def _local_row_slices(sharding: NamedSharding, shape: Sequence[int]) -> list[slice]:
    """The distinct leading-axis slices this process's devices hold, in row order."""
    seen = {}
    for index in sharding.addressable_devices_indices_map(tuple(shape)).values():
        rows = index[0] if index else slice(None)
        start, stop, _ = rows.indices(shape[0])
        seen[(start, stop)] = None
    return [slice(a, b) for a, b in sorted(seen)]


def local_row_range(sharding: NamedSharding, shape: Sequence[int]) -> tuple[int, int]:
    """[start, stop) of the global rows this process holds (they must be contiguous)."""
    slices = _local_row_slices(sharding, shape)
    for a, b in zip(slices, slices[1:]):
        if a.stop != b.start:
            raise ValueError(
                f"Process {jax.process_index()} holds non-contiguous rows {slices} of a batch "
                f"sharded as {sharding.spec}; build the mesh with jax.make_mesh (sidjax's "
                "make_mesh), which keeps each process's devices together.")
    return slices[0].start, slices[-1].stop


def local_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded array, as numpy, in global row order."""
    if x.is_fully_addressable:
        return np.asarray(x)
    local_row_range(x.sharding, x.shape)  # Raises when the rows are not contiguous.
    shards = {}
    for shard in x.addressable_shards:
        rows = shard.index[0] if shard.index else slice(None)
        shards.setdefault(rows.indices(x.shape[0])[0], shard.data)
    pieces = [np.asarray(shards[k]) for k in sorted(shards)]
    return np.concatenate(pieces, 0) if len(pieces) > 1 else pieces[0]


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Every process's rows (equal counts), concatenated in process order, on every process."""
    local = np.asarray(local)
    if jax.process_count() == 1:
        return local
    return np.asarray(multihost_utils.process_allgather(local, tiled=True))


def gather_objects(items: list) -> list:
    """Every process's list of picklable objects, concatenated in process order."""
    if jax.process_count() == 1:
        return list(items)
    payload = np.frombuffer(pickle.dumps(items), np.uint8)
    size = global_max(payload.size)
    buffer = np.zeros(size + 8, np.uint8)
    buffer[:8] = np.frombuffer(np.int64(payload.size).tobytes(), np.uint8)
    buffer[8:8 + payload.size] = payload
    gathered = np.asarray(multihost_utils.process_allgather(buffer))  # [P, size + 8]
    out = []
    for row in gathered:
        n = int(np.frombuffer(row[:8].tobytes(), np.int64)[0])
        out += pickle.loads(row[8:8 + n].tobytes())
    return out


def process_share(items: Sequence) -> Sequence:
    """This process's contiguous share of `items` (ceil(n / processes) each; the last
    processes may get fewer, or none). `gather_*` of the shares restores the order."""
    per = -(-len(items) // jax.process_count())
    return items[jax.process_index() * per:(jax.process_index() + 1) * per]


def run_on_rows(fn: Callable[..., Any], mesh: Mesh, *local: np.ndarray) -> Any:
    """Calls `fn(*global_arrays)` on row-sharded global arrays built from each process's rows.

    Each process passes its own rows (any number, the same on every process or not): they
    are padded (by repeating a row) to a common count that splits over the mesh's batch
    shards, and the outputs' leading axes come back as this process's rows, padding
    removed, as numpy. Outputs must be batch-major arrays (a pytree of them). Every process
    must call it: with one process it is a `device_put` onto the batch sharding.
    """
    n = int(local[0].shape[0])
    ways = batch_divisor(mesh)
    step = ways // math.gcd(ways, jax.process_count())  # rows * processes % ways == 0
    rows = max(-(-global_max(n) // step) * step, step)
    padded = []
    for x in local:
        x = np.asarray(x)
        if rows > n:
            filler = np.repeat(x[:1], rows - n, 0) if n else np.zeros(
                (rows - n,) + x.shape[1:], x.dtype)
            x = np.concatenate([x, filler], 0)
        padded.append(global_rows(x, mesh))
    with jax.set_mesh(mesh):
        out = fn(*padded)
    return jax.tree.map(lambda y: local_rows(y)[:n], out)
