package packet

import (
	"encoding/binary"
	"net/netip"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
)

// Framing helpers: the packet engines (esp, ah) seal and open bare ESP, and
// whoever owns the IP header around it (the data plane, or the engines'
// whole-packet wrappers) builds, moves and fixes that header with these.

// PutIPHeader writes an IP header without options or extension headers in
// front of a payload of payloadLen bytes: IPv4 when src is an IPv4 address
// (with identification id), else IPv6, and returns its length (20 or 40).
// src and dst must be of the same family; b must hold the header. See
// PutIPv4Header and PutIPv6Header.
func PutIPHeader(b []byte, src, dst netip.Addr, proto uint8, payloadLen int, ttl uint8, id uint16) int {
	if src.Is4() {
		PutIPv4Header(b, src, dst, proto, IPv4MinHeaderLen+payloadLen, ttl, id)
		return IPv4MinHeaderLen
	}
	PutIPv6Header(b, src, dst, proto, payloadLen, ttl)
	return IPv6HeaderLen
}

// SetLength stores the packet length total into the IP header at the start
// of b: the IPv4 Total Length, with the header checksum recomputed, or the
// IPv6 Payload Length (total less the fixed header). It fails with
// sa.DropTooBig when the length does not fit in 16 bits.
func SetLength(b []byte, total int) error {
	if b[0]>>4 == 4 {
		if total > 0xffff {
			return sa.DropTooBig
		}
		h := IPv4(b)
		h.SetTotalLength(uint16(total))
		h.UpdateChecksum()
		return nil
	}
	pl := total - IPv6HeaderLen
	if pl > 0xffff || pl < 0 {
		return sa.DropTooBig
	}
	IPv6(b).SetPayloadLength(uint16(pl))
	return nil
}

// MoveHeader moves the IP header of sp, buf[start:start+sp.HdrLen], so that
// it ends at at, stores proto into its next header byte (sp.NextHdrOff) and
// returns the header's new start, at-sp.HdrLen. Transport-mode ESP and AH
// use it both ways (RFC 4303, Section 3.1.1; RFC 4302, Section 3.1.1):
// outbound the header moves in front of the ESP or AH header (proto 50 or
// 51), inbound in front of the payload (proto the ESP trailer's or AH
// header's Next Header). The caller then sets the length with SetLength.
func MoveHeader(buf []byte, start int, sp *Split, at int, proto uint8) int {
	ns := at - sp.HdrLen
	copy(buf[ns:at], buf[start:start+sp.HdrLen])
	buf[ns+sp.NextHdrOff] = proto
	return ns
}

// FixChecksum recomputes the TCP, UDP or ICMPv6 checksum of the upper-layer
// part l4 (protocol proto) of a packet from src to dst, as
// FixTransportChecksum does for a whole packet (RFC 3948, Section 3.1.2):
// for the payload that transport-mode ESP decapsulated, whose addresses the
// caller knows from the outer header. Destination options headers in front
// of the upper-layer header (they travel after ESP, RFC 4303, Section
// 3.1.1) are crossed. Other protocols give nil.
func FixChecksum(l4 []byte, proto uint8, src, dst netip.Addr) error {
	if proto == iana.ProtoDstOpts && src.Is6() {
		w := IPv6Ext{b: l4, NextHeader: proto, NextHeaderOff: -1}
		for w.NextHeader == iana.ProtoDstOpts {
			if _, err := w.Skip(); err != nil {
				return err
			}
		}
		l4, proto = l4[w.Off:], w.NextHeader
	}
	v := uint8(6)
	if src.Is4() {
		v = 4
	}
	return fixL4(l4, proto, v, src, dst)
}

