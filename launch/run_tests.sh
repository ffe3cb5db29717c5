#!/usr/bin/env bash
# Installs the test dependencies (into the active venv or ./.venv) and runs the test suite.
# Extra arguments go to pytest, e.g. tests/test_train.py -x. VENV_EXTRAS=tpu also installs
# libtpu, which the TPU AOT compile tests (tests/test_tpu_compile.py) need.
# The suite runs in PYTEST_WORKERS (default 2) pytest-xdist processes, each taking whole test
# files (module fixtures are built once), the slowest files first (tests/conftest.py); compiles
# are mostly single-threaded, so 2 processes keep both cores of a 2-core machine busy.
# PYTEST_WORKERS=0 runs in this process. pytest.ini prints the slowest tests (--durations).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV_EXTRAS="test${VENV_EXTRAS:+,${VENV_EXTRAS}}" source launch/_venv.sh || exit 1
workers="${PYTEST_WORKERS:-2}"
if [[ "${workers}" == 0 ]]; then
  "${PY}" -m pytest "$@"
else
  "${PY}" -m pytest -n "${workers}" --dist loadfile "$@"
fi
rc=$?
if [[ ${rc} -eq 5 ]]; then
  echo "ERROR: pytest collected no tests: the suite is missing, this must not pass." >&2
fi
exit ${rc}
