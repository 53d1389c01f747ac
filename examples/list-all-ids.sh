#!/usr/bin/env bash
# Print every vector id of an index, one a line, by following list-vectors' cursor.
#   usage: list-all-ids.sh INDEX [PAGE_SIZE]      (VZ overrides the vz command)
set -euo pipefail
index=$1
count=${2:-100}
vz=${VZ:-vz}
cursor=""
while :; do
  if [ -n "$cursor" ]; then
    page=$($vz list-vectors "$index" --count "$count" --cursor "$cursor" --json)
  else
    page=$($vz list-vectors "$index" --count "$count" --json)
  fi
  jq -r '.vectors[].id' <<<"$page"
  [ "$(jq -r '.isTruncated' <<<"$page")" = "true" ] || break
  cursor=$(jq -r '.nextCursor' <<<"$page")
done
