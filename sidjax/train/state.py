"""The train state pytree and how it is created already sharded on the mesh."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sidjax.train import partition


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []; optimiser steps taken.
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2]; base key, folded with the step for each step's randomness.

    def rest(self) -> dict:
        """Everything but params, as checkpointed in the 'rest' item."""
        return {"step": self.step, "opt_state": self.opt_state, "rng": self.rng}


def state_shardings(abstract_state: TrainState, tx: optax.GradientTransformation,
                    rules: partition.Rules, mesh: Mesh) -> TrainState:
    """Shardings for every leaf: params by the rules, optimiser moments like their params."""
    specs = partition.param_specs(abstract_state.params, rules, mesh)
    param_shardings = partition.named_shardings(specs, mesh)
    replicated = NamedSharding(mesh, P())
    opt_shardings = optax.tree_map_params(
        tx, lambda _, sharding: sharding, abstract_state.opt_state, param_shardings,
        transform_non_params=lambda _: replicated,
    )
    return TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings,
                      rng=replicated)


def make_create_fn(init_params: Callable[[jax.Array], Any],
                   tx: optax.GradientTransformation) -> Callable[[jax.Array], TrainState]:
    def create(rng: jax.Array) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        params = init_params(init_rng)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), rng=state_rng)

    return create
