#!/usr/bin/env bash
# Installs the Debian packages that the tests and the demo use, when missing.
# Usage: scripts/deps.sh test|demo|bench
set -euo pipefail

want=(iproute2 iputils-ping python3-scapy)
case "${1:-test}" in
  test)  want+=(iperf3 tcpdump util-linux zsh fish systemd make etcd-server etcd-client strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libstrongswan-extra-plugins libcharon-extra-plugins) ;;
  demo)  ;;
  bench) want+=(iperf3 strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins libstrongswan-extra-plugins wireguard-tools) ;;
  *) echo "usage: $0 test|demo|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
