"""Memory planner: per-device bytes for SFT and GRPO on a mesh, without allocating anything.

  python -m sidjax.main --config=configs/plan.py                        # Qwen3-1.7B, 16 x 16 GB
  python -m sidjax.main --config=configs/plan.py --config.plan.model=qwen3-1.7b \\
      --config.mesh.shape.data=1 --config.mesh.shape.fsdp=8 --config.plan.device_memory_gb=80
"""

from ml_collections import ConfigDict

from sidjax.train.defaults import base_config

# The names after the colon.
VARIANTS = ()


def get_config(arg: str | None = None) -> ConfigDict:
    config = base_config()
    config.stage = "plan"
    config.mesh.shape = ConfigDict({"data": 1, "fsdp": 16, "tensor": 1})
    config.plan = ConfigDict({
        "model": "qwen3-1.7b", "dtype": "bfloat16", "remat": "full",
        "batch": 256, "seq_len": 1024, "micro_batches": 16,  # SFT: sequences per step.
        # GRPO: rows the sampler decodes at once (config.grpo.sample_batch; the method's
        # 256 x 16 rollout is sampled in chunks) and the method's lengths.
        "sample_rows": 512, "prompt_len": 1024, "response_len": 1024,
        "grpo_micro_rows": 8,  # Responses per device per update micro-batch (the method's 8).
        "device_memory_gb": 16.0,
    })
    return config
