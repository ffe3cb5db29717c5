#!/usr/bin/env bash
# Two JAX processes on this machine, as on two hosts: each has its own CPU devices, reads its own
# data shard and writes its shards of the same Orbax checkpoint; cross-process collectives use
# gloo (main.py turns it on for --multihost on the CPU). Same absl command as a single run.
#   bash launch/multihost_local.sh [main.py flags...]     e.g. --config.train.steps=20
# Env: WORKDIR (workdirs/multihost), CONFIG (experiments/tiny.py), DEVICES_PER_PROCESS (2),
#      PORT (a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/_venv.sh
WORKDIR="${WORKDIR:-workdirs/multihost}"
CONFIG="${CONFIG:-experiments/tiny.py}"
PORT="${PORT:-$("${PY}" -c 'import portpicker; print(portpicker.pick_unused_port())')}"
export JAX_PLATFORMS=cpu
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-2}"
pids=()
for i in 0 1; do
  "${PY}" -m lumiere_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" --mode=train \
    --multihost --coordinator_address="127.0.0.1:${PORT}" --num_processes=2 --process_id="${i}" \
    "$@" 2>&1 | sed "s/^/[process ${i}] /" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "${pid}" || rc=$?; done
exit "${rc}"
