"""sidjax: LLM recommenders that reason over Semantic IDs, in JAX/Flax."""

__version__ = "0.1.0"
