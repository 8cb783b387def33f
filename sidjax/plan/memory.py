"""Memory planner: per-device bytes of a sharded training setup, computed abstractly.

Nothing is allocated: params come from `jax.eval_shape`, their partition specs from the
model's sharding table applied to an `AbstractMesh` of the requested shape (so a v5e-16 or
8 x H100 layout can be planned on a laptop), and each array's per-device bytes from its
spec. Activations are an estimate (stated in `activation_note`), params/optimizer/gradients
are exact.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import numpy as np
from jax.sharding import AbstractMesh

from sidjax.model.config import ModelConfig
from sidjax.model.model import abstract_params
from sidjax.model.sharding import PARTITION_RULES
from sidjax.train import partition
from sidjax.train.mesh import MESH_AXES

GIB = 1024 ** 3


def abstract_mesh(shape: Mapping[str, int]) -> AbstractMesh:
    sizes = tuple(int(shape.get(axis, 1)) for axis in MESH_AXES)
    if any(s < 1 for s in sizes):
        raise ValueError(f"The planner needs explicit mesh sizes (no -1); got {dict(shape)}.")
    return AbstractMesh(sizes, MESH_AXES)


def per_device_bytes(abstract_tree, specs, mesh: AbstractMesh, dtype_bytes: int | None = None
                     ) -> int:
    """Sum over leaves of the bytes one device holds under `specs` (dims split by their axes)."""
    total = 0
    for leaf, spec in zip(jax.tree.leaves(abstract_tree),
                          jax.tree.leaves(specs, is_leaf=lambda x: isinstance(
                              x, jax.sharding.PartitionSpec))):
        shape = list(leaf.shape)
        for dim, axes in enumerate(tuple(spec) + (None,) * (len(shape) - len(spec))):
            if axes is None:
                continue
            axes = axes if isinstance(axes, tuple) else (axes,)
            shape[dim] = -(-shape[dim] // math.prod(mesh.shape[a] for a in axes))
        itemsize = dtype_bytes or np.dtype(leaf.dtype).itemsize
        total += int(np.prod(shape)) * itemsize
    return total


def plan(config: ModelConfig, mesh_shape: Mapping[str, int], *, batch: int, seq_len: int,
         micro_batches: int = 1, stage: str = "sft", sample_rows: int = 0,
         prompt_len: int = 0, response_len: int = 0, device_memory_gb: float = 0.0) -> dict:
    """Per-device GiB for params, optimizer (AdamW moments), gradients, reference model
    (GRPO), activations (estimate) and the sampler's KV cache (GRPO)."""
    mesh = abstract_mesh(mesh_shape)
    params = abstract_params(config)
    specs = partition.param_specs(params, PARTITION_RULES, mesh)
    param_bytes = per_device_bytes(params, specs, mesh)
    batch_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    local_rows = max(batch // micro_batches // batch_ways, 1)
    act_bytes = 2 if config.dtype == "bfloat16" else 4
    n = local_rows * seq_len  # Tokens per device per micro-batch.
    d, i, heads = config.hidden_size, config.intermediate_size, config.num_heads
    tensor = mesh.shape["tensor"]
    per_layer = {"none": n * (8 * d + 3 * i // tensor) * act_bytes
                 + n * (heads // tensor) * seq_len * 4,
                 "dots": n * (4 * d + 2 * i // tensor) * act_bytes,
                 "full": n * d * act_bytes}[config.remat]
    working = n * (8 * d + 3 * i // tensor) * act_bytes + n * (heads // tensor) * seq_len * 4
    logits = 2 * n * (config.vocab_size // tensor) * 4
    activations = per_layer * config.num_layers + (working if config.remat != "none" else 0) \
        + logits
    out = {
        "params": param_bytes,
        "optimizer": 2 * param_bytes,  # AdamW mu and nu, same dtype and sharding as params.
        "gradients": param_bytes,
        "activations": activations,
        "reference": 0,
        "kv_cache": 0,
    }
    if stage == "grpo":
        out["reference"] = param_bytes
        local = max(sample_rows // batch_ways, 1)  # Rows the sampler decodes at once.
        kv = config.num_kv_heads * config.head_dim // min(tensor, config.num_kv_heads)
        out["kv_cache"] = local * (prompt_len + response_len) * config.num_layers * 2 * kv \
            * act_bytes
    total = sum(out.values())
    result = {k: v / GIB for k, v in out.items()}
    result["total"] = total / GIB
    result["devices"] = math.prod(mesh.shape.values())
    result["mesh"] = dict(mesh.shape)
    result["activation_note"] = (
        f"estimate for {local_rows} rows x {seq_len} tokens per device per micro-batch, "
        f"remat={config.remat}, float32 logits")
    if device_memory_gb:
        result["fits"] = bool(total / GIB <= device_memory_gb * 0.9)  # 10% for XLA/runtime.
        result["device_memory_gb"] = device_memory_gb
    return result


def sft_and_grpo_plans(config: ModelConfig, mesh_shape: Mapping[str, int], settings,
                       device_memory_gb: float | None = None) -> dict[str, dict]:
    """{'sft': plan, 'grpo': plan} for the step settings of `config.plan` (`configs/plan.py`):
    SFT batches of `batch` x `seq_len` in `micro_batches`; GRPO updates of `grpo_micro_rows`
    rows per data-parallel way and the sampler's `sample_rows` rows."""
    ways = int(mesh_shape.get("data", 1)) * int(mesh_shape.get("fsdp", 1))
    memory = settings.device_memory_gb if device_memory_gb is None else device_memory_gb
    common = dict(sample_rows=settings.sample_rows, prompt_len=settings.prompt_len,
                  response_len=settings.response_len, device_memory_gb=memory)
    return {
        "sft": plan(config, mesh_shape, batch=settings.batch, seq_len=settings.seq_len,
                    micro_batches=settings.micro_batches, stage="sft", **common),
        "grpo": plan(config, mesh_shape, batch=settings.grpo_micro_rows * ways,
                     seq_len=settings.prompt_len + settings.response_len, stage="grpo",
                     **common),
    }


def format_plan(name: str, result: dict) -> str:
    rows = [f"{name}: mesh {result['mesh']} ({result['devices']} devices)"]
    for key in ("params", "optimizer", "gradients", "reference", "activations", "kv_cache",
                "total"):
        rows.append(f"  {key:<12} {result[key]:8.2f} GiB per device")
    if "fits" in result:
        rows.append(f"  fits in {result['device_memory_gb']} GB (90% usable): "
                    f"{'yes' if result['fits'] else 'NO'}")
    rows.append(f"  ({result['activation_note']})")
    return "\n".join(rows)
