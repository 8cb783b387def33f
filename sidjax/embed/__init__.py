"""Item text embeddings: one interface (`embed_catalog`), encoders chosen by config."""
