"""Semantic IDs: RQ-VAE and residual k-means tokenizers, collision handling, quality report."""