// fixL4 recomputes the checksum of the upper-layer header l4, which extends
// to the end of the IP packet.
func fixL4(l4 []byte, proto, version uint8, src, dst netip.Addr) error {
	var csumOff, need int
	switch {
	case proto == iana.ProtoTCP:
		csumOff, need = 16, tcpMinHeaderLen // RFC 9293, Section 3.1
	case proto == iana.ProtoUDP:
		csumOff, need = 6, udpHeaderLen // RFC 768
	case proto == iana.ProtoICMPv6 && version == 6:
		csumOff, need = 2, icmpMinHeaderLen // RFC 4443, Section 2.3
	default:
		return nil
	}
	if len(l4) < need {
		return sa.DropTruncated
	}
	if proto == iana.ProtoUDP {
		n := int(binary.BigEndian.Uint16(l4[4:]))
		if n < udpHeaderLen {
			return sa.DropMalformed
		}
		if n > len(l4) {
			return sa.DropTruncated
		}
		l4 = l4[:n]
		if version == 4 && l4[6] == 0 && l4[7] == 0 {
			return nil
		}
	}
	l4[csumOff], l4[csumOff+1] = 0, 0
	c := Checksum(l4, PseudoHeaderSum(src, dst, proto, len(l4)))
	if c == 0 && proto == iana.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
	return nil
}

// PutTunnelHeader writes the outer header of a tunnel-mode packet whose
// inner IP packet is buf[start:end], gap bytes in front of it: room for the
// header of proto that goes between the two (AH, 51, whose length the
// caller knows; ah.Outbound.SealAH then fills it). The header has no
// options or extension headers: IPv4 when src is an IPv4 address (with
// identification id), else IPv6; protocol or next header proto; TTL or hop
// limit ttl; lengths that count the gap and the inner packet (a correct
// IPv4 checksum); and, as RFC 4301, Section 5.1.2.1 has the encapsulator
// do, the DSCP and ECN bits of the inner header and, from an inner IPv4
// header into an outer one, DF. It fills sp to describe the outer header and
// returns the header's start, or -1 if buf[:start-gap] cannot hold it or the
// packet would exceed 65535 bytes. src and dst must be of the same family,
// and buf[start:end] must start with an IPv4 or IPv6 header.
func PutTunnelHeader(buf []byte, start, end, gap int, src, dst netip.Addr, proto, ttl uint8, id uint16, sp *Split) int {
	inner := buf[start:end]
	df := inner[0]>>4 == 4 && IPv4(inner).Flags()&IPv4FlagDF != 0
	payload := gap + len(inner)
	*sp = Split{Version: 6, HdrLen: IPv6HeaderLen, NextHdrOff: 6}
	if src.Is4() {
		*sp = Split{Version: 4, HdrLen: IPv4MinHeaderLen, NextHdrOff: 9}
		if IPv4MinHeaderLen+payload > 0xffff {
			return -1
		}
	} else if payload > 0xffff {
		return -1
	}
	ns := start - gap - sp.HdrLen
	if ns < 0 {
		return -1
	}
	putOuterHeader(buf[ns:], src, dst, proto, payload, ttl, id, TOS(inner), df)
	sp.TotalLen = end - ns
	return ns
}

// PutOuterHeader writes the outer header of a tunnel-mode packet in front
// of payloadLen bytes, as PutIPHeader does, with tos as its DSCP and ECN
// bits: the inner header's, which the caller read with TOS before it
// sealed the inner packet. RFC 6040, Section 4.1 (normal mode) has the
// encapsulator copy the ECN field, and RFC 4301, Section 5.1.2.1 allows the
// DSCP to be copied. DF stays clear: unlike PutTunnelHeader (for AH), the
// ESP data path does not copy DF from the inner header, so an outer packet
// may still be fragmented on its way. It returns the header's length.
func PutOuterHeader(b []byte, src, dst netip.Addr, proto uint8, payloadLen int, ttl uint8, id uint16, tos uint8) int {
	return putOuterHeader(b, src, dst, proto, payloadLen, ttl, id, tos, false)
}

// putOuterHeader is PutOuterHeader with DF set when df is true (IPv4 only).
func putOuterHeader(b []byte, src, dst netip.Addr, proto uint8, payloadLen int, ttl uint8, id uint16, tos uint8, df bool) int {
	if src.Is4() {
		var flags uint8
		if df {
			flags = IPv4FlagDF
		}
		putIPv4Header(b, src, dst, proto, IPv4MinHeaderLen+payloadLen, ttl, id, tos, flags)
		return IPv4MinHeaderLen
	}
	PutIPv6Header(b, src, dst, proto, payloadLen, ttl)
	IPv6(b).SetTrafficClass(tos)
	return IPv6HeaderLen
}
