#!/usr/bin/env bash
# scripts/ikeload.sh: IKEv2 handshakes per second and memory per IKE SA of
# goipsec's ipsecd as a responder, next to strongSwan's charon, in one run
# on the same two network namespaces, driven by cmd/ikeload.
#
#   generator: 192.0.2.1 and 192.0.2.10-13     responder: 192.0.2.2
#
# For each of RUNS runs (default 3), each size in SIZES (default "1000
# 10000") and each responder in CASES (default "goipsec strongswan"),
# interleaved: a fresh responder starts, ikeload opens SIZE IKE SAs with
# one CHILD SA each, CONC at a time (default 50), IKE
# aes256gcm16-prfsha256-x25519, ESP aes256gcm16, PSK, each initiator with
# an identity of its own (c<i>.ikeload) and one TSi address, and holds them
# established while the responder's memory is read; then ikeload deletes
# them and the responder stops.
#   goipsec     bin/ipsecd with one connection for *.ikeload and one
#               secrets entry per identity; cookies and per-source limits
#               off; CHILD SAs installed into its userspace data plane
#   strongswan  charon with kernel-libipsec (userspace ESP, no kernel
#               XFRM), remote id %any with one PSK for all; cookies and
#               block_threshold off, ikesa_table_size 32768, no routes
#   base        as goipsec, with the ipsecd binary IPSECD_BASE names (an
#               older build, to compare in the same run:
#               CASES="base goipsec strongswan")
#
# Reported per case and size (median over the runs, min-max in brackets):
#   hs/s       established IKE SAs per second of wall time (ikeload)
#   hs/cpu-s   established IKE SAs per CPU-second of the responder
#              (utime+stime of its process while ikeload ran)
#   p50/p90/p99 latency of one IKE SA, first IKE_SA_INIT to CHILD SA, ms
#   KiB/SA     (responder RSS with the IKE SAs held - RSS before) / SAs
#   failed     IKE SAs that did not come up
# and the ratios goipsec / strongswan. IKELOAD_JSON=FILE also writes every
# run and the medians as JSON.
#
# Environment: RUNS, SIZES, CASES, CONC, SOCKETS (ikeload -sockets,
# default 256), IKELOAD_FLAGS (more ikeload flags), SWAN_LOG (charon's
# ike log level, default 0), IPSECD (another ipsecd binary to measure,
# such as an older build), IPSECD_BASE (the ipsecd of case base), BIN
# (default bin), GO (default go), CHARON (default /usr/lib/ipsec/charon),
# IKELOAD_KEEP=1 (keep configs and logs).
#
# A benchmark, not a test: shared machines are noisy (on a 2-core machine
# the generator and the responder share the cores, so hs/s is bounded by
# both; hs/cpu-s depends less on it). Compare within one run and repeat.
# Needs root. Exit status 1 if a case failed.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SIZES=${SIZES:-1000 10000}
CASES=${CASES:-goipsec strongswan}
CONC=${CONC:-50}
SOCKETS=${SOCKETS:-256}
BIN=${BIN:-bin}
GO=${GO:-go}
CHARON=${CHARON:-/usr/lib/ipsec/charon}

if [ "$(id -u)" -ne 0 ]; then
  echo "ikeload: needs root (network namespaces, TUN devices)" >&2
  exit 1
fi
for t in ip unshare awk python3 timeout; do
  command -v "$t" >/dev/null || { echo "ikeload: $t is missing; run scripts/deps.sh bench" >&2; exit 1; }
done

tag=gl$$
A=${tag}a B=${tag}b
work=$(mktemp -d /tmp/goipsec-ikeload.XXXXXX)
live=() # PIDs of processes started and not yet stopped

alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }

# stop PID [GRACE]: SIGTERM, up to GRACE seconds (default 5), then
# SIGKILL; reaps it.
stop() {
  local p=$1 grace=${2:-5} i keep=() q
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq $((grace * 10))); do alive "$p" || break; sleep 0.1; done
  alive "$p" && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for q in "${live[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  live=("${keep[@]}")
}

cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${live[@]}"; do stop "$p" 2; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  ip link del "${tag}x" 2>/dev/null || true
  if [ -n "${IKELOAD_KEEP:-}" ]; then echo "ikeload: logs kept in $work" >&2; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "ikeload: $*" >&2; }

waitfor() {
  local n=$(($1 * 10)) i
  shift
  for i in $(seq $n); do "$@" && return 0; sleep 0.1; done
  return 1
}

log "building ipsecd and ikeload"
"$GO" build -o "$BIN/" ./cmd/ipsecd ./cmd/ikeload

# shellcheck source=scripts/bench/netns.sh
. scripts/bench/netns.sh
veth_pair "$A" "$B" "$tag"
for i in 10 11 12 13; do ip -n "$A" addr add "192.0.2.$i/24" dev eth0; done
# The responder's inner address (kernel-libipsec routes to the CHILD SAs'
# TSi from an address in its local_ts); there are no dummy links.
ip -n "$B" addr add 10.2.0.1/32 dev lo

