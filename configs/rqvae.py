"""Semantic IDs: catalog -> embeddings -> RQ-VAE (or RQ-KMeans) -> SIDs -> report.

  python -m sidjax.main --config=configs/rqvae.py                 # synthetic default
  python -m sidjax.main --config=configs/rqvae.py:industrial      # the real Industrial catalog
  python -m sidjax.main --config=configs/rqvae.py --config.sid.method=rqkmeans_balanced
  python -m sidjax.main --config=configs/rqvae.py --config.sid.collisions=extra_level
"""

from ml_collections import ConfigDict

from sidjax.data.sources import default_data_config
from sidjax.embed.encoders import default_embed_config
from sidjax.sid.stage import apply_tiny_sizes, default_sid_config
from sidjax.train.defaults import base_config

# The names after the colon.
VARIANTS = ("industrial", "tiny")


def get_config(arg: str | None = None) -> ConfigDict:
    config = base_config()
    config.stage = "sid"
    config.data = default_data_config()
    config.embed = default_embed_config()
    config.sid = default_sid_config()
    # The method: AdamW lr 1e-3, no weight decay; full-batch there, mini-batches on a CPU.
    config.optim.lr = 1e-3
    config.optim.weight_decay = 0.0
    config.optim.grad_clip = 0.0
    config.train.batch_size = 256
    config.train.num_steps = 1500
    config.eval.every_steps = 250
    config.eval.metric = "collision_rate"
    config.eval.mode = "min"
    config.ckpt.every_steps = 500
    config.log.every_steps = 100
    # The synthetic store has ~280 items: 64 codes per level keep SID prefixes shared.
    config.sid.codes = 64
    if arg == "industrial":
        config.name = "rqvae_industrial"
        config.data.source = "minionerec"
        config.data.path = "../shared/data/amazon18"
        config.data.category = "Industrial_and_Scientific"
        config.sid.codes = 256
        config.train.batch_size = 1024
        config.train.num_steps = 2000
    elif arg == "tiny":
        apply_tiny_sizes(config)
        config.train.batch_size = 64
        config.train.num_steps = 60
        config.eval.every_steps = 20
        config.ckpt.every_steps = 30
        config.log.every_steps = 20
    elif arg not in (None, ""):
        raise ValueError(f"configs/rqvae.py has no variant '{arg}'; use :industrial or :tiny.")
    return config
