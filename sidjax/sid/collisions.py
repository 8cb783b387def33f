"""Making SIDs (nearly) unique: the method's Sinkhorn rounds, or an extra disambiguation level.

(a) `sinkhorn_rounds`: each group of items whose full code tuple collides is re-assigned
    on the last level with a Sinkhorn-balanced assignment over the group's last-level
    residuals (epsilon, iterations from config), for up to N rounds; leftover collisions
    are kept and counted, as MiniOneRec's generate_indices.py does. Items with identical
    residuals cannot be separated this way (identical rows, identical argmax).
(b) `add_disambiguation_level`: a 4th level `<d_k>` numbering the items of each group,
    which makes every SID unique.
"""

from __future__ import annotations

import collections

import numpy as np

from sidjax.sid.sinkhorn import sinkhorn_assign


def collision_groups(codes: np.ndarray) -> list[list[int]]:
    """Groups (item index lists) of size > 1 sharing one code tuple."""
    groups = collections.defaultdict(list)
    for i, row in enumerate(np.asarray(codes).tolist()):
        groups[tuple(row)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def sinkhorn_rounds(codes: np.ndarray, last_residuals: np.ndarray, last_codebook: np.ndarray,
                    rounds: int = 20, epsilon: float = 0.003, iters: int = 100) -> tuple[
                        np.ndarray, int]:
    """Re-assigns colliding items' last code; returns (codes, rounds used)."""
    codes = np.array(codes)
    last_residuals = np.asarray(last_residuals, np.float64)
    last_codebook = np.asarray(last_codebook, np.float64)
    for used in range(rounds):
        groups = collision_groups(codes)
        if not groups:
            return codes, used
        for group in groups:  # Each group balanced on its own, as generate_indices.py does.
            cost = _sq_distances(last_residuals[group], last_codebook)
            codes[group, -1] = sinkhorn_assign(cost, epsilon, iters)
    return codes, rounds


def _sq_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return (x * x).sum(1)[:, None] - 2 * x @ centers.T + (centers * centers).sum(1)[None, :]


def add_disambiguation_level(codes: np.ndarray) -> np.ndarray:
    """Appends a level numbering items within each collision group (0 for unique SIDs)."""
    seen: dict[tuple, int] = collections.Counter()
    extra = np.zeros(len(codes), np.int64)
    for i, row in enumerate(np.asarray(codes).tolist()):
        extra[i] = seen[tuple(row)]
        seen[tuple(row)] += 1
    return np.concatenate([codes, extra[:, None]], axis=1)


def sid_tokens(codes: np.ndarray) -> list[tuple[str, ...]]:
    """Codes [N, L] -> per item ('<a_i>', '<b_j>', '<c_k>'[, '<d_m>'])."""
    letters = "abcdefghij"
    return [tuple(f"<{letters[level]}_{int(c)}>" for level, c in enumerate(row))
            for row in np.asarray(codes)]
