"""Stage 3: rewards, GRPO math and the rollout + update loop."""
