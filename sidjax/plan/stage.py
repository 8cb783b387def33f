"""The `plan` stage (`configs/plan.py`): SFT and GRPO memory plans for `config.plan`'s model
on `config.mesh`'s shape, printed and returned; nothing is allocated."""

from __future__ import annotations

from sidjax.model.config import get_preset
from sidjax.plan.memory import format_plan, plan


def train_and_evaluate(config, workdir: str) -> dict:
    """The `plan` stage: prints and returns SFT and GRPO plans for config.plan."""
    cfg = config.plan
    model = get_preset(cfg.model, param_dtype=cfg.dtype, dtype=cfg.dtype, remat=cfg.remat)
    shape = config.mesh.shape.to_dict()
    results = {}
    ways = shape.get("data", 1) * shape.get("fsdp", 1)
    for stage in ("sft", "grpo"):
        sft = stage == "sft"
        results[stage] = plan(model, shape,
                              batch=cfg.batch if sft else cfg.grpo_micro_rows * ways,
                              seq_len=cfg.seq_len if sft else cfg.prompt_len + cfg.response_len,
                              micro_batches=cfg.micro_batches if sft else 1, stage=stage,
                              sample_rows=cfg.sample_rows, prompt_len=cfg.prompt_len,
                              response_len=cfg.response_len,
                              device_memory_gb=cfg.device_memory_gb)
        print(format_plan(f"{cfg.model} {stage}", results[stage]))
    return results
