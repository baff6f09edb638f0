#!/usr/bin/env bash
# make soak: a long run of two goipsec daemons in two network namespaces with
# many SAs rekeying with jitter while traffic flows through every CHILD SA.
# Not part of make test. Needs root.
#
#   IKE SAs:   SOAK_IKE (default 50) connections, each on its own pair of
#              outer addresses (198.18.0.N on host A, 198.18.1.N on host B)
#   CHILD SAs: SOAK_CHILDREN (default 4) per connection, 10.1.N.C <-> 10.2.N.C
#   rekeys:    CHILD rekey_time SOAK_CHILD_REKEY (60s) rand_time
#              SOAK_CHILD_RAND (20s); IKE rekey_time SOAK_IKE_REKEY (5m)
#              rand_time SOAK_IKE_RAND (1m); both sides rekey, so collisions
#              happen too
#   traffic:   one ping -i 0.2 per CHILD SA, from host A
#   duration:  SOAK_DURATION (default 30m), e.g. SOAK_DURATION=2m
#
# Every minute it prints RSS, Go heap, goroutines and threads of both daemons, their SA
# counts and drop counters; at the end: packets lost, drops by reason, rekeys
# done, memory and goroutines at the start and the end. Exit status 1 if a
# packet was lost or dropped as unknown SPI, replay or bad ICV.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DURATION=${SOAK_DURATION:-30m}
NIKE=${SOAK_IKE:-50}
NCHILD=${SOAK_CHILDREN:-4}
CHILD_REKEY=${SOAK_CHILD_REKEY:-60s}
CHILD_RAND=${SOAK_CHILD_RAND:-20s}
IKE_REKEY=${SOAK_IKE_REKEY:-5m}
IKE_RAND=${SOAK_IKE_RAND:-1m}

if [ "$(id -u)" -ne 0 ]; then
  echo "make soak needs root (network namespaces and TUN devices)" >&2
  exit 1
fi
if [ "$NIKE" -lt 1 ] || [ "$NIKE" -gt 250 ] || [ "$NCHILD" -lt 1 ] || [ "$NCHILD" -gt 250 ]; then
  echo "soak: SOAK_IKE and SOAK_CHILDREN must be 1 to 250" >&2
  exit 2
fi
secs() { # 90s, 30m, 2h, or plain seconds -> seconds
  case $1 in
  *h) echo $((${1%h} * 3600)) ;;
  *m) echo $((${1%m} * 60)) ;;
  *s) echo "${1%s}" ;;
  *) echo "$1" ;;
  esac
}
total=$(secs "$DURATION")

