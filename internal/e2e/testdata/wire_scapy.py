#!/usr/bin/python3
"""scapy as an independent ESP/AH implementation for the e2e tests.

Reads one JSON request on stdin and writes one JSON answer on stdout.

  {"op": "decrypt", "sa": SA, "packets": [hex IP packet, ...]}
      -> {"results": [{"ok": true, "seq": N, "src", "dst", "proto",
                        "icmp_type", "icmp_id", "icmp_seq"} |
                       {"ok": false, "error": "..."}, ...]}
      ESP in UDP (RFC 3948) is accepted: the UDP header is removed first.
  {"op": "seal", "sa": SA, "seq": N, "outer_src", "outer_dst",
   "inner": {"src", "dst", "id", "seq", "data", "tos" (optional, 0)}}
      -> {"packet": hex}: an ICMP echo request (ICMPv6 for IPv6 inner
      addresses), sealed in tunnel mode with sequence number N, as IP/ESP
      or IP/AH (no UDP header), the outer header IPv6 for IPv6 outer
      addresses.

SA = {"proto": "esp"|"ah", "spi": int, "alg": goipsec suite keyword,
      "key": hex KEYMAT as ip xfrm takes it, "mode": "tunnel"|"transport"}
"""
import json
import sys

from scapy.layers.inet import IP, ICMP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.ipsec import AH, ESP, SecurityAssociation
from scapy.packet import Raw

# goipsec suite keyword -> scapy algorithm. For AES-GCM scapy takes the key
# with the 4-byte salt appended (RFC 4106, Section 8.1), as ip xfrm does.
ESP_ALGS = {
    "aes128gcm16": ("AES-GCM", None, 0),
    "aes256gcm16": ("AES-GCM", None, 0),
    "aes128-sha256": ("AES-CBC", "SHA2-256-128", 16),
}
AH_ALGS = {"sha256": "SHA2-256-128", "sha1": "HMAC-SHA1-96"}


def make_sa(d, tunnel_src=None, tunnel_dst=None):
    key = bytes.fromhex(d["key"])
    tunnel = None
    if d["mode"] == "tunnel":
        if tunnel_src and ":" in tunnel_src:
            tunnel = IPv6(src=tunnel_src, dst=tunnel_dst)
        else:
            tunnel = IP(src=tunnel_src or "0.0.0.0", dst=tunnel_dst or "0.0.0.0")
    if d["proto"] == "esp":
        crypt, auth, klen = ESP_ALGS[d["alg"]]
        if auth is None:
            return SecurityAssociation(ESP, spi=d["spi"], crypt_algo=crypt, crypt_key=key,
                                       tunnel_header=tunnel)
        return SecurityAssociation(ESP, spi=d["spi"], crypt_algo=crypt, crypt_key=key[:klen],
                                   auth_algo=auth, auth_key=key[klen:], tunnel_header=tunnel)
    return SecurityAssociation(AH, spi=d["spi"], auth_algo=AH_ALGS[d["alg"]], auth_key=key,
                               tunnel_header=tunnel)


def strip_udp(raw):
    """Returns the packet as IP/ESP if it is ESP in UDP on port 4500."""
    ver = raw[0] >> 4
    pkt = IP(raw) if ver == 4 else IPv6(raw)
    if UDP in pkt and pkt[UDP].dport == 4500:
        body = bytes(pkt[UDP].payload)
        if ver == 4:
            return IP(bytes(IP(src=pkt.src, dst=pkt.dst, ttl=pkt.ttl, proto=50) / Raw(body)))
        return IPv6(bytes(IPv6(src=pkt.src, dst=pkt.dst, hlim=pkt.hlim, nh=50) / Raw(body)))
    return pkt


def decrypt(req):
    sa = make_sa(req["sa"])
    out = []
    for h in req["packets"]:
        try:
            pkt = strip_udp(bytes.fromhex(h))
            seq = pkt[ESP].seq if ESP in pkt else pkt[AH].seq
            inner = sa.decrypt(pkt)
            if Raw in inner and not (ICMP in inner):
                inner = inner.__class__(bytes(inner))
            r = {"ok": True, "seq": seq, "src": inner.src, "dst": inner.dst}
            if ICMP in inner:
                r.update(proto=1, icmp_type=inner[ICMP].type, icmp_id=inner[ICMP].id,
                         icmp_seq=inner[ICMP].seq)
            else:
                r["proto"] = inner.proto if inner.version == 4 else inner.nh
            out.append(r)
        except Exception as e:  # report, do not stop: the test decides
            out.append({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    return {"results": out}


def seal(req):
    sa = make_sa(req["sa"], req["outer_src"], req["outer_dst"])
    i = req["inner"]
    if ":" in i["src"]:
        inner = IPv6(src=i["src"], dst=i["dst"], tc=i.get("tos", 0)) / ICMPv6EchoRequest(id=i["id"], seq=i["seq"], data=i["data"].encode())
        inner = IPv6(bytes(inner))  # fill in lengths and checksums
    else:
        inner = IP(src=i["src"], dst=i["dst"], tos=i.get("tos", 0)) / ICMP(type=8, id=i["id"], seq=i["seq"]) / Raw(i["data"].encode())
        inner = IP(bytes(inner))  # fill in lengths and checksums
    return {"packet": bytes(sa.encrypt(inner, seq_num=req["seq"])).hex()}


def main():
    req = json.load(sys.stdin)
    res = {"decrypt": decrypt, "seal": seal}[req["op"]](req)
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()
