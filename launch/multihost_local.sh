#!/usr/bin/env bash
# Two JAX processes on this machine, as on two hosts: each has its own CPU devices, reads its own
# data shard and writes its shards of the same Orbax checkpoint; cross-process collectives use
# gloo (main.py turns it on for --multihost on the CPU). Same absl command as a single run.
#   bash launch/multihost_local.sh [--dry_run] [main.py flags...]    e.g. --config.train.steps=20
# --dry_run prints the two processes' commands, one line each, instead of running them.
# Env: WORKDIR (workdirs/multihost), CONFIG (experiments/tiny.py), DEVICES_PER_PROCESS (2),
#      PORT (a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/_dry_run.sh "$@"
source launch/_venv.sh
WORKDIR="${WORKDIR:-workdirs/multihost}"
CONFIG="${CONFIG:-experiments/tiny.py}"
FREE_PORT='import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
PORT="${PORT:-$(python3 -c "${FREE_PORT}")}"
commands=()
for i in 0 1; do
  cmd=(env JAX_PLATFORMS=cpu
       "XLA_FLAGS=--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-2}"
       "${PY}" -m lumiere_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" --mode=train
       --multihost --coordinator_address="127.0.0.1:${PORT}" --num_processes=2 --process_id="${i}"
       "${ARGS[@]+"${ARGS[@]}"}")
  commands+=("$(show "${cmd[@]}")")
done
if [[ ${DRY_RUN} -eq 1 ]]; then
  printf '%s\n' "${commands[@]}"
  exit 0
fi
pids=()
for i in 0 1; do
  eval "${commands[i]}" 2>&1 | sed "s/^/[process ${i}] /" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "${pid}" || rc=$?; done
exit "${rc}"
