"""Hugging Face checkpoints in and out: `load_hf_model(path)` and `save_hf_model(model, path)`.

Every tensor mapping lives in one table (`TENSOR_RULES`): the HF name, the
sidjax param path, and the transpose/reshape each way. Loading places each
tensor straight onto its target sharding (`jax.make_array_from_callback` over a
memory-mapped file), one parameter at a time, so the model is never built whole
on one device. Any unmapped, missing or mis-shaped tensor fails naming its key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import jax
import numpy as np
from absl import logging
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh

from sidjax.model.config import ModelConfig
from sidjax.model.model import Model, abstract_params, param_shardings
from sidjax.model.safetensors_io import SafetensorsFile, save_file
from sidjax.model.transformer import DTYPES
from sidjax.train.distributed import to_host

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class TensorRule:
    ours: tuple[str, ...]  # Param path; layer params carry a leading [L] axis.
    hf: str  # HF name; '{i}' is the layer index.
    hf_shape: Callable[[ModelConfig], tuple[int, ...]]  # Per-layer shape in the HF file.
    to_ours: Callable[[Array, ModelConfig], Array]
    to_hf: Callable[[Array, ModelConfig], Array]
    when: Callable[[ModelConfig], bool] = lambda c: True

    @property
    def layered(self) -> bool:
        return "{i}" in self.hf


def _same(w, c):
    return w


def _t(w, c):
    return w.T


def _proj_rule(name: str, heads: Callable[[ModelConfig], int]) -> list[TensorRule]:
    """q/k/v: HF [heads*H, D] <-> ours [D, heads, H]; bias [heads*H] <-> [heads, H]."""
    hf = f"model.layers.{{i}}.self_attn.{name}_proj"
    return [
        TensorRule(
            ("layers", "attn", name, "kernel"), hf + ".weight",
            lambda c: (heads(c) * c.head_dim, c.hidden_size),
            lambda w, c: w.T.reshape(c.hidden_size, heads(c), c.head_dim),
            lambda w, c: w.reshape(c.hidden_size, -1).T,
        ),
        TensorRule(
            ("layers", "attn", name, "bias"), hf + ".bias",
            lambda c: (heads(c) * c.head_dim,),
            lambda w, c: w.reshape(heads(c), c.head_dim),
            lambda w, c: w.reshape(-1),
            when=lambda c: c.qkv_bias,
        ),
    ]


TENSOR_RULES: tuple[TensorRule, ...] = (
    TensorRule(("embed", "embedding"), "model.embed_tokens.weight",
               lambda c: (c.vocab_size, c.hidden_size), _same, _same),
    TensorRule(("final_norm", "scale"), "model.norm.weight", lambda c: (c.hidden_size,),
               _same, _same),
    TensorRule(("lm_head",), "lm_head.weight", lambda c: (c.vocab_size, c.hidden_size), _t, _t,
               when=lambda c: not c.tie_word_embeddings),
    *_proj_rule("q", lambda c: c.num_heads),
    *_proj_rule("k", lambda c: c.num_kv_heads),
    *_proj_rule("v", lambda c: c.num_kv_heads),
    TensorRule(("layers", "attn", "o", "kernel"), "model.layers.{i}.self_attn.o_proj.weight",
               lambda c: (c.hidden_size, c.num_heads * c.head_dim),
               lambda w, c: w.T.reshape(c.num_heads, c.head_dim, c.hidden_size),
               lambda w, c: w.reshape(-1, c.hidden_size).T),
    TensorRule(("layers", "attn", "q_norm", "scale"), "model.layers.{i}.self_attn.q_norm.weight",
               lambda c: (c.head_dim,), _same, _same, when=lambda c: c.qk_norm),
    TensorRule(("layers", "attn", "k_norm", "scale"), "model.layers.{i}.self_attn.k_norm.weight",
               lambda c: (c.head_dim,), _same, _same, when=lambda c: c.qk_norm),
    TensorRule(("layers", "mlp", "gate", "kernel"), "model.layers.{i}.mlp.gate_proj.weight",
               lambda c: (c.intermediate_size, c.hidden_size), _t, _t),
    TensorRule(("layers", "mlp", "up", "kernel"), "model.layers.{i}.mlp.up_proj.weight",
               lambda c: (c.intermediate_size, c.hidden_size), _t, _t),
    TensorRule(("layers", "mlp", "down", "kernel"), "model.layers.{i}.mlp.down_proj.weight",
               lambda c: (c.hidden_size, c.intermediate_size), _t, _t),
    TensorRule(("layers", "input_norm", "scale"), "model.layers.{i}.input_layernorm.weight",
               lambda c: (c.hidden_size,), _same, _same),
    TensorRule(("layers", "post_attn_norm", "scale"),
               "model.layers.{i}.post_attention_layernorm.weight",
               lambda c: (c.hidden_size,), _same, _same),
)

# Buffers some checkpoints carry that are not parameters.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _rules(config: ModelConfig) -> list[TensorRule]:
    return [r for r in TENSOR_RULES if r.when(config)]


def _hf_names(rule: TensorRule, config: ModelConfig) -> list[str]:
    if rule.layered:
        return [rule.hf.format(i=i) for i in range(config.num_layers)]
    return [rule.hf]


class _Checkpoint:
    """The tensors of an HF checkpoint directory (single file or sharded with an index)."""

    def __init__(self, path: str):
        index = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.isfile(index):
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
            files = {name: SafetensorsFile(os.path.join(path, name))
                     for name in sorted(set(weight_map.values()))}
            self.where = {key: files[name] for key, name in weight_map.items()}
        elif os.path.isfile(single):
            file = SafetensorsFile(single)
            self.where = {key: file for key in file.keys()}
        else:
            raise FileNotFoundError(
                f"No model.safetensors or model.safetensors.index.json in '{path}'. sidjax reads "
                "safetensors checkpoints; convert .bin checkpoints with transformers first."
            )

    def get(self, key: str) -> np.ndarray:
        return self.where[key].get(key)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.where[key].shape(key)


def read_hf_config(path: str, **overrides) -> ModelConfig:
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No config.json in '{path}' (expected a Hugging Face model "
                                "directory).")
    with open(config_path) as f:
        return ModelConfig.from_hf_config(json.load(f), **overrides)


def load_hf_model(path: str, dtype: str = "float32", mesh: Mesh | None = None,
                  **config_overrides) -> Model:
    """Loads a local HF Qwen3/Qwen2/Llama checkpoint directory as a sidjax `Model`.

    dtype sets both the param and compute dtype. With a mesh, each param lands
    directly on its sharding from `sidjax.model.sharding.PARTITION_RULES`.
    """
    config = read_hf_config(path, param_dtype=dtype, dtype=dtype, **config_overrides)
    checkpoint = _Checkpoint(path)
    rules = _rules(config)
    expected = {name: rule for rule in rules for name in _hf_names(rule, config)}
    unexpected = [k for k in checkpoint.where if k not in expected
                  and not k.endswith(_IGNORED_SUFFIXES)]
    if config.tie_word_embeddings and "lm_head.weight" in unexpected:
        unexpected.remove("lm_head.weight")  # Tied: the head is the embedding.
    if unexpected:
        raise ValueError(f"{path}: tensors with no sidjax mapping: {sorted(unexpected)[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''} (config says "
                         f"{config.family}, {config.num_layers} layers).")
    missing = [k for k in expected if k not in checkpoint.where]
    if missing:
        raise ValueError(f"{path}: tensors the config needs are missing: {missing[:10]}.")
    for name, rule in expected.items():
        want = rule.hf_shape(config)
        if checkpoint.shape(name) != want:
            raise ValueError(f"{path}: tensor '{name}' has shape {checkpoint.shape(name)}, "
                             f"expected {want} from config.json.")

    target_dtype = DTYPES[dtype]
    abstract = flatten_dict(abstract_params(config))
    shardings = flatten_dict(param_shardings(config, mesh)) if mesh is not None else None
    flat = {}
    for rule in rules:
        def host_array(rule=rule):
            parts = [rule.to_ours(np.asarray(checkpoint.get(n)), config)
                     for n in _hf_names(rule, config)]
            full = np.stack(parts) if rule.layered else parts[0]
            return np.asarray(full).astype(target_dtype)

        shape = abstract[rule.ours].shape
        if shardings is None:
            flat[rule.ours] = jax.device_put(host_array())
        else:
            cache: dict = {}

            def shard(index, host_array=host_array, cache=cache):
                if "full" not in cache:
                    cache["full"] = host_array()
                return cache["full"][index]

            flat[rule.ours] = jax.make_array_from_callback(shape, shardings[rule.ours], shard)
        if tuple(flat[rule.ours].shape) != tuple(shape):
            raise ValueError(f"Param {'/'.join(rule.ours)} came out {flat[rule.ours].shape}, "
                             f"expected {shape}.")
    logging.info("Loaded %s (%s, %.1fM params) from %s.", config.family, dtype,
                 config.num_params() / 1e6, path)
    return Model(config=config, params=unflatten_dict(flat), mesh=mesh)


def save_hf_model(model: Model, path: str, max_shard_bytes: int = 4 << 30) -> None:
    """Writes config.json + model.safetensors (sharded with an index above max_shard_bytes).

    transformers' `AutoModelForCausalLM.from_pretrained(path)` loads the result.
    Every process must call it (arrays are gathered); only process 0 writes.
    """
    config = model.config
    flat = flatten_dict(model.params)
    tensors: dict[str, np.ndarray] = {}
    for rule in _rules(config):
        value = to_host(flat[rule.ours])
        names = _hf_names(rule, config)
        parts = list(value) if rule.layered else [value]
        for name, part in zip(names, parts):
            tensors[name] = np.ascontiguousarray(rule.to_hf(part, config))
    if jax.process_index() != 0:
        return
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config.to_hf_config(), f, indent=2)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"))
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(path, file))
        weight_map.update({name: file for name in shard})
    total = sum(a.nbytes for a in tensors.values())
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
