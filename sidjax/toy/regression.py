"""Toy regression: an MLP learns a fixed random teacher MLP from noisy samples.

It is the trainer's smallest real workload: sharded weights (fsdp x tensor),
batch sharding, accumulation, checkpoints, eval and early stopping all run on
it, so tests of the shared machinery need no model or data download.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from sidjax.data.iterator import BatchIterator
from sidjax.train.trainer import Task, Trainer, TrainResult

PARTITION_RULES = (
    (r"^w1$", P("fsdp", "tensor")),  # [D, H]
    (r"^b1$", P("tensor")),  # [H]
    (r"^w2$", P("tensor", "fsdp")),  # [H, O]
    (r"^b2$", P()),  # [O]
)


def make_dataset(cfg: ConfigDict, seed: int) -> dict[str, np.ndarray]:
    """Deterministic (x, y) pairs from a random two-layer teacher plus noise."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(cfg.in_dim, cfg.teacher_hidden)) / np.sqrt(cfg.in_dim)
    w2 = rng.normal(size=(cfg.teacher_hidden, cfg.out_dim)) / np.sqrt(cfg.teacher_hidden)
    x = rng.normal(size=(cfg.num_examples, cfg.in_dim)).astype(np.float32)  # [N, D]
    y = np.tanh(x @ w1) @ w2 + cfg.noise * rng.normal(size=(cfg.num_examples, cfg.out_dim))
    return {"x": x, "y": y.astype(np.float32)}  # y: [N, O]


def split_data(cfg: ConfigDict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, eval): the first `num_eval` examples are held out for evaluation."""
    data = make_dataset(cfg, cfg.data_seed)
    return ({k: v[cfg.num_eval:] for k, v in data.items()},
            {k: v[:cfg.num_eval] for k, v in data.items()})


def init_params(cfg: ConfigDict, rng: jax.Array) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(rng)
    return {
        "w1": jax.random.normal(k1, (cfg.in_dim, cfg.hidden)) / jnp.sqrt(cfg.in_dim),
        "b1": jnp.zeros((cfg.hidden,)),
        "w2": jax.random.normal(k2, (cfg.hidden, cfg.out_dim)) / jnp.sqrt(cfg.hidden),
        "b2": jnp.zeros((cfg.out_dim,)),
    }


def predict(params: dict, x: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ params["w1"] + params["b1"])  # [B, H]
    return h @ params["w2"] + params["b2"]  # [B, O]


def loss_fn(params: dict, batch: dict, rng: jax.Array):
    """Sum of per-example squared errors; weight = number of examples."""
    del rng
    err = jnp.sum(jnp.square(predict(params, batch["x"]) - batch["y"]), axis=-1)  # [B]
    count = jnp.asarray(err.shape[0], jnp.float32)
    return jnp.sum(err), (count, {"mse": (jnp.sum(err), count)})


def make_task(cfg: ConfigDict, eval_data: dict[str, np.ndarray]) -> Task:
    x_eval, y_eval = jnp.asarray(eval_data["x"]), jnp.asarray(eval_data["y"])

    @jax.jit
    def eval_mse(params):
        return jnp.mean(jnp.sum(jnp.square(predict(params, x_eval) - y_eval), axis=-1))

    return Task(
        init_params=lambda rng: init_params(cfg, rng),
        loss_fn=loss_fn,
        partition_rules=PARTITION_RULES,
        eval_fn=lambda params: {"mse": float(eval_mse(params))},
    )


def train_and_evaluate(config: ConfigDict, workdir: str) -> TrainResult:
    """Trains the toy model under `config` in `workdir`; resumes if a checkpoint is there."""
    train, evals = split_data(config.toy)
    trainer = Trainer(config, workdir, make_task(config.toy, evals))
    batches = BatchIterator(train, config.train.batch_size, seed=config.seed)
    result = trainer.fit(batches)
    trainer.close()
    return result
