"""Id-level baselines reported beside every model: popularity, random, transition counts.

`transition_counter_predictions` is the reference counter of shared/docs/baselines.md: a
first-order table with a short memory, the bar a sequential model must clear first;
`last_item_predictions` counts only last item -> target.
"""

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


def last_item_predictions(train: Sequence[Sample], samples: Sequence[Sample], num_items: int,
                          k: int = 10) -> list[list[int]]:
    """The next items most often seen after the history's last item as a train row's target
    (ties by id), then popularity: the first wave's transition table, kept beside the
    counter because on the synthetic store it is the stronger of the two."""
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


TRANSITION_WEIGHTS = (1.0, 0.5, 0.25)  # last, second-to-last, third-to-last history item


def transition_table(train: Sequence[Sample]) -> dict[int, collections.Counter]:
    """item -> Counter of the items that followed it: every consecutive pair inside the
    training histories, and each history's last item -> its target."""
    follows: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in train:
        chain = list(s.history) + [s.target]
        for a, b in zip(chain[:-1], chain[1:]):
            follows[a][b] += 1
    return follows


def transition_counter_predictions(train: Sequence[Sample], samples: Sequence[Sample],
                                   num_items: int, k: int = 10,
                                   weights: Sequence[float] = TRANSITION_WEIGHTS
                                   ) -> list[list[int]]:
    """Scores item x by sum_j weights[j] * count(history[-1-j] -> x), ranks by score (ties and
    the rest of the list by popularity). Returns the top `k` item ids per sample."""
    follows = transition_table(train)
    popular = popularity_ranking(train, num_items)
    pop_rank = {item: r for r, item in enumerate(popular)}
    out = []
    for s in samples:
        scores: collections.Counter = collections.Counter()
        for w, item in zip(weights, reversed(s.history)):
            for nxt, c in follows.get(item, {}).items():
                scores[nxt] += w * c
        ranked = sorted(scores, key=lambda x: (-scores[x], pop_rank[x]))[:k]
        seen = set(ranked)
        ranked += [i for i in popular[:k + len(ranked)] if i not in seen]
        out.append(ranked[:k])
    return out
