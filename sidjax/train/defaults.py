"""The config fields every stage shares: mesh, optimiser, trainer, checkpoints, logging, eval.

Stage config files (`configs/*.py`) start from `base_config()` and add their own
sections, so `--config.optim.lr=...` means the same thing in every stage.
"""

from __future__ import annotations

from ml_collections import ConfigDict


def base_config() -> ConfigDict:
    c = ConfigDict()
    c.stage = ""  # Which library function `sidjax.main` dispatches to (sidjax.stages).
    c.name = ""  # Default workdir name: workdir/<name>.
    c.seed = 0

    c.mesh = ConfigDict()
    c.mesh.shape = ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})

    c.train = ConfigDict()
    c.train.num_steps = 100
    c.train.batch_size = 32  # Global batch, summed over all processes and micro-batches.
    c.train.micro_batches = 1  # Gradient accumulation: the batch is split into this many.

    c.optim = ConfigDict()
    c.optim.name = "adamw"
    c.optim.lr = 1e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 1.0
    c.optim.schedule = "constant"
    c.optim.warmup_steps = 0
    c.optim.end_lr_factor = 0.0

    c.ckpt = ConfigDict()
    c.ckpt.every_steps = 100  # 0: only at the end (and on SIGTERM).
    # Also save when this many minutes passed since the last save (0: off), checked at
    # log steps; whichever of the two comes first.
    c.ckpt.every_minutes = 0.0
    c.ckpt.keep = 2
    c.ckpt.async_save = True
    # Params-only start from an earlier stage: a checkpoint directory written by the trainer
    # (its `best/` or `ckpt/` folder, or a workdir holding them). Used only on a fresh start.
    c.ckpt.init_from = ""

    c.log = ConfigDict()
    c.log.every_steps = 10
    c.log.tensorboard = True
    c.log.progress = True

    c.eval = ConfigDict()
    c.eval.every_steps = 0  # 0: only at the end.
    c.eval.metric = ""  # Early stopping / best checkpoint on this metric ('' = off).
    c.eval.mode = "min"
    c.eval.patience = 0  # Evaluations without improvement before stopping (0 = never stop).
    return c
