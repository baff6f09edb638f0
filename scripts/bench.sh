#!/usr/bin/env bash
# scripts/bench.sh: the performance report of `make bench-net`, in one run
# and one table per part, with ratios, and the same as one JSON file.
#
#   scripts/bench.sh                       every part in BENCH_PARTS
#   scripts/bench.sh compare OLD.json NEW.json
#                                          each figure of two such files,
#                                          old -> new, with the ratio
#   scripts/bench.sh show FILE.json        the tables of such a file again
#
# Parts (BENCH_PARTS, default "net latency scale ike", in that order):
#   net      TCP throughput through goipsec compared, in the same run and on
#            the same two network namespaces, with a raw veth, strongSwan
#            (charon with kernel-libipsec, userspace ESP in UDP) and
#            wireguard-go; ratios, and raw ESP over ESP in UDP
#   latency  ping round-trip times on each idle tunnel, what each adds to
#            the veth's, and goipsec's against wireguard-go's
#   scale    internal/dataplane's SA-scale benchmarks (go test -bench):
#            per-packet CPU with 1 to 100,000 SAs and the ratio to 1 SA,
#            memory per SA, install and delete rates
#   ike      scripts/ikeload.sh: IKEv2 handshakes per second, per CPU-second,
#            latency and memory per IKE SA of ipsecd and charon as
#            responders (make bench-ike runs it on its own)
#
#   host A: outer 192.0.2.1, inner 10.1.0.1     host B: outer 192.0.2.2, inner 10.2.0.1
#
# net cases, each measured with iperf3 TCP from A to B, for every stream
# count in STREAMS (default "1 4"), DURATION seconds each (default 10):
#   veth          no tunnel, between the outer addresses
#   goipsec-udp   bin/ipsecd, manual SAs, ESP tunnel aes256gcm16, ESP in UDP 4500
#   goipsec-none  the same with encap none (raw ESP, IP protocol 50)
#   strongswan    two charon instances with kernel-libipsec, PSK, ESP in UDP 4500,
#                 ike aes256gcm16-prfsha256-x25519, esp aes256gcm16
#   wireguard-go  wireguard-go (built into a temporary GOBIN when no `wireguard`
#                 binary is on the PATH or in $WIREGUARD) configured with `wg set`
# Every tunnel gets MTU $MTU (default 1400, goipsec's default) so that all of
# them carry the same TCP segment size. NET_RUNS runs (default 3) go through
# every case in turn (interleaved), each case with a fresh tunnel.
#
# latency: before its iperf3 runs, every case also pings B from A, PINGS
# (default 200) echo requests PING_INTERVAL seconds apart (default 0.01), on
# the idle tunnel (veth: between the outer addresses). Each run gives the
# median and the 99th percentile (nearest rank) of its round-trip times.
#
# CPU is the utime+stime of the tunnel processes of both hosts (ipsecd, charon
# or wireguard) over the iperf3 run, in % of one core (200 = two cores busy).
# "host" is how busy the whole machine was (all cores, 100 = all busy): on a
# shared machine it tells how noisy the run was. Gbit/s per core of tunnel
# CPU depends less on how much CPU the other tenants left. Before measuring,
# each tunnel must pass a ping and the route from 10.1.0.1 to 10.2.0.1 must
# use the tunnel's device.
#
# scale: go test -count SCALE_COUNT (default 5) of BenchmarkInboundScale and
# BenchmarkOutboundScale (-benchtime SCALE_PACKETSx, default 20000),
# BenchmarkInstallScale (SCALE_PAIRSx, default 4096) and
# BenchmarkMemoryPerSA (1x), for the sizes in SCALE_SIZES (default "1 1000
# 10000 100000"; a subset of the benchmarks' own sizes); then
# BenchmarkScaleRatio (-benchtime SCALE_RATIO_PACKETSx, default 100000; 0
# leaves it out): rounds of 1 SA and of 100,000 alternated in one process,
# so that the ratio to 1 SA, issue 9's figure, sees one load.
#
# ike: IKE_RUNS (default 3) interleaved runs of ipsecd and charon at each
# of IKE_SIZES IKE SAs (default "1000 10000"), IKE_CONC (default 50) at a
# time; see scripts/ikeload.sh (IKELOAD_FLAGS, SOCKETS and SWAN_LOG reach it).
#
# BENCH_QUICK=1 changes the defaults for a quick look (a few minutes):
# DURATION=3, NET_RUNS=1, PINGS=50, SCALE_COUNT=1, SCALE_SIZES="1 1000",
# SCALE_PACKETS=2000, SCALE_PAIRS=1024, SCALE_RATIO_PACKETS=0, IKE_RUNS=1, IKE_SIZES=200. Any
# variable set explicitly wins.
#
# The report: medians with [min-max] over the runs; ratios per run of the
# interleaved runs (net, latency, ike) or of the medians (scale, whose
# -count runs are not interleaved). BENCH_JSON=FILE writes the report, every
# run's values, the load average before and after (each part too), the
# kernel, the Go version, the git revision and the settings, as JSON.
#
# Environment: BENCH_PARTS, BENCH_QUICK, BENCH_JSON, DURATION, STREAMS,
# CASES (subset of the net cases, in order), NET_RUNS, MTU, PINGS,
# PING_INTERVAL, SCALE_COUNT, SCALE_SIZES, SCALE_PACKETS, SCALE_PAIRS,
# SCALE_RATIO_PACKETS, IKE_RUNS, IKE_SIZES, IKE_CONC, WIREGUARD (path of a wireguard-go binary),
# BIN (default bin), GO (default go), IPERF_FLAGS (extra iperf3 client flags,
# the same for every case), BENCH_KEEP=1 (keep the configs, logs and raw
# records in the temporary directory).
#
# A benchmark, not a test: shared machines are noisy, so compare the ratios
# within one run and repeat it. net, latency and ike need root. Exit status
# 1 if a case or a part failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
GO=${GO:-go}

