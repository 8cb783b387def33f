"""The whole method in one command: data -> SIDs -> stage 1 -> stage 2 -> GRPO -> evaluation."""
