"""A deterministic, resumable, per-host-sharded batch iterator over random-access data.

Every process computes the same per-epoch permutation from (seed, epoch) and
takes its own contiguous slice of each global batch, so hosts never read the
same example and together cover every example once per epoch (the last partial
batch is dropped). The iterator's whole state is the number of batches it has
produced, so resuming from a checkpoint is exact.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np


class ResumablePosition:
    """The state every deterministic iterator here checkpoints: batches produced + seed.

    Subclasses set `seed`, `batches_done` and `batches_per_epoch` and define `__next__`.
    """

    seed: int
    batches_done: int
    batches_per_epoch: int

    @property
    def epoch(self) -> int:
        return self.batches_done // self.batches_per_epoch

    def __iter__(self):
        return self

    def get_state(self) -> dict:
        return {"batches_done": self.batches_done, "seed": self.seed}

    def set_state(self, state: Mapping) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"Checkpointed data iterator used seed {state['seed']} but this run uses "
                f"{self.seed}; resume with the same config.seed or start a new workdir."
            )
        self.batches_done = int(state["batches_done"])


class BatchIterator(ResumablePosition):
    """Yields this process's rows of each global batch as a dict of numpy arrays.

    `source` is either a mapping of equal-length arrays (column store) or any
    random-access sequence of example dicts (`__len__` + `__getitem__`, e.g. a
    `tfds.data_source`); `__getitems__` is used when the source has it.
    """

    def __init__(self, source: Any, global_batch_size: int, seed: int, shuffle: bool = True,
                 process_index: int | None = None, process_count: int | None = None):
        self.source = source
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if global_batch_size % self.process_count:
            raise ValueError(
                f"Global batch size {global_batch_size} does not divide by the "
                f"{self.process_count} processes; use a multiple of {self.process_count}."
            )
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = self.global_batch_size // self.process_count
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_examples = self._length()
        self.batches_per_epoch = self.num_examples // self.global_batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"The dataset has {self.num_examples} examples, fewer than one global batch of "
                f"{self.global_batch_size}; lower config.train.batch_size."
            )
        self.batches_done = 0
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _length(self) -> int:
        if isinstance(self.source, Mapping):
            lengths = {k: len(v) for k, v in self.source.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"Columns of the data source differ in length: {lengths}")
            return next(iter(lengths.values()))
        return len(self.source)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch])
                self._perm = rng.permutation(self.num_examples)
            else:
                self._perm = np.arange(self.num_examples)
            self._perm_epoch = epoch
        return self._perm

    def indices_for(self, batch_number: int) -> np.ndarray:
        """Example indices this process reads for global batch `batch_number`."""
        epoch, within = divmod(batch_number, self.batches_per_epoch)
        perm = self._permutation(epoch)
        start = within * self.global_batch_size + self.process_index * self.local_batch_size
        return perm[start:start + self.local_batch_size]

    def _gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(self.source, Mapping):
            return {k: np.asarray(v)[indices] for k, v in self.source.items()}
        if hasattr(self.source, "__getitems__"):
            records = self.source.__getitems__([int(i) for i in indices])
        else:
            records = [self.source[int(i)] for i in indices]
        return {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self._gather(self.indices_for(self.batches_done))
        self.batches_done += 1
        return batch
