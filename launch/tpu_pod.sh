#!/usr/bin/env bash
# Trains on every host of a Cloud TPU VM slice (e.g. v5litepod-16): one ssh command runs setup and
# the same main.py command on all workers. `--multihost` calls jax.distributed.initialize() with
# no arguments (Cloud TPU provides coordinator and process ids). The workdir (checkpoints) must be
# shared by all hosts: a gs:// bucket path (Orbax writes it through tensorstore/etils epath).
#   TPU=my-tpu ZONE=us-central2-b BUCKET=gs://my-bucket REPO_URL=https://... \
#     bash launch/tpu_pod.sh [--dry_run] \
#     [main.py flags...]                 e.g. --config=experiments/base.py --config.train.steps=1000
# --dry_run prints the script every worker runs and the gcloud command, instead of running it.
# Env: TPU, ZONE, BUCKET, REPO_URL (required); PROJECT (gcloud default), BRANCH (main),
#      RUN (run name, default: date; reuse it to resume a run).
set -euo pipefail
source "$(dirname "$0")/_dry_run.sh" "$@"
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE, e.g. us-central2-b}"
: "${BUCKET:?set BUCKET to a gs:// bucket for the workdir and dataset}"
: "${REPO_URL:?set REPO_URL to the git URL of this repository (cloned on every worker)}"
BRANCH="${BRANCH:-main}"
RUN="${RUN:-$(date +%Y%m%d-%H%M%S)}"
HAS_CONFIG=0
for a in "${ARGS[@]+"${ARGS[@]}"}"; do [[ "${a}" == --config=* ]] && HAS_CONFIG=1; done
[[ ${HAS_CONFIG} -eq 1 ]] || ARGS=(--config=experiments/tiny.py "${ARGS[@]+"${ARGS[@]}"}")
q() { printf '%q' "$1"; }
WORKDIR="${BUCKET}/workdirs/${RUN}"

# Runs on every worker: jax[tpu] with the libtpu it pins, at the versions of constraints.txt.
# gcsfs lets TFDS/etils read and write gs:// without TensorFlow.
REMOTE="set -euo pipefail
[[ -d lumiere_jax ]] || git clone --branch $(q "${BRANCH}") $(q "${REPO_URL}") lumiere_jax
cd lumiere_jax && git fetch -q origin $(q "${BRANCH}") && git checkout -q FETCH_HEAD
python3 -m venv .venv && source .venv/bin/activate
pip install -q -e '.[tpu]' gcsfs -c constraints.txt
export LUMIERE_DATA_DIR=$(q "${BUCKET}/tensorflow_datasets")
$(show python -m lumiere_jax.main --workdir="${WORKDIR}" --mode=train --multihost "${ARGS[@]}")"

CMD=(gcloud compute tpus tpu-vm ssh "${TPU}" --zone="${ZONE}" --worker=all --command="${REMOTE}")
[[ -n "${PROJECT:-}" ]] && CMD+=(--project="${PROJECT}")
if [[ ${DRY_RUN} -eq 1 ]]; then
  echo "# On every worker of ${TPU}, the --command below runs:"
  sed 's/^/#   /' <<< "${REMOTE}"
  show "${CMD[@]}"
  exit 0
fi
exec "${CMD[@]}"
