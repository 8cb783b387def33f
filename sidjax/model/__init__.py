"""The decoder LLM with Semantic-ID vocabulary: config, Flax module, sharding, HF I/O."""
