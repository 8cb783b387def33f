"""The `sasrec` stage: SASRec trained on the run's train rows through the shared trainer.

Each train row (history -> target) is one left-padded sequence; the loss is full-softmax
cross-entropy over the catalog at every position whose next item is known (the history's
own next items and, at the last position, the row's target), or at the last position
only (`sasrec.positions='last'`). Selection: `best/` by valid HR@10 (early stopping on
it), the same rows and metric code the LLM stages use. Scores are turned into SID
strings (colliding items merge), so SASRec sits in the same results table as the
generative models, matched the same way.

Outputs in workdir/sasrec/: ckpt/, best/, summary.json. The eval stage scores `best/` on
the evaluation split (`predict_sids`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from sidjax.data.iterator import BatchIterator
from sidjax.data.types import Catalog, Sample
from sidjax.eval.evaluate import items_to_sids
from sidjax.eval.metrics import ranking_metrics
from sidjax.sasrec.model import SASRecConfig, init_params, item_logits
from sidjax.train import checkpoint as ckpt_lib
from sidjax.train import distributed
from sidjax.train.trainer import Task, Trainer

PARTITION_RULES = ((r".*", P()),)  # A few hundred thousand params: replicated.
POSITIONS = ("all", "last")


def default_sasrec_config() -> ConfigDict:
    """The usual Amazon settings (baselines.md): 2 blocks, hidden 64, 1 head, dropout 0.2;
    the stage's own optimiser and trainer sections (the pipeline's top-level ones are GRPO's)."""
    return ConfigDict({
        "dir": "sasrec",
        "hidden": 64, "num_blocks": 2, "num_heads": 1, "dropout": 0.2,
        "max_len": 10,  # The protocol's history cap.
        "positions": "all",
        "epochs": 200,
        "batch_size": 256,
        "lr": 1e-3, "weight_decay": 0.0,
        "eval_every_epochs": 2,
        "patience": 5,  # Evaluations without a better valid HR@10.
        "eval_examples": 0,  # Valid rows scored for selection (0 = all).
    })


def model_config(cfg: ConfigDict, num_items: int) -> SASRecConfig:
    return SASRecConfig(num_items=num_items, max_len=int(cfg.max_len), hidden=int(cfg.hidden),
                        num_blocks=int(cfg.num_blocks), num_heads=int(cfg.num_heads),
                        dropout=float(cfg.dropout))