case "${1:-}" in
  compare | show) exec "$GO" run ./internal/benchreport "$@" ;;
  '') ;;
  *) echo "usage: scripts/bench.sh [compare OLD.json NEW.json | show FILE.json]" >&2; exit 2 ;;
esac

BENCH_PARTS=${BENCH_PARTS:-net latency scale ike}
if [ -n "${BENCH_QUICK:-}" ]; then
  DURATION=${DURATION:-3} NET_RUNS=${NET_RUNS:-1} PINGS=${PINGS:-50}
  SCALE_COUNT=${SCALE_COUNT:-1} SCALE_SIZES=${SCALE_SIZES:-1 1000} SCALE_PACKETS=${SCALE_PACKETS:-2000} SCALE_PAIRS=${SCALE_PAIRS:-1024} SCALE_RATIO_PACKETS=${SCALE_RATIO_PACKETS:-0}
  IKE_RUNS=${IKE_RUNS:-1} IKE_SIZES=${IKE_SIZES:-200}
fi
DURATION=${DURATION:-10}
STREAMS=${STREAMS:-1 4}
CASES=${CASES:-veth goipsec-udp goipsec-none strongswan wireguard-go}
NET_RUNS=${NET_RUNS:-3}
MTU=${MTU:-1400}
BIN=${BIN:-bin}
IPERF_FLAGS=${IPERF_FLAGS:-}
PINGS=${PINGS:-200}
PING_INTERVAL=${PING_INTERVAL:-0.01}
CHARON=${CHARON:-/usr/lib/ipsec/charon}
SCALE_COUNT=${SCALE_COUNT:-5}
SCALE_SIZES=${SCALE_SIZES:-1 1000 10000 100000}
SCALE_PACKETS=${SCALE_PACKETS:-20000}
SCALE_PAIRS=${SCALE_PAIRS:-4096}
SCALE_RATIO_PACKETS=${SCALE_RATIO_PACKETS:-100000}
IKE_RUNS=${IKE_RUNS:-3}
IKE_SIZES=${IKE_SIZES:-1000 10000}
IKE_CONC=${IKE_CONC:-50}

