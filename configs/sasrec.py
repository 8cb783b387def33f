"""SASRec, the ID-based sequential baseline, on the run's data (sidjax/sasrec/).

  python -m sidjax.main --config=configs/sasrec.py                 # synthetic default
  python -m sidjax.main --config=configs/sasrec.py:industrial \\
      --config.data.train_path=/tmp/ind/train/Industrial_and_Scientific_5_2016-10-2018-11.csv

It shares the LLM stages' data/sid fields and workdir (workdir/sidreasoner[_variant]/sasrec),
so the pipeline's eval stage puts it in the same results table. Its own settings:
config.sasrec.* (hidden, blocks, dropout, epochs, lr, patience, ...).
"""

from ml_collections import ConfigDict

from sidjax.pipeline.defaults import VARIANTS as _ALL_VARIANTS, llm_config

# The names after the colon (none = the synthetic default).
VARIANTS = _ALL_VARIANTS[1:]


def get_config(arg: str | None = None) -> ConfigDict:
    config = llm_config(arg, stage=0)
    config.stage = "sasrec"
    return config
