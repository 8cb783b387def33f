"""The decoder LLM with Semantic-ID vocabulary: `config.py` (ModelConfig and presets, start
here), the Flax decoder (`transformer.py`, `model.py`: init, sharded params, forward),
the partition table (`sharding.py`), HF checkpoint import/export (`hf.py`,
`safetensors_io.py`), the tokenizer with SID tokens (`tokenizer.py`), chat templates
(`chat.py`), per-token log-probs (`logprobs.py`) and the model/tokenizer setup every LLM
stage shares (`setup.py`)."""
