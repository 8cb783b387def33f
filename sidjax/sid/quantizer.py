"""Residual quantisation: the math shared by RQ-VAE and RQ-KMeans (pure functions).

Level l quantises the residual r_l (r_0 = z) to its nearest code q_l in codebook l, then
r_{l+1} = r_l - sg(q_l); the reconstruction is sum_l q_l. Training uses the straight-through
estimator z + sg(sum_l q_l - z) (forward: the codes, backward: identity), a codebook loss
mean((sg(r_l) - q_l)^2) that moves codes, and a commitment loss mean((r_l - sg(q_l))^2),
weighted by beta, that keeps the encoder near its codes (as in MiniOneRec's RQ-VAE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sidjax.sid.kmeans import sq_distances


def nearest_code(x: jax.Array, codebook: jax.Array) -> jax.Array:
    """[N, D], [K, D] -> index of the nearest code [N]."""
    return jnp.argmin(sq_distances(x, codebook), axis=-1)


def residual_quantize(z: jax.Array, codebooks: jax.Array):
    """z [N, D], codebooks [L, K, D] -> (codes [N, L], quantized [N, D] straight-through,
    residuals [L, N, D] (input of each level), per-level quantized [L, N, D])."""
    residual = z
    codes, residuals, chosen = [], [], []
    total = jnp.zeros_like(z)
    for level in range(codebooks.shape[0]):
        idx = nearest_code(residual, codebooks[level])
        q = codebooks[level][idx]
        residuals.append(residual)
        chosen.append(q)
        codes.append(idx)
        total = total + q
        residual = residual - jax.lax.stop_gradient(q)
    out = z + jax.lax.stop_gradient(total - z)  # Straight-through: forward sum q, backward I.
    return jnp.stack(codes, 1), out, jnp.stack(residuals), jnp.stack(chosen)


def quantization_losses(residuals: jax.Array, chosen: jax.Array, beta: float):
    """Per example: mean over levels of codebook + beta * commitment. [L, N, D] -> [N]."""
    codebook = jnp.mean((jax.lax.stop_gradient(residuals) - chosen) ** 2, axis=-1)  # [L, N]
    commitment = jnp.mean((residuals - jax.lax.stop_gradient(chosen)) ** 2, axis=-1)
    return jnp.mean(codebook + beta * commitment, axis=0)


def codes_for(z: jax.Array, codebooks: jax.Array) -> jax.Array:
    return residual_quantize(z, codebooks)[0]
