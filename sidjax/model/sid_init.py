"""Starting rows for a from-scratch model's SID tokens from the items' text embeddings.

Why: a from-scratch model starts every SID token as random noise, so `<a_12>` and `<a_13>`
begin as unrelated as any two tokens even when the RQ-VAE put similar items under them;
the model has to discover from the sequences alone which codes mean similar things. Here
each SID token starts from the part of its items' text embeddings that its level explains,
the way a residual quantiser's codebook does, computed in the embedding space itself, so
it works for any SID source (RQ-VAE, RQ-KMeans, or SIDs given with the data):

  level 0: v0[t] = mean of x_i over the items whose first token is t
  level l: v_l[t] = mean of r_l,i over the items whose level-l token is t,
           with r_0,i = x_i and r_l+1,i = r_l,i - v_l[token_l(i)]

The vectors are mapped to the model width by a fixed random projection (distances kept up
to a common scale) and each row is scaled to the typical norm of the model's initial
embedding rows, so they start as large as any other token. `model.sid_init='items'`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from sidjax.model.tokenizer import SID_TOKEN

SID_INITS = ("noise", "items")


def residual_token_vectors(item_sids: Sequence[str], embeddings: np.ndarray
                           ) -> dict[str, np.ndarray]:
    """item_sids[i] (a SID string like '<a_1><b_2><c_3>') and embeddings[i] ([N, D]) ->
    {SID token: [D] vector}, per level as in the module docstring."""
    tokens = [SID_TOKEN.findall(s) for s in item_sids]
    if len(tokens) != len(embeddings):
        raise ValueError(f"{len(tokens)} SIDs but {len(embeddings)} embedding rows; pass one "
                         "embedding per item, in catalog order.")
    if any(not t for t in tokens):
        bad = next(s for s, t in zip(item_sids, tokens) if not t)
        raise ValueError(f"Item SID '{bad}' has no SID tokens ('<letter_number>').")
    residual = np.asarray(embeddings, np.float64).copy()  # [N, D]
    vectors: dict[str, np.ndarray] = {}
    for level in range(max(len(t) for t in tokens)):
        rows = [i for i, t in enumerate(tokens) if len(t) > level]
        names = sorted({tokens[i][level] for i in rows})
        index = {name: k for k, name in enumerate(names)}
        owner = np.asarray([index[tokens[i][level]] for i in rows])  # [n]
        sums = np.zeros((len(names), residual.shape[1]))
        np.add.at(sums, owner, residual[rows])
        means = sums / np.bincount(owner, minlength=len(names))[:, None]  # [K, D]
        residual[rows] -= means[owner]
        vectors.update({name: means[k] for name, k in index.items()})
    return vectors


def projected_rows(vectors: Mapping[str, np.ndarray], width: int, target_norm: float,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """{token: [D]} -> {token: [width]}: a fixed Gaussian projection, then every row scaled
    to `target_norm` (a token whose vector is zero, e.g. a level with one code, keeps a
    random direction)."""
    names = sorted(vectors)
    stacked = np.stack([vectors[n] for n in names])  # [M, D]
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((stacked.shape[1], width)) / np.sqrt(width)  # [D, W]
    rows = stacked @ projection  # [M, W]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    empty = norms[:, 0] < 1e-12
    rows[empty] = rng.standard_normal((int(empty.sum()), width))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return {n: (target_norm * r).astype(np.float32) for n, r in zip(names, rows)}


def set_rows(embedding: np.ndarray, token_ids: Mapping[str, int],
             rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """A copy of `embedding` [V, W] with row token_ids[t] = rows[t] for every t in rows."""
    out = np.array(embedding, copy=True)
    for token, row in rows.items():
        out[token_ids[token]] = row
    return out
