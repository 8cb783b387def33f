"""Stage 3: GRPO from the stage-2 export (sidreasoner_method.md section 8)."""

from __future__ import annotations

from ml_collections import ConfigDict


def default_grpo_config() -> ConfigDict:
    """The method's GRPO settings (section 8); CPU variants shrink the batch sizes."""
    return ConfigDict({
        "init_from": "",  # HF export to start from; '' = <workdir>/reason/export.
        "steps": 100,
        "prompts_per_step": 256,
        "group_size": 16,
        "updates_per_rollout": 1,
        "temperature": 1.0, "top_k": 0, "top_p": 1.0,
        "max_response_tokens": 1024,
        "constrained_tail": False,
        "rewards": {"step_rule": 1.0},
        "estimator": "grpo", "eps": 1e-6,
        "clip_low": 0.2, "clip_high": 0.2, "dual_clip": 3.0,
        "kl_coef": 0.001, "kl_estimator": "k3",
        "aggregation": "token-mean",
        "max_len_norm": 1024,  # Dr.GRPO's fixed length (aggregation 'fixed-length').
        "prompt_source": "narrative",  # 'narrative' rows (as the method) or 'train'.
        "eval_every": 50, "eval_examples": 256,
    })