def sequences(samples: Sequence[Sample], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (inputs [N, L], labels [N, L]) int32: shifted ids left-padded with 0; labels[t] is
    the item after inputs[t] (0 = none)."""
    inputs = np.zeros((len(samples), max_len), np.int32)
    labels = np.zeros((len(samples), max_len), np.int32)
    for n, s in enumerate(samples):
        chain = [i + 1 for i in s.history[-max_len:]] + [s.target + 1]
        k = len(chain) - 1
        inputs[n, max_len - k:] = chain[:-1]
        labels[n, max_len - k:] = chain[1:]
    return inputs, labels


def loss_fn(config: SASRecConfig, params, batch, rng):
    """Sum of cross-entropies over labelled positions; weight = their count."""
    logits = item_logits(config, params, batch["inputs"], deterministic=False, rng=rng)
    labels = batch["labels"]  # [B, L], 0 = no label
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, L, N]
    target = jnp.take_along_axis(logp, jnp.maximum(labels - 1, 0)[..., None], -1)[..., 0]
    mask = (labels > 0).astype(jnp.float32)
    loss = -jnp.sum(target * mask)
    count = jnp.sum(mask)
    return loss, (count, {"ce": (loss, count)})


@functools.lru_cache(maxsize=8)
def _top_k_fn(config: SASRecConfig, k: int):
    """One jitted scorer per (config, k), so every evaluation reuses the compiled function."""
    return jax.jit(lambda p, s: jax.lax.top_k(item_logits(config, p, s)[:, -1], k)[1])


def top_items(config: SASRecConfig, params, samples: Sequence[Sample], k: int,
              batch_size: int = 1024) -> list[list[int]]:
    """The k best-scored item ids (0-based) after each sample's history."""
    score = _top_k_fn(config, k)
    inputs, _ = sequences(samples, config.max_len)
    out = []
    for first in range(0, len(inputs), batch_size):
        chunk = inputs[first:first + batch_size]
        rows = len(chunk)
        chunk = np.pad(chunk, ((0, batch_size - rows), (0, 0)))  # One compiled shape.
        out.extend(np.asarray(score(params, chunk))[:rows].tolist())
    return out


def predict_sids(config: SASRecConfig, params, catalog: Catalog, samples: Sequence[Sample],
                 k: int = 10) -> list[list[str]]:
    """Top-k distinct SID strings per sample (4k items ranked, so collisions leave k)."""
    return items_to_sids(catalog, top_items(config, params, samples, min(4 * k, len(catalog))), k)


def sid_metrics(config: SASRecConfig, params, catalog: Catalog, samples: Sequence[Sample],
                k: int = 10) -> dict:
    targets = [catalog.sid_string(s.target) for s in samples]
    return ranking_metrics(predict_sids(config, params, catalog, samples, k), targets)


def stage_run_config(config: ConfigDict, batches_per_epoch: int) -> ConfigDict:
    """The trainer config of the stage: its own optimiser, steps and selection."""
    cfg = config.sasrec
    run = ConfigDict(config.to_dict())
    run.train.num_steps = int(cfg.epochs) * batches_per_epoch
    run.train.batch_size = int(cfg.batch_size)
    run.train.micro_batches = 1
    run.optim.update(name="adamw", lr=float(cfg.lr), b1=0.9, b2=0.98,
                     weight_decay=float(cfg.weight_decay), schedule="constant", warmup_steps=0,
                     grad_clip=1.0)
    run.eval.update(every_steps=int(cfg.eval_every_epochs) * batches_per_epoch,
                    metric="valid/hr@10", mode="max", patience=int(cfg.patience))
    run.ckpt.every_steps = 0  # At the end, and every 10 minutes (a killed run resumes).
    run.ckpt.every_minutes = 10.0
    run.ckpt.keep = 1
    run.log.every_steps = max(1, batches_per_epoch)
    return run


def load_best(config: ConfigDict, workdir: str, num_items: int):
    """(SASRecConfig, best params) of a finished stage, or None when there is none."""
    directory = os.path.join(workdir, config.sasrec.dir)
    if not os.path.isdir(os.path.join(directory, ckpt_lib.BEST_DIR)):
        return None
    return model_config(config.sasrec, num_items), ckpt_lib.load_params(directory)


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    from sidjax.sid.stage import sid_dataset

    cfg = config.sasrec
    if cfg.positions not in POSITIONS:
        raise ValueError(f"config.sasrec.positions='{cfg.positions}' is not one of {POSITIONS}.")
    out_dir = os.path.join(workdir, cfg.dir)
    summary_path = os.path.join(out_dir, "summary.json")
    done = distributed.finished_summary(summary_path, "SASRec")
    if done is not None:
        return done
    start = time.time()
    dataset = sid_dataset(config, workdir)
    catalog = dataset.catalog
    mc = model_config(cfg, len(catalog))
    inputs, labels = sequences(dataset.split("train"), mc.max_len)
    if cfg.positions == "last":
        labels[:, :-1] = 0
    batches = BatchIterator({"inputs": inputs, "labels": labels}, int(cfg.batch_size),
                            seed=config.seed)
    valid = list(dataset.split("valid"))
    if cfg.eval_examples:
        valid = valid[:int(cfg.eval_examples)]

    def eval_fn(params):
        metrics = sid_metrics(mc, params, catalog, valid)
        return {f"valid/{k}": v for k, v in metrics.items()}

    task = Task(init_params=lambda rng: init_params(mc, rng),
                loss_fn=lambda p, b, r: loss_fn(mc, p, b, r),
                partition_rules=PARTITION_RULES, eval_fn=eval_fn)
    trainer = Trainer(stage_run_config(config, batches.batches_per_epoch), out_dir, task)
    result = trainer.fit(batches)
    trainer.close()
    summary = {"wall_s": time.time() - start, "steps": int(result.state.step),
               "batches_per_epoch": batches.batches_per_epoch, "best_step": result.best_step,
               "best_valid_hr@10": result.best_value, "stopped_early": result.stopped_early,
               "params": int(sum(x.size for x in jax.tree.leaves(result.state.params))),
               "final_eval": result.eval_metrics}
    with distributed.main_writes("sasrec-summary") as writer:
        if writer:
            with open(summary_path, "w") as f:
                json.dump(summary, f, indent=1)
    logging.info("SASRec done in %.0fs: best valid HR@10 %.4f at step %s.", summary["wall_s"],
                 result.best_value or 0.0, result.best_step)
    return summary
