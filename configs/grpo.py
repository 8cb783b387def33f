"""The whole method in one command, each stage cached in the workdir (the main job).

  python -m sidjax.main --config=configs/grpo.py            # synthetic default, CPU
  python -m sidjax.main --config=configs/grpo.py:tiny       # minutes (CI)
  python -m sidjax.main --config=configs/grpo.py:industrial \\
      --config.model.hf_path=/models/Qwen3-1.7B --config.model.dtype=bfloat16

data -> embeddings -> SIDs -> stage 1 -> stage 2 -> GRPO -> evaluation, each cached in
the workdir (a rerun skips finished stages). Top-level optim/train/eval are GRPO's;
stages 1 and 2 read pipeline.stage1 / pipeline.stage2 (e.g.
--config.pipeline.stage1.optim.lr=1e-4). Run a subset: --config.pipeline.stages=grpo,eval.
"""

from ml_collections import ConfigDict

from sidjax.pipeline.defaults import VARIANTS as _ALL_VARIANTS, pipeline_config

# The names after the colon (none = the synthetic default).
VARIANTS = _ALL_VARIANTS[1:]


def get_config(arg: str | None = None) -> ConfigDict:
    return pipeline_config(arg)