psk=0x$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
hz=$(getconf CLK_TCK)
ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---- responders ------------------------------------------------------------

# start_goipsec DIR N: prints the PID of ipsecd.
start_goipsec() {
  local d=$1 n=$2 p
  {
    cat <<EOF
daemon:
  socket: $d/ipsecd.sock
  state_dir: $d/state
  tun: {name: ipsec0, mtu: 1400}
  log: {level: warn}
  on_stop: clear
  ike: {cookie_threshold: -1, max_half_open_per_source: -1, max_half_open: 100000}
connections:
  load:
    local_addrs: [192.0.2.2]
    remote_addrs: [192.0.2.0/24]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: {auth: psk, id: gw.ikeload}
    remote: {auth: psk, id: "*.ikeload"}
    children:
      load: {mode: tunnel, local_ts: [10.2.0.0/16], remote_ts: [10.1.0.0/16], esp_proposals: [aes256gcm16]}
secrets:
  ike:
EOF
    awk -v n="$n" -v k="$psk" 'BEGIN {for (i = 0; i < n; i++) printf "    - {ids: [gw.ikeload, c%d.ikeload], secret: \"%s\"}\n", i, k}'
  } >"$d/goipsec.yaml"
  chmod 600 "$d/goipsec.yaml"
  ip netns exec "$B" "${IPSECD:-$BIN/ipsecd}" -c "$d/goipsec.yaml" >"$d/ipsecd.log" 2>&1 &
  p=$!
  live+=("$p")
  waitfor 20 test -S "$d/ipsecd.sock" || { log "goipsec: ipsecd did not start: $(tail -3 "$d/ipsecd.log")"; return 1; }
  pid=$p
}

start_base() {
  [ -n "${IPSECD_BASE:-}" ] || { log "base: IPSECD_BASE names no ipsecd binary"; return 1; }
  IPSECD=$IPSECD_BASE start_goipsec "$@"
}

