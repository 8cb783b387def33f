#!/usr/bin/env bash
# N sidjax processes on this machine, each owning its own CPU devices, joined by
# jax.distributed over 127.0.0.1: the multi-host code paths, testable on a laptop.
#
#   launch/local_multiprocess.sh [-n PROCESSES] [-d DEVICES_PER_PROCESS] [-p PORT] \
#       -- --config=configs/sft.py:tiny --workdir=/tmp/sft2p [--config.x=y ...]
#
# Every process runs the same `python -m sidjax.main` command (SPMD). Logs go to
# <workdir>/logs/process_<i>.log (the workdir is shared, as on a real cluster); the
# script exits non-zero when any process fails, and kills the others then.
set -euo pipefail

processes=2
devices=4
port=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) processes="$2"; shift 2 ;;
    -d) devices="$2"; shift 2 ;;
    -p) port="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option '$1'; usage: $0 [-n N] [-d DEVICES] [-p PORT] -- <sidjax.main flags>" >&2
       exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "no sidjax.main flags given; e.g. $0 -- --config=configs/sft.py:tiny --workdir=/tmp/w" >&2
  exit 2
fi
workdir=""
for arg in "$@"; do
  [[ "$arg" == --workdir=* ]] && workdir="${arg#--workdir=}"
done
if [[ -z "$workdir" ]]; then
  echo "pass --workdir=DIR: every process must write to the same directory" >&2
  exit 2
fi
if [[ -z "$port" ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
mkdir -p "$workdir/logs"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup INT TERM
for ((i = 0; i < processes; i++)); do
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
    python3 -m sidjax.main "$@" --coordinator_address="127.0.0.1:${port}" \
      --num_processes="${processes}" --process_id="${i}" \
      >"$workdir/logs/process_${i}.log" 2>&1 &
  pids+=("$!")
done
# Whichever process fails first, stop the rest: they would wait for it in a collective.
status=0
running=("${pids[@]}")
while [[ ${#running[@]} -gt 0 ]]; do
  finished=""
  code=0
  wait -n -p finished "${running[@]}" || code=$?
  running=("${running[@]/$finished}")
  running=(${running[@]})
  if [[ $code -ne 0 ]]; then
    for ((i = 0; i < processes; i++)); do
      if [[ "${pids[$i]}" == "$finished" ]]; then
        echo "process $i failed (exit $code); see $workdir/logs/process_${i}.log" >&2
      fi
    done
    status=1
    cleanup
    break
  fi
done
wait 2>/dev/null || true
exit "$status"
