#!/usr/bin/env bash
# Trains on every host of a Cloud TPU VM slice (e.g. v5litepod-16): one ssh command runs setup and
# the same main.py command on all workers. `--multihost` calls jax.distributed.initialize() with
# no arguments (Cloud TPU provides coordinator and process ids). The workdir (checkpoints) must be
# shared by all hosts: a gs:// bucket path (Orbax writes it through tensorstore/etils epath).
#   TPU=my-tpu ZONE=us-central2-b BUCKET=gs://my-bucket REPO_URL=https://... \
#     bash launch/tpu_pod.sh [--dry_run] \
#     [main.py flags...]                 e.g. --config=experiments/base.py --config.train.steps=1000
# Env: TPU, ZONE, BUCKET, REPO_URL (required); PROJECT (gcloud default), BRANCH (main),
#      RUN (run name, default: date; reuse it to resume a run).
set -euo pipefail
DRY_RUN=0
ARGS=()
for a in "$@"; do
  if [[ "${a}" == "--dry_run" ]]; then DRY_RUN=1; else ARGS+=("${a}"); fi
done
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE, e.g. us-central2-b}"
: "${BUCKET:?set BUCKET to a gs:// bucket for the workdir and dataset}"
: "${REPO_URL:?set REPO_URL to the git URL of this repository (cloned on every worker)}"
BRANCH="${BRANCH:-main}"
RUN="${RUN:-$(date +%Y%m%d-%H%M%S)}"
HAS_CONFIG=0
for a in "${ARGS[@]+"${ARGS[@]}"}"; do [[ "${a}" == --config=* ]] && HAS_CONFIG=1; done
[[ ${HAS_CONFIG} -eq 1 ]] || ARGS=(--config=experiments/tiny.py "${ARGS[@]+"${ARGS[@]}"}")
QUOTED=$(printf ' %q' "${ARGS[@]}")

# Runs on every worker. gcsfs lets TFDS/etils read and write gs:// without TensorFlow.
REMOTE="set -euo pipefail
if [[ ! -d lumiere_jax ]]; then git clone --branch ${BRANCH} ${REPO_URL} lumiere_jax; fi
cd lumiere_jax && git fetch -q origin ${BRANCH} && git checkout -q FETCH_HEAD
python3 -m venv .venv && source .venv/bin/activate
pip install -q -e '.[tpu]' gcsfs
export LUMIERE_DATA_DIR=${BUCKET}/tensorflow_datasets
python -m lumiere_jax.main --workdir=${BUCKET}/workdirs/${RUN} --mode=train --multihost${QUOTED}"

CMD=(gcloud compute tpus tpu-vm ssh "${TPU}" --zone="${ZONE}" --worker=all --command="${REMOTE}")
[[ -n "${PROJECT:-}" ]] && CMD+=(--project="${PROJECT}")
if [[ ${DRY_RUN} -eq 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
exec "${CMD[@]}"
