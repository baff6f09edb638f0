#!/usr/bin/env bash
# make demo: two hosts in two network namespaces protect the traffic between
# their inner networks with IKEv2 and ESP. Host A traps the traffic: its first
# ping to host B's network starts IKE (IKE_SA_INIT, IKE_AUTH with a pre-shared
# key, AES-256-GCM and X25519), is held while IKE runs, and goes out once the
# CHILD SA is installed. The demo prints the SAs and tears everything down.
#
#   host A: outer 192.0.2.1, inner 10.1.0.1     host B: outer 192.0.2.2, inner 10.2.0.1
#
# The pre-shared key is random for each run. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo needs root (network namespaces and TUN devices)" >&2
  exit 1
fi

tag=gidemo$$
A=${tag}a B=${tag}b
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

psk=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

ip netns add "$A"; ip netns add "$B"
ip link add "${tag}x" type veth peer name "${tag}y"
ip link set "${tag}x" netns "$A"; ip link set "${tag}y" netns "$B"
ip -n "$A" link set "${tag}x" name eth0; ip -n "$B" link set "${tag}y" name eth0
ip -n "$A" addr add 192.0.2.1/24 dev eth0; ip -n "$B" addr add 192.0.2.2/24 dev eth0
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
ip -n "$A" addr add 10.1.0.1/32 dev lo
ip -n "$B" addr add 10.2.0.1/32 dev lo

conf() { # name local remote lnet rnet peer start_action
  cat <<YAML
daemon:
  socket: $work/$1.sock
  tun: {name: ipsec0, mtu: 1400}
  log: {level: info}
  on_stop: clear   # the demo leaves nothing behind; the default, keep, fails closed
connections:
  demo:
    local_addrs: [$2]
    remote_addrs: [$3]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: {auth: psk, id: $1.demo.example}
    remote: {auth: psk, id: $6.demo.example}
    children:
      net:
        mode: tunnel
        local_ts: [$4]
        remote_ts: [$5]
        esp_proposals: [aes256gcm16]
        start_action: $7
secrets:
  ike:
    - {ids: [a.demo.example, b.demo.example], secret: "$psk"}
YAML
}
conf a 192.0.2.1 192.0.2.2 10.1.0.0/16 10.2.0.0/16 b trap >"$work/a.yaml"
conf b 192.0.2.2 192.0.2.1 10.2.0.0/16 10.1.0.0/16 a none >"$work/b.yaml"
chmod 600 "$work"/*.yaml

for h in a b; do
  ns=$A; [ $h = b ] && ns=$B
  "$BIN/ipsecd" -c "$work/$h.yaml" --check
  ip netns exec "$ns" "$BIN/ipsecd" -c "$work/$h.yaml" >"$work/$h.log" 2>&1 &
  pids+=($!)
done
for h in a b; do
  for _ in $(seq 50); do [ -S "$work/$h.sock" ] && break; sleep 0.1; done
  [ -S "$work/$h.sock" ] || { echo "ipsecd $h did not start:"; cat "$work/$h.log"; exit 1; }
done

echo "== no SA yet: the first ping hits A's trap policy, starts IKE, and is delivered"
ip netns exec "$A" "$BIN/ipsecctl" -s "$work/a.sock" sas
echo
echo "== ping 10.2.0.1 from 10.1.0.1"
ip netns exec "$A" ping -c 3 -i 0.2 -W 2 -I 10.1.0.1 10.2.0.1
echo
echo "== ipsecctl sas (host A)"
ip netns exec "$A" "$BIN/ipsecctl" -s "$work/a.sock" sas
echo
echo "== ipsecctl policies (host A)"
ip netns exec "$A" "$BIN/ipsecctl" -s "$work/a.sock" policies
echo
echo "== host B (the responder)"
ip netns exec "$B" "$BIN/ipsecctl" -s "$work/b.sock" status
echo
echo "demo done; tearing down"