# part NAME: NAME is one of BENCH_PARTS.
part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
for p in $BENCH_PARTS; do
  case $p in net | latency | scale | ike) ;; *) echo "bench: unknown part $p (net, latency, scale, ike)" >&2; exit 2 ;; esac
done
for v in DURATION PINGS NET_RUNS SCALE_COUNT SCALE_PACKETS SCALE_PAIRS SCALE_RATIO_PACKETS IKE_RUNS IKE_CONC; do
  case ${!v} in '' | *[!0-9]*) echo "bench: $v must be a whole number" >&2; exit 2 ;; esac
done
for v in $SCALE_SIZES $IKE_SIZES; do
  case $v in '' | *[!0-9]*) echo "bench: SCALE_SIZES and IKE_SIZES are numbers of SAs" >&2; exit 2 ;; esac
done
if [ "$(id -u)" -ne 0 ] && { part net || part latency || part ike; }; then
  echo "bench: the net, latency and ike parts need root (network namespaces, TUN devices, raw sockets); BENCH_PARTS=scale does not" >&2
  exit 1
fi
if part net || part latency; then
  for t in ip iperf3 ping timeout unshare awk; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing; run scripts/deps.sh bench" >&2; exit 1; }
  done
fi

tag=gb$$
A=${tag}a B=${tag}b
WGA=wg${tag}a WGB=wg${tag}b # the uapi sockets live in the shared /run/wireguard
work=$(mktemp -d /tmp/goipsec-bench.XXXXXX)
live=() # PIDs of processes started and not yet stopped

# alive PID: the process exists and is not a zombie.
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }

