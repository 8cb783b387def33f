"""The `prepare_data` stage: config.data -> files every later stage reads, in the workdir.

  workdir/data/minionerec/   the dataset in MiniOneRec format (loads in the PyTorch code too)
  workdir/data/tfds/         array_record TFDS copy (random access for the trainer)
  workdir/embeddings/        item text embeddings (config.embed), cached by catalog hash
  workdir/data/stats.json    sizes and popularity / random / transition baselines (HR, NDCG)
"""

from __future__ import annotations

import json
import os

from absl import logging
from ml_collections import ConfigDict

from sidjax.data.minionerec import write_minionerec
from sidjax.data.sources import load_dataset
from sidjax.data.tfds_store import prepare_tfds
from sidjax.embed.encoders import embed_catalog
from sidjax.eval import baselines
from sidjax.eval.metrics import ranking_metrics
from sidjax.train import distributed


def baseline_metrics(dataset, split: str = "test") -> dict:
    train, samples = dataset.splits.get("train", []), dataset.split(split)
    n, targets = len(dataset.catalog), [s.target for s in samples]
    out = {"random": ranking_metrics(baselines.random_predictions(samples, n), targets)}
    if train:
        out["popularity"] = ranking_metrics(baselines.popularity_predictions(train, samples, n),
                                            targets)
        out["transition"] = ranking_metrics(
            baselines.transition_counter_predictions(train, samples, n), targets)
        out["last_item"] = ranking_metrics(baselines.last_item_predictions(train, samples, n),
                                           targets)
    return out


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    dataset = load_dataset(config.data)
    data_dir = os.path.join(workdir, "data")
    tfds_path = None
    with distributed.main_writes("prepare-data") as writer:  # Host work: process 0 alone.
        if writer:
            write_minionerec(dataset, os.path.join(data_dir, "minionerec"))
            tfds_path = prepare_tfds(dataset, os.path.join(data_dir, "tfds"),
                                     config.data.history_cap)
    tfds_path = distributed.broadcast(tfds_path)
    vectors = embed_catalog(dataset.catalog, config.embed, os.path.join(workdir, "embeddings"))
    stats = {
        "name": dataset.name, "items": len(dataset.catalog),
        "rows": {k: len(v) for k, v in dataset.splits.items()},
        "embeddings": list(vectors.shape), "tfds": tfds_path,
        "baselines_test": baseline_metrics(dataset) if "test" in dataset.splits else {},
    }
    with distributed.main_writes("prepare-stats") as writer:
        if writer:
            with open(os.path.join(data_dir, "stats.json"), "w") as f:
                json.dump(stats, f, indent=2)
    for name, metrics in stats["baselines_test"].items():
        logging.info("%s baseline on test: HR@10 %.4f NDCG@10 %.4f", name, metrics["hr@10"],
                     metrics["ndcg@10"])
    logging.info("Prepared %s: %d items, rows %s -> %s", dataset.name, len(dataset.catalog),
                 stats["rows"], data_dir)
    return stats
