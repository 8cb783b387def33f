"""Id-level baselines reported beside every model: popularity, random, last-item transitions."""

from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from sidjax.data.types import Sample


def popularity_ranking(train: Sequence[Sample], num_items: int) -> list[int]:
    """Items by how often they are a train target (ties by id)."""
    counts = np.zeros(num_items)
    for s in train:
        counts[s.target] += 1
    return [int(i) for i in np.lexsort((np.arange(num_items), -counts))]


def popularity_predictions(train, samples, num_items: int, k: int = 10) -> list[list[int]]:
    top = popularity_ranking(train, num_items)[:k]
    return [top for _ in samples]


def random_predictions(samples, num_items: int, k: int = 10, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.choice(num_items, size=min(k, num_items), replace=False).tolist()
            for _ in samples]


def transition_predictions(train, samples, num_items: int, k: int = 10) -> list[list[int]]:
    """Most frequent next items after the history's last item in train, then popularity."""
    follows: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in train:
        follows[s.history[-1]][s.target] += 1
    popular = popularity_ranking(train, num_items)
    out = []
    for s in samples:
        ranked = [i for i, _ in sorted(follows[s.history[-1]].items(), key=lambda x: (-x[1], x[0]))]
        seen = set(ranked)
        ranked += [i for i in popular if i not in seen]
        out.append(ranked[:k])
    return out
