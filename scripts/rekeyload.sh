#!/usr/bin/env bash
# scripts/rekeyload.sh (make rekey-load): issue 8's "rekey under load"
# proof at full length. It runs internal/e2e's TestRekeyUnderLoad (goipsec
# on both sides) and TestRekeyUnderLoadStrongSwan (charon as the peer):
# iperf3 TCP through the tunnel for REKEY_LOAD (default 60s) per run, the
# CHILD SA rekeyed every 5 s and the IKE SA every 20 s, alternately from
# both sides, interleaved with runs without rekeying (no rekey, rekey, ...)
# for REKEY_LOAD_PAIRS pairs (default 3).
#
# The strongSwan ratio runs leave charon's per-packet esp log off (it costs
# charon goodput); one more pair with that log on counts charon's drops.
# The tests fail on any packet dropped as unknown SPI, replay or bad ICV on
# either side and on a rekey that did not run; goodput and retransmissions
# are printed, not asserted: the machine is shared, so the load average is
# printed beside them. The last lines: per peer, the median and spread
# (min..max) of goodput with/without rekeying and of TCP retransmissions
# ((with+1)/(without+1)).
#
# Environment: REKEY_LOAD, REKEY_LOAD_PAIRS, PEERS ("goipsec strongswan"),
# GO (default go), REKEY_LOAD_LOG (keep the full test output in this file).
# Needs root, iperf3 and, for the strongSwan peer, charon with
# kernel-libipsec. Exit status 1 if a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DURATION=${REKEY_LOAD:-60s}
PAIRS=${REKEY_LOAD_PAIRS:-3}
PEERS=${PEERS:-goipsec strongswan}

if [ "$(id -u)" -ne 0 ]; then
  echo "make rekey-load needs root (network namespaces and TUN devices)" >&2
  exit 1
fi
log=${REKEY_LOAD_LOG:-$(mktemp)}
echo "rekey-load: $DURATION per run, $PAIRS pairs, peers: $PEERS; full output in $log"
: >"$log"
status=0
run() { # name, test, env...
  local name=$1 test=$2
  shift 2
  echo "== $name: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  if ! env "$@" "$GO" test ./internal/e2e -run "^${test}\$" -count=1 -v -timeout 60m >>"$log" 2>&1; then
    status=1
    echo "   FAILED (see $log)"
  fi
  echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
for peer in $PEERS; do
  case $peer in
  goipsec)
    run "goipsec peer" TestRekeyUnderLoad GOIPSEC_REKEY_LOAD="$DURATION" GOIPSEC_REKEY_LOAD_PAIRS="$PAIRS"
    ;;
  strongswan)
    run "strongSwan peer, ratios" TestRekeyUnderLoadStrongSwan GOIPSEC_REKEY_LOAD="$DURATION" \
      GOIPSEC_REKEY_LOAD_PAIRS="$PAIRS" GOIPSEC_REKEY_LOAD_SWANLOG=0
    run "strongSwan peer, charon's drops counted" TestRekeyUnderLoadStrongSwan GOIPSEC_REKEY_LOAD="$DURATION" \
      GOIPSEC_REKEY_LOAD_PAIRS=1 GOIPSEC_REKEY_LOAD_SWANLOG=1
    ;;
  *)
    echo "rekey-load: unknown peer $peer" >&2
    exit 2
    ;;
  esac
done
echo "== runs (goodput in Mbit/s, retransmissions, rekeys, drops)"
grep -o 'REKEYLOAD peer=.*' "$log" || true
echo "== summary"
grep -o 'REKEYLOAD-SUMMARY .*' "$log" || true
grep -E '^(--- FAIL|FAIL|ok)' "$log" || true
exit $status
