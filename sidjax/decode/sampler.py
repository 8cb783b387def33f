"""Batched sampling on device: prefill, then a `lax.while_loop` over a fixed-size KV cache.

The loop stops early once every row has emitted a stop token. Per step it draws with
the key `fold_in(rng, step)`, so a seed reproduces exactly. It supports greedy
(temperature 0), temperature, top-k and top-p, and returns the log-probability of each
sampled token under `log_softmax(logits / temperature)` (plain log-softmax for greedy),
untruncated by top-k/top-p: the quantity GRPO's old and reference log-probs are compared
with. Prompts are left-padded to a power-of-two bucket, so a run compiles once per bucket.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sidjax.data.padding import bucket_length, left_pad
from sidjax.model.config import ModelConfig
from sidjax.model.transformer import KVCache, Transformer, prefill, split_layers
from sidjax.train import distributed
from sidjax.train.mesh import batch_divisor


@dataclasses.dataclass
class SampleResult:
    tokens: np.ndarray  # [B, N] generated ids; pad_id after a row stopped
    logprobs: np.ndarray  # [B, N] log-prob of each generated token; 0 after a row stopped
    lengths: np.ndarray  # [B] generated tokens including the stop token


def _filter_logits(logits, top_k: int, top_p: float):
    """Masks (to -inf) tokens outside the top-k and outside the top-p nucleus."""
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, -1)
        probs = jax.nn.softmax(sorted_logits, -1)
        before = jnp.cumsum(probs, -1) - probs  # Mass of strictly better tokens.
        keep_sorted = before < top_p  # Always keeps the best token.
        keep = jnp.zeros_like(keep_sorted).at[
            jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits


def first_argmax(x):
    """`jnp.argmax(x, -1)` (index of the first maximum) from two plain reductions.

    XLA:CPU lowers argmax to a fused value-and-index reduce that is ~3x slower than a max
    followed by a min over matching indices: 1.0 vs ~0.3 ms over [32, 8,960] logits,
    paid on every sampled token.
    """
    top = jnp.max(x, axis=-1, keepdims=True)
    index = jnp.min(jnp.where(x == top, jnp.arange(x.shape[-1]), x.shape[-1]), axis=-1)
    return jnp.minimum(index, x.shape[-1] - 1)  # All-NaN rows: stay in the vocabulary.


def row_gumbel(key, rows, vocab: int, dtype=jnp.float32):
    """Gumbel noise [n, vocab] for the given row indices [n], each row from
    `fold_in(key, row)`: a row's draw does not depend on which other rows share its batch,
    so a compacted decode batch draws exactly what the full one would, and draws only
    for the rows it holds (threefry bits for a [64, 960] block cost ~0.3 ms on CPU, as
    much as a decode step of 8 rows)."""
    return jax.vmap(lambda r: jax.random.gumbel(jax.random.fold_in(key, r), (vocab,),
                                                dtype))(rows)


def compaction_sizes(rows: int, ways: int = 1, smallest: int = 8) -> tuple[int, ...]:
    """The batch sizes a compacting decode loop runs at: `rows`, then halves while a half
    is at least `smallest` rows and splits into `ways` batch shards.

    Why: on CPU a decode step's cost is close to linear in its rows (measured for the
    0.48M-parameter tiny Qwen3, 64/32/16/8 rows: 1.74/0.89/0.54/0.36 ms per sampled
    token), and GRPO's responses are long-tailed (mean ~55 tokens, longest ~110), so
    most of a plain loop's steps decode rows that have already stopped.
    """
    sizes = [int(rows)]
    while sizes[-1] % 2 == 0 and sizes[-1] // 2 >= max(smallest, ways) \
            and (sizes[-1] // 2) % ways == 0:
        sizes.append(sizes[-1] // 2)
    return tuple(sizes)


def _gather_cache(cache: KVCache, rows: jax.Array) -> KVCache:
    """The cache of the given rows ([n] indices): every layer's k/v and the key mask."""
    take = lambda a: a[rows]  # noqa: E731
    return cache.replace(k=jax.tree.map(take, cache.k), v=jax.tree.map(take, cache.v),
                         mask=cache.mask[rows])


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "temperature",
                                             "top_k", "top_p", "stop_tokens", "pad_id",
                                             "split", "compact_ways"))
