"""`embed_catalog(catalog, config, cache_dir)`: item text -> [N, d] float32, cached.

Encoders (config.encoder):
  tfidf  TF-IDF + truncated SVD (offline default; fields dim, max_features, ngram, seed)
  llm    mean-pooled hidden states of a local HF checkpoint (model_path, max_len, batch_size,
         dtype)
  npy    precomputed embeddings, e.g. the method's `.emb-qwen-td.npy` (path)
Item text = title + cleaned description. The cache key is encoder + its fields + the
catalog's content hash, so a changed catalog or setting never reuses stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from sidjax.data.types import Catalog
from sidjax.train import distributed

ENCODERS: dict[str, Callable[[Catalog, ConfigDict], np.ndarray]] = {}


def register(name: str):
    def wrap(fn):
        ENCODERS[name] = fn
        return fn

    return wrap


@register("tfidf")
def _tfidf(catalog: Catalog, cfg: ConfigDict) -> np.ndarray:
    from sidjax.embed.tfidf import tfidf_embeddings

    return tfidf_embeddings([catalog.text(i) for i in range(len(catalog))], dim=int(cfg.dim),
                            seed=int(cfg.seed), max_features=int(cfg.max_features),
                            ngram=int(cfg.ngram))


@register("llm")
def _llm(catalog: Catalog, cfg: ConfigDict) -> np.ndarray:
    from sidjax.embed.llm import llm_embeddings

    if not cfg.model_path:
        raise ValueError("config.embed.model_path must name a local HF checkpoint directory for "
                         "the 'llm' encoder.")
    return llm_embeddings([catalog.text(i) for i in range(len(catalog))], cfg.model_path,
                          max_len=int(cfg.max_len), batch_size=int(cfg.batch_size),
                          dtype=cfg.dtype)


@register("npy")
def _npy(catalog: Catalog, cfg: ConfigDict) -> np.ndarray:
    if not cfg.path or not os.path.isfile(cfg.path):
        raise FileNotFoundError(f"config.embed.path='{cfg.path}' is not a .npy file.")
    vectors = np.load(cfg.path)
    if vectors.ndim != 2 or vectors.shape[0] != len(catalog):
        raise ValueError(f"{cfg.path}: shape {vectors.shape}, expected [{len(catalog)}, d] "
                         "(one row per catalog item, in item-id order).")
    return vectors.astype(np.float32)


def default_embed_config() -> ConfigDict:
    return ConfigDict({"encoder": "tfidf", "dim": 256, "seed": 0, "max_features": 50000,
                       "ngram": 2, "model_path": "", "max_len": 512, "batch_size": 32,
                       "dtype": "float32", "path": ""})


def cache_key(catalog: Catalog, cfg: ConfigDict) -> str:
    settings = json.dumps(cfg.to_dict(), sort_keys=True)
    digest = hashlib.sha256((settings + catalog.content_hash()).encode()).hexdigest()[:16]
    return f"{cfg.encoder}-{digest}"


def embed_catalog(catalog: Catalog, cfg: ConfigDict, cache_dir: str | None = None) -> np.ndarray:
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"config.embed.encoder='{cfg.encoder}' is not one of {sorted(ENCODERS)}.")
    path = os.path.join(cache_dir, f"{cache_key(catalog, cfg)}.npy") if cache_dir else None
    if not path:
        return ENCODERS[cfg.encoder](catalog, cfg)
    if distributed.exists(path):
        logging.info("Item embeddings from cache %s.", path)
        return np.load(path)
    # Process 0 embeds and writes the cache; the others read it.
    with distributed.main_writes("embeddings") as writer:
        if writer:
            vectors = ENCODERS[cfg.encoder](catalog, cfg)
            os.makedirs(cache_dir, exist_ok=True)
            np.save(path, vectors)
            logging.info("Item embeddings %s written to %s.", vectors.shape, path)
    return np.load(path)
