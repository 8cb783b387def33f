"""The `sid` stage: catalog -> embeddings -> RQ-VAE or RQ-KMeans -> SIDs -> report.

Writes into workdir/sid/:
  data/               the dataset with SIDs in MiniOneRec format (index/<name>.index.json,
                      info/<stem>.txt, splits with SID columns) for every later stage
  rqvae/              RQ-VAE checkpoints (ckpt/ latest, best/ lowest collision rate)
  sid_report.json     utilisation and perplexity per level, collisions before and after
                      handling, reconstruction MSE, timings
  sid_code_usage.png  per-level code usage (with matplotlib)
  dataset.json        the dataset's name and prompt noun (read back by `sid_dataset`)
A finished stage (sid_report.json present) is skipped on rerun. Method `given` keeps
SIDs the source already has (e.g. the released MiniOneRec index files).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from sidjax.data.iterator import BatchIterator
from sidjax.data.minionerec import write_minionerec
from sidjax.data.sources import load_dataset
from sidjax.embed.encoders import embed_catalog
from sidjax.sid import collisions, rqvae
from sidjax.sid.quantizer import residual_quantize
from sidjax.sid.report import sid_report, write_report
from sidjax.sid.rqkmeans import fit_rqkmeans
from sidjax.train import checkpoint as ckpt_lib
from sidjax.train import distributed
from sidjax.train.trainer import Trainer

METHODS = ("rqvae", "rqkmeans", "rqkmeans_balanced", "given")
COLLISIONS = ("sinkhorn", "extra_level", "none")


def default_sid_config() -> ConfigDict:
    """MiniOneRec's RQ-VAE settings (sidreasoner_method.md section 4)."""
    return ConfigDict({
        "method": "rqvae", "levels": 3, "codes": 256, "e_dim": 32,
        "hidden": (2048, 1024, 512, 256, 128, 64), "beta": 0.25, "quant_weight": 1.0,
        "kmeans_iters": 100, "reseed_dead_codes": False,
        # z-score each embedding dimension first. The method's LLM embeddings are O(1) or
        # larger; TF-IDF/SVD vectors are ~0.02, which lets the quantisation losses swamp
        # the reconstruction loss and the encoder collapse onto a few codes.
        "standardize": True,
        "collisions": "sinkhorn", "sinkhorn_rounds": 20, "sinkhorn_epsilon": 0.003,
        "sinkhorn_iters": 100,
    })


def apply_tiny_sizes(config: ConfigDict) -> None:
    """The `tiny` data/embedding/RQ-VAE sizes shared by configs/rqvae.py:tiny and the LLM
    configs' tiny variant (a 400-user store, 16 codes per level)."""
    config.data.synthetic.num_users = 400
    config.embed.dim = 32
    config.sid.update(codes=16, hidden=(64, 32), e_dim=8, kmeans_iters=20)


def _fit_rqvae(config, x, directory):
    task = rqvae.make_task(x, config.sid, seed=config.seed)
    trainer = Trainer(config, directory, task)
    result = trainer.fit(BatchIterator({"x": x}, config.train.batch_size, seed=config.seed))
    trainer.close()
    params = ckpt_lib.load_params(directory)  # best/ (lowest collision rate) if kept.
    z = np.asarray(rqvae.encode(params, jnp.asarray(x)))
    _, mse = rqvae.catalog_codes(params, jnp.asarray(x))
    logging.info("RQ-VAE: best collision rate %s at step %s; %.1f steps/s.", result.best_value,
                 result.best_step, result.steps_per_sec)
    return z, np.asarray(params["codebooks"]), float(mse), {
        "best_step": result.best_step, "steps_per_sec": result.steps_per_sec}