def _sample(params, prompt, valid, rng, *, config: ModelConfig, max_new_tokens: int,
            temperature: float, top_k: int, top_p: float, stop_tokens: tuple[int, ...],
            pad_id: int, split: bool, compact_ways: int):
    """compact_ways > 0: the loop runs at B rows until no more than sizes[1] rows
    (`compaction_sizes(B, compact_ways)`) are still going, moves those rows (their cache,
    last logits and row indices) into a batch of sizes[1], and so on; 0: the plain loop. The draws
    do not depend on the compaction: row r's Gumbel noise at a step comes from
    `fold_in(fold_in(rng, step), r)` (`row_gumbel`), whatever batch the row is in."""
    module = Transformer(config)
    b, t = prompt.shape
    logits, cache = prefill(config, params, prompt, valid, t + max_new_tokens)  # [B, V]
    stops = jnp.asarray(stop_tokens if stop_tokens else (-1,), jnp.int32)
    layers = None
    if split:  # Once, outside the loop: see `sample`.
        layers, cache = split_layers(params), cache.split()

    def choose(logits, key, rows):
        if temperature == 0.0:
            token = first_argmax(logits)
            return token, jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], 1)[:, 0]
        scaled = logits / temperature
        token = first_argmax(_filter_logits(scaled, top_k, top_p)
                             + row_gumbel(key, jnp.arange(b) if rows is None else rows,
                                          logits.shape[-1], logits.dtype))
        return token, jnp.take_along_axis(jax.nn.log_softmax(scaled), token[:, None], 1)[:, 0]

    def run(state, rows, keep_going):
        """Decodes the rows in `rows` ([n] indices into the B rows; None: all, in order)
        while `keep_going(done)`."""

        def cond(state):
            step, _, _, _, _, done = state
            return (step < max_new_tokens) & keep_going(done)

        def body(state):
            step, cache, last, tokens, logps, done = state
            token, logp = choose(last, jax.random.fold_in(rng, step), rows)
            token = jnp.where(done, pad_id, token).astype(jnp.int32)
            at = slice(None) if rows is None else rows
            tokens = tokens.at[at, step].set(token)
            logps = logps.at[at, step].set(jnp.where(done, 0.0, logp))
            done = done | jnp.isin(token, stops)
            n = token.shape[0]
            logits, cache = module.apply({"params": params}, token[:, None],
                                         jnp.ones((n, 1), bool), cache=cache,
                                         layer_params=layers)
            return step + 1, cache, logits[:, 0], tokens, logps, done

        return jax.lax.while_loop(cond, body, state)

    state = (jnp.zeros((), jnp.int32), cache, logits,
             jnp.full((b, max_new_tokens), pad_id, jnp.int32),
             jnp.zeros((b, max_new_tokens), jnp.float32), jnp.zeros(b, bool))
    sizes = compaction_sizes(b, compact_ways) if compact_ways else (b,)
    rows = None
    for after in sizes[1:] + (0,):
        state = run(state, rows, lambda done, after=after: jnp.sum(~done) > after)
        if after:
            step, cache, last, tokens, logps, done = state
            # The rows still going first (a stable sort keeps their order), then stopped
            # ones to fill the smaller batch; stopped rows only write pad tokens.
            keep = jnp.argsort(done, stable=True)[:after]  # [after] into this batch
            rows = keep if rows is None else rows[keep]
            state = (step, _gather_cache(cache, keep), last[keep], tokens, logps, done[keep])
    return state[3], state[4]


def sample(config: ModelConfig, params, prompts: Sequence[Sequence[int]], rng: jax.Array,
           max_new_tokens: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           stop_tokens: Sequence[int] = (), pad_id: int = 0, mesh=None,
           compact: bool | None = None) -> SampleResult:
    """Samples continuations of token-id prompts.

    With a mesh, rows are split over its batch axes, and in a multi-process run each
    process passes its own prompts and gets its own rows back (every process must call it;
    prompt counts may differ, see `distributed.run_on_rows`). Without a mesh the arrays
    live on this process's default device.

    On the CPU backend the decode loop runs on per-layer weights and cache arrays, split
    once before it (`split_layers`, `KVCache.split`): XLA:CPU otherwise copies each layer's
    weights and cache out of the stacked ones on every step (~20% of a call). Accelerators
    keep the stacked arrays, which spares a second copy of the weights in device memory.

    `compact` (default: on the CPU backend) halves the decode batch, moving the rows still
    going into it, whenever no more than half of them are (`compaction_sizes`): the same
    tokens and draws as the plain loop, in about 0.6x its time for GRPO's long-tailed
    response lengths on CPU (`bench/grpo_step.py`). Accelerators decode a small batch in
    about the time of a large one, so they keep the plain loop.
    """
    longest = max((len(p) for p in prompts), default=1)
    if mesh is not None:
        longest = distributed.global_max(longest)  # One padded length on every process.
    tokens, valid = left_pad(prompts, pad_id, bucket_length(longest))
    if compact is None:
        compact = jax.default_backend() == "cpu"
    # 0: the plain loop; else the batch shards each compacted batch must split into.
    compact_ways = (batch_divisor(mesh) if mesh is not None else 1) if compact else 0
    kwargs = dict(config=config, max_new_tokens=int(max_new_tokens),
                  temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                  stop_tokens=tuple(int(s) for s in stop_tokens), pad_id=int(pad_id),
                  split=jax.default_backend() == "cpu", compact_ways=compact_ways)
    if mesh is None:
        out, logps = jax.device_get(_sample(params, tokens, valid, rng, **kwargs))
    else:
        out, logps = distributed.run_on_rows(
            lambda t, v: _sample(params, t, v, rng, **kwargs), mesh, tokens, valid)
    out, logps = np.asarray(out), np.asarray(logps)
    stopped = np.isin(out, list(stop_tokens)) if stop_tokens else np.zeros_like(out, bool)
    first_stop = np.where(stopped.any(1), stopped.argmax(1) + 1, out.shape[1])
    return SampleResult(tokens=out, logprobs=logps, lengths=first_stop)
