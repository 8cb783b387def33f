"""GRPO math as pure functions: group advantages and the clipped policy loss.

`group_advantages` normalises rewards within each group of `group_size` responses to
one prompt (rows g*G .. g*G+G-1):
  grpo    (r - mean_g) / (std_g + eps), std unbiased (a group of one: mean 0, std 1,
          as VERL); the method's estimator
  drgrpo  r - mean_g (Dr. GRPO: no std division)
  rloo    r - mean of the other G-1 rewards = G/(G-1) (r - mean_g)
Non-finite rewards are left out of the group statistics and get advantage 0; a group whose
(finite) rewards are all equal gets exactly 0.

`policy_loss` is PPO's clipped objective on per-token log-probs, with the ratio computed
from a log-ratio clamped to [-20, 20] for safety, separate low/high clip epsilons, dual
clip for negative advantages, and a KL-to-reference loss term (k1 or the low-variance k3,
clamped to [-10, 10], as VERL's `low_var_kl`). It returns (sum, (weight, metrics)) with
(sum, count) metric pairs, so micro-batch accumulation through the trainer is exact:
  token-mean             sum over all response tokens / their count (the method)
  seq-mean-token-mean    mean over sequences of each sequence's token mean
  fixed-length           Dr. GRPO: each sequence's token sum / max_len, mean over sequences
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

ESTIMATORS = ("grpo", "drgrpo", "rloo")
AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "fixed-length")
KL_ESTIMATORS = ("k1", "k3")


def group_advantages(rewards, group_size: int, estimator: str = "grpo", eps: float = 1e-6
                     ) -> np.ndarray:
    """rewards [N] (N a multiple of group_size) -> advantages [N] float32."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"Advantage estimator '{estimator}' is not one of {ESTIMATORS}.")
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1 or len(r) % group_size:
        raise ValueError(f"{len(r)} rewards do not split into whole groups of {group_size}.")
    r = r.reshape(-1, group_size)
    ok = np.isfinite(r)
    n = ok.sum(1, keepdims=True)
    safe = np.where(ok, r, 0.0)
    mean = safe.sum(1, keepdims=True) / np.maximum(n, 1)
    centred = np.where(ok, safe - mean, 0.0)
    if estimator == "grpo":
        var = (centred ** 2).sum(1, keepdims=True) / np.maximum(n - 1, 1)
        std = np.where(n > 1, np.sqrt(var), 1.0)
        mean = np.where(n > 1, mean, 0.0)
        adv = np.where(ok, (safe - mean) / (std + eps), 0.0)
        adv = np.where((n > 1) & (var == 0), 0.0, adv)
    elif estimator == "drgrpo":
        adv = centred
    else:
        adv = np.where(n > 1, centred * n / np.maximum(n - 1, 1), 0.0)
    return adv.reshape(-1).astype(np.float32)


def kl_penalty(logp, ref_logp, estimator: str = "k3"):
    """Per-token KL(pi || ref) estimate from the sampled tokens' log-probs."""
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        delta = jnp.clip(ref_logp - logp, -20.0, 20.0)
        return jnp.clip(jnp.exp(delta) - delta - 1.0, -10.0, 10.0)
    raise ValueError(f"KL estimator '{estimator}' is not one of {KL_ESTIMATORS}.")


def policy_loss(logp, old_logp, ref_logp, advantages, mask, *, clip_low: float = 0.2,
                clip_high: float = 0.2, dual_clip: float | None = 3.0, kl_coef: float = 0.001,
                kl_estimator: str = "k3", aggregation: str = "token-mean",
                max_len: int = 1024):
    """logp/old_logp/ref_logp/mask [B, T] (mask: response tokens), advantages [B].

    -> (loss_sum, (weight, {name: (sum, count)})); the loss is loss_sum / weight.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"Loss aggregation '{aggregation}' is not one of {AGGREGATIONS}.")
    mask = mask.astype(jnp.float32)
    adv = advantages[:, None].astype(jnp.float32)  # [B, 1]
    ratio = jnp.exp(jnp.clip(logp - old_logp, -20.0, 20.0))  # [B, T]
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = jnp.maximum(unclipped, clipped)
    if dual_clip:
        pg = jnp.where(adv < 0, jnp.minimum(pg, -adv * dual_clip), pg)
    kl = kl_penalty(logp, ref_logp, kl_estimator)
    per_token = pg + kl_coef * kl  # [B, T]
    tokens = mask.sum()
    if aggregation == "token-mean":
        loss_sum, weight = (per_token * mask).sum(), tokens
    else:
        seq_sum = (per_token * mask).sum(1)  # [B]
        seq_len = mask.sum(1)
        has = (seq_len > 0).astype(jnp.float32)
        if aggregation == "seq-mean-token-mean":
            loss_sum = (seq_sum / jnp.maximum(seq_len, 1.0)).sum()
        else:
            loss_sum = (seq_sum / float(max_len)).sum()
        weight = has.sum()

    def tok(x):
        return ((x * mask).sum(), tokens)

    metrics = {
        "pg_loss": tok(pg),
        "kl": tok(kl),
        "clip_frac": tok((clipped > unclipped).astype(jnp.float32)),
        "entropy": tok(-logp),  # Sampled-token estimate of the policy entropy.
        "ratio": tok(ratio),
    }
    return loss_sum, (weight, metrics)


def check_group_layout(rows: int, group_size: int, micro_batches: int) -> None:
    """Rollout batches must hold whole groups, and so must every micro-batch."""
    if rows % group_size:
        raise ValueError(f"A batch of {rows} responses does not hold whole groups of "
                         f"{group_size} (config.grpo.group_size); use a multiple.")
    if (rows // micro_batches) % group_size:
        raise ValueError(f"config.train.micro_batches={micro_batches} would split a group of "
                         f"{group_size} across micro-batches (micro-batch of "
                         f"{rows // micro_batches} rows); use micro-batches holding whole "
                         "groups.")


def micro_batch_order(rows: int, group_size: int, micro_batches: int) -> np.ndarray:
    """Row permutation that keeps each group inside one micro-batch under the trainer's
    strided split (row r goes to micro-batch r % micro_batches)."""
    check_group_layout(rows, group_size, micro_batches)
    per_micro = rows // micro_batches
    order = np.empty(rows, np.int64)
    for source in range(rows):
        micro, within = divmod(source, per_micro)
        order[within * micro_batches + micro] = source
    return order


