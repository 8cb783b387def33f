"""Decoding: SID constraint tables and constrained beam search (sampler to follow)."""
