#!/usr/bin/env bash
# Runs every operation of icount_hot_paths once, without valgrind, and fails
# if one fails its own check (the work did not happen) or the list is empty.
#   icount_hot_paths_test.sh BINARY
set -euo pipefail
bin="$1"
ops="$("$bin" --list)"
n=0
while IFS= read -r op; do
  [ -n "$op" ] || continue
  "$bin" --op="$op" --n=500 --rounds=2
  n=$((n + 1))
done <<<"$ops"
if [ "$n" -lt 10 ]; then
  echo "icount_hot_paths_test: only $n operations listed"
  exit 1
fi
if "$bin" --op=no_such_op 2>/dev/null; then
  echo "icount_hot_paths_test: an unknown op was accepted"
  exit 1
fi
echo "icount_hot_paths_test: $n operations ran"