start_strongswan() {
  local d=$1 p
  [ -x "$CHARON" ] && [ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] && command -v swanctl >/dev/null ||
    { log "strongswan: charon, swanctl or the kernel-libipsec plugin missing; run scripts/deps.sh bench"; return 1; }
  cat >"$d/strongswan.conf" <<EOF
charon {
  load = random nonce openssl aes sha1 sha2 hmac gcm curve25519 kdf kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  cookie_threshold = 1000000
  block_threshold = 1000000
  init_limit_half_open = 0
  ikesa_table_size = 32768
  ikesa_table_segments = 16
  plugins {
    vici {
      socket = unix://$d/charon.vici
    }
  }
  filelog {
    load {
      path = $d/charon.log
      default = -1
      ike = ${SWAN_LOG:-0}
      chd = ${SWAN_LOG:-0}
      cfg = ${SWAN_LOG:-0}
      knl = ${SWAN_LOG:-0}
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
swanctl {
  load = random nonce openssl pem pkcs1 x509 pubkey
}
EOF
  cat >"$d/swanctl.conf" <<EOF
connections {
  load {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = %any
    proposals = aes256gcm16-prfsha256-x25519
    local {
      auth = psk
      id = gw.ikeload
    }
    remote {
      auth = psk
      id = %any
    }
    children {
      load {
        mode = tunnel
        local_ts = 10.2.0.0/16
        remote_ts = 10.1.0.0/16
        esp_proposals = aes256gcm16
      }
    }
  }
}
secrets {
  ike-load {
    secret = $psk
  }
}
EOF
  chmod 600 "$d/swanctl.conf"
  # A private /run keeps charon's pid file apart; every command execs, so
  # $! is charon's PID.
  STRONGSWAN_CONF=$d/strongswan.conf ip netns exec "$B" \
    unshare -m sh -c 'mount -t tmpfs tmpfs /run && exec "$0"' "$CHARON" >"$d/stdout" 2>&1 &
  p=$!
  live+=("$p")
  waitfor 10 test -S "$d/charon.vici" || { log "strongswan: charon did not start: $(tail -3 "$d/stdout")"; return 1; }
  STRONGSWAN_CONF=$d/strongswan.conf timeout 20 swanctl --load-all --file "$d/swanctl.conf" \
    --uri "unix://$d/charon.vici" >"$d/load.log" 2>&1 ||
    { log "strongswan: swanctl --load-all failed: $(tail -3 "$d/load.log")"; return 1; }
  pid=$p
}

# ---- one measurement ---------------------------------------------------------

failed=0
# measure CASE N RUN: one responder, one ikeload run; appends a line to
# $work/runs.tsv: case n run ok failed hs_s cpu_s p50 p90 p99 kib_per_sa gen_cpu_s
measure() {
  local c=$1 n=$2 r=$3 d=$work/$1-$2-$3 pid= gen t0 t1 rss0 rss1 i
  mkdir -p "$d"
  "start_$c" "$d" "$n" || { stop_pid; return 1; }
  sleep 1
  rss0=$(rss_kib "$pid")
  t0=$(ticks "$pid")
  ip netns exec "$A" "$BIN/ikeload" -target 192.0.2.2 -local 192.0.2.10,192.0.2.11,192.0.2.12,192.0.2.13 \
    -n "$n" -c "$CONC" -sockets "$SOCKETS" -psk "$psk" -remote-id gw.ikeload -timeout 60s \
    -json "$d/result.json" -hold ${IKELOAD_FLAGS:-} >"$d/ikeload.out" 2>"$d/ikeload.err" &
  gen=$!
  live+=("$gen")
  for i in $(seq $((n / 5 + 600))); do
    [ -s "$d/result.json" ] && break
    alive "$gen" || break
    sleep 1
  done
  t1=$(ticks "$pid")
  if [ ! -s "$d/result.json" ]; then
    log "$c n=$n run $r: no result: $(tail -3 "$d/ikeload.err")"
    stop "$gen" 60
    stop_pid
    return 1
  fi
  sleep 2 # let the responder finish the last exchanges and settle
  rss1=$(rss_kib "$pid")
  python3 - "$d/result.json" "$c" "$n" "$r" "$((t1 - t0))" "$hz" "$rss0" "$rss1" >>"$work/runs.tsv" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))
c, n, r, dt, hz, rss0, rss1 = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
ok = res["established"]
cpu = dt / hz
lat = res["latency_ms"]
print("\t".join(str(x) for x in [c, n, r, ok, res["failed"], round(res["handshakes_per_s"], 1), round(cpu, 2),
      lat["p50"], lat["p90"], lat["p99"], round((rss1 - rss0) / ok, 1) if ok else "nan", round(res["generator_cpu_s"], 2)]))
EOF
  log "$c n=$n run $r: $(head -2 "$d/ikeload.out" | tr '\n' ' ') responder CPU $((t1 - t0)) ticks, RSS $rss0 -> $rss1 KiB"
  stop "$gen" 120 # deletes the IKE SAs first
  stop_pid
  grep -q "failed: " "$d/ikeload.out" && return 1
  return 0
}
stop_pid() { [ -n "${pid:-}" ] && stop "$pid" 10; pid=; }

printf "case\tn\trun\tok\tfailed\ths_s\tcpu_s\tp50\tp90\tp99\tkib_sa\tgen_cpu_s\n" >"$work/runs.tsv"
log "runs $RUNS, sizes $SIZES, cases $CASES, $CONC concurrent, $SOCKETS sockets"
for r in $(seq "$RUNS"); do
  for n in $SIZES; do
    for c in $CASES; do
      declare -F "start_$c" >/dev/null || { log "unknown case $c"; exit 2; }
      measure "$c" "$n" "$r" || failed=1
    done
  done
done

# ---- report ------------------------------------------------------------------

echo
echo "IKEv2 responders, $RUNS runs interleaved; ike aes256gcm16-prfsha256-x25519, esp aes256gcm16, PSK;"
echo "$CONC concurrent; $(nproc) cores; $(uname -r). median [min-max] over the runs."
python3 - "$work/runs.tsv" "${IKELOAD_JSON:-}" <<'EOF'
import csv, json, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def f(x):
    try:
        return float(x)
    except ValueError:
        return None
groups = {}
for r in rows:
    r["hs_cpu"] = str(int(r["ok"]) / float(r["cpu_s"])) if f(r["cpu_s"]) else "nan"
    groups.setdefault((r["case"], int(r["n"])), []).append(r)
cols = [("hs_s", "hs/s", 0), ("hs_cpu", "hs/cpu-s", 0), ("p50", "p50 ms", 1), ("p90", "p90 ms", 1), ("p99", "p99 ms", 1), ("kib_sa", "KiB/SA", 1)]
med = {}
print("%-10s %6s | %s | %s" % ("case", "SAs", " | ".join("%-19s" % h for _, h, _ in cols), "failed"))
for (c, n), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    cells = []
    for k, _, dec in cols:
        v = [x for x in (f(r[k]) for r in rs) if x is not None]
        if not v:
            cells.append("%-19s" % "-")
            continue
        m = statistics.median(v)
        med[(c, n, k)] = m
        cells.append("%-19s" % ("%.*f [%.*f-%.*f]" % (dec, m, dec, min(v), dec, max(v))))
    print("%-10s %6d | %s | %s" % (c, n, " | ".join(cells), sum(int(r["failed"]) for r in rs)))
print()
for n in sorted({n for _, n in groups}):
    for other in ("strongswan", "base"):
        if ("goipsec", n, "hs_s") in med and (other, n, "hs_s") in med:
            out = []
            for k, h, _ in cols:
                a, b = med.get(("goipsec", n, k)), med.get((other, n, k))
                if a is not None and b:
                    out.append("%s %.2f" % (h, a / b))
            print("goipsec / %s at %d SAs: %s" % (other, n, ", ".join(out)))
if sys.argv[2]:
    json.dump({"runs": rows, "median": {"%s/%d/%s" % k: v for k, v in med.items()}}, open(sys.argv[2], "w"), indent=1)
EOF
exit $failed
