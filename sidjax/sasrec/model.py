"""SASRec (Kang and McAuley, ICDM 2018): causal self-attention over item ids.

The standard ID-based sequential baseline the generative models are judged against
(shared/docs/baselines.md). Item ids are shifted by one so 0 is padding; histories are
left-padded to `max_len`, so the last position is always the newest item. Each block is
the paper's: layer-normed queries, single- or multi-head causal attention with a
residual, then a two-layer point-wise feed-forward network with a residual; dropout on
embeddings, attention weights and both sublayers. The last position's output is dotted
with every item embedding (shared input/output table) to score the next item.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    num_items: int  # Catalog size; the embedding table has num_items + 1 rows (0 = pad).
    max_len: int = 10
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2


class _Block(nn.Module):
    config: SASRecConfig

    @nn.compact
    def __call__(self, x, attn_mask, keep, deterministic: bool):  # x [B, L, H]
        c = self.config
        q = nn.LayerNorm(epsilon=1e-8, name="attn_norm")(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=c.num_heads, qkv_features=c.hidden, dropout_rate=c.dropout,
            deterministic=deterministic, name="attn")(q, x, mask=attn_mask)
        x = q + nn.Dropout(c.dropout)(h, deterministic=deterministic)
        y = nn.LayerNorm(epsilon=1e-8, name="ffn_norm")(x)
        h = nn.Dense(c.hidden, name="ffn_in")(y)
        h = nn.Dropout(c.dropout)(nn.relu(h), deterministic=deterministic)
        h = nn.Dense(c.hidden, name="ffn_out")(h)
        x = y + nn.Dropout(c.dropout)(h, deterministic=deterministic)
        return x * keep  # Padding positions stay zero.


class SASRec(nn.Module):
    config: SASRecConfig

    @nn.compact
    def __call__(self, seq, deterministic: bool = True):
        """seq: [B, L] int32 shifted item ids (0 = padding) -> hidden states [B, L, H]."""
        c = self.config
        items = self.param("item_emb", nn.initializers.normal(c.hidden ** -0.5),
                           (c.num_items + 1, c.hidden))
        positions = self.param("pos_emb", nn.initializers.normal(c.hidden ** -0.5),
                               (c.max_len, c.hidden))
        keep = (seq > 0)[..., None].astype(jnp.float32)  # [B, L, 1]
        x = items[seq] * jnp.sqrt(float(c.hidden)) + positions[None, -seq.shape[1]:]
        x = nn.Dropout(c.dropout)(x, deterministic=deterministic) * keep
        length = seq.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))  # [L, L]
        attn_mask = causal[None, None] & (seq > 0)[:, None, None, :]  # [B, 1, L, L]
        # A padded query row attends to nothing; let it see itself so softmax stays finite.
        attn_mask = attn_mask | jnp.eye(length, dtype=bool)[None, None]
        for i in range(c.num_blocks):
            x = _Block(c, name=f"block_{i}")(x, attn_mask, keep, deterministic)
        return nn.LayerNorm(epsilon=1e-8, name="final_norm")(x)


def item_logits(config: SASRecConfig, params, seq, deterministic: bool = True,
                rng: jax.Array | None = None):
    """-> logits over the real items (ids 1..N shifted back to 0..N-1): [B, L, N]."""
    rngs = None if rng is None else {"dropout": rng}
    hidden = SASRec(config).apply({"params": params}, seq, deterministic, rngs=rngs)
    return hidden @ params["item_emb"][1:].T


def init_params(config: SASRecConfig, rng: jax.Array):
    seq = jnp.ones((1, config.max_len), jnp.int32)
    return SASRec(config).init(rng, seq)["params"]
