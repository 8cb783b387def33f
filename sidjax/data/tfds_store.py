"""Prepared datasets as TFDS array_record files: random access, no TensorFlow needed.

`prepare_tfds(dataset, data_dir)` writes the splits (sample order preserved) and the
catalog (in the dataset's metadata); `load_tfds(path)` returns the catalog and one
`tfds.data_source` per split, which `sidjax.data.iterator.BatchIterator` reads
deterministically, shuffled per epoch, sharded per host and resumable.

Histories are stored padded to `history_cap` with -1 plus their length, so records
stack into fixed-shape batches.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types

import numpy as np

from sidjax.data.types import Catalog, Dataset, Item, Sample

PAD = -1


@functools.lru_cache(maxsize=None)
def _builder_class():
    import tensorflow_datasets as tfds

    # skip_registration: TFDS registers builders by class name at definition, and a
    # second dataset (or a second prepare in one process) would collide; sidjax loads
    # prepared data from its directory, never by registered name.
    class SidjaxSamples(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Sequential-recommendation samples of one sidjax Dataset."""

        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, dataset: Dataset | None = None, history_cap: int = 10, **kwargs):
            self._dataset = dataset
            self._cap = history_cap
            super().__init__(**kwargs)

        def _info(self):
            catalog = self._dataset.catalog if self._dataset is not None else None
            metadata = tfds.core.MetadataDict(
                name=self._dataset.name, category_noun=self._dataset.category_noun,
                history_cap=self._cap,
                items=[dataclasses.asdict(item) for item in catalog.items],
            ) if catalog is not None else tfds.core.MetadataDict()
            return tfds.core.DatasetInfo(
                builder=self, disable_shuffling=True, metadata=metadata,
                features=tfds.features.FeaturesDict({
                    "user": tfds.features.Text(),
                    "history": tfds.features.Tensor(shape=(self._cap,), dtype=np.int64),
                    "history_len": np.int64,
                    "target": np.int64,
                    "timestamp": np.int64,
                }))

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(samples)
                    for name, samples in self._dataset.splits.items()}

        def _generate_examples(self, samples):
            for i, s in enumerate(samples):
                history = s.history[-self._cap:]
                padded = np.full(self._cap, PAD, np.int64)
                padded[:len(history)] = history
                yield i, {"user": s.user, "history": padded, "history_len": len(history),
                          "target": s.target, "timestamp": s.timestamp or 0}

    return SidjaxSamples


def _builder_name(dataset_name: str) -> str:
    return "sidjax_" + re.sub(r"[^a-z0-9]+", "_", dataset_name.lower()).strip("_")


def prepare_tfds(dataset: Dataset, data_dir: str, history_cap: int = 10) -> str:
    """Writes `dataset` as array_record TFDS files under data_dir; returns the dataset path."""
    base = _builder_class()
    cls = types.new_class(_builder_name(dataset.name).title().replace("_", ""), (base,),
                          {"skip_registration": True},
                          lambda ns: ns.update(name=_builder_name(dataset.name)))
    builder = cls(dataset=dataset, history_cap=history_cap, data_dir=data_dir,
                  file_format="array_record")
    builder.download_and_prepare()
    return os.fspath(builder.data_dir)


def load_tfds(path: str):
    """(catalog, {split: data source}, metadata) from a directory `prepare_tfds` wrote."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(path)
    meta = builder.info.metadata
    catalog = Catalog([Item(**{**item, "sid": tuple(item["sid"]) if item["sid"] else None})
                       for item in meta["items"]])
    sources = builder.as_data_source()
    return catalog, dict(sources), {k: meta[k] for k in ("name", "category_noun",
                                                          "history_cap")}


def record_to_sample(record: dict) -> Sample:
    n = int(record["history_len"])
    user = record["user"]
    return Sample(user=user.decode() if isinstance(user, bytes) else user,
                  history=[int(x) for x in record["history"][:n]], target=int(record["target"]),
                  timestamp=int(record["timestamp"]) or None)
