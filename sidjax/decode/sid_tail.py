"""Sampling a catalog SID after a prompt: one token per SID level, only along catalog edges.

GRPO's optional constrained tail (`config.grpo.constrained_tail`): the policy writes its
reasoning freely up to `</think>`, then the SID is sampled level by level from the policy's
distribution restricted to the allowed children (`SidTables`), so every rollout ends with a
real item. Log-probs returned are the full-vocabulary ones (log-softmax of logits /
temperature), the same quantity the trainer recomputes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sidjax.decode.beam import _candidates
from sidjax.decode.sid_tables import SidTables
from sidjax.model.config import ModelConfig
from sidjax.model.transformer import Transformer, prefill
from sidjax.train import distributed


@functools.partial(jax.jit, static_argnames=("config", "levels", "temperature"))
def _sample_tail(params, prompt, valid, child_tokens, child_nodes, rng, *, config: ModelConfig,
                 levels: int, temperature: float):
    module = Transformer(config)
    b, t = prompt.shape
    logits, cache = prefill(config, params, prompt, valid, t + levels)  # [B, V]
    node = jnp.zeros(b, jnp.int32)
    rows = jnp.arange(b)
    tokens, logps = [], []
    for level in range(levels):
        scale = temperature if temperature > 0 else 1.0
        logp = jax.nn.log_softmax(logits / scale)  # [B, V]
        lp, cand, kids = _candidates(logp, node, child_tokens, child_nodes, renormalize=False)
        if temperature > 0:
            choice = jax.random.categorical(jax.random.fold_in(rng, level), lp)
        else:
            choice = jnp.argmax(lp, -1)
        tok = cand[rows, choice]
        node = kids[rows, choice]
        tokens.append(tok)
        logps.append(lp[rows, choice])
        logits, cache = module.apply({"params": params}, tok[:, None], jnp.ones((b, 1), bool),
                                     cache=cache)
        logits = logits[:, 0]
    return jnp.stack(tokens, 1), jnp.stack(logps, 1)


def sample_sid_tail(config: ModelConfig, params, prompt_tokens, prompt_valid, tables: SidTables,
                    rng: jax.Array, temperature: float = 1.0, mesh=None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompts [B, T] -> sampled SID token ids [B, L] and their log-probs [B, L].

    With a mesh, rows are split over its batch axes; in a multi-process run each process
    passes its own rows (the same padded length T everywhere) and gets them back.
    """
    run = functools.partial(
        _sample_tail, params, child_tokens=np.asarray(tables.child_tokens),
        child_nodes=np.asarray(tables.child_nodes), rng=rng, config=config,
        levels=tables.levels, temperature=float(temperature))
    prompt_tokens = np.asarray(prompt_tokens, np.int32)
    prompt_valid = np.asarray(prompt_valid, bool)
    if mesh is None:
        return tuple(np.asarray(x) for x in run(prompt_tokens, prompt_valid))
    return distributed.run_on_rows(run, mesh, prompt_tokens, prompt_valid)
