"""The method's training tasks, as the model sees them: every prompt string (`prompts.py`) and
the builders that render stage-1 / stage-2 tasks into loss-masked `Example`s with the model's
chat template (`examples.py`). Shared by SFT, evaluation and GRPO; above `data/` (which it
reads) and `model/` (whose chat template it renders)."""
