#!/usr/bin/env bash
# Installs the test dependencies (into the active venv or ./.venv) and runs the test suite.
# Extra arguments go to pytest, e.g. tests/test_train.py -x. VENV_EXTRAS=tpu also installs
# libtpu, which the TPU AOT compile tests (tests/test_tpu_compile.py) need.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV_EXTRAS="test${VENV_EXTRAS:+,${VENV_EXTRAS}}" source launch/_venv.sh || exit 1
"${PY}" -m pytest "$@"
rc=$?
if [[ ${rc} -eq 5 ]]; then
  echo "ERROR: pytest collected no tests: the suite is missing, this must not pass." >&2
fi
exit ${rc}
