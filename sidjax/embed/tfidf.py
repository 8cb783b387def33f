"""TF-IDF + truncated SVD: the offline default encoder (no weights, deterministic).

Words and word bigrams, sublinear term frequency, smoothed IDF, L2-normalised rows,
then a seeded randomized SVD to `dim` components (U * S), each component's sign
fixed so its largest entry is positive. Same texts + seed -> same embeddings.
"""

from __future__ import annotations

import collections
import re

import numpy as np
import scipy.sparse as sp

_WORD = re.compile(r"[a-z0-9]+(?:[.\-/][a-z0-9]+)*")


def _terms(text: str, ngram: int) -> list[str]:
    words = _WORD.findall(text.lower())
    terms = list(words)
    for n in range(2, ngram + 1):
        terms += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    return terms


def tfidf_matrix(texts: list[str], max_features: int = 50000, ngram: int = 2,
                 min_df: int = 1) -> sp.csr_matrix:
    docs = [collections.Counter(_terms(t, ngram)) for t in texts]
    df = collections.Counter(term for d in docs for term in d)
    vocab = [t for t, c in sorted(df.items(), key=lambda x: (-x[1], x[0])) if c >= min_df]
    vocab = {t: i for i, t in enumerate(vocab[:max_features])}
    rows, cols, vals = [], [], []
    n = len(texts)
    idf = np.zeros(len(vocab))
    for t, i in vocab.items():
        idf[i] = np.log((1 + n) / (1 + df[t])) + 1.0
    for r, d in enumerate(docs):
        for t, c in d.items():
            if t in vocab:
                rows.append(r)
                cols.append(vocab[t])
                vals.append((1.0 + np.log(c)) * idf[vocab[t]])
    x = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(vocab)), dtype=np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x


def randomized_svd(x, dim: int, seed: int, oversample: int = 10, power_iters: int = 4):
    """U * S of a rank-`dim` approximation (Halko et al.), deterministic in `seed`."""
    n, m = x.shape
    k = min(dim + oversample, n, m)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(x @ rng.standard_normal((m, k)))
    for _ in range(power_iters):
        q, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ q)
    u_small, s, _ = np.linalg.svd((x.T @ q).T, full_matrices=False)
    u = (q @ u_small)[:, :dim] * s[:dim]
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    return u * np.where(signs == 0, 1.0, signs)


def tfidf_embeddings(texts: list[str], dim: int = 256, seed: int = 0, max_features: int = 50000,
                     ngram: int = 2) -> np.ndarray:
    """[N, dim] float32; columns beyond the matrix rank are zero."""
    x = tfidf_matrix(texts, max_features, ngram)
    u = randomized_svd(x, dim, seed)
    out = np.zeros((len(texts), dim), np.float32)
    out[:, :u.shape[1]] = u
    return out
