"""SASRec, the ID-based sequential baseline: `model.py` (the Flax module), `stage.py` (training
through the shared trainer, valid-HR@10 selection, SID-string scoring for the results table)."""
