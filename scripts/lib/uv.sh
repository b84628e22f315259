# shellcheck shell=bash
# Sourced by scripts/doctor and scripts/test: make `$PY -m uv` work on a fresh Debian/Ubuntu machine
# that has only Python 3.11 (no pip, PEP 668 "externally managed" system Python).
#   1. uv already importable: use it
#   2. pip present: pip install uv (the user's site; --break-system-packages where PEP 668 refuses)
#   3. no pip, root or sudo: apt-get install python3-pip, then 2
PY=${PYTHON:-python3}

_gpuprov_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

ensure_uv() {
  if "$PY" -m uv --version >/dev/null 2>&1; then return 0; fi
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "==> $PY has no pip: apt-get install python3-pip" >&2
    if ! { _gpuprov_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive _gpuprov_sudo \
        apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }; then
      echo "error: $PY has no pip and it cannot be installed here (not root, no sudo): install uv" \
        "(apt install python3-pip, or pipx install uv) and run this again" >&2
      return 1
    fi
  fi
  echo "==> installing uv (pip)" >&2
  local user=()
  [ "$(id -u)" -ne 0 ] && user=(--user)
  "$PY" -m pip install --quiet "${user[@]}" uv 2>/dev/null \
    || "$PY" -m pip install --quiet "${user[@]}" --break-system-packages uv
  "$PY" -m uv --version >/dev/null
}