# stop PID...: SIGTERM, up to 5 s grace, then SIGKILL; reaps them.
stop() {
  local p i
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for i in $(seq 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  local keep=() q
  for q in "${live[@]}"; do
    for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
    keep+=("$q")
  done
  live=("${keep[@]}")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ ${#live[@]} -gt 0 ] && stop "${live[@]}"
  net_down
  if [ -n "${BENCH_KEEP:-}" ]; then echo "bench: logs kept in $work" >&2; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

# net_down: the namespaces and what runs in them go; safe to repeat.
net_down() {
  [ -n "${iperf_server:-}" ] && stop "$iperf_server"
  iperf_server=
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  ip link del "${tag}x" 2>/dev/null || true
  rm -f "/run/wireguard/$WGA.sock" "/run/wireguard/$WGB.sock"
}

# ---- namespaces ------------------------------------------------------------

# shellcheck source=scripts/bench/netns.sh
. "$root/scripts/bench/netns.sh"

# net_up: the two hosts and B's iperf3 server.
net_up() {
  veth_pair "$A" "$B" "$tag"
  # The kernel has no dummy links: inner addresses go on lo as /32.
  ip -n "$A" addr add 10.1.0.1/32 dev lo
  ip -n "$B" addr add 10.2.0.1/32 dev lo
  
  ip netns exec "$B" iperf3 -s >"$work/iperf3-server.log" 2>&1 &
  iperf_server=$!
  live+=("$iperf_server")
  waitfor 5 sh -c "ip netns exec $B ss -ltn | grep -q ':5201 '" || { log "iperf3 server did not start"; return 1; }
}

# ---- measuring -------------------------------------------------------------

hz=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
# ticks PID...: utime+stime of the processes (all their threads), in clock ticks.
ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# host_busy: "busy total" jiffies of the whole machine from /proc/stat.
host_busy() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t; exit}' /proc/stat; }

declare -A dev_of
failed=0
RUN=1 # the run of the net and latency parts under way
# record FIELD...: one tab-separated line of the net and latency parts'
# records, which internal/benchreport reads (see netRows there).
record() { (IFS=$'\t'; echo "$*") >>"$work/net.tsv"; }

# iperf NAME SRC DST PID...: one iperf3 run per stream count, A -> B, with the
# CPU of the given processes; records "tput NAME RUN STREAMS GBPS CPU% HOST%".
# Nothing without the net part.
iperf() {
  local name=$1 src=$2 dst=$3 n out t0 t1 c0 c1 h0 h1 ht0 ht1 g client rc cpu host
  shift 3
  part net || return 0
  for n in $STREAMS; do
    read -r h0 ht0 < <(host_busy)
    c0=$(ticks "$@")
    t0=$(now_ns)
    # In the background so that a signal to this script is handled at once.
    # shellcheck disable=SC2086
    ip netns exec "$A" timeout $((DURATION + 30)) \
      iperf3 -c "$dst" -B "$src" -t "$DURATION" -P "$n" -f g --connect-timeout 5000 $IPERF_FLAGS >"$work/iperf3.out" 2>&1 &
    client=$!
    live+=("$client")
    wait "$client" && rc=0 || rc=$?
    stop "$client"
    out=$(cat "$work/iperf3.out")
    if [ "$rc" != 0 ]; then
      log "$name: iperf3 -P $n failed: $(echo "$out" | tail -3)"
      restart_iperf_server
      return 1
    fi
    t1=$(now_ns)
    c1=$(ticks "$@")
    read -r h1 ht1 < <(host_busy)
    # The last "receiver" line is the total ([SUM] with several streams).
    g=$(echo "$out" | awk '/receiver/ {for (i = 1; i <= NF; i++) if ($i == "Gbits/sec") v = $(i-1)} END {print v}')
    [ -n "$g" ] || { log "$name: no result from iperf3: $(echo "$out" | tail -3)"; return 1; }
    cpu=-
    if [ $# -gt 0 ]; then
      cpu=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", d / hz / (ns / 1e9) * 100}')
    fi
    host=$(awk -v b=$((h1 - h0)) -v t=$((ht1 - ht0)) 'BEGIN {printf "%.0f", (t > 0 ? b / t * 100 : 0)}')
    record tput "$name" "$RUN" "$n" "$g" "$cpu" "$host"
    log "$name -P $n: $g Gbit/s, tunnel CPU $cpu%, host $host%"
  done
}

# latency NAME SRC DST: PINGS echo requests from SRC to DST in A, PING_INTERVAL
# apart; records "rtt NAME RUN MEDIAN_MS P99_MS LOST PINGS". Intervals under
# 0.2 s need root, which this script has. Nothing without the latency part.
latency() {
  local name=$1 src=$2 dst=$3 out med p99 lost
  part latency && [ "$PINGS" -gt 0 ] || return 0
  out=$(ip netns exec "$A" timeout $((PINGS / 10 + 30)) \
    ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 -I "$src" "$dst" 2>/dev/null || true)
  # Nearest-rank percentiles over the replies that came back.
  read -r med p99 lost < <(echo "$out" |
    awk -F'time=' '/ bytes from .*time=/ {split($2, t, " "); print t[1]}' | sort -g |
    awk -v n="$PINGS" '{v[NR] = $1} END {
      if (NR == 0) {print "- -", n; exit}
      m = int((NR + 1) / 2); p = int(NR * 0.99 + 0.999); if (p < 1) p = 1; if (p > NR) p = NR
      printf "%.3f %.3f %d\n", v[m], v[p], n - NR}')
  record rtt "$name" "$RUN" "$med" "$p99" "$lost" "$PINGS"
  log "$name ping: median $med ms, p99 $p99 ms, lost $lost of $PINGS"
}

restart_iperf_server() {
  stop "$iperf_server"
  ip netns exec "$B" iperf3 -s >>"$work/iperf3-server.log" 2>&1 &
  iperf_server=$!
  live+=("$iperf_server")
  sleep 0.5
}

# reach NAME: ping B's inner address from A's, up to 10 s (the first packets
# may start a negotiation).
reach() {
  local i
  for i in $(seq 10); do
    if ip netns exec "$A" ping -c 1 -W 1 -I 10.1.0.1 10.2.0.1 >/dev/null 2>&1; then
      # The inner traffic must leave through the tunnel, never in clear on eth0.
      dev_of[$1]=$(ip -n "$A" -o route get 10.2.0.1 from 10.1.0.1 | awk '{for (i = 1; i <= NF; i++) if ($i == "dev") print $(i+1)}')
      [ "${dev_of[$1]}" != eth0 ] && { log "$1: 10.1.0.1 -> 10.2.0.1 goes through ${dev_of[$1]}"; return 0; }
      log "$1: 10.2.0.1 is routed through eth0, not through the tunnel"
      return 1
    fi
  done
  log "$1: 10.2.0.1 unreachable from 10.1.0.1"
  return 1
}

# waitfor SECONDS TEST...: poll TEST every 0.1 s.
waitfor() {
  local n=$(($1 * 10)) i
  shift
  for i in $(seq $n); do "$@" && return 0; sleep 0.1; done
  return 1
}

# fill TEMPLATE KEY=VALUE...: the template with @KEY@ replaced.
fill() {
  local f=$1 kv args=()
  shift
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$root/scripts/bench/$f"
}

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# showmtu NAME DEV: logs the MTU of DEV in A.
showmtu() { log "$1: link MTU $(ip -n "$A" -o link show dev "$2" 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i == "mtu") print $(i+1)}')"; }

# ---- cases -----------------------------------------------------------------

case_veth() {
  showmtu veth eth0
  latency veth 192.0.2.1 192.0.2.2
  iperf veth 192.0.2.1 192.0.2.2
}

# goipsec ENCAP NAME
goipsec() {
  local encap=$1 name=$2 d=$work/$2.$RUN h ns p pids=() rc=0
  local k_ab=0x$(hex 36) k_ba=0x$(hex 36) # AES-256 key (32 bytes) || salt (4 bytes)
  mkdir -p "$d"
  fill goipsec.yaml.in DIR="$d" NAME=a MTU="$MTU" ENCAP="$encap" LOCAL=192.0.2.1 REMOTE=192.0.2.2 \
    LNET=10.1.0.0/16 RNET=10.2.0.0/16 SPI_OUT=0x00001001 SPI_IN=0x00002001 KEY_OUT="$k_ab" KEY_IN="$k_ba" >"$d/a.yaml"
  fill goipsec.yaml.in DIR="$d" NAME=b MTU="$MTU" ENCAP="$encap" LOCAL=192.0.2.2 REMOTE=192.0.2.1 \
    LNET=10.2.0.0/16 RNET=10.1.0.0/16 SPI_OUT=0x00002001 SPI_IN=0x00001001 KEY_OUT="$k_ba" KEY_IN="$k_ab" >"$d/b.yaml"
  chmod 600 "$d"/*.yaml
  for h in a b; do
    ns=$A; [ $h = b ] && ns=$B
    "$BIN/ipsecd" -c "$d/$h.yaml" --check >/dev/null || { log "$name: config $h rejected"; return 1; }
    ip netns exec "$ns" "$BIN/ipsecd" -c "$d/$h.yaml" >"$d/$h.log" 2>&1 &
    p=$!
    pids+=("$p")
    live+=("$p")
  done
  for h in a b; do
    waitfor 5 test -S "$d/$h.sock" || { log "$name: ipsecd $h did not start: $(tail -3 "$d/$h.log")"; rc=1; }
  done
  [ $rc = 0 ] && reach "$name" || rc=1
  showmtu "$name" ipsec0
  [ $rc = 0 ] && latency "$name" 10.1.0.1 10.2.0.1
  [ $rc = 0 ] && { iperf "$name" 10.1.0.1 10.2.0.1 "${pids[@]}" || rc=1; }
  [ $rc = 0 ] || { log "$name: log of host a:"; tail -5 "$d/a.log" >&2; }
  stop "${pids[@]}"
  return $rc
}
case_goipsec-udp() { goipsec udp goipsec-udp; }
case_goipsec-none() { goipsec none goipsec-none; }

case_strongswan() {
  local d=$work/strongswan.$RUN h ns p pids=() rc=0 psk=0x$(hex 32)
  [ -x "$CHARON" ] && command -v swanctl >/dev/null ||
    { log "strongswan: charon or swanctl missing; run scripts/deps.sh bench"; return 1; }
  [ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] ||
    { log "strongswan: kernel-libipsec plugin missing (libcharon-extra-plugins)"; return 1; }
  for h in a b; do
    mkdir -p "$d/$h"
    fill strongswan.conf.in DIR="$d/$h" >"$d/$h/strongswan.conf"
  done
  fill swanctl.conf.in LOCAL=192.0.2.1 REMOTE=192.0.2.2 LID=a.bench RID=b.bench \
    LNET=10.1.0.0/16 RNET=10.2.0.0/16 PSK="$psk" >"$d/a/swanctl.conf"
  fill swanctl.conf.in LOCAL=192.0.2.2 REMOTE=192.0.2.1 LID=b.bench RID=a.bench \
    LNET=10.2.0.0/16 RNET=10.1.0.0/16 PSK="$psk" >"$d/b/swanctl.conf"
  chmod 600 "$d"/*/swanctl.conf
  for h in a b; do
    ns=$A; [ $h = b ] && ns=$B
    # charon writes its pid file to /run: a private tmpfs keeps two apart.
    # ip netns exec, unshare and sh all exec, so $! is charon's PID.
    STRONGSWAN_CONF=$d/$h/strongswan.conf ip netns exec "$ns" \
      unshare -m sh -c 'mount -t tmpfs tmpfs /run && exec "$0"' "$CHARON" >"$d/$h/stdout" 2>&1 &
    p=$!
    pids+=("$p")
    live+=("$p")
  done
  for h in a b; do
    waitfor 10 test -S "$d/$h/charon.vici" || { log "strongswan: charon $h did not start: $(tail -3 "$d/$h/stdout")"; rc=1; }
  done
  for h in a b; do
    [ $rc = 0 ] || break
    STRONGSWAN_CONF=$d/$h/strongswan.conf timeout 20 swanctl --load-all --file "$d/$h/swanctl.conf" \
      --uri "unix://$d/$h/charon.vici" >"$d/$h/load.log" 2>&1 ||
      { log "strongswan: swanctl --load-all $h failed: $(tail -3 "$d/$h/load.log")"; rc=1; }
  done
  if [ $rc = 0 ]; then
    STRONGSWAN_CONF=$d/a/strongswan.conf timeout 30 swanctl --initiate --ike bench --child bench --timeout 20 \
      --uri "unix://$d/a/charon.vici" >"$d/a/initiate.log" 2>&1 ||
      { log "strongswan: swanctl --initiate failed: $(tail -3 "$d/a/initiate.log")"; rc=1; }
  fi
  [ $rc = 0 ] && reach strongswan || rc=1
  showmtu strongswan ipsec0
  if [ $rc = 0 ]; then
    STRONGSWAN_CONF=$d/a/strongswan.conf timeout 10 swanctl --list-sas --uri "unix://$d/a/charon.vici" \
      2>/dev/null | grep -E 'ESTABLISHED|INSTALLED|AES_GCM' | sed 's/^/bench: strongswan: /' >&2 || true
    latency strongswan 10.1.0.1 10.2.0.1
    iperf strongswan 10.1.0.1 10.2.0.1 "${pids[@]}" || rc=1
  fi
  [ $rc = 0 ] || { log "strongswan: charon log of host a:"; tail -8 "$d/a/charon.log" >&2 2>/dev/null || true; }
  stop "${pids[@]}"
  return $rc
}

case_wireguard-go() {
  local d=$work/wireguard.$RUN h ns p pids=() rc=0 wg=${WIREGUARD:-} dev peerdev addr peeraddr lnet rnet
  command -v wg >/dev/null || { log "wireguard-go: wg missing (wireguard-tools); run scripts/deps.sh bench"; return 1; }
  mkdir -p "$d"
  [ -n "$wg" ] || wg=$(command -v wireguard || true)
  if [ -z "$wg" ] && [ -x "$work/gobin/wireguard" ]; then wg=$work/gobin/wireguard; fi # built in an earlier run
  if [ -z "$wg" ]; then
    log "wireguard-go: building golang.zx2c4.com/wireguard@latest into a temporary GOBIN"
    (cd "$d" && GOBIN=$work/gobin GOFLAGS=-mod=mod timeout 300 "$GO" install golang.zx2c4.com/wireguard@latest) >&2 ||
      { log "wireguard-go: build failed"; return 1; }
    wg=$work/gobin/wireguard
  fi
  for h in a b; do
    (umask 077 && wg genkey >"$d/$h.key")
    wg pubkey <"$d/$h.key" >"$d/$h.pub"
  done
  for h in a b; do
    ns=$A dev=$WGA; [ $h = b ] && ns=$B dev=$WGB
    ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 "$wg" "$dev" >"$d/$h.log" 2>&1 &
    p=$!
    pids+=("$p")
    live+=("$p")
  done
  for h in a b; do
    [ $rc = 0 ] || break
    ns=$A dev=$WGA addr=192.0.2.1 peer=b peeraddr=192.0.2.2 lnet=10.1.0.1 rnet=10.2.0.0/16
    [ $h = b ] && ns=$B dev=$WGB addr=192.0.2.2 peer=a peeraddr=192.0.2.1 lnet=10.2.0.1 rnet=10.1.0.0/16
    waitfor 5 test -S "/run/wireguard/$dev.sock" || { log "wireguard-go: $h did not start: $(tail -3 "$d/$h.log")"; rc=1; break; }
    ip netns exec "$ns" wg set "$dev" listen-port 51820 private-key "$d/$h.key" \
      peer "$(cat "$d/$peer.pub")" allowed-ips "$rnet" endpoint "$peeraddr:51820" || rc=1
    ip -n "$ns" link set "$dev" mtu "$MTU" up || rc=1
    ip -n "$ns" route add "$rnet" dev "$dev" src "$lnet" || rc=1
  done
  [ $rc = 0 ] && reach wireguard-go || rc=1
  showmtu wireguard-go "$WGA"
  [ $rc = 0 ] && latency wireguard-go 10.1.0.1 10.2.0.1
  [ $rc = 0 ] && { iperf wireguard-go 10.1.0.1 10.2.0.1 "${pids[@]}" || rc=1; }
  [ $rc = 0 ] || { log "wireguard-go: log of host a:"; tail -5 "$d/a.log" >&2; }
  stop "${pids[@]}"
  return $rc
}

# ---- scale -----------------------------------------------------------------

# scale_part: internal/dataplane's SA-scale benchmarks, their go test output
# appended to $work/scale.txt.
scale_part() {
  local sizes bin=$work/dataplane.test
  sizes=$(echo $SCALE_SIZES | tr ' ' '|')
  log "scale: building internal/dataplane's test binary"
  "$GO" test -c -o "$bin" ./internal/dataplane || return 1
  # -test.bench splits at '/', one expression per level of sub-benchmarks;
  # the benchmarks' names start with "Benchmark", so no leading ^.
  local runs=(
    "(InboundScale|OutboundScale)/^(random|flows)\$/^n=($sizes)\$ ${SCALE_PACKETS}x"
    "InstallScale/^n=($sizes)\$ ${SCALE_PAIRS}x"
    "MemoryPerSA/^n=($sizes)\$ 1x"
  )
  # The interleaved ratio at the largest size the benchmark knows
  # (100,000): rounds of 1 SA and of 100,000 alternated in one process.
  [ "$SCALE_RATIO_PACKETS" -gt 0 ] && runs+=("ScaleRatio/ ${SCALE_RATIO_PACKETS}x")
  local r
  for r in "${runs[@]}"; do
    log "scale: go test -count $SCALE_COUNT -bench '${r% *}' -benchtime ${r##* } ./internal/dataplane"
    # In the package's directory, as go test runs it; tee shows progress.
    (cd internal/dataplane && "$bin" -test.run '^$' -test.bench "${r% *}" -test.benchtime "${r##* }" \
      -test.count "$SCALE_COUNT" -test.timeout 60m) | tee -a "$work/scale.txt" >&2 || return 1
  done
}

# ---- run -------------------------------------------------------------------

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# meta KEY VALUE: one line of the run's description for internal/benchreport.
meta() { printf '%s\t%s\n' "$1" "$2" >>"$work/meta.tsv"; }

log "parts: $BENCH_PARTS"
log "building goipsec and internal/benchreport"
if part net || part latency || part ike; then
  if command -v make >/dev/null; then make -s build >&2; else "$GO" build -o "$BIN/" ./cmd/...; fi
fi
"$GO" build -o "$work/benchreport" ./internal/benchreport

meta date "$(date -u +%FT%TZ)"
meta revision "$(git rev-parse HEAD 2>/dev/null || echo unknown)"
meta modified "$(test -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo true || echo false)"
meta go "$("$GO" env GOVERSION)"
meta kernel "$(uname -r)"
meta cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
meta cores "$(nproc)"
meta parts "$BENCH_PARTS"
for v in BENCH_QUICK DURATION STREAMS CASES NET_RUNS MTU PINGS PING_INTERVAL IPERF_FLAGS \
  SCALE_COUNT SCALE_SIZES SCALE_PACKETS SCALE_PAIRS SCALE_RATIO_PACKETS IKE_RUNS IKE_SIZES IKE_CONC IKELOAD_FLAGS; do
  meta "setting.$v" "${!v:-}"
done
meta load_start "$(loadavg)"

if part net || part latency; then
  meta load.net.start "$(loadavg)"
  net_up
  for c in $CASES; do
    declare -F "case_$c" >/dev/null || { log "unknown case $c"; exit 2; }
  done
  log "net: iperf3 TCP A -> B, streams: $STREAMS, $DURATION s each; $NET_RUNS runs of cases: $CASES"
  for RUN in $(seq "$NET_RUNS"); do
    for c in $CASES; do
      log "== $c, run $RUN"
      if "case_$c"; then record status "$c" "$RUN" ok; else record status "$c" "$RUN" failed; failed=1; fi
    done
  done
  net_down
  meta load.net.end "$(loadavg)"
fi

if part scale; then
  meta load.scale.start "$(loadavg)"
  scale_part || { log "scale: the benchmarks failed"; failed=1; }
  meta load.scale.end "$(loadavg)"
fi

if part ike; then
  meta load.ike.start "$(loadavg)"
  log "ike: RUNS=$IKE_RUNS SIZES=\"$IKE_SIZES\" CONC=$IKE_CONC scripts/ikeload.sh"
  # Its own table goes to the log; the report has the same figures.
  RUNS=$IKE_RUNS SIZES=$IKE_SIZES CONC=$IKE_CONC IKELOAD_JSON=$work/ike.json BIN=$BIN GO=$GO \
    scripts/ikeload.sh >&2 || { log "ike: scripts/ikeload.sh failed"; failed=1; }
  meta load.ike.end "$(loadavg)"
fi
meta load_end "$(loadavg)"

# ---- report ----------------------------------------------------------------

args=(report -meta "$work/meta.tsv")
[ -s "$work/net.tsv" ] && args+=(-net "$work/net.tsv")
[ -s "$work/scale.txt" ] && args+=(-scale "$work/scale.txt")
[ -s "$work/ike.json" ] && args+=(-ike "$work/ike.json")
[ -n "${BENCH_JSON:-}" ] && args+=(-json "$BENCH_JSON")
echo
"$work/benchreport" "${args[@]}"
[ -n "${BENCH_JSON:-}" ] && log "wrote $BENCH_JSON"
exit $failed
