"""Tokenised SFT examples (cached on disk) and batches in a few static lengths.

Examples are tokenised once (`tokenize_cached`, keyed by a hash of the texts and the
tokenizer) and stored flat. `BucketIterator` groups them by power-of-two length bucket,
so the jitted step compiles once per bucket, and yields left-padded batches:

  tokens [B, L] int32, valid [B, L] bool, loss_mask [B, L] bool (True: token is a label),
  task [B] int32 (index into the task names, for the per-task loss breakdown)

Like `BatchIterator`, its state is the number of batches produced (exact resume), every
process computes the same schedule from (seed, epoch) and reads only its rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Sequence

import jax
import numpy as np

from sidjax.data.iterator import ResumablePosition
from sidjax.data.padding import bucket_length, left_pad
from sidjax.tasks.examples import Example, encode
from sidjax.train import distributed


@dataclasses.dataclass
class TokenizedSet:
    ids: list[np.ndarray]  # per example [T] int32
    masks: list[np.ndarray]  # per example [T] bool
    task: np.ndarray  # [N] int32
    task_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def supervised_tokens(self) -> int:
        return int(sum(m.sum() for m in self.masks))


def _key(examples: Sequence[Example], tokenizer, max_len: int) -> str:
    # The vocabulary identifies the tokenizer (its directory name need not: a tokenizer
    # shared across processes is loaded from a different temporary path on each).
    h = hashlib.sha256(f"{max_len}|{len(tokenizer)}".encode())
    for token, index in sorted(tokenizer.get_vocab().items())[:: max(1, len(tokenizer) // 512)]:
        h.update(f"{token}{index}".encode())
    for e in examples:
        h.update(f"{e.task}\0{e.prefix}\0{e.target}\0{e.suffix}\0{e.supervise_suffix}\1".encode())
    return h.hexdigest()[:16]


def tokenize_cached(examples: Sequence[Example], tokenizer, max_len: int,
                    task_names: Sequence[str], cache_dir: str | None = None) -> TokenizedSet:
    """Tokenises examples (or loads them from cache_dir/tokens_<hash>.npz).

    With a cache in a multi-process run, process 0 tokenises and writes it; the others
    read it back, so every process holds the very same ids.
    """
    if not cache_dir:
        return _tokenize(examples, tokenizer, max_len, task_names)
    path = os.path.join(cache_dir, f"tokens_{_key(examples, tokenizer, max_len)}.npz")
    if distributed.exists(path):
        return _load(path, task_names)
    out = None
    with distributed.main_writes("tokenize") as writer:
        if writer:
            out = _tokenize(examples, tokenizer, max_len, task_names)
            _save(out, path)
    return out if out is not None else _load(path, task_names)


def _save(data: TokenizedSet, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, ids=np.concatenate(data.ids) if data.ids else np.zeros(0, np.int32),
             masks=np.concatenate(data.masks) if data.masks else np.zeros(0, bool),
             lengths=np.asarray([len(x) for x in data.ids], np.int64), task=data.task)
    os.replace(tmp, path)


def _load(path: str, task_names: Sequence[str]) -> TokenizedSet:
    data = np.load(path)
    if not len(data["lengths"]):
        return TokenizedSet([], [], data["task"], tuple(task_names))
    splits = np.cumsum(data["lengths"])[:-1]
    return TokenizedSet(np.split(data["ids"], splits), np.split(data["masks"], splits),
                        data["task"], tuple(task_names))


def _tokenize(examples: Sequence[Example], tokenizer, max_len: int,
              task_names: Sequence[str]) -> TokenizedSet:
    task_index = {name: i for i, name in enumerate(task_names)}
    ids, masks = encode(tokenizer, examples, max_len) if examples else ([], [])
    task = np.asarray([task_index[e.task] for e in examples], np.int32)
    return TokenizedSet(ids, masks, task, tuple(task_names))


def make_batch(data: TokenizedSet, rows: Sequence[int], pad_id: int, length: int,
               num_rows: int | None = None) -> dict[str, np.ndarray]:
    """Rows of `data` as one left-padded batch (extra all-padding rows up to num_rows)."""
    tokens, valid = left_pad([data.ids[i] for i in rows], pad_id, length, num_rows)
    mask, _ = left_pad([data.masks[i].astype(np.int32) for i in rows], 0, length, num_rows)
    task = np.zeros(num_rows or len(rows), np.int32)
    task[:len(rows)] = data.task[list(rows)]
    return {"tokens": tokens, "valid": valid, "loss_mask": mask.astype(bool), "task": task}


class BucketIterator(ResumablePosition):
    """Shuffled batches of equal-bucket examples; resumable; per-process rows."""

    def __init__(self, data: TokenizedSet, global_batch_size: int, pad_id: int, seed: int,
                 smallest: int = 32, largest: int | None = None,
                 process_index: int | None = None, process_count: int | None = None):
        self.data, self.pad_id, self.seed = data, int(pad_id), int(seed)
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if global_batch_size % self.process_count:
            raise ValueError(f"Global batch size {global_batch_size} does not divide by the "
                             f"{self.process_count} processes.")
        self.global_batch_size = int(global_batch_size)
        self.local = self.global_batch_size // self.process_count
        lengths = np.asarray([len(x) for x in data.ids])
        self.buckets: dict[int, np.ndarray] = {}
        for i, n in enumerate(lengths):
            self.buckets.setdefault(bucket_length(int(n), smallest, largest, midpoints=True),
                                    []).append(i)
        self.buckets = {k: np.asarray(v) for k, v in sorted(self.buckets.items())}
        self.batches_per_epoch = sum(len(v) // self.global_batch_size
                                     for v in self.buckets.values())
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(data)} examples make no full batch of {global_batch_size} in "
                             f"any length bucket {sorted(self.buckets)}; lower "
                             "config.train.batch_size.")
        self.batches_done = 0
        self._epoch, self._schedule = -1, []

    def _epoch_schedule(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            schedule = []
            for length, rows in self.buckets.items():
                rows = rng.permutation(rows)
                for b in range(len(rows) // self.global_batch_size):
                    schedule.append((length, rows[b * self.global_batch_size:
                                                  (b + 1) * self.global_batch_size]))
            self._schedule = [schedule[i] for i in rng.permutation(len(schedule))]
            self._epoch = epoch
        return self._schedule

    def __next__(self) -> dict[str, np.ndarray]:
        epoch, within = divmod(self.batches_done, self.batches_per_epoch)
        length, rows = self._epoch_schedule(epoch)[within]
        rows = rows[self.process_index * self.local:(self.process_index + 1) * self.local]
        self.batches_done += 1
        return make_batch(self.data, rows, self.pad_id, length)


def eval_batches(data: TokenizedSet, batch_size: int, pad_id: int, smallest: int = 32
                 ) -> list[dict[str, np.ndarray]]:
    """Every example once, in fixed-size batches per length bucket (padding rows have no
    supervised tokens, so they do not change sums)."""
    lengths = np.asarray([len(x) for x in data.ids])
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        length = bucket_length(int(lengths[rows].max()), smallest, midpoints=True)
        batches.append(make_batch(data, rows, pad_id, length, batch_size))
    return batches
