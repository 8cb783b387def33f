"""Semantic IDs: the pure-JAX RQ-VAE (`rqvae.py`, start here) and residual k-means
(`rqkmeans.py`) over the shared residual quantiser (`quantizer.py`, with `kmeans.py` and
`sinkhorn.py`), collision handling (`collisions.py`), the quality report (`report.py`) and
the `sid` stage that writes each item's SID (`stage.py`)."""
