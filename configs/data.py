"""Prepare a dataset: MiniOneRec files, TFDS copy, item embeddings and baselines in the workdir.

  python -m sidjax.main --config=configs/data.py                       # synthetic default
  python -m sidjax.main --config=configs/data.py:industrial \\
      --config.data.path=../shared/data/amazon18 --config.data.train_path=/tmp/train.csv
  python -m sidjax.main --config=configs/data.py --config.data.source=ml-1m \\
      --config.data.path=/data/ml-1m
"""

from ml_collections import ConfigDict

from sidjax.data.sources import default_data_config
from sidjax.embed.encoders import default_embed_config
from sidjax.train.defaults import base_config

# The names after the colon.
VARIANTS = ("industrial", "tiny")


def get_config(arg: str | None = None) -> ConfigDict:
    config = base_config()
    config.stage = "prepare_data"
    config.data = default_data_config()
    config.embed = default_embed_config()
    if arg == "industrial":
        config.name = "data_industrial"
        config.data.source = "minionerec"
        config.data.path = "../shared/data/amazon18"
        config.data.category = "Industrial_and_Scientific"
    elif arg == "tiny":
        config.data.synthetic.num_users = 400
        config.embed.dim = 32
    elif arg not in (None, ""):
        raise ValueError(f"configs/data.py has no variant '{arg}'; use :industrial or :tiny.")
    return config
