# scripts/bench/netns.sh: sourced by scripts/bench.sh and scripts/ikeload.sh.

# veth_pair A B TAG: network namespaces A and B joined by a veth pair
# (created as TAGx and TAGy, named eth0 on both sides), 192.0.2.1/24 in A
# and 192.0.2.2/24 in B, lo and eth0 up. The caller deletes A, B and TAGx.
veth_pair() {
  local a=$1 b=$2 tag=$3 ns
  ip netns add "$a"
  ip netns add "$b"
  ip link add "${tag}x" type veth peer name "${tag}y"
  ip link set "${tag}x" netns "$a"
  ip link set "${tag}y" netns "$b"
  ip -n "$a" link set "${tag}x" name eth0
  ip -n "$b" link set "${tag}y" name eth0
  ip -n "$a" addr add 192.0.2.1/24 dev eth0
  ip -n "$b" addr add 192.0.2.2/24 dev eth0
  for ns in "$a" "$b"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
}
