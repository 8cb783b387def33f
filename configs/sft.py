"""Stage 1: SID-language alignment SFT (sidreasoner_method.md section 6).

  python -m sidjax.main --config=configs/sft.py:tiny          # CPU, from-scratch tiny model
  python -m sidjax.main --config=configs/sft.py               # synthetic data, tiny model
  python -m sidjax.main --config=configs/sft.py:industrial \\
      --config.model.hf_path=/models/Qwen3-1.7B --config.model.dtype=bfloat16

Runs the `sid` stage first when the workdir has no SIDs, and the teacher synthesiser when
no corpora are given. Output: workdir/<name>/sft/export (HF model + tokenizer).
"""

from ml_collections import ConfigDict

from sidjax.pipeline.defaults import VARIANTS as _ALL_VARIANTS, llm_config

# The names after the colon (none = the synthetic default).
VARIANTS = _ALL_VARIANTS[1:]


def get_config(arg: str | None = None) -> ConfigDict:
    config = llm_config(arg, stage=1)
    config.stage = "sft"
    return config
