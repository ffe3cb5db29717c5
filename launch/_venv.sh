# Sourced by the launch scripts: picks the active venv, or creates ./.venv, and installs the
# project into it with the CPU build of JAX and the versions of constraints.txt (quietly; pip
# skips what is already installed).
# Usage: [VENV_EXTRAS=test,tpu] source launch/_venv.sh; sets $PY. Extras come from the
# environment, not from an argument: a `source` without arguments sees the calling script's own
# arguments. `tpu` adds libtpu, the TPU compiler the AOT compile test and the pod planner use.
# After launch/_dry_run.sh saw --dry_run, it prints the commands it would run (to stderr).
_setup() {
  if [[ "${DRY_RUN:-0}" == 1 ]] && declare -F show >/dev/null; then
    echo "[dry run] $(show "$@")" >&2
  else
    "$@"
  fi
}
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY="${VIRTUAL_ENV}/bin/python"
else
  if [[ ! -x .venv/bin/python ]]; then
    echo "[setup] creating .venv" >&2
    _setup python3 -m venv .venv
  fi
  PY=.venv/bin/python
fi
_extras="cpu${VENV_EXTRAS:+,${VENV_EXTRAS}}"
_stamp=".venv-installed-${_extras//,/-}"
if [[ ! -f "${_stamp}" || setup.py -nt "${_stamp}" || constraints.txt -nt "${_stamp}" ]] \
    || ! "${PY}" -c "import lumiere_jax" 2>/dev/null; then
  echo "[setup] installing lumiere_jax[${_extras}] into $(dirname "$(dirname "${PY}")")" >&2
  _setup "${PY}" -m pip install -q --disable-pip-version-check -e ".[${_extras}]" \
    -c constraints.txt >&2
  _setup touch "${_stamp}"
fi
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
