"""RQ-VAE in pure JAX (MiniOneRec's tokenizer), trained through the shared trainer.

encoder: MLP d -> hidden... -> e_dim (ReLU between layers), residual quantiser with
L levels x K codes, decoder: the mirrored MLP. Loss per item: reconstruction MSE +
quant_weight * mean over levels of (codebook + beta * commitment). Codebooks are
initialised by k-means on the encoded catalog (level by level on the residuals).
Evaluation encodes the whole catalog and reports the collision rate, which the trainer
uses (eval.metric = 'collision_rate', min) to keep the best-collision checkpoint, as
the method does. Optional dead-code re-seeding moves unused codes onto random residuals.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from sidjax.sid.kmeans import kmeans
from sidjax.sid.quantizer import quantization_losses, residual_quantize
from sidjax.train.trainer import Task

# Small MLPs: replicated weights, data-parallel batches.
PARTITION_RULES = ((r".*", P()),)


def _mlp_init(rng, dims: list[int]) -> dict:
    """Xavier-normal weights, zero biases (as MiniOneRec's MLPLayers)."""
    params = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        std = np.sqrt(2.0 / (a + b))
        params[f"layer_{i}"] = {"w": std * jax.random.normal(jax.random.fold_in(rng, i), (a, b)),
                                "b": jnp.zeros((b,))}
    return params


def _mlp(params: dict, x: jax.Array) -> jax.Array:
    n = len(params)
    for i in range(n):
        x = x @ params[f"layer_{i}"]["w"] + params[f"layer_{i}"]["b"]
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


def encode(params, x):
    return _mlp(params["encoder"], x)  # [N, e_dim]


def decode(params, z):
    return _mlp(params["decoder"], z)  # [N, d]


def layer_dims(input_dim: int, cfg: ConfigDict) -> list[int]:
    return [input_dim, *cfg.hidden, cfg.e_dim]


def init_params(rng, x: jax.Array, cfg: ConfigDict) -> dict:
    """Encoder/decoder weights, then codebooks by residual k-means on the encoded items."""
    dims = layer_dims(x.shape[1], cfg)
    k_enc, k_dec, k_codes = jax.random.split(rng, 3)
    params = {"encoder": _mlp_init(k_enc, dims), "decoder": _mlp_init(k_dec, dims[::-1])}
    residual = encode(params, x)
    codebooks = []
    for level in range(cfg.levels):
        centers, assign = kmeans(residual, cfg.codes, jax.random.fold_in(k_codes, level),
                                 iters=cfg.kmeans_iters)
        codebooks.append(centers)
        residual = residual - centers[assign]
    params["codebooks"] = jnp.stack(codebooks)  # [L, K, e_dim]
    return params


def loss_fn(params, batch, rng, cfg: ConfigDict):
    del rng
    x = batch["x"]  # [B, d]
    _, zq, residuals, chosen = residual_quantize(encode(params, x), params["codebooks"])
    recon = jnp.mean((decode(params, zq) - x) ** 2, axis=-1)  # [B]
    quant = quantization_losses(residuals, chosen, cfg.beta)  # [B]
    count = jnp.asarray(x.shape[0], jnp.float32)
    total = jnp.sum(recon + cfg.quant_weight * quant)
    return total, (count, {"recon": (jnp.sum(recon), count), "quant": (jnp.sum(quant), count)})


@jax.jit
def catalog_codes(params, x):
    """Codes [N, L] and reconstruction MSE of every item."""
    codes, zq, _, _ = residual_quantize(encode(params, x), params["codebooks"])
    return codes, jnp.mean((decode(params, zq) - x) ** 2)


def collision_rate(codes: np.ndarray) -> float:
    """1 - distinct SIDs / items."""
    return 1.0 - len({tuple(c) for c in np.asarray(codes).tolist()}) / len(codes)


def reseed_dead_codes(params, x, rng: np.random.Generator):
    """Moves codes no item uses onto the residuals of random items (per level)."""
    codes, _, residuals, _ = residual_quantize(encode(params, x), params["codebooks"])
    codes, residuals = np.asarray(codes), np.asarray(residuals)
    codebooks = np.array(params["codebooks"])
    moved = 0
    for level in range(codebooks.shape[0]):
        dead = np.setdiff1d(np.arange(codebooks.shape[1]), codes[:, level])
        if len(dead):
            donors = rng.choice(len(x), size=len(dead), replace=len(dead) > len(x))
            codebooks[level, dead] = residuals[level, donors]
            moved += len(dead)
    return ({**params, "codebooks": jnp.asarray(codebooks)}, moved) if moved else (None, 0)


def make_task(x: np.ndarray, cfg: ConfigDict, seed: int = 0) -> Task:
    """The trainer Task: x [N, d] are the catalog's item embeddings."""
    x_dev = jnp.asarray(x, jnp.float32)
    if x.shape[0] < cfg.codes:
        raise ValueError(f"RQ-VAE needs at least config.sid.codes={cfg.codes} items to "
                         f"initialise codebooks by k-means; the catalog has {x.shape[0]}.")

    def eval_fn(params):
        codes, mse = catalog_codes(params, x_dev)
        codes = np.asarray(codes)
        metrics = {"collision_rate": collision_rate(codes), "recon_mse": float(mse)}
        for level in range(codes.shape[1]):
            metrics[f"used_codes_l{level + 1}"] = float(len(np.unique(codes[:, level])))
        return metrics

    def post_eval(params, step):
        if not cfg.reseed_dead_codes:
            return None
        return reseed_dead_codes(params, x_dev, np.random.default_rng([seed, step]))[0]

    return Task(
        init_params=lambda key: init_params(key, x_dev, cfg),
        loss_fn=functools.partial(loss_fn, cfg=cfg),
        partition_rules=PARTITION_RULES,
        eval_fn=eval_fn,
        post_eval_fn=post_eval,
    )
