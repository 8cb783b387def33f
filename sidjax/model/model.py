"""`Model`: a ModelConfig plus its params, callable as `model(tokens) -> logits`.

The object notebooks and the HF loader hand around; training code uses the
pure pieces (`Transformer(config).apply`, `init_params`) directly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from sidjax.model.config import ModelConfig
from sidjax.model.sharding import PARTITION_RULES
from sidjax.model.transformer import Transformer
from sidjax.train import partition


def init_params(config: ModelConfig, rng: jax.Array) -> Any:
    """Random params (HF-style N(0, 0.02) weights, unit norms); traceable under jit."""
    return Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32))["params"]


def abstract_params(config: ModelConfig) -> Any:
    return jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0)))


def param_shardings(config: ModelConfig, mesh: Mesh) -> Any:
    specs = partition.param_specs(abstract_params(config), PARTITION_RULES, mesh)
    return partition.named_shardings(specs, mesh)


def place_params(config: ModelConfig, params: Any, mesh: Mesh | None) -> Any:
    """Host (numpy) params -> device arrays: on their shardings over `mesh`, or on the
    default device without one. For params edited on the host (e.g. new SID rows)."""
    if mesh is not None:
        return jax.device_put(params, param_shardings(config, mesh))
    return jax.tree.map(jnp.asarray, params)


def init_sharded_params(config: ModelConfig, rng: jax.Array, mesh: Mesh) -> Any:
    """Random params created directly on their shardings (never whole on one device)."""
    return jax.jit(functools.partial(init_params, config),
                   out_shardings=param_shardings(config, mesh))(rng)


@functools.lru_cache(maxsize=16)
def _forward(config: ModelConfig):
    module = Transformer(config)

    @jax.jit
    def forward(params, tokens, valid):
        return module.apply({"params": params}, tokens, valid)[0]

    return forward


@dataclasses.dataclass
class Model:
    config: ModelConfig
    params: Any
    mesh: Mesh | None = None

    def __call__(self, tokens, valid=None) -> jax.Array:
        """tokens int32 [B, T] (valid [B, T], 1 = real token) -> float32 logits [B, T, V]."""
        tokens = jnp.asarray(tokens, jnp.int32)
        valid = jnp.ones(tokens.shape, bool) if valid is None else jnp.asarray(valid, bool)
        if self.mesh is None:
            return _forward(self.config)(self.params, tokens, valid)
        with jax.set_mesh(self.mesh):
            return _forward(self.config)(self.params, tokens, valid)
