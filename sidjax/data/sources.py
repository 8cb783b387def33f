"""`load_dataset(config.data)`: one entry point for every dataset source a config can name.

  synthetic   the embedded default store (offline, seconds)           fields: synthetic.*
  minionerec  MiniOneRec/SIDReasoner files                            path, category, stem,
                                                                      train_path (optional)
  amazon2018  raw `<Cat>_5.json(.gz)` + `meta_<Cat>.json(.gz)`        reviews, meta, category,
                                                                      start, end, k_core,
                                                                      min_items
  amazon2023  raw `<Cat>.jsonl(.gz)` + `meta_<Cat>.jsonl(.gz)`        same fields
  ml-100k, ml-1m                                                      path
  recbole     RecBole atomic `<name>.inter` + `<name>.item`           path, category (= name)
"""

from __future__ import annotations

from ml_collections import ConfigDict

from sidjax.data.types import Dataset

SOURCES = ("synthetic", "minionerec", "amazon2018", "amazon2023", "ml-100k", "ml-1m", "recbole")


def default_data_config() -> ConfigDict:
    return ConfigDict({
        "source": "synthetic", "path": "", "category": "", "stem": "", "train_path": "",
        "reviews": "", "meta": "", "start": "2016-10", "end": "2018-11", "k_core": 5,
        "min_items": 3000, "history_cap": 10,
        "synthetic": {"num_users": 3000, "lines_per_type": 3, "max_generations": 3,
                      "seed": 0},
    })


def load_dataset(cfg: ConfigDict) -> Dataset:
    source = cfg.source
    if source == "synthetic":
        from sidjax.data.synthetic import SyntheticConfig, generate

        return generate(SyntheticConfig(**cfg.synthetic.to_dict()))[0]
    if source == "minionerec":
        from sidjax.data.minionerec import read_minionerec

        _require(cfg, "path", "category")
        return read_minionerec(cfg.path, cfg.category, cfg.stem or None,
                               split_paths={"train": cfg.train_path} if cfg.train_path else None)
    if source in ("amazon2018", "amazon2023"):
        from sidjax.data import amazon

        _require(cfg, "reviews", "meta", "category")
        fn = amazon.preprocess_amazon2018 if source == "amazon2018" else amazon.preprocess_amazon2023
        return fn(cfg.reviews, cfg.meta, cfg.category, start=cfg.start, end=cfg.end,
                  k=cfg.k_core, min_items=cfg.min_items, history_cap=cfg.history_cap)[0]
    if source in ("ml-100k", "ml-1m", "recbole"):
        from sidjax.data import movielens

        _require(cfg, "path")
        if source == "recbole":
            _require(cfg, "category")
            return movielens.read_recbole(cfg.path, cfg.category, cfg.k_core, cfg.history_cap)[0]
        fn = movielens.read_ml100k if source == "ml-100k" else movielens.read_ml1m
        return fn(cfg.path, cfg.k_core, cfg.history_cap)[0]
    raise ValueError(f"config.data.source='{source}' is not one of {SOURCES}.")


def _require(cfg: ConfigDict, *fields: str) -> None:
    missing = [f for f in fields if not cfg.get(f)]
    if missing:
        raise ValueError(f"config.data.source='{cfg.source}' needs "
                         + ", ".join(f"config.data.{f}" for f in missing) + ".")
