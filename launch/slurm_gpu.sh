#!/usr/bin/env bash
# SLURM, one JAX process per GPU: srun starts SLURM_NTASKS copies of the same main.py command;
# process 0's node hosts the coordinator. The workdir must be on a filesystem all nodes share.
#   sbatch launch/slurm_gpu.sh [main.py flags...]     e.g. --config=experiments/base.py
#   bash launch/slurm_gpu.sh --dry_run [main.py flags...]   (inside an allocation, e.g. salloc)
# --dry_run prints the srun command instead of running it.
# Env: WORKDIR (workdirs/slurm-$SLURM_JOB_ID), PORT (29500); venv in ./.venv or $VIRTUAL_ENV with
#      `pip install -e . "jax[cuda12]==0.10.2" -c constraints.txt`.
#SBATCH --job-name=lumiere_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
source launch/_dry_run.sh "$@"
PY="${VIRTUAL_ENV:-${PWD}/.venv}/bin/python"
# Not `| head -n 1`: under pipefail, scontrol killed by SIGPIPE on a long node list fails the job.
NODES="$(scontrol show hostnames "${SLURM_JOB_NODELIST}")"
COORDINATOR="${NODES%%$'\n'*}:${PORT:-29500}"
export WORKDIR="${WORKDIR:-workdirs/slurm-${SLURM_JOB_ID}}"
export PY COORDINATOR
HAS_CONFIG=0
for a in "${ARGS[@]+"${ARGS[@]}"}"; do [[ "${a}" == --config=* ]] && HAS_CONFIG=1; done
[[ ${HAS_CONFIG} -eq 1 ]] || ARGS=(--config=experiments/tiny.py "${ARGS[@]+"${ARGS[@]}"}")
# Single quotes: SLURM_PROCID is set per task by srun, so it is expanded inside each task.
CMD=(srun --kill-on-bad-exit=1 --export=ALL bash -c '"${PY}" -m lumiere_jax.main \
  --workdir="${WORKDIR}" --mode=train --multihost --coordinator_address="${COORDINATOR}" \
  --num_processes="${SLURM_NTASKS}" --process_id="${SLURM_PROCID}" "$@"' lumiere_jax "${ARGS[@]}")
if [[ ${DRY_RUN} -eq 1 ]]; then
  echo "# with PY=${PY} WORKDIR=${WORKDIR} COORDINATOR=${COORDINATOR} SLURM_NTASKS=${SLURM_NTASKS}"
  show "${CMD[@]}"
  exit 0
fi
"${CMD[@]}"
