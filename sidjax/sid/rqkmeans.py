"""Residual k-means (RQ-KMeans): k-means on the embeddings, then on each level's residuals.

No training: a strong simple tokenizer. The balanced variant caps every code at
ceil(N / K) items per level, which spreads items over codes (fewer collisions,
no codebook collapse).
"""

from __future__ import annotations

import jax
import numpy as np

from sidjax.sid.kmeans import balanced_kmeans, kmeans


def fit_rqkmeans(x: np.ndarray, levels: int, codes: int, seed: int = 0, iters: int = 100,
                 balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """-> (codebooks [L, K, d], codes [N, L])."""
    residual = np.asarray(x, np.float32)
    codebooks, assigned = [], []
    for level in range(levels):
        rng = jax.random.fold_in(jax.random.PRNGKey(seed), level)
        if balanced:
            centers, assign = balanced_kmeans(residual, codes, rng, iters=min(iters, 30))
        else:
            centers, assign = (np.asarray(a) for a in kmeans(residual, codes, rng, iters))
        codebooks.append(np.asarray(centers))
        assigned.append(np.asarray(assign))
        residual = residual - codebooks[-1][assigned[-1]]
    return np.stack(codebooks), np.stack(assigned, 1)
