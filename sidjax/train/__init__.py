"""The shared training machinery: mesh, state, optimiser, trainer loop, checkpoints, metrics."""
