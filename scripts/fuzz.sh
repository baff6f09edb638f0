#!/usr/bin/env bash
# Runs every go test -fuzz target for the given time each (default 1m).
set -euo pipefail
t=${1:-1m}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
    echo "== $pkg $f"
    go test "$pkg" -run XXX -fuzz "^$f\$" -fuzztime "$t"
  done
done
