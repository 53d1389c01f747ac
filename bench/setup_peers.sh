#!/usr/bin/env bash
# Create the bench-only venv that holds the peer tools for bench/compare.py.
# Usage: bench/setup_peers.sh [VENV_DIR]   (default bench/.venv, git-ignored)
# The peers never go into the project venv: they pull in hundreds of packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv}"
# sqlite-vec is a loadable extension: the venv's Python needs sqlite3 built with
# enable_load_extension (pyenv builds often lack it; Debian's /usr/bin/python3 has it).
py="${PYTHON:-}"
if [ -z "$py" ]; then
    for cand in python3 /usr/bin/python3; do
        if "$cand" -c 'import sqlite3, sys; sys.exit(not hasattr(sqlite3.connect(":memory:"), "enable_load_extension"))' 2>/dev/null; then
            py="$cand"; break
        fi
    done
    py="${py:-python3}"
fi
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# One package at a time, so one peer that will not install does not stop the others;
# compare.py reports a missing peer as "not installed" and goes on.
grep -v '^\s*#' "$here/requirements-peers.txt" | grep -v '^\s*$' | while read -r req; do
    if ! "$venv/bin/python" -m pip install -q "$req"; then
        echo "setup_peers: could not install $req (compare.py will skip it)" >&2
    fi
done
"$venv/bin/python" -m pip list 2>/dev/null | grep -i -E '^(numpy|usearch|chromadb|lancedb|pyarrow|sqlite-vec|qdrant-client|matplotlib) '
