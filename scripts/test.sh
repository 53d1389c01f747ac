#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: makes .venv if missing, installs vz with its test
# extras and the npm packages of the interop tests, then runs pytest. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# byte-compile once: environments that set PYTHONDONTWRITEBYTECODE would otherwise recompile vz on every run
.venv/bin/python -m compileall -q vzcli >/dev/null
if [ -f tests/interop/package.json ] && command -v npm >/dev/null 2>&1; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  # the latest wrangler and the TypeScript SDK; that wrangler needs Node >= 22 (scripts/node22.sh)
  node22="$(bash scripts/node22.sh)"
  (cd tests/interop-latest && PATH="$node22:$PATH" npm ci --no-audit --no-fund --loglevel=error)
fi
# the vitest example (docs/testing.md): Cloudflare's vitest integration needs Node >= 22, also to install
if command -v npm >/dev/null 2>&1; then
  node22="$(bash scripts/node22.sh)"
  for d in examples/vitest-workers examples/vitest-workers/pool-workers-0.23; do
    (cd "$d" && PATH="$node22:$PATH" npm ci --no-audit --no-fund --loglevel=error)
  done
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
