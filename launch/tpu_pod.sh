#!/usr/bin/env bash
# sidjax on a Cloud TPU VM slice: every worker (host) runs the same command; jax.distributed
# finds the other workers itself (sidjax.main calls it when TPU_WORKER_HOSTNAMES lists more
# than one host).
#
#   launch/tpu_pod.sh create   NAME ZONE TYPE [RUNTIME]   e.g. my-pod us-east5-a v5litepod-16
#   launch/tpu_pod.sh describe NAME ZONE
#   launch/tpu_pod.sh setup    NAME ZONE [BUCKET]         copy this checkout to every worker,
#                                                         install, mount gs://BUCKET at /mnt/sidjax
#   launch/tpu_pod.sh run      NAME ZONE -- --config=configs/grpo.py:industrial \
#                                  --workdir=/mnt/sidjax/run1 --config.model.hf_path=...
#   launch/tpu_pod.sh logs     NAME ZONE [WORKER]         tail one worker's log (default 0)
#   launch/tpu_pod.sh stop     NAME ZONE                  SIGTERM: checkpoint, then exit 143
#   launch/tpu_pod.sh delete   NAME ZONE
#
# The workdir must be one directory every worker sees (the GCS mount from `setup`, or NFS):
# checkpoints are written collectively and side files by worker 0. After a preemption,
# `run` with the same flags resumes from the latest checkpoint. See launch/README.md.
set -euo pipefail

usage() { sed -n '2,20p' "$0" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
action="$1"; name="$2"; zone="$3"; shift 3
remote_dir='~/sidjax'
log_dir='~/sidjax_logs'
tpu() { gcloud compute tpus tpu-vm "$@"; }
on_all() { tpu ssh "$name" --zone="$zone" --worker=all --command="$1"; }

case "$action" in
  create)
    [[ $# -ge 1 ]] || usage
    type="$1"; runtime="${2:-v2-alpha-tpuv5-lite}"
    tpu create "$name" --zone="$zone" --accelerator-type="$type" --version="$runtime"
    ;;
  describe)
    tpu describe "$name" --zone="$zone"
    ;;
  setup)
    bucket="${1:-}"
    root="$(cd "$(dirname "$0")/.." && pwd)"
    archive="$(mktemp -d)/sidjax.tar.gz"
    git -C "$root" archive --format=tar.gz -o "$archive" HEAD  # The committed tree only.
    tpu scp "$archive" "$name:~/sidjax.tar.gz" --zone="$zone" --worker=all
    on_all "rm -rf $remote_dir && mkdir -p $remote_dir $log_dir && tar -xzf ~/sidjax.tar.gz -C $remote_dir && cd $remote_dir && pip install -q -e . 'jax[tpu]'"
    if [[ -n "$bucket" ]]; then
      on_all "sudo mkdir -p /mnt/sidjax && sudo chown \$USER /mnt/sidjax && (mountpoint -q /mnt/sidjax || gcsfuse --implicit-dirs $bucket /mnt/sidjax)"
    fi
    ;;
  run)
    [[ "${1:-}" == "--" ]] && shift
    [[ $# -ge 1 ]] || usage
    printf -v flags ' %q' "$@"
    # Detached, so a dropped ssh session does not kill the job; one log per worker.
    on_all "cd $remote_dir && nohup python3 -m sidjax.main$flags > $log_dir/\$(hostname).log 2>&1 &"
    echo "started on every worker of $name; logs: launch/tpu_pod.sh logs $name $zone [WORKER]"
    ;;
  logs)
    worker="${1:-0}"
    tpu ssh "$name" --zone="$zone" --worker="$worker" --command="tail -n 100 -f $log_dir/*.log"
    ;;
  stop)
    on_all "pkill -TERM -f 'sidjax.main' || true"
    ;;
  delete)
    tpu delete "$name" --zone="$zone" --quiet
    ;;
  *)
    usage
    ;;
esac
