"""Sinkhorn-balanced assignment: spread points evenly over codes at near-minimal cost.

The method re-assigns each group of colliding items on the last SID level this way
(epsilon 0.003), pushing items that would share a code towards distinct nearby codes.
As MiniOneRec does, distances are first centred to [-1, 1] (by their mid-range and
half-range) and the plan is computed in float64; here in the log domain, which reaches
the same fixed point as its alternating row/column normalisation without underflow.
A host-side post-processing step, so numpy.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def centre_distances(distances: np.ndarray) -> np.ndarray:
    """(d - mid-range) / half-range: distances mapped into [-1, 1]."""
    d = np.asarray(distances, np.float64)
    middle = (d.max() + d.min()) / 2
    return (d - middle) / (d.max() - middle + 1e-5)


def sinkhorn_plan(cost: np.ndarray, epsilon: float, iters: int = 100) -> np.ndarray:
    """Entropic OT plan [N, K] with rows summing to 1/N and columns to 1/K."""
    n, k = cost.shape
    log_k = -centre_distances(cost) / epsilon
    u, v = np.zeros(n), np.zeros(k)
    for _ in range(iters):
        u = -np.log(n) - logsumexp(log_k + v[None, :], axis=1)
        v = -np.log(k) - logsumexp(log_k + u[:, None], axis=0)
    return np.exp(log_k + u[:, None] + v[None, :])


def sinkhorn_assign(cost: np.ndarray, epsilon: float = 0.003, iters: int = 100) -> np.ndarray:
    """Each row's code under the balanced plan (argmax of its row). [N, K] -> [N]."""
    return np.argmax(sinkhorn_plan(cost, epsilon, iters), axis=1)
