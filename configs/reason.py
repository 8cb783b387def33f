"""Stage 2: reasoning activation SFT (sidreasoner_method.md section 7), from stage 1's export.

  python -m sidjax.main --config=configs/reason.py:tiny       # after configs/sft.py:tiny
  python -m sidjax.main --config=configs/reason.py --config.sft.init_from=/path/to/export
"""

from ml_collections import ConfigDict

from sidjax.pipeline.defaults import VARIANTS as _ALL_VARIANTS, llm_config

# The names after the colon (none = the synthetic default).
VARIANTS = _ALL_VARIANTS[1:]


def get_config(arg: str | None = None) -> ConfigDict:
    config = llm_config(arg, stage=2)
    config.stage = "sft"
    return config
