"""HR@K and NDCG@K with a single ground truth, as the method's calc.py computes them.

rank = position of the first prediction equal to the target (0-based), None if absent.
HR@K = 1[rank < K]; NDCG@K = 1 / log2(rank + 2) if rank < K else 0. Predictions are
compared as given: SID strings for generative models (collided items count as hits),
item ids for id-level baselines.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence

KS = (1, 3, 5, 10)


def rank_of(predictions: Sequence[Hashable], target: Hashable) -> int | None:
    for i, p in enumerate(predictions):
        if p == target:
            return i
    return None


def hit(rank: int | None, k: int) -> float:
    return 1.0 if rank is not None and rank < k else 0.0


def ndcg(rank: int | None, k: int) -> float:
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


def ranking_metrics(predictions: Sequence[Sequence[Hashable]], targets: Sequence[Hashable],
                    ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean HR@K and NDCG@K over examples: {'hr@1': ..., 'ndcg@1': ..., ...}."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction lists for {len(targets)} targets.")
    if not targets:
        raise ValueError("No examples to score.")
    ranks = [rank_of(p, t) for p, t in zip(predictions, targets)]
    out = {}
    for k in ks:
        out[f"hr@{k}"] = sum(hit(r, k) for r in ranks) / len(ranks)
        out[f"ndcg@{k}"] = sum(ndcg(r, k) for r in ranks) / len(ranks)
    return out
