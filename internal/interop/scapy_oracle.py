#!/usr/bin/python3
"""scapy oracle for goipsec's cross-implementation tests.

Run it as /usr/bin/python3 scapy_oracle.py (the Debian python3-scapy package,
scapy 2.5.0). It reads one JSON request per line on stdin and writes one JSON
response per line on stdout, in order. A request that fails is answered with
{"id": N, "error": "..."}; the process never exits on a bad request, only on
end of input. If scapy cannot be imported, the first (and only) line it writes
is {"fatal": "..."}.

Operations

  {"op": "ping"}
      -> {"ok": true, "scapy": "2.5.0"}

  {"op": "build", "kind": "icmp"|"udp", "src": ADDR, "dst": ADDR, "size": N,
   "ident": N}
      -> {"packet": HEX}: an IPv4 or IPv6 packet (family from the addresses)
         carrying an ICMP/ICMPv6 echo request or a UDP datagram with N payload
         bytes, every length and checksum filled in by scapy. IPv4 headers get
         a non-zero TOS, DF, TTL 64 and an ID; IPv6 headers a non-zero traffic
         class and flow label, so that AH's zeroing of mutable fields
         (RFC 4302, Section 3.3.3.1) is exercised in transport mode.

  {"op": "seal", "proto": "esp"|"ah", "mode": "tunnel"|"transport",
   "crypt": NAME, "crypt_key": HEX, "auth": NAME, "auth_key": HEX,
   "spi": N, "seq": N, "esn": BOOL, "src": ADDR, "dst": ADDR, "packet": HEX}
      -> {"packet": HEX, "seq": N}: the full IP packet from
         SecurityAssociation.encrypt. "seq" is the full 64-bit sequence
         number; its low 32 bits go into the header, its high 32 bits are
         scapy's "esn" argument. src/dst are the tunnel's outer addresses
         (ignored in transport mode).

  {"op": "open", same SA fields, "packet": HEX}
      -> {"packet": HEX, "seq": N}: the inner (tunnel) or reconstructed
         (transport) packet from SecurityAssociation.decrypt; "seq" is the
         32-bit sequence number field found in the header. The high 32 bits
         of the request's "seq" are used as the ESN high half: scapy does not
         infer it.

Algorithm names and key material (goipsec suite -> scapy)

  aesNNNgcm16        crypt AES-GCM             crypt_key = key || 4-byte salt
  aesNNNgcm12        crypt AES-GCM-12 (*)      crypt_key = key || 4-byte salt
  aesNNNgcm8         crypt AES-GCM-8 (*)       crypt_key = key || 4-byte salt
  chacha20poly1305   crypt CHACHA20-POLY1305   crypt_key = key || 4-byte salt
  aesNNNgmac         crypt AES-NULL-GMAC (**)  crypt_key = key || 4-byte salt
  aesNNNctr-INTEG    crypt AES-CTR             crypt_key = key || 4-byte nonce
  aesNNN-INTEG       crypt AES-CBC             crypt_key = cipher key
  null-INTEG         crypt NULL
  INTEG sha1         auth  HMAC-SHA1-96        auth_key = integrity key
        sha256       auth  SHA2-256-128
        sha384       auth  SHA2-384-192
        sha512       auth  SHA2-512-256
        aesxcbc      (none: scapy has AES-CMAC-96 but no AES-XCBC-MAC-96)

scapy's SecurityAssociation splits the salt or nonce off the end of crypt_key
(salt_size 4 for AES-GCM, AES-CTR and CHACHA20-POLY1305), which is the KEYMAT
layout that ip xfrm and goipsec use.

(*) scapy 2.5.0's AES-GCM uses cryptography's AESGCM class, which always
produces a 16-byte tag and ignores crypt_icv_size. AES-GCM-12 and AES-GCM-8
are registered here as scapy CryptAlgo objects over cryptography's
Cipher(AES, modes.GCM), which scapy's CryptAlgo truncates to icv_size on
encryption and verifies with min_tag_length on decryption (RFC 4106,
Section 6): the ESP framing is still scapy's.

(**) scapy 2.5.0 has no ENCR_NULL_AUTH_AES_GMAC (RFC 4543). AES-NULL-GMAC is
a CryptAlgo subclass defined below over cryptography's AESGCM with an empty
plaintext and AAD = SPI || [Seq# high] || Seq# || IV || payload || padding ||
pad length || next header (RFC 4543, Sections 3.1 to 3.4). It is this
script's construction, not scapy's; only the ESP framing is scapy's.

ESN (RFC 4303, Section 2.2.1 and Appendix A): scapy 2.5.0 puts the high 32
bits in the AAD of AEAD transforms (esn_en/esn arguments) and appends them to
the AH ICV input (RFC 4302, Section 3.3.3.2.1), but for ESP with a separate
integrity algorithm (CBC, CTR, NULL) its AuthAlgo.sign/verify ignore ESN and
compute the ICV over the ESP packet alone. RFC 4303, Section 2.2.1 says the
high-order bits are appended after the packet for the ICV computation; this
script fixes that case by recomputing (on seal) or checking (on open) the ICV
with scapy's own AuthAlgo.new_mac over raw(ESP) || seq_hi.
"""

