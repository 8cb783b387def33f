"""Evaluation: ranking metrics (`metrics.py`), count and popularity baselines
(`baselines.py`), a model scored by constrained beam search in non-thinking or thinking mode
(`evaluate.py`, start here) and the `eval` stage writing results.json / results.md
(`stage.py`)."""
