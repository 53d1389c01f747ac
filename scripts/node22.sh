#!/usr/bin/env bash
# Prints a directory whose `node` is Node.js >= 22 (the latest wrangler and Cloudflare's vitest
# integration need it). The system's node when it is new enough; otherwise the official build from
# the npm registry's `node` package, installed once into .cache/node22. Usage in a script:
#   PATH="$(bash scripts/node22.sh):$PATH" npm ci
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v node >/dev/null 2>&1 \
  && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ]; then
  dirname "$(command -v node)"
  exit 0
fi
dir=.cache/node22
if [ ! -x "$dir/node_modules/.bin/node" ]; then
  command -v npm >/dev/null 2>&1 || { echo "node22.sh: npm is needed to install Node 22" >&2; exit 1; }
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --no-save node@22 >&2
fi
echo "$PWD/$dir/node_modules/.bin"