import json
import struct
import sys
import hmac


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


try:
    import scapy
    from scapy.compat import raw
    from scapy.layers.inet import IP, ICMP, UDP
    from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest
    from scapy.layers import ipsec
    from scapy.layers.ipsec import (AH, ESP, CRYPT_ALGOS, AUTH_ALGOS,
                                    CryptAlgo, SecurityAssociation,
                                    IPSecIntegrityError, _ESPPlain)
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import aead, algorithms, modes
except Exception as exc:  # the Go side skips (or fails in CI) on this
    reply({"fatal": "cannot import scapy: %r" % (exc,)})
    sys.exit(1)


def _salt_iv(sa, iv, **kw):
    return sa.crypt_salt + iv


for _icv in (8, 12):
    CRYPT_ALGOS["AES-GCM-%d" % _icv] = CryptAlgo(
        "AES-GCM-%d" % _icv, cipher=algorithms.AES, mode=modes.GCM,
        block_size=1, iv_size=8, key_size=(16, 24, 32), salt_size=4,
        icv_size=_icv, format_mode_iv=_salt_iv)


class NullAuthGMAC(CryptAlgo):
    """ENCR_NULL_AUTH_AES_GMAC, RFC 4543: authenticated, not encrypted."""

    def _aad(self, esp, iv, body, esn_en, esn):
        if esn_en:
            head = struct.pack("!LLL", esp.spi, esn, esp.seq)
        else:
            head = struct.pack("!LL", esp.spi, esp.seq)
        return head + iv + body

    def encrypt(self, sa, esp, key, icv_size=None, esn_en=False, esn=0):
        body = esp.data_for_encryption()
        nonce = sa.crypt_salt + esp.iv  # RFC 4543, Section 3.2
        tag = aead.AESGCM(key).encrypt(nonce, b"",
                                       self._aad(esp, esp.iv, body, esn_en, esn))
        return ESP(spi=esp.spi, seq=esp.seq, data=esp.iv + body + tag)

    def decrypt(self, sa, esp, key, icv_size=None, esn_en=False, esn=0):
        iv = esp.data[:self.iv_size]
        body = esp.data[self.iv_size:len(esp.data) - 16]
        icv = esp.data[len(esp.data) - 16:]
        try:
            aead.AESGCM(key).decrypt(sa.crypt_salt + iv, icv,
                                     self._aad(esp, iv, body, esn_en, esn))
        except InvalidTag as err:
            raise IPSecIntegrityError(err)
        padlen = body[-2]
        nh = body[-1]
        data = body[:len(body) - padlen - 2]
        return _ESPPlain(spi=esp.spi, seq=esp.seq, iv=iv, data=data,
                         padding=body[len(data):len(body) - 2],
                         padlen=padlen, nh=nh, icv=icv)


CRYPT_ALGOS["AES-NULL-GMAC"] = NullAuthGMAC(
    "AES-NULL-GMAC", cipher=aead.AESGCM, mode=None, block_size=1, iv_size=8,
    key_size=(16, 24, 32), salt_size=4, icv_size=16)


def ip_class(b):
    return IP if (b[0] >> 4) == 4 else IPv6


def outer_header(req):
    src, dst = req["src"], req["dst"]
    if ":" in src:
        return IPv6(src=src, dst=dst)
    return IP(src=src, dst=dst)


