"""Toy regression on the shared trainer: the smallest end-to-end run of the machinery.

  python -m sidjax.main --config=configs/toy.py
  python -m sidjax.main --config=configs/toy.py:tiny --config.mesh.shape.fsdp=2
"""

from ml_collections import ConfigDict

from sidjax.train.defaults import base_config

# The names after the colon.
VARIANTS = ("tiny",)


def get_config(arg: str | None = None) -> ConfigDict:
    config = base_config()
    config.stage = "toy_regression"

    config.toy = ConfigDict()
    config.toy.in_dim = 64
    config.toy.hidden = 256
    config.toy.out_dim = 8
    config.toy.teacher_hidden = 32
    config.toy.noise = 0.05
    config.toy.num_examples = 8192
    config.toy.num_eval = 512
    config.toy.data_seed = 1234

    config.train.num_steps = 600
    config.train.batch_size = 64
    config.optim.lr = 3e-3
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 20
    config.ckpt.every_steps = 200
    config.log.every_steps = 50
    config.eval.every_steps = 200
    config.eval.metric = "mse"
    config.eval.patience = 3

    if arg == "tiny":
        config.toy.in_dim = 16
        config.toy.hidden = 32
        config.toy.out_dim = 4
        config.toy.teacher_hidden = 8
        config.toy.num_examples = 2048
        config.toy.num_eval = 256
        config.train.num_steps = 60
        config.train.batch_size = 32
        config.ckpt.every_steps = 20
        config.log.every_steps = 10
        config.eval.every_steps = 20
    elif arg not in (None, ""):
        raise ValueError(f"configs/toy.py has no variant '{arg}'; use configs/toy.py or :tiny.")
    return config
