#!/usr/bin/env bash
# sidjax on a multi-node GPU cluster with SLURM: one process per node, each owning that
# node's GPUs, joined by jax.distributed. Submit with the nodes you want:
#
#   sbatch --nodes=2 launch/gpu_slurm.sh --config=configs/grpo.py:industrial \
#       --workdir=/shared/runs/grpo1 --config.model.hf_path=/shared/models/Qwen3-1.7B \
#       --config.model.dtype=bfloat16 --config.mesh.shape.fsdp=-1
#
# The coordinator is the first node of the allocation (port SIDJAX_PORT, default 12355);
# process ids are SLURM_PROCID. The workdir must be on a filesystem every node sees.
# Preemption: SLURM sends SIGTERM (--signal below), sidjax checkpoints and exits with 143,
# and this script requeues the job, which resumes from that checkpoint.
#SBATCH --job-name=sidjax
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --signal=B:TERM@300
#SBATCH --requeue
#SBATCH --output=sidjax-%j.log
set -uo pipefail

if [[ $# -eq 0 ]]; then
  echo "give sidjax.main flags, e.g. sbatch --nodes=2 $0 --config=configs/grpo.py --workdir=/shared/w" >&2
  exit 2
fi
if [[ -z "${SLURM_JOB_NODELIST:-}" || -z "${SLURM_NTASKS:-}" ]]; then
  echo "not inside a SLURM allocation (SLURM_JOB_NODELIST/SLURM_NTASKS unset); submit with sbatch" >&2
  exit 2
fi
head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
port="${SIDJAX_PORT:-12355}"
printf -v flags ' %q' "$@"
echo "sidjax: $SLURM_NTASKS processes, coordinator $head_node:$port"

# Each task reads its own SLURM_PROCID, so the ids are expanded on the node, not here.
srun --kill-on-bad-exit=1 bash -c "exec python3 -m sidjax.main$flags \
  --coordinator_address=$head_node:$port --num_processes=$SLURM_NTASKS \
  --process_id=\$SLURM_PROCID" &
pid=$!
# SLURM signals this batch shell; pass SIGTERM on to the tasks so they checkpoint.
trap 'kill -TERM $pid 2>/dev/null' TERM
while true; do
  wait $pid
  status=$?
  kill -0 $pid 2>/dev/null || break  # `wait` returned for the trap: srun still running.
done
if [[ $status -eq 143 ]]; then
  echo "sidjax: preempted (exit 143); requeueing job $SLURM_JOB_ID to resume"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit $status