tag=gisoak$$
A=${tag}a B=${tag}b
work=$(mktemp -d)
pids=() pingpids=()
cleanup() {
  for p in "${pingpids[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pingpids[@]}" "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  if [ -n "${SOAK_KEEP:-}" ]; then echo "soak: logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$A"; ip netns add "$B"
ip link add "${tag}x" type veth peer name "${tag}y"
ip link set "${tag}x" netns "$A"; ip link set "${tag}y" netns "$B"
ip -n "$A" link set "${tag}x" name eth0; ip -n "$B" link set "${tag}y" name eth0
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
for n in $(seq "$NIKE"); do
  # /32 addresses with a route per peer address that names the source:
  # the kernel then sends each connection's IKE from its local_addrs.
  ip -n "$A" addr add "198.18.0.$n/32" dev eth0
  ip -n "$B" addr add "198.18.1.$n/32" dev eth0
  for c in $(seq "$NCHILD"); do
    ip -n "$A" addr add "10.1.$n.$c/32" dev lo
    ip -n "$B" addr add "10.2.$n.$c/32" dev lo
  done
done
for n in $(seq "$NIKE"); do
  ip -n "$A" route add "198.18.1.$n/32" dev eth0 src "198.18.0.$n"
  ip -n "$B" route add "198.18.0.$n/32" dev eth0 src "198.18.1.$n"
done

psk=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

conf() { # host peer lnet rnet lout rout start_action metrics_port
  cat <<YAML
daemon:
  socket: $work/$1.sock
  tun: {name: ipsec0, mtu: 1400}
  log: {level: ${SOAK_LOG:-warn}}
  on_stop: clear
  metrics: {listen: 127.0.0.1:$8}
connections:
YAML
  for n in $(seq "$NIKE"); do
    cat <<YAML
  c$n:
    local_addrs: [$5.$n]
    remote_addrs: [$6.$n]
    proposals: [aes256gcm16-prfsha256-x25519]
    rekey_time: $IKE_REKEY
    rand_time: $IKE_RAND
    local: {auth: psk, id: $1$n.soak.example}
    remote: {auth: psk, id: $2$n.soak.example}
    children:
YAML
    for c in $(seq "$NCHILD"); do
      cat <<YAML
      n$c:
        mode: tunnel
        local_ts: [$3.$n.$c/32]
        remote_ts: [$4.$n.$c/32]
        esp_proposals: [aes256gcm16]
        rekey_time: $CHILD_REKEY
        rand_time: $CHILD_RAND
        start_action: $7
YAML
    done
  done
  echo "secrets:"
  echo "  ike:"
  for n in $(seq "$NIKE"); do
    echo "    - {ids: [a$n.soak.example, b$n.soak.example], secret: \"$psk\"}"
  done
}
conf a b 10.1 10.2 198.18.0 198.18.1 start 9911 >"$work/a.yaml"
conf b a 10.2 10.1 198.18.1 198.18.0 trap 9912 >"$work/b.yaml"
chmod 600 "$work"/*.yaml

declare -A dpid
for h in b a; do
  ns=$A; [ $h = b ] && ns=$B
  "$BIN/ipsecd" -c "$work/$h.yaml" --check >/dev/null
  ip netns exec "$ns" "$BIN/ipsecd" -c "$work/$h.yaml" >"$work/$h.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do [ -S "$work/$h.sock" ] && break; sleep 0.1; done
  [ -S "$work/$h.sock" ] || { echo "ipsecd $h did not start in 60 s:"; cat "$work/$h.log"; exit 1; }
  dpid[$h]=$(ip netns exec "$ns" "$BIN/ipsecctl" -s "$work/$h.sock" status --json | jq .pid)
done

ctl() { # host args...
  local h=$1 ns=$A; shift
  [ "$h" = b ] && ns=$B
  ip netns exec "$ns" "$BIN/ipsecctl" -s "$work/$h.sock" "$@"
}
metric() { # host name: the sum of the samples of metric name
  local h=$1 ns=$A port=9911
  [ "$h" = b ] && { ns=$B; port=9912; }
  ip netns exec "$ns" curl -s "http://127.0.0.1:$port/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
rss() { awk '/^VmRSS/ { print $2 }' "/proc/${dpid[$1]}/status"; } # KiB
threads() { awk '/^Threads/ { print $2 }' "/proc/${dpid[$1]}/status"; }

want=$((NIKE * NCHILD))
echo "== soak: $NIKE IKE SAs, $want CHILD SAs, $DURATION; CHILD rekey_time $CHILD_REKEY rand_time $CHILD_RAND, IKE rekey_time $IKE_REKEY rand_time $IKE_RAND"
up=0
for _ in $(seq 60); do
  up=$(ctl a status --json | jq .child_sas)
  [ "$up" -ge "$want" ] && break
  sleep 1
done
if [ "$up" -lt "$want" ]; then
  echo "soak: only $up of $want CHILD SAs came up in 60 s"; tail -20 "$work/a.log"; exit 1
fi

sample() { # label
  local h st
  for h in a b; do
    st=$(ctl "$h" status --json)
    printf '%s %s: rss %6d KiB  heap %6d KiB  goroutines %5d  threads %3d  ike_sas %3d  child_sas %4d  rekeys ike %5d child %6d  drops %s\n' \
      "$1" "$h" "$(rss $h)" "$(($(metric $h go_memstats_heap_alloc_bytes) / 1024))" "$(jq .goroutines <<<"$st")" "$(threads $h)" \
      "$(jq .ike_sas <<<"$st")" "$(jq .child_sas <<<"$st")" \
      "$(metric $h 'goipsec_rekeys_total{kind="ike"}')" "$(metric $h 'goipsec_rekeys_total{kind="child"}')" \
      "$(jq -c '.counters.drops' <<<"$st")"
  done
}
declare -A start_rss start_gor
for h in a b; do
  start_rss[$h]=$(rss $h)
  start_gor[$h]=$(ctl "$h" status --json | jq .goroutines)
done
sample "$(date -u +%H:%M:%S) start"

# The traffic: one ping every 0.2 s through each CHILD SA for the whole run.
count=$((total * 5))
for n in $(seq "$NIKE"); do
  for c in $(seq "$NCHILD"); do
    ip netns exec "$A" ping -q -n -c "$count" -i 0.2 -W 2 -I "10.1.$n.$c" "10.2.$n.$c" >"$work/ping.$n.$c" 2>&1 &
    pingpids+=($!)
  done
done

elapsed=0
while [ "$elapsed" -lt "$total" ]; do
  step=$((total - elapsed)); [ "$step" -gt 60 ] && step=60
  sleep "$step"; elapsed=$((elapsed + step))
  sample "$(date -u +%H:%M:%S) +${elapsed}s"
done
for p in "${pingpids[@]}"; do wait "$p" 2>/dev/null || true; done
pingpids=()

sent=0 recv=0 lossy=0
for f in "$work"/ping.*; do
  read -r s r < <(awk '/packets transmitted/ { print $1, $4 }' "$f")
  sent=$((sent + ${s:-0})); recv=$((recv + ${r:-0}))
  [ "${s:-0}" != "${r:-0}" ] && lossy=$((lossy + 1))
done
echo
echo "== result after $DURATION"
sample "end"
echo "pings: $sent sent, $recv received, $((sent - recv)) lost ($lossy of $want CHILD SAs lost some)"
bad=0
for h in a b; do
  st=$(ctl "$h" status --json)
  echo "host $h: rss $((start_rss[$h])) -> $(rss $h) KiB, goroutines ${start_gor[$h]} -> $(jq .goroutines <<<"$st"), rekeys ike $(metric $h 'goipsec_rekeys_total{kind="ike"}') child $(metric $h 'goipsec_rekeys_total{kind="child"}'), drops $(jq -c '.counters.drops' <<<"$st"), panics $(jq -c .panics <<<"$st")"
  n=$(jq '[.counters.drops | to_entries[] | select(.key | test("spi|replay|icv")) | .value] | add // 0' <<<"$st")
  bad=$((bad + n))
done
echo "error log lines: a $(grep -c 'level=ERROR' "$work/a.log" || true), b $(grep -c 'level=ERROR' "$work/b.log" || true)"
if [ "$sent" -ne "$recv" ] || [ "$bad" -ne 0 ]; then
  echo "soak: FAILED ($((sent - recv)) pings lost, $bad drops as unknown SPI, replay or bad ICV)"
  exit 1
fi
echo "soak: ok"