def make_sa(req):
    proto = {"esp": ESP, "ah": AH}[req["proto"]]
    seq = int(req.get("seq", 1))
    lo, hi = seq & 0xFFFFFFFF, seq >> 32
    kw = dict(seq_num=lo, esn_en=bool(req.get("esn")), esn=hi)
    if req.get("mode", "tunnel") == "tunnel":
        kw["tunnel_header"] = outer_header(req)
    crypt = req.get("crypt") or None
    auth = req.get("auth") or None
    if proto is ESP:
        kw["crypt_algo"] = crypt or "NULL"
        if req.get("crypt_key"):
            kw["crypt_key"] = bytes.fromhex(req["crypt_key"])
    if auth:
        kw["auth_algo"] = auth
        kw["auth_key"] = bytes.fromhex(req["auth_key"])
    return SecurityAssociation(proto, spi=int(req["spi"]), **kw), lo, hi


def esp_needs_esn_fix(sa, req):
    """True for ESP with ESN and a separate integrity algorithm."""
    return (sa.proto is ESP and bool(req.get("esn"))
            and not sa.crypt_algo.is_aead and sa.auth_algo.mac is not None)


def esp_icv(sa, esp_bytes, hi):
    mac = sa.auth_algo.new_mac(sa.auth_key)
    mac.update(esp_bytes + struct.pack("!L", hi))  # RFC 4303, Section 2.2.1
    return mac.finalize()[:sa.auth_algo.icv_size]


def op_seal(req):
    sa, lo, hi = make_sa(req)
    b = bytes.fromhex(req["packet"])
    pkt = ip_class(b)(b)
    out = sa.encrypt(pkt, seq_num=lo, esn_en=bool(req.get("esn")), esn=hi)
    if esp_needs_esn_fix(sa, req):
        n = sa.auth_algo.icv_size
        esp = out[ESP]
        esp.data = esp.data[:len(esp.data) - n]
        esp.data += esp_icv(sa, raw(esp), hi)
    return {"packet": raw(out).hex(), "seq": int(req.get("seq", 1))}


def op_open(req):
    sa, lo, hi = make_sa(req)
    b = bytes.fromhex(req["packet"])
    pkt = ip_class(b)(b)
    layer = ESP if sa.proto is ESP else AH
    if not pkt.haslayer(layer):
        raise ValueError("no %s layer in %s" % (layer.name, pkt.summary()))
    seq_field = pkt[layer].seq
    verify = True
    if esp_needs_esn_fix(sa, req):
        sa.check_spi(pkt[ESP])
        n = sa.auth_algo.icv_size
        esp = pkt[ESP].copy()
        icv = esp.data[len(esp.data) - n:]
        esp.data = esp.data[:len(esp.data) - n]
        if not hmac.compare_digest(icv, esp_icv(sa, raw(esp), hi)):
            raise IPSecIntegrityError("ESP ICV (with ESN high bits) mismatch")
        verify = False
    out = sa.decrypt(pkt, verify=verify, esn_en=bool(req.get("esn")), esn=hi)
    return {"packet": raw(out).hex(), "seq": seq_field}


def op_build(req):
    src, dst = req["src"], req["dst"]
    size = int(req.get("size", 0))
    ident = int(req.get("ident", 1))
    payload = bytes((i * 7 + ident) & 0xFF for i in range(size))
    if ":" in src:
        ip = IPv6(src=src, dst=dst, tc=0xB8, fl=0x12345, hlim=64)
        l4 = ICMPv6EchoRequest(id=ident, seq=ident) if req["kind"] == "icmp" \
            else UDP(sport=40000 + ident, dport=5201)
    else:
        ip = IP(src=src, dst=dst, tos=0xB8, flags="DF", ttl=64, id=ident)
        l4 = ICMP(type=8, id=ident, seq=ident) if req["kind"] == "icmp" \
            else UDP(sport=40000 + ident, dport=5201)
    return {"packet": raw(ip / l4 / payload).hex()}


OPS = {
    "ping": lambda req: {"ok": True, "scapy": scapy.VERSION},
    "build": op_build,
    "seal": op_seal,
    "open": op_open,
}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rid = None
        try:
            req = json.loads(line)
            rid = req.get("id")
            resp = OPS[req["op"]](req)
        except IPSecIntegrityError as exc:
            resp = {"error": "integrity check failed: %s" % (exc,)}
        except Exception as exc:  # never fatal: answer with the error
            resp = {"error": "%s: %s" % (type(exc).__name__, exc)}
        resp["id"] = rid
        reply(resp)


if __name__ == "__main__":
    main()
