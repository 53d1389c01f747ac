#!/usr/bin/env bash
# The main job on a fresh machine: installs vz into .venv if needed, then builds an index from the
# shipped demo data in the default store (./.vz, or $VZ_STORE) and queries it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/vz ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e .
fi
.venv/bin/python -m compileall -q vzcli >/dev/null  # fast start even under PYTHONDONTWRITEBYTECODE
exec .venv/bin/vz demo "$@"
