"""Constrained beam search over valid SIDs, on device, in one jitted function.

After a prompt (which may end with a reasoning block and the separator), expand
exactly the SID levels with beam size K, then the forced end tokens, and return all K
SIDs and their scores per example. Every returned SID is a catalog SID: a beam can
only extend along `SidTables` edges.

Scoring matches the method's evaluation (HF generate with prefix_allowed_tokens_fn,
length_penalty 0): log-softmax over the FULL vocabulary, then restricted to allowed
tokens, summed over the SID tokens and the end tokens. `renormalize=True` instead
normalises over the allowed tokens at each step (forced end tokens then add 0).
When a catalog has fewer SIDs than K (or a prefix fewer children than needed), the
surplus beams come back with score -inf and valid=False, never as invalid SIDs.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from sidjax.decode.sid_tables import SidTables
from sidjax.model.config import ModelConfig
from sidjax.model.transformer import KVCache, Transformer, init_cache, prefill

NEG_INF = -jnp.inf


@dataclasses.dataclass
class BeamResult:
    tokens: np.ndarray  # [B, K, L] SID token ids, best first
    scores: np.ndarray  # [B, K]
    valid: np.ndarray  # [B, K] False for surplus beams (fewer valid SIDs than K)

    def sid_strings(self, tables: SidTables) -> list[list[str | None]]:
        return [[tables.leaf_sids[tuple(int(t) for t in toks)] if ok else None
                 for toks, ok in zip(row, valid)]
                for row, valid in zip(self.tokens, self.valid)]


def _gather_cache(cache: KVCache, rows: jax.Array) -> KVCache:
    return KVCache(k=cache.k[:, rows], v=cache.v[:, rows], mask=cache.mask[rows],
                   index=cache.index)


def _candidates(logp, nodes, child_tokens, child_nodes, renormalize: bool):
    """logp [N, V], nodes [N] (-1 = dead beam) -> allowed (logp, token, node), each [N, C]."""
    safe = jnp.maximum(nodes, 0)
    tokens, kids = child_tokens[safe], child_nodes[safe]  # [N, C]
    ok = (tokens >= 0) & (nodes >= 0)[:, None]
    lp = jnp.take_along_axis(logp, jnp.maximum(tokens, 0), axis=1)
    lp = jnp.where(ok, lp, NEG_INF)
    if renormalize:
        norm = jax.nn.logsumexp(lp, axis=1, keepdims=True)
        lp = jnp.where(ok, lp - jnp.where(jnp.isfinite(norm), norm, 0.0), NEG_INF)
    return lp, tokens, kids


@functools.partial(jax.jit, static_argnames=("config", "beam", "levels", "end_tokens",
                                             "renormalize"))
def _beam_search(params, prompt, valid, child_tokens, child_nodes, *, config: ModelConfig,
                 beam: int, levels: int, end_tokens: tuple[int, ...], renormalize: bool):
    module = Transformer(config)
    b, t = prompt.shape
    # The prompt's cache is kept once per example and shared by its beams (`prefix`); each
    # beam's own cache holds only the tokens it appends, so reordering beams moves little.
    logits, prompt_cache = prefill(config, params, prompt, valid, t)
    logp = jax.nn.log_softmax(logits)  # [B, V]

    lp, tokens, kids = _candidates(logp, jnp.zeros(b, jnp.int32), child_tokens, child_nodes,
                                   renormalize)
    if lp.shape[1] < beam:  # Fewer root children than beams: pad with dead candidates.
        pad = beam - lp.shape[1]
        lp = jnp.pad(lp, ((0, 0), (0, pad)), constant_values=NEG_INF)
        tokens = jnp.pad(tokens, ((0, 0), (0, pad)), constant_values=-1)
        kids = jnp.pad(kids, ((0, 0), (0, pad)), constant_values=-1)
    scores, idx = jax.lax.top_k(lp, beam)  # [B, K]
    tok = jnp.take_along_axis(tokens, idx, 1)
    node = jnp.where(jnp.isfinite(scores), jnp.take_along_axis(kids, idx, 1), -1)
    seq = tok[..., None]  # [B, K, 1]
    own_slots = levels - 1 + (0 if renormalize else len(end_tokens))
    cache = init_cache(config, b * beam, max(own_slots, 1))
    step_valid = jnp.ones((b * beam, 1), bool)

    for _ in range(1, levels):
        logits, cache = module.apply({"params": params}, jnp.maximum(tok, 0).reshape(-1, 1),
                                     step_valid, cache=cache, prefix=prompt_cache)
        logp = jax.nn.log_softmax(logits[:, 0])  # [B*K, V]
        lp, tokens, kids = _candidates(logp, node.reshape(-1), child_tokens, child_nodes,
                                       renormalize)
        width = lp.shape[1]
        total = (scores.reshape(-1, 1) + lp).reshape(b, beam * width)  # [B, K*C]
        scores, flat = jax.lax.top_k(total, beam)
        parent = flat // width
        tok = jnp.take_along_axis(tokens.reshape(b, -1), flat, 1)
        node = jnp.where(jnp.isfinite(scores),
                         jnp.take_along_axis(kids.reshape(b, -1), flat, 1), -1)
        seq = jnp.concatenate([jnp.take_along_axis(seq, parent[..., None], 1), tok[..., None]],
                              axis=-1)
        cache = _gather_cache(cache, (jnp.arange(b)[:, None] * beam + parent).reshape(-1))

    if end_tokens and not renormalize:
        # The forced end tokens ("\n", then end-of-turn) in one pass: feeding the last SID
        # token and all but the last end token scores every end token at once.
        # (Renormalised scoring adds 0 for forced tokens and skips this pass.)
        ends = jnp.asarray(end_tokens, jnp.int32)
        feed = jnp.concatenate([jnp.maximum(tok, 0).reshape(-1, 1),
                                jnp.broadcast_to(ends[:-1], (b * beam, len(ends) - 1))], 1)
        logits, _ = module.apply({"params": params}, feed, jnp.ones(feed.shape, bool),
                                 cache=cache, prefix=prompt_cache)
        logp = jax.nn.log_softmax(logits)  # [B*K, E, V]
        picked = logp[:, jnp.arange(len(end_tokens)), ends]  # [B*K, E]
        scores = scores + picked.sum(1).reshape(b, beam)
    # The beam set was fixed at the last SID level (forced tokens never branch, as in HF
    # beam search); rank it by the final scores.
    order = jnp.argsort(-scores, axis=1, stable=True)
    scores = jnp.take_along_axis(scores, order, 1)
    seq = jnp.take_along_axis(seq, order[..., None], 1)
    return seq, scores, jnp.isfinite(scores)


def sid_beam_search(config: ModelConfig, params, prompt_tokens, tables: SidTables, beam: int,
                    prompt_valid=None, renormalize: bool = False) -> BeamResult:
    """All `beam` best catalog SIDs per example (left-padded int32 prompts [B, T])."""
    prompt = jnp.asarray(prompt_tokens, jnp.int32)
    valid = jnp.ones(prompt.shape, bool) if prompt_valid is None else jnp.asarray(prompt_valid,
                                                                                 bool)
    seq, scores, ok = _beam_search(
        params, prompt, valid, jnp.asarray(tables.child_tokens), jnp.asarray(tables.child_nodes),
        config=config, beam=int(beam), levels=tables.levels, end_tokens=tables.end_tokens,
        renormalize=renormalize)
    return BeamResult(tokens=np.asarray(seq), scores=np.asarray(scores), valid=np.asarray(ok))
