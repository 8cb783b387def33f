"""Optax optimiser and learning-rate schedule built from `config.optim`.

Fields (see `sidjax.train.defaults.trainer_config`):
  name: 'adamw' | 'sgd'; lr; b1, b2, eps; weight_decay; grad_clip (global norm, 0 = off);
  schedule: 'constant' | 'linear' | 'cosine'; warmup_steps; end_lr_factor (decay floor as a
  fraction of lr; the method's HF linear schedule decays to 0).
"""

from __future__ import annotations

import optax
from ml_collections import ConfigDict

SCHEDULES = ("constant", "linear", "cosine")


def make_schedule(optim: ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to lr, then constant / linear / cosine decay to lr*end_lr_factor."""
    lr = float(optim.lr)
    warmup = int(optim.warmup_steps)
    end = lr * float(optim.end_lr_factor)
    decay_steps = max(int(total_steps) - warmup, 1)
    if optim.schedule == "constant":
        decay = optax.constant_schedule(lr)
    elif optim.schedule == "linear":
        decay = optax.linear_schedule(lr, end, decay_steps)
    elif optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=float(optim.end_lr_factor))
    else:
        raise ValueError(
            f"config.optim.schedule='{optim.schedule}' is not one of {SCHEDULES}."
        )
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(optim: ConfigDict, total_steps: int) -> optax.GradientTransformation:
    schedule = make_schedule(optim, total_steps)
    if optim.name == "adamw":
        tx = optax.adamw(
            schedule, b1=float(optim.b1), b2=float(optim.b2), eps=float(optim.eps),
            weight_decay=float(optim.weight_decay),
        )
    elif optim.name == "sgd":
        tx = optax.sgd(schedule)
    else:
        raise ValueError(f"config.optim.name='{optim.name}' is not one of ('adamw', 'sgd').")
    if float(optim.grad_clip) > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(optim.grad_clip)), tx)
    return tx
