#!/usr/bin/env bash
# One-line accelerator check (see bench/gpu_check.py): SFT tokens/s + MFU, sampler decode
# tokens/s at batch 64 and 256, SID beam search examples/s, for random weights of the
# Qwen3-1.7B shape in bf16. Prints one JSON line; stops after 8 minutes.
#   bench/gpu_check.sh            # on a GPU/TPU host
#   bench/gpu_check.sh --small    # CPU-sized shapes
set -euo pipefail
cd "$(dirname "$0")/.."
# The repository root on the path: the check runs from a bare checkout as well as an install.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 python3 bench/gpu_check.py "$@"
