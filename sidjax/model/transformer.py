"""The decoder LLM (Qwen3 / Qwen2 / Llama-3 family) in Flax Linen.

One module serves training (full sequences) and decoding (prefill + one token
at a time over a fixed-size KV cache): the cache is an explicit pytree passed
in and returned, so the sampler can donate it and jit compiles once per shape.
Layers are stacked with `nn.scan` (params carry a leading layer axis), which
keeps compile time flat in depth.

Left padding: `valid` marks real tokens. Positions count real tokens only
(cumsum), keys that are padding are masked, so a sequence's logits do not
depend on how much padding sits in front of it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from sidjax.model.config import ModelConfig
from sidjax.train.mesh import BATCH_AXES, shard_activation

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_INIT = nn.initializers.normal(stddev=0.02)  # HF initializer_range for these families.
_MASKED = -0.7 * float(np.finfo(np.float32).max)  # Finite: fully padded rows stay NaN-free.


@flax.struct.dataclass
class KVCache:
    k: Any  # [L, B, K, S, H], or a tuple of L [B, K, S, H] (`split`)
    v: Any  # as k
    mask: jax.Array  # [B, S] bool: the slot holds a real token.
    index: jax.Array  # int32 []: the next slot to write (the same for every row).

    @property
    def max_len(self) -> int:
        return self.mask.shape[1]

    def split(self) -> "KVCache":
        """One array per layer, for a decode loop over `split_layers`: each layer then
        updates and reads its own array in place, where slicing a layer out of the stack
        copies it on every step."""
        return self.replace(k=tuple(self.k), v=tuple(self.v))


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype: str | None = None) -> KVCache:
    shape = (config.num_layers, batch, config.num_kv_heads, max_len, config.head_dim)
    dt = DTYPES[dtype or config.dtype]
    return KVCache(k=jnp.zeros(shape, dt), v=jnp.zeros(shape, dt),
                   mask=jnp.zeros((batch, max_len), bool), index=jnp.zeros((), jnp.int32))


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
    """Inverse RoPE frequencies [head_dim / 2], with Llama-3 scaling when configured."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(
        np.float32) / dim))
    if config.rope_llama3 is None:
        return inv_freq.astype(np.float32)
    factor, low, high, original = config.rope_llama3
    low_wavelen, high_wavelen = original / low, original / high
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotary embedding, rotate-half convention. x: [B, T, N, H]; positions: [B, T]."""
    freqs = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]  # [B, T, 1, H]
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


class Linear(nn.Module):
    """x [..., *in_shape] @ kernel [*in_shape, *out_shape] (+ bias), as one 2-D matmul.

    Flattening to [rows, in] x [in, out] matters on CPU: the weight gradient of
    a dot_general that contracts over batch and time is ~1.5x slower in XLA-CPU
    than the same product on 2-D operands.
    """

    out_shape: tuple[int, ...]
    in_dims: int = 1  # How many trailing dims of x are contracted.
    use_bias: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        in_shape = x.shape[x.ndim - self.in_dims:]
        lead = x.shape[:x.ndim - self.in_dims]
        kernel = self.param("kernel", _INIT, (*in_shape, *self.out_shape), self.param_dtype)
        n_in, n_out = int(np.prod(in_shape)), int(np.prod(self.out_shape))
        y = jnp.dot(x.reshape(-1, n_in).astype(self.dtype),
                    kernel.reshape(n_in, n_out).astype(self.dtype))
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, self.out_shape, self.param_dtype)
            y = y + bias.reshape(n_out).astype(self.dtype)
        return y.reshape(*lead, *self.out_shape)


class RMSNorm(nn.Module):
    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.eps)
        return (scale.astype(jnp.float32) * xf).astype(self.dtype)


def attention(q, k, v, mask, impl: str):
    """Grouped-query attention. q: [B, T, N, H]; k, v: [B, S, K, H]; mask: [B, T, S] bool."""
    b, t, n, h = q.shape
    kv_heads = k.shape[2]
    scale = 1.0 / np.sqrt(h)
    if impl == "dpa":
        return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale)
    q = q.reshape(b, t, kv_heads, n // kv_heads, h)
    scores = jnp.einsum("btkgh,bskh->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None], scores, _MASKED)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v)
    return out.reshape(b, t, n, h)


def cached_attention(q, k, v, mask, prefix=None):
    """Attention over a cache laid out by head. q: [B, T, N, H]; k, v: [B, K, S, H].

    Both einsums batch over (B, K) with the cache in its stored layout, so a decode step
    reads the cache once instead of first transposing every layer's slice (a cache laid
    out [B, S, K, H], as `attention` takes keys, cost ~20% of a sampling step on CPU).
    Cached prefill and decode always use these einsums: `attention_impl="dpa"` (fastest
    for training on CPU) would need the cache transposed back and is slower here.

    prefix: optional (k, v [P, K, Sp, H], mask [P, Sp]) shared by each group of B // P
    consecutive rows and attended before a row's own cache, in one softmax. Beam search
    keeps the prompt there once per example instead of once per beam.
    """
    b, t, n, h = q.shape
    kv_heads = k.shape[1]
    g = n // kv_heads
    q = q.reshape(b, t, kv_heads, g, h)
    scale = 1.0 / np.sqrt(h)
    scores = jnp.einsum("btkgh,bksh->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None], scores, _MASKED)  # [B, K, G, T, S]
    if prefix is None:
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgts,bksh->bkgth", probs, v)
    else:
        prefix_k, prefix_v, prefix_mask = prefix
        p, sp = prefix_k.shape[0], prefix_k.shape[2]
        r = b // p
        grouped = q.reshape(p, r, t, kv_heads, g, h)
        prefix_scores = jnp.einsum("prtkgh,pksh->pkgrts", grouped, prefix_k,
                                   preferred_element_type=jnp.float32) * scale
        prefix_scores = jnp.where(prefix_mask[:, None, None, None, None], prefix_scores, _MASKED)
        own = scores.reshape(p, r, kv_heads, g, t, -1).transpose(0, 2, 3, 1, 4, 5)
        probs = jax.nn.softmax(jnp.concatenate([prefix_scores, own], -1), axis=-1).astype(
            v.dtype)  # [P, K, G, R, T, Sp + S]
        out_prefix = jnp.einsum("pkgrts,pksh->prkgth", probs[..., :sp], prefix_v)
        own_probs = probs[..., sp:].transpose(0, 3, 1, 2, 4, 5).reshape(b, kv_heads, g, t, -1)
        out = (out_prefix.reshape(b, kv_heads, g, t, h)
               + jnp.einsum("bkgts,bksh->bkgth", own_probs, v))
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)  # [B, K, G, T, H] -> [B, T, N, H]


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, positions, mask, caches, layer, index, prefix=None):
        c = self.config
        dt, pdt = DTYPES[c.dtype], DTYPES[c.param_dtype]

        def proj(heads, name):
            return Linear((heads, c.head_dim), use_bias=c.qkv_bias, dtype=dt, param_dtype=pdt,
                          name=name)(x)

        q, k, v = proj(c.num_heads, "q"), proj(c.num_kv_heads, "k"), proj(c.num_kv_heads, "v")
        if c.qk_norm:
            q = RMSNorm(c.rms_norm_eps, dt, pdt, name="q_norm")(q)
            k = RMSNorm(c.rms_norm_eps, dt, pdt, name="k_norm")(k)
        inv_freq = rope_inv_freq(c)
        q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
        q = shard_activation(q, P(BATCH_AXES, None, "tensor", None))
        new_cache = None
        if caches is not None:
            # Either the whole stacked cache [L, B, K, S, H], carried through the layer scan
            # and updated in place at (layer, index) (per-layer xs/ys would copy it every
            # step), or this layer's own [B, K, S, H] array (`KVCache.split`).
            cache_k, cache_v = caches
            stacked = cache_k.ndim == 5

            def write(cache, new):  # new [B, T, K, H] -> the cache's [B, K, T, H] slot block.
                new = jnp.swapaxes(new.astype(cache.dtype), 1, 2)
                if stacked:
                    return jax.lax.dynamic_update_slice(cache, new[None], (layer, 0, 0, index, 0))
                return jax.lax.dynamic_update_slice(cache, new, (0, 0, index, 0))

            cache_k, cache_v = write(cache_k, k), write(cache_v, v)
            new_cache = (cache_k, cache_v)
            if stacked:
                cache_k = jax.lax.dynamic_index_in_dim(cache_k, layer, 0, keepdims=False)
                cache_v = jax.lax.dynamic_index_in_dim(cache_v, layer, 0, keepdims=False)
            k, v = cache_k.astype(dt), cache_v.astype(dt)
            if prefix is not None:
                prefix_k, prefix_v, prefix_mask = prefix
                prefix = (jax.lax.dynamic_index_in_dim(prefix_k, layer, 0, False).astype(dt),
                          jax.lax.dynamic_index_in_dim(prefix_v, layer, 0, False).astype(dt),
                          prefix_mask)
            out = cached_attention(q, k, v, mask, prefix)  # [B, T, N, H]
        else:
            out = attention(q, k, v, mask, c.attention_impl)  # [B, T, N, H]
        out = Linear((c.hidden_size,), in_dims=2, dtype=dt, param_dtype=pdt, name="o")(out)
        return out, new_cache


class MLP(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        dt, pdt = DTYPES[c.dtype], DTYPES[c.param_dtype]

        def dense(features, name):
            return Linear((features,), dtype=dt, param_dtype=pdt, name=name)

        gate = dense(c.intermediate_size, "gate")(x)
        up = dense(c.intermediate_size, "up")(x)
        hidden = shard_activation(nn.silu(gate) * up, P(BATCH_AXES, None, "tensor"))
        return dense(c.hidden_size, "down")(hidden)


def _dropout(module: nn.Module, c: ModelConfig, x):
    """Dropout at rate c.dropout when the apply call carries a 'dropout' rng, else identity."""
    if c.dropout <= 0 or not module.has_rng("dropout"):
        return x
    keep = 1.0 - c.dropout
    kept = jax.random.bernoulli(module.make_rng("dropout"), keep, x.shape)
    return jnp.where(kept, x / keep, 0).astype(x.dtype)


class Block(nn.Module):
    """One decoder layer; scanned over layers: ((x, stacked cache), layer id) -> ((x, cache), x)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, carry, layer, positions, mask, index, prefix):
        x, caches = carry
        c = self.config
        dt, pdt = DTYPES[c.dtype], DTYPES[c.param_dtype]
        h, new_cache = Attention(c, name="attn")(
            RMSNorm(c.rms_norm_eps, dt, pdt, name="input_norm")(x), positions, mask,
            caches, layer, index, prefix,
        )
        x = x + _dropout(self, c, h)
        x = x + _dropout(self, c, MLP(c, name="mlp")(
            RMSNorm(c.rms_norm_eps, dt, pdt, name="post_attn_norm")(x)))
        x = shard_activation(x, P(BATCH_AXES, None, None))
        return (x, new_cache), x


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def split_layers(params) -> list:
    """The scanned layers' params ([L, ...] leaves) as L per-layer trees (`layer_params`)."""
    stacked = params["layers"]
    count = jax.tree.leaves(stacked)[0].shape[0]
    return [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(count)]


