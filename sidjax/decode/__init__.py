"""Decoding: SID prefix tables (`sid_tables.py`), constrained beam search over catalog SIDs
(`beam.py`, start here), the KV-cached sampler for reasoning and GRPO rollouts
(`sampler.py`) and the constrained SID tail a rollout may end with (`sid_tail.py`)."""
