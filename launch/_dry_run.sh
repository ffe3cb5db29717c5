# Sourced by the launch scripts with their arguments: takes `--dry_run` out of them (the others
# stay in ARGS) and defines `show`, which prints a command as one shell-quoted line that can be
# pasted back into a shell. With --dry_run a script shows its commands instead of running them.
DRY_RUN=0
ARGS=()
for _arg in "$@"; do
  if [[ "${_arg}" == "--dry_run" ]]; then DRY_RUN=1; else ARGS+=("${_arg}"); fi
done
show() {
  printf '%q' "$1"
  shift
  printf ' %q' "$@"
  echo
}
