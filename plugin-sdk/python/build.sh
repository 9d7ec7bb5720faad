#!/usr/bin/env bash
# Builds one Python plugin into a Burrow component:
#
#   bash plugin-sdk/python/build.sh plugins/NAME target/plugins/NAME.wasm
#
# The plugin directory holds `plugin.py` (defining `process`) and anything it imports. The
# component is the SDK's entry module `burrow_plugin._guest` (the `processor` world's exports,
# over `plugin.process`), with the bindings componentize-py generates from `wit/` and the
# CPython interpreter it ships, snapshotted after `plugin.py` is imported. componentize-py
# comes from scripts/python.sh (pinned in requirements.txt), which this runs first.
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 PLUGIN_DIR OUTPUT.wasm" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PLUGIN="$1"
OUTPUT="$2"
if [[ ! -f "$PLUGIN/plugin.py" ]]; then
  echo "build.sh: $PLUGIN has no plugin.py" >&2
  exit 1
fi

bash "$ROOT/scripts/python.sh"
mkdir -p "$(dirname "$OUTPUT")"
# Only the plugin's directory and the SDK are on the path: no site-packages from an active
# virtualenv (componentize-py would otherwise add $VIRTUAL_ENV's).
env -u VIRTUAL_ENV "$ROOT/.python/venv/bin/componentize-py" \
  --wit-path "$ROOT/wit" --world processor --quiet \
  componentize burrow_plugin._guest \
  --python-path "$PLUGIN" --python-path "$ROOT/plugin-sdk/python" \
  --output "$OUTPUT"
