#!/usr/bin/env bash
# Runs go test -fuzz targets one after the other, each for TIME (default 1m).
# With a second argument, only the targets whose name matches that extended
# regular expression; "stateful" names the targets that drive the engines
# into a state first and then fuzz the next message or packet there (the
# IKE SA states and the live inbound SAs of the data plane). Each target
# runs on one worker (GOMAXPROCS=1, -parallel 1), so runs compare.
set -euo pipefail
t=${1:-1m}
filter=${2:-.}
[ "$filter" = stateful ] && filter='^Fuzz(Stateful|InboundLiveSA)'
cd "$(dirname "$0")/.."
found=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
    echo "$f" | grep -Eq "$filter" || continue
    found=$((found + 1))
    echo "== $pkg $f ($t)"
    GOMAXPROCS=1 go test "$pkg" -run XXX -fuzz "^$f\$" -fuzztime "$t" -parallel 1 -timeout 2h
  done
done
[ "$found" -gt 0 ] || { echo "fuzz.sh: no target matches $filter" >&2; exit 1; }
