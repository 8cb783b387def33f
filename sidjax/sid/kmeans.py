"""k-means in JAX (k-means++ seeding + Lloyd), and a balanced (equal-capacity) variant.

Used to initialise RQ-VAE codebooks (as the method does, 100 Lloyd iterations) and as
the RQ-KMeans tokenizer. Jitted with static k and iteration count; no sklearn.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def sq_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
    """[N, D], [K, D] -> squared Euclidean distances [N, K]."""
    return (jnp.sum(x * x, -1, keepdims=True) - 2.0 * x @ centers.T
            + jnp.sum(centers * centers, -1)[None, :])


@functools.partial(jax.jit, static_argnames=("k",))
def kmeans_plusplus(x: jax.Array, k: int, rng: jax.Array) -> jax.Array:
    """k-means++ seeding: each next center drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    first = jax.random.randint(rng, (), 0, n)
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    closest = jnp.sum((x - x[first]) ** 2, -1)  # [N]

    def body(i, carry):
        centers, closest = carry
        p = closest / jnp.maximum(jnp.sum(closest), 1e-30)
        idx = jax.random.choice(jax.random.fold_in(rng, i), n, p=p)
        centers = centers.at[i].set(x[idx])
        closest = jnp.minimum(closest, jnp.sum((x - x[idx]) ** 2, -1))
        return centers, closest

    centers, _ = jax.lax.fori_loop(1, k, body, (centers, closest))
    return centers


@functools.partial(jax.jit, static_argnames=("iters",))
def lloyd(x: jax.Array, centers: jax.Array, iters: int) -> tuple[jax.Array, jax.Array]:
    """Lloyd iterations; an empty cluster keeps its previous center. -> (centers, assignment)."""
    k = centers.shape[0]

    def body(_, centers):
        assign = jnp.argmin(sq_distances(x, centers), -1)
        sums = jax.ops.segment_sum(x, assign, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), assign, num_segments=k)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts[:, None], 1), centers)

    centers = jax.lax.fori_loop(0, iters, body, centers)
    return centers, jnp.argmin(sq_distances(x, centers), -1)


def kmeans(x, k: int, rng, iters: int = 100) -> tuple[jax.Array, jax.Array]:
    """k-means++ then Lloyd: (centers [k, D], assignment [N]). Needs N >= k."""
    x = jnp.asarray(x, jnp.float32)
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points, got {x.shape[0]}.")
    return lloyd(x, kmeans_plusplus(x, k, rng), iters)


def capacity_assign(distances: np.ndarray, capacity: int) -> np.ndarray:
    """Each point to its nearest center with room, cheapest pairs first (at most capacity each)."""
    n, k = distances.shape
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} centers cannot hold {n} points.")
    order = np.argsort(distances, axis=None, kind="stable")
    assign = np.full(n, -1)
    load = np.zeros(k, int)
    left = n
    for flat in order:
        i, c = divmod(int(flat), k)
        if assign[i] < 0 and load[c] < capacity:
            assign[i] = c
            load[c] += 1
            left -= 1
            if not left:
                break
    return assign


def balanced_kmeans(x, k: int, rng, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """k-means whose assignment step gives every center at most ceil(N / k) points."""
    x = np.asarray(x, np.float32)
    centers = np.array(kmeans(x, k, rng, iters=iters)[0])  # Writable copy.
    capacity = -(-len(x) // k)
    assign = capacity_assign(np.asarray(sq_distances(jnp.asarray(x), jnp.asarray(centers))),
                             capacity)
    for _ in range(iters):
        for c in range(k):
            members = x[assign == c]
            if len(members):
                centers[c] = members.mean(0)
        new = capacity_assign(np.asarray(sq_distances(jnp.asarray(x), jnp.asarray(centers))),
                              capacity)
        if np.array_equal(new, assign):
            break
        assign = new
    return centers, assign
