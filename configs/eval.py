"""Evaluation: constrained beam search over valid SIDs, HR/NDCG@{1,3,5,10}, with baselines.

  python -m sidjax.main --config=configs/eval.py:tiny          # the workdir's stage exports
  python -m sidjax.main --config=configs/eval.py \\
      --config.evaluation.models=mine=/path/to/export:thinking --config.evaluation.split=valid
"""

from ml_collections import ConfigDict

from sidjax.pipeline.defaults import VARIANTS as _ALL_VARIANTS, llm_config

# The names after the colon (none = the synthetic default).
VARIANTS = _ALL_VARIANTS[1:]


def get_config(arg: str | None = None) -> ConfigDict:
    config = llm_config(arg, stage=0)
    config.stage = "eval"
    return config
