"""A toy regression stage: exercises the trainer end to end on any mesh, in seconds."""
