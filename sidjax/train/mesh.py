"""The one device mesh every stage uses, and helpers to put data on it.

Axes are always ('data', 'fsdp', 'tensor'). The batch is split over data and
fsdp (fsdp also splits weights); tensor splits weights within a layer. Sizes
come from `config.mesh.shape`, where -1 means "all devices not used by the
other axes".
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
# The batch dimension is split over every axis that holds a different slice of data.
BATCH_AXES = ("data", "fsdp")


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Turns {'data': -1, 'fsdp': 2, 'tensor': 1} into concrete sizes for `num_devices`."""
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(
            f"config.mesh.shape has unknown axes {sorted(unknown)}; the mesh axes are {MESH_AXES}."
        )
    sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
    free = [i for i, s in enumerate(sizes) if s == -1]
    if len(free) > 1:
        raise ValueError(
            f"config.mesh.shape={dict(shape)} has more than one -1; at most one axis can take "
            "'the rest of the devices'."
        )
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"config.mesh.shape={dict(shape)}: sizes must be positive or -1.")
    fixed = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"config.mesh.shape={dict(shape)}: the fixed axes use {fixed} devices, which does "
                f"not divide the {num_devices} available devices."
            )
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"config.mesh.shape={dict(shape)} needs {math.prod(sizes)} devices but "
            f"{num_devices} are available; use -1 on one axis or change the sizes."
        )
    return tuple(sizes)


def make_mesh(shape: Mapping[str, int], devices: Any = None) -> Mesh:
    """Builds the ('data', 'fsdp', 'tensor') mesh over all (or the given) devices."""
    devices = jax.devices() if devices is None else list(devices)
    sizes = resolve_mesh_shape(shape, len(devices))
    return jax.make_mesh(
        sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def batch_spec(ndim: int = 1) -> P:
    """Partition spec for an array whose leading dimension is the batch."""
    return P(BATCH_AXES, *([None] * (ndim - 1)))


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(ndim))


def batch_divisor(mesh: Mesh) -> int:
    """How many ways the global batch is split: it must be a multiple of this."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def make_global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Builds global arrays (batch-sharded) from this process's rows of the batch.

    Each process passes its own `global_batch // process_count` rows; the result
    has the global batch size on every process. Nested dicts (GRPO's length parts) map
    leaf by leaf.
    """
    return jax.tree.map(lambda local: global_rows(local, mesh), dict(local_batch))


def global_rows(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """One batch-sharded global array whose rows are every process's `local` rows, in process
    order (each process passes the same number)."""
    local = np.asarray(local)
    shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    return jax.make_array_from_process_local_data(batch_sharding(mesh, local.ndim), local, shape)


def shard_activation(x: jax.Array, spec: P) -> jax.Array:
    """Constrains an activation's sharding inside jit; does nothing without a mesh.

    Model code calls this with specs over the mesh axis names so the same code
    runs unsharded (no mesh set) and sharded (under `jax.set_mesh(mesh)`).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, spec)