def standardize(x: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores (constant dimensions become 0)."""
    std = x.std(0)
    return ((x - x.mean(0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def assign_sids(z: np.ndarray, codebooks: np.ndarray, cfg: ConfigDict):
    """Codes per level, then collision handling. -> (codes [N, L or L+1], report of before)."""
    codes, _, residuals, _ = residual_quantize(jnp.asarray(z), jnp.asarray(codebooks))
    codes, residuals = np.asarray(codes), np.asarray(residuals)
    before = sid_report(codes, cfg.codes)
    info = {"before_collision_handling": {k: before[k] for k in (
        "collision_rate", "items_in_collisions", "largest_collision_group")}}
    if cfg.collisions == "sinkhorn":
        codes, rounds = collisions.sinkhorn_rounds(
            codes, residuals[-1], codebooks[-1], cfg.sinkhorn_rounds, cfg.sinkhorn_epsilon,
            cfg.sinkhorn_iters)
        info["sinkhorn_rounds_used"] = rounds
    elif cfg.collisions == "extra_level":
        codes = collisions.add_disambiguation_level(codes)
    elif cfg.collisions != "none":
        raise ValueError(f"config.sid.collisions='{cfg.collisions}' is not one of {COLLISIONS}.")
    return codes, info


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    cfg = config.sid
    if cfg.method not in METHODS:
        raise ValueError(f"config.sid.method='{cfg.method}' is not one of {METHODS}.")
    out_dir = os.path.join(workdir, "sid")
    report_path = os.path.join(out_dir, "sid_report.json")
    done = distributed.finished_summary(report_path, "The sid stage")
    if done is not None:
        return done
    dataset = load_dataset(config.data)
    if cfg.method == "given":
        return _given_sids(dataset, out_dir)
    x = embed_catalog(dataset.catalog, config.embed, os.path.join(workdir, "embeddings"))
    if cfg.standardize:
        x = standardize(x)
    start = time.time()
    extra: dict = {"method": cfg.method}
    if cfg.method == "rqvae":
        z, codebooks, mse, fit_info = _fit_rqvae(config, x, os.path.join(out_dir, "rqvae"))
        extra.update(fit_info)
    else:
        codebooks, _ = fit_rqkmeans(x, cfg.levels, cfg.codes, config.seed, cfg.kmeans_iters,
                                    balanced=cfg.method == "rqkmeans_balanced")
        z = x
        _, zq, _, _ = residual_quantize(jnp.asarray(x), jnp.asarray(codebooks))
        mse = float(jnp.mean((zq - x) ** 2))
    extra["fit_seconds"] = time.time() - start
    codes, info = assign_sids(z, codebooks, cfg)
    extra.update(info, collision_handling=cfg.collisions, embed_encoder=config.embed.encoder)
    catalog = dataset.catalog.with_sids(collisions.sid_tokens(codes))
    report = sid_report(codes, cfg.codes, mse, **extra)
    _write_outputs(dataclasses.replace(dataset, catalog=catalog), report, out_dir)
    logging.info("SIDs for %d items: collision rate %.4f (before handling %.4f), level use %s, "
                 "%d SID tokens.", report["items"], report["collision_rate"],
                 info["before_collision_handling"]["collision_rate"],
                 [level["used"] for level in report["levels"]], report["sid_tokens"])
    return report


def _write_outputs(dataset, report: dict, out_dir: str) -> None:
    """The SID'd dataset and the report, written by process 0 (everyone reads them back).
    The report is written last: its presence marks the stage done."""
    with distributed.main_writes("sid-outputs") as writer:
        if writer:
            write_minionerec(dataset, os.path.join(out_dir, "data"))
            with open(os.path.join(out_dir, "dataset.json"), "w") as f:
                json.dump({"name": dataset.name, "category_noun": dataset.category_noun}, f)
            write_report(report, out_dir)


def _given_sids(dataset, out_dir: str) -> dict:
    if not dataset.catalog.has_sids:
        raise ValueError(f"config.sid.method='given' but dataset '{dataset.name}' has items "
                         "without SIDs; use method rqvae/rqkmeans or a source with an index.json.")
    codes = np.asarray([[int(t.split("_")[1].rstrip(">")) for t in item.sid]
                        for item in dataset.catalog.items])
    report = sid_report(codes, int(codes.max()) + 1, None, method="given")
    _write_outputs(dataset, report, out_dir)
    return report


def sid_dataset(config: ConfigDict, workdir: str):
    """The dataset with SIDs that later stages train on: workdir/sid/data, built (by running
    this stage) when missing."""
    from sidjax.data.minionerec import read_minionerec

    out_dir = os.path.join(workdir, "sid")
    meta_path = os.path.join(out_dir, "dataset.json")
    if not distributed.exists(os.path.join(out_dir, "sid_report.json")):  # Written last.
        train_and_evaluate(_sid_run_config(config), workdir)
    with open(meta_path) as f:
        meta = json.load(f)
    dataset = read_minionerec(os.path.join(out_dir, "data"), meta["name"])
    return dataclasses.replace(dataset, category_noun=meta["category_noun"])


def _sid_run_config(config: ConfigDict) -> ConfigDict:
    """An LLM config's `sid_train` section -> the trainer fields of configs/rqvae.py."""
    if "sid_train" not in config:
        return config
    run = ConfigDict(config.to_dict())
    run.train.num_steps = config.sid_train.num_steps
    run.train.batch_size = config.sid_train.batch_size
    run.train.micro_batches = 1
    run.optim.update(lr=1e-3, weight_decay=0.0, grad_clip=0.0, schedule="constant",
                     warmup_steps=0)
    run.eval.update(every_steps=max(1, config.sid_train.num_steps // 4),
                    metric="collision_rate", mode="min", patience=0)
    run.ckpt.every_steps = 0
    return run
