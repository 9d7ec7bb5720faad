#!/usr/bin/env bash
# Installs pinned Python requirements into a project-local virtualenv: by default
# componentize-py (plugin-sdk/python/requirements.txt) into .python/venv, for building Python
# plugins; `python.sh VENV REQUIREMENTS` for another set (the bench's Quix Streams peer:
# bench/peers/requirements.txt into .python/peers). Idempotent: when every pinned requirement is
# already installed there, pip is not run, so it works offline after the first install.
#
# Building a plugin: `bash plugin-sdk/python/build.sh plugins/NAME target/plugins/NAME.wasm`
# (what `make plugins` does for every plugin directory with a plugin.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.python/venv}"
REQUIREMENTS="${2:-$ROOT/plugin-sdk/python/requirements.txt}"

# Debian's python3 cannot make a virtualenv with pip in it (no ensurepip) unless python3-venv
# is installed.
make_venv() {
  rm -rf "$VENV"
  if python3 -m venv "$VENV"; then
    return
  fi
  rm -rf "$VENV"
  if dpkg -s python3-venv >/dev/null 2>&1; then
    echo "python: cannot create $VENV (python3-venv is installed)" >&2
    exit 1
  fi
  echo "python: installing python3-venv"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
  python3 -m venv "$VENV"
}

# Every `name==version` line of the requirements is what the venv has installed.
installed() {
  [[ -x "$VENV/bin/python" ]] || return 1
  local line name version have
  while read -r line; do
    line="${line%%#*}"
    [[ -z "${line// /}" ]] && continue
    name="${line%%==*}"
    version="${line#*==}"
    have="$("$VENV/bin/python" -c 'import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass' "$name")"
    [[ "$have" == "$version" ]] || return 1
  done <"$REQUIREMENTS"
}

if installed; then
  exit 0
fi

# A virtualenv without pip is one whose creation failed half-way: make it again.
[[ -x "$VENV/bin/pip" ]] || make_venv
echo "python: installing $(tr '\n' ' ' <"$REQUIREMENTS")into $VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
installed
echo "python: ready in $VENV"
