#!/usr/bin/env bash
# The long reliability soak (docs/reliability.md): the concurrency, crash, fuzz and schemathesis
# tests with VZ_SOAK=1 (more writers, 200 SIGKILLs, 20x the Hypothesis examples, random seeds).
# Takes about 30 minutes on two cores. Arguments go to pytest (e.g. -k crash, -s).
set -euo pipefail
cd "$(dirname "$0")/.."
export VZ_SOAK=1
exec .venv/bin/python -m pytest -x -p no:cacheprovider \
  tests/test_concurrency.py tests/test_crash.py tests/test_fuzz.py tests/test_schemathesis.py "$@"
