#!/usr/bin/env bash
# The default job, end to end on a CPU: install -> build the synthetic dataset -> train the tiny
# STUNet -> sample videos for the config's prompts. Run again: it reuses the dataset and resumes.
# Extra arguments go to main.py, e.g. --config.train.steps=200.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
source launch/_venv.sh
t1=$(date +%s)
echo "[setup] done in $((t1 - t0))s" >&2
WORKDIR="${WORKDIR:-workdirs/tiny}"
"${PY}" -m lumiere_jax.main --config=experiments/tiny.py --workdir="${WORKDIR}" --mode=train "$@"
t2=$(date +%s)
echo "[default job] total $((t2 - t0))s (setup $((t1 - t0))s, data+train+sample $((t2 - t1))s)" >&2
echo "[default job] videos: $(cd "${WORKDIR}" && pwd)/samples/<step>/*.mp4 *.gif grid.png" >&2
