"""Stages 1 and 2, supervised fine-tuning: bucketed batches with cached tokenisation
(`batches.py`), the masked next-token loss (`loss.py`) and the SFT stage that mixes the
method's tasks, trains through the shared trainer and selects on valid HR@10 (`stage.py`,
start here)."""