class Transformer(nn.Module):
    """tokens [B, T] (+ valid [B, T], optional KVCache) -> float32 logits [B, T, V]."""

    config: ModelConfig

    def setup(self):
        c = self.config
        dt, pdt = DTYPES[c.dtype], DTYPES[c.param_dtype]
        self.embed = nn.Embed(c.vocab_size, c.hidden_size, dtype=dt, param_dtype=pdt,
                              embedding_init=_INIT)
        block = Block
        if c.remat != "none":
            block = nn.remat(Block, prevent_cse=False, policy=_REMAT_POLICIES[c.remat])
        self.layers = nn.scan(
            block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast), out_axes=0,
            length=c.num_layers, unroll=min(c.scan_unroll, c.num_layers),
        )(c)
        self.final_norm = RMSNorm(c.rms_norm_eps, dt, pdt)
        if not c.tie_word_embeddings:
            self.lm_head = self.param("lm_head", _INIT, (c.hidden_size, c.vocab_size), pdt)

    def __call__(self, tokens, valid=None, cache: KVCache | None = None,
                 return_hidden: bool = False, last_only: bool = False,
                 prefix: KVCache | None = None, layer_params=None, logits_from: int = 0):
        """Returns (logits [B, T, V] float32, new cache or None[, hidden states]).

        hidden states: (per-layer outputs [L, B, T, D], final normed [B, T, D]).
        `last_only` computes logits at the last position only ([B, 1, V]): a decoding
        prefill needs no more (prompts are left-padded, so the last column is real), and
        the output head over every prompt position is ~20% of a prefill's FLOPs for a
        small model with a large vocabulary (it is `logits_from=T - 1`). `logits_from`
        (static) computes them from that position on only ([B, T - logits_from, V]): a GRPO
        pass needs none over the prompt.
        `prefix` (with `cache`): a filled, read-only cache of P rows shared by each group of
        B // P consecutive rows, which attend to it before their own cache, as if its real
        tokens came first. Beam search keeps the prompt there once per example.
        `layer_params` (from `split_layers`): run the layers one by one on these per-layer
        trees instead of scanning the stacked ones; a cache comes back split
        (`KVCache.split`). A sampling loop splits weights and cache once, outside its loop:
        the scan slices every layer's weights and cache out of the stacks (copies) on every
        step, ~20% of a sampling call on CPU.
        """
        b, t = tokens.shape
        valid = jnp.ones((b, t), bool) if valid is None else valid.astype(bool)
        prefix_arrays = None
        if cache is None:
            positions = jnp.maximum(jnp.cumsum(valid, axis=-1) - 1, 0)  # [B, T]
            slots = jnp.arange(t)
            mask = valid[:, None, :] & (slots[None, None, :] <= slots[None, :, None])  # [B,T,T]
            layer_caches, index = None, jnp.zeros((), jnp.int32)
            if prefix is not None:
                raise ValueError("prefix= needs cache=: it extends a decoding cache.")
        else:
            index = cache.index
            offset = jnp.sum(cache.mask, axis=-1, keepdims=True)  # [B, 1]
            if prefix is not None:
                rows = prefix.mask.shape[0]
                if b % rows:
                    raise ValueError(f"prefix cache has {rows} rows, which do not divide the "
                                     f"{b} rows of tokens; give each prefix row the same "
                                     f"number of consecutive rows.")
                offset = offset + jnp.repeat(jnp.sum(prefix.mask, -1, keepdims=True), b // rows, 0)
                prefix_arrays = (prefix.k, prefix.v, prefix.mask)
            positions = jnp.maximum(offset + jnp.cumsum(valid, axis=-1) - 1, 0)
            key_valid = jax.lax.dynamic_update_slice(cache.mask, valid, (0, index))  # [B, S]
            q_slots = index + jnp.arange(t)
            k_slots = jnp.arange(cache.max_len)
            mask = key_valid[:, None, :] & (k_slots[None, None, :] <= q_slots[None, :, None])
            layer_caches = (cache.k, cache.v)

        x = _dropout(self, self.config, self.embed(tokens))  # [B, T, D]
        x = shard_activation(x, P(BATCH_AXES, None, None))
        layer_ids = jnp.arange(self.config.num_layers, dtype=jnp.int32)
        if layer_params is None:
            if layer_caches is not None and isinstance(cache.k, tuple):
                raise ValueError("A split KVCache (one array per layer) needs layer_params= "
                                 "(split_layers(params)); pass a stacked cache to scan.")
            (x, new_layer_caches), per_layer = self.layers(
                (x, layer_caches), layer_ids, positions, mask, index, prefix_arrays)
        else:
            block, new_layers, outs = Block(self.config, parent=None), [], []
            for layer, params in enumerate(layer_params):
                caches = None if cache is None else (cache.k[layer], cache.v[layer])
                (x, new_layer), out = block.apply({"params": params}, (x, caches), layer,
                                                  positions, mask, index, prefix_arrays)
                new_layers.append(new_layer)
                outs.append(out)
            new_layer_caches = tuple(zip(*new_layers)) if cache is not None else None  # Split.
            per_layer = jnp.stack(outs) if return_hidden else None
        logits_from = t - 1 if last_only else logits_from
        if logits_from:
            x = x[:, logits_from:]
        x = self.final_norm(x)
        rows = x.reshape(-1, x.shape[-1])  # 2-D matmul: see Linear.
        if self.config.tie_word_embeddings:
            logits = jax.lax.dot_general(rows, self.embed.embedding.astype(x.dtype),
                                         (((1,), (1,)), ((), ())),
                                         preferred_element_type=jnp.float32)
        else:
            logits = jnp.dot(rows, self.lm_head.astype(x.dtype),
                             preferred_element_type=jnp.float32)
        logits = logits.reshape(b, x.shape[1], -1)  # [B, T, V]
        logits = shard_activation(logits, P(BATCH_AXES, None, "tensor"))
        new_cache = None
        if cache is not None:
            new_k, new_v = new_layer_caches
            new_cache = KVCache(k=new_k, v=new_v, mask=key_valid, index=index + t)
        if return_hidden:
            return logits, new_cache, (per_layer, x)
        return logits, new_cache


def prefill(config: ModelConfig, params, prompt, valid, max_len: int):
    """Runs left-padded prompts [B, T] into a fresh cache of `max_len` slots for decoding.

    Returns (float32 logits [B, V] at the last position, which is real under left padding;
    the cache). Only that position's logits are computed (`last_only`).
    """
    logits, cache = Transformer(config).apply(
        {"params": params}, prompt, valid, cache=init_cache(config, prompt.shape[0], max_len),
        last_only=True)
    return logits[:, -1], cache
