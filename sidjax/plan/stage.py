"""The `plan` stage (`configs/plan.py`): SFT and GRPO memory plans for `config.plan`'s model
on `config.mesh`'s shape, printed and returned; nothing is allocated."""

from __future__ import annotations

from sidjax.model.config import get_preset
from sidjax.plan.memory import format_plan, sft_and_grpo_plans


def train_and_evaluate(config, workdir: str) -> dict:
    """The `plan` stage: prints and returns SFT and GRPO plans for config.plan."""
    cfg = config.plan
    model = get_preset(cfg.model, param_dtype=cfg.dtype, dtype=cfg.dtype, remat=cfg.remat)
    results = sft_and_grpo_plans(model, config.mesh.shape.to_dict(), cfg)
    for stage, result in results.items():
        print(format_plan(f"{cfg.model} {stage}", result))
    return results
