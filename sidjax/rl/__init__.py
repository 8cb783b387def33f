"""Stage 3, GRPO: the outcome reward on the SID after `</think>` (`rewards.py`), group-normalised
advantages and the clipped policy loss with k3 KL (`grpo.py`, start here), rollouts sampled
and scored per group (`rollout.py`), the stage that runs them through the shared trainer
(`stage.py`) and its curves (`curves.py`)."""
