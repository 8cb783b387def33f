"""The method's sequential-recommendation protocol, shared by every raw-data reader.

1. Iterative k-core on users and items (default 5/5) until stable.
2. Each user's interactions sorted by time (ties keep file order; repeats kept).
3. One sample per position i >= 1: history = the previous <= 10 items, target = item i.
4. All samples sorted by target time and cut 8:1:1 into train/valid/test (global
   chronological split, not leave-one-out: users repeat across and within splits).

Item ids are assigned 0..N-1 in sorted order of the source's item keys, so the
same raw files always give the same ids.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Mapping, Sequence

from absl import logging

from sidjax.data.types import Catalog, Dataset, Item, Sample


@dataclasses.dataclass(frozen=True)
class Interaction:
    user: str
    item: str  # Source key (asin, movie id...).
    timestamp: int  # Seconds.


def k_core(interactions: Sequence[Interaction], k_user: int = 5,
           k_item: int = 5) -> list[Interaction]:
    """Drops users and items with fewer than k interactions, repeatedly, until none remain."""
    current = list(interactions)
    while True:
        users = collections.Counter(x.user for x in current)
        items = collections.Counter(x.item for x in current)
        kept = [x for x in current if users[x.user] >= k_user and items[x.item] >= k_item]
        if len(kept) == len(current):
            return kept
        current = kept


def sliding_window_samples(interactions: Sequence[Interaction], item_ids: Mapping[str, int],
                           history_cap: int = 10) -> list[Sample]:
    """Time-sorted per-user sequences -> one sample per position i >= 1."""
    by_user: dict[str, list[Interaction]] = collections.defaultdict(list)
    for x in interactions:
        by_user[x.user].append(x)
    samples = []
    for user in sorted(by_user):
        seq = sorted(by_user[user], key=lambda x: x.timestamp)  # Stable: ties keep file order.
        ids = [item_ids[x.item] for x in seq]
        for i in range(1, len(seq)):
            samples.append(Sample(user=user, history=ids[max(0, i - history_cap):i],
                                  target=ids[i], timestamp=seq[i].timestamp))
    return samples


def chronological_split(samples: Sequence[Sample],
                        ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
                        ) -> dict[str, list[Sample]]:
    """Sorts by target time (stable) and cuts train/valid/test at int(n*0.8), int(n*0.1)."""
    ordered = sorted(samples, key=lambda s: s.timestamp)
    n = len(ordered)
    n_train, n_valid = int(n * ratios[0]), int(n * ratios[1])
    return {"train": ordered[:n_train], "valid": ordered[n_train:n_train + n_valid],
            "test": ordered[n_train + n_valid:]}


def build_dataset(name: str, interactions: Sequence[Interaction],
                  make_item: Callable[[int, str], Item], k_user: int = 5, k_item: int = 5,
                  history_cap: int = 10, category_noun: str = "items") -> tuple[Dataset, dict]:
    """k-core -> item ids -> samples -> split. Returns the dataset and drop counts."""
    cored = k_core(interactions, k_user, k_item)
    keys = sorted({x.item for x in cored})
    item_ids = {key: i for i, key in enumerate(keys)}
    catalog = Catalog([make_item(i, key) for i, key in enumerate(keys)])
    samples = sliding_window_samples(cored, item_ids, history_cap)
    splits = chronological_split(samples)
    stats = {
        "interactions_in": len(interactions), "interactions_after_kcore": len(cored),
        "users": len({x.user for x in cored}), "items": len(keys), "samples": len(samples),
        **{f"{k}_rows": len(v) for k, v in splits.items()},
    }
    logging.info("%s: %s", name, stats)
    return Dataset(name=name, catalog=catalog, splits=splits, category_noun=category_noun), stats
