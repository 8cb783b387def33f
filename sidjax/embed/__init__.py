"""Item text embeddings, the RQ-VAE's input: one entry point (`encoders.embed_catalog`, start
here; cached by catalog hash) and the encoders a config picks: TF-IDF + SVD (`tfidf.py`, the
offline default), mean-pooled hidden states of a local HF checkpoint (`llm.py`), or a `.npy`
file of precomputed vectors."""
