"""The SFT loss: token-mean cross-entropy over supervised tokens, with a per-task breakdown."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from sidjax.model.config import ModelConfig
from sidjax.model.logprobs import token_logprobs


def lm_loss(config: ModelConfig, task_names: Sequence[str], params, batch, rng=None):
    """-> (loss_sum, (supervised token count, {"loss/<task>": (sum, count)})).

    batch: tokens [B, T], valid [B, T], loss_mask [B, T] (token t is a label), task [B].
    Returning sums makes micro-batch accumulation equal the global token mean (HF's
    token-level mean over all supervised tokens, as the method trains). `rng` drives the
    model's dropout (config.dropout), if any.
    """
    logp = token_logprobs(config, params, batch["tokens"], batch["valid"],
                          dropout_rng=rng)  # [B, T]
    mask = (batch["loss_mask"] & batch["valid"]).astype(jnp.float32)
    nll = -logp * mask  # [B, T]
    per_row, count_row = nll.sum(1), mask.sum(1)  # [B]
    metrics = {}
    for i, name in enumerate(task_names):
        hit = (batch["task"] == i).astype(jnp.float32)
        metrics[f"loss/{name}"] = ((per_row * hit).sum(), (count_row * hit).sum())
    return nll.sum(), (mask.sum(), metrics)
