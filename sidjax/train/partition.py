"""Partition specs for parameter pytrees, from one table of (path regex, spec) rules.

Each model keeps its sharding in one place: an ordered list of rules matched
against '/'-joined parameter paths (first match wins). A dimension whose size
does not divide by its mesh axes is left unsharded (logged), so tiny CPU models
run on any mesh without special cases.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import jax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

Rules = Sequence[tuple[str, P]]


def path_str(path: tuple[Any, ...]) -> str:
    """'/'-joined names of a jax tree path (dict keys, attribute names, indices)."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _fit_spec(spec: P, shape: tuple[int, ...], mesh: Mesh, name: str) -> P:
    """Drops mesh axes from dimensions they do not divide; pads/clips spec to the rank."""
    entries = list(spec)[: len(shape)]
    entries += [None] * (len(shape) - len(entries))
    fitted = []
    for dim, axes in zip(shape, entries):
        if axes is None:
            fitted.append(None)
            continue
        axes_tuple = axes if isinstance(axes, tuple) else (axes,)
        ways = math.prod(mesh.shape[a] for a in axes_tuple)
        if dim % ways:
            logging.info(
                "Parameter %s: dimension %d does not divide by mesh axes %s (%d); kept unsharded.",
                name, dim, axes_tuple, ways,
            )
            fitted.append(None)
        else:
            fitted.append(axes)
    return P(*fitted)


def param_specs(abstract_params: Any, rules: Rules, mesh: Mesh) -> Any:
    """A pytree of PartitionSpecs, one per parameter, from the first matching rule."""
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]

    def spec_for(path, leaf):
        name = path_str(path)
        for pattern, spec in compiled:
            if pattern.search(name):
                return _fit_spec(spec, tuple(leaf.shape), mesh, name)
        raise ValueError(
            f"Parameter '{name}' (shape {tuple(leaf.shape)}) matches no partition rule; add a "
            "rule for it to the model's rules table (use '.*' -> P() to replicate the rest)."
        )

    return jax.tree_util.tree_map_with_path(spec_for, abstract_params)


def named_shardings(specs: Any, mesh: Mesh) -> Any:
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))
