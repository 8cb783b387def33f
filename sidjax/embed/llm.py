"""Mean-pooled last hidden states of a local HF decoder, run through sidjax's own model.

As the method embeds items (title + cleaned description, masked mean pooling of the
final hidden states, e.g. with Qwen3-Embedding): texts are tokenised once, sorted by
length and grouped into a few padded length buckets so the forward compiles a
bounded number of times; batches are sharded over the mesh's batch axes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sidjax.data.padding import bucket_length, left_pad
from sidjax.model.hf import load_hf_model
from sidjax.model.tokenizer import load_tokenizer
from sidjax.model.transformer import Transformer
from sidjax.train.mesh import batch_sharding, batch_divisor


@functools.lru_cache(maxsize=4)
def _pooled_fn(config):
    module = Transformer(config)

    @jax.jit
    def pooled(params, tokens, valid):
        _, _, (_, final) = module.apply({"params": params}, tokens, valid, return_hidden=True)
        weights = valid.astype(jnp.float32)[..., None]  # [B, T, 1]
        return jnp.sum(final.astype(jnp.float32) * weights, 1) / jnp.maximum(
            jnp.sum(weights, 1), 1.0)  # [B, D]

    return pooled


def llm_embeddings(texts: list[str], model_path: str, max_len: int = 512, batch_size: int = 32,
                   dtype: str = "float32", mesh=None, model=None, tokenizer=None) -> np.ndarray:
    """[N, hidden] float32 embeddings; pass `model`/`tokenizer` to reuse loaded ones."""
    model = model or load_hf_model(model_path, dtype=dtype, mesh=mesh)
    tokenizer = tokenizer or load_tokenizer(model_path)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{model_path}: the tokenizer has {len(tokenizer)} tokens but the model's "
                         f"vocabulary has {model.config.vocab_size} rows; they must match.")
    encoded = [tokenizer.encode(t)[:max_len] or [tokenizer.pad_token_id] for t in texts]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    if mesh is not None:
        ways = batch_divisor(mesh)
        batch_size = -(-batch_size // ways) * ways
    pooled = _pooled_fn(model.config)
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = [encoded[i] for i in idx]
        length = bucket_length(max(len(e) for e in batch), smallest=32, largest=max_len)
        tokens, valid = left_pad(batch, tokenizer.pad_token_id, length, rows=batch_size)
        if mesh is not None:
            tokens = jax.device_put(tokens, batch_sharding(mesh, 2))
            valid = jax.device_put(valid, batch_sharding(mesh, 2))
            with jax.set_mesh(mesh):
                vectors = pooled(model.params, tokens, valid)
        else:
            vectors = pooled(model.params, tokens, valid)
        out[idx] = np.asarray(vectors)[:len(idx)]
    return out
