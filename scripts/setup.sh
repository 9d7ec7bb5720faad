#!/usr/bin/env bash
# Installs what Burrow's build needs on a fresh Debian machine. Safe to run again: it only
# installs what is missing.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding Rust target wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# librdkafka is built from source by rdkafka-sys: it needs a C toolchain, make, and the libraries
# behind TLS and SASL (OpenSSL), OIDC tokens (libcurl) and compression (zlib; zstd is built by
# zstd-sys).
missing=()
for pkg in build-essential zlib1g-dev pkg-config libssl-dev libcurl4-openssl-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
