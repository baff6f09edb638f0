#!/usr/bin/env bash
# make scale-peers: one goipsec hub with SCALE_PEERS (default 200) on-demand
# peers, each a network namespace of its own on one bridge running ipsecd
# with the same policy (10.77.0.0/24 private, certificates from one CA made
# by the test). Every peer pings the hub (one IKE SA and one transport-mode
# CHILD SA per peer), the hub pings every peer back; the test logs the setup
# time and the hub's memory. Not part of make test: it starts SCALE_PEERS+1
# daemons (about 20 MB each). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
GOIPSEC_SCALE_PEERS=${SCALE_PEERS:-200} exec go test -tags scale -run '^TestOnDemandScale$' -count=1 -timeout 30m -v ./internal/e2e
