"""The shared training machinery every stage runs on: the trainer loop (`trainer.py`, start
here), mesh and partition rules (`mesh.py`, `partition.py`), sharded state and optimiser
(`state.py`, `optim.py`), checkpoints (`checkpoint.py`), metrics and progress (`metrics.py`),
multi-process helpers (`distributed.py`), the one-run-per-workdir lock (`workdir_lock.py`),
the CPU malloc setting (`host_memory.py`) and the console's filter for library chatter
(`console.py`). Imports nothing else from sidjax."""
