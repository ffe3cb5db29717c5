#!/usr/bin/env bash
# SLURM, one JAX process per GPU: srun starts SLURM_NTASKS copies of the same main.py command;
# process 0's node hosts the coordinator. The workdir must be on a filesystem all nodes share.
#   sbatch launch/slurm_gpu.sh [main.py flags...]     e.g. --config=experiments/base.py
# Env: WORKDIR (workdirs/slurm-$SLURM_JOB_ID), PORT (29500); venv in ./.venv or $VIRTUAL_ENV with
#      `pip install -e . "jax[cuda12]==0.10.2"`.
#SBATCH --job-name=lumiere_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
PY="${VIRTUAL_ENV:-${PWD}/.venv}/bin/python"
COORDINATOR="$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1):${PORT:-29500}"
export WORKDIR="${WORKDIR:-workdirs/slurm-${SLURM_JOB_ID}}"
export PY COORDINATOR
HAS_CONFIG=0
for a in "$@"; do [[ "${a}" == --config=* ]] && HAS_CONFIG=1; done
[[ ${HAS_CONFIG} -eq 1 ]] || set -- --config=experiments/tiny.py "$@"
# Single quotes: SLURM_PROCID is set per task by srun, so it is expanded inside each task.
srun --kill-on-bad-exit=1 bash -c '"${PY}" -m lumiere_jax.main --workdir="${WORKDIR}" \
  --mode=train --multihost --coordinator_address="${COORDINATOR}" \
  --num_processes="${SLURM_NTASKS}" --process_id="${SLURM_PROCID}" "$@"' lumiere_jax "$@"
