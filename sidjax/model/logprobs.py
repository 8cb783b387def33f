"""Per-token log-probabilities of given tokens: the quantity SFT and GRPO losses are built on."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sidjax.model.config import ModelConfig
from sidjax.model.transformer import Transformer


def token_logprobs(config: ModelConfig, params, tokens: jax.Array, valid: jax.Array,
                   temperature: float = 1.0) -> jax.Array:
    """tokens [B, T], valid [B, T] -> logp [B, T]: logp[:, t] = log p(tokens[:, t] | < t).

    Column 0 (no context) is 0. `temperature` divides the logits first, matching the
    sampler's log-probs for GRPO's importance ratios.
    """
    logits, _ = Transformer(config).apply({"params": params}, tokens, valid)  # [B, T, V] f32
    logits = logits[:, :-1] / temperature
    labels = tokens[:, 1:]
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    logp = picked - jax.nn.logsumexp(logits, axis=-1)  # [B, T-1]
    return jnp.pad(logp, ((0, 0), (1, 0)))
