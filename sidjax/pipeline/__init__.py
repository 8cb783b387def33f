"""The whole method in one command (`run.py`, start here): data -> SIDs -> SASRec -> stage 1 ->
stage 2 -> GRPO -> evaluation, each stage cached in the workdir; `defaults.py` holds the
config the LLM stages share."""
