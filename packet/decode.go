package packet

import (
	"encoding/binary"
	"net/netip"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
)

// protoSCTP is the IP protocol number of SCTP (RFC 9260), whose common header
// starts with the source and destination ports as TCP's and UDP's do.
const protoSCTP = 132

// Minimum upper-layer header lengths that Decode needs to read ports or the
// ICMP type and code.
const (
	tcpMinHeaderLen  = 20 // RFC 9293, Section 3.1
	udpHeaderLen     = 8  // RFC 768
	sctpCommonHdrLen = 12 // RFC 9260, Section 3.1
	icmpMinHeaderLen = 4  // type, code, checksum: RFC 792; RFC 4443, Section 2.1
)

// Info is what Decode extracts from an IP packet: the selectors of RFC 4301,
// Section 4.4.1.1 that the SPD matches on, and the offsets the packet engines
// need. The zero value means nothing was decoded.
type Info struct {
	// Version is 4 or 6.
	Version uint8
	// Src and Dst are the addresses of the IP header. For IPv6 they are
	// 16-byte addresses; for IPv4, 4-byte ones.
	Src, Dst netip.Addr
	// Proto is the upper-layer protocol: the IPv4 Protocol field, or for IPv6
	// the Next Header value after the hop-by-hop, routing, fragment and
	// destination options headers. Decode stops at ESP (50), AH (51), No Next
	// Header (59) and any other value, which it reports here.
	Proto uint8
	// L4Offset is the offset of the header Proto names.
	L4Offset int
	// TotalLen is the length of the IP packet per its header (IPv4 Total
	// Length, or 40 plus the IPv6 Payload Length). Bytes of b beyond it are
	// padding the caller may trim.
	TotalLen int
	// HasPorts reports whether SrcPort and DstPort are set: the protocol is
	// TCP, UDP or SCTP, its header is whole, and the packet is not a
	// non-first fragment (RFC 4301, Section 7: ports of non-initial fragments
	// are OPAQUE).
	HasPorts bool
	// SrcPort and DstPort are the upper-layer ports when HasPorts is set.
	SrcPort, DstPort uint16
	// HasICMP reports whether ICMPType and ICMPCode are set: ICMP over IPv4
	// or ICMPv6 over IPv6, with the first four bytes of its header present,
	// in a packet that is not a non-first fragment.
	HasICMP bool
	// ICMPType and ICMPCode are the ICMP or ICMPv6 message type and code,
	// which RFC 4301, Section 4.4.1.1 uses in place of the ports.
	ICMPType, ICMPCode uint8
	// IsFragment reports whether the packet is a fragment: MF set or a
	// non-zero fragment offset, in the IPv4 header or an IPv6 Fragment
	// header. An IPv6 atomic fragment (Fragment header with offset 0 and M
	// clear) is a whole packet and not a fragment (RFC 6946, Section 4).
	IsFragment bool
	// FirstFragment reports whether a fragment has offset 0 (its upper-layer
	// header may be present). It is false when IsFragment is false.
	FirstFragment bool
	// Split is where transport-mode ESP or AH would go in this packet, as
	// SplitTransport reports it, found in the same pass over the headers
	// so that the packet engines need not parse the packet again.
	Split Split
}

// Decode validates the IP packet at the start of b and fills info. It
// allocates nothing and never panics. The checks are strict: the version must
// be 4 or 6; for IPv4, IHL >= 5 and HeaderLen <= Total Length <= len(b); for
// IPv6, 40 + Payload Length <= len(b) and every extension header it walks must
// lie within the payload, with hop-by-hop options only right after the fixed
// header (RFC 8200, Section 4.1). An unfragmented TCP, UDP, SCTP, ICMP or
// ICMPv6 packet too short for its header is truncated; a first fragment that
// is too short simply has no ports (RFC 4301, Section 7). Bytes after the IP
// packet are allowed; see Info.TotalLen.
//
// Decode does not verify the IPv4 header checksum: the data plane's packets
// come from the local stack or were authenticated by ESP/AH, and the
// receiving stack checks it again. Use IPv4.IsChecksumValid where it matters.
//
// The error is sa.DropTruncated, sa.DropMalformed, or sa.DropUnsupported for
// IPv6 jumbograms (RFC 2675), which this package does not handle.
func Decode(b []byte, info *Info) error {
	*info = Info{}
	if len(b) == 0 {
		return sa.DropTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return decode4(b, info)
	case 6:
		return decode6(b, info)
	}
	return sa.DropMalformed
}

// checkIPv4 validates the IPv4 header lengths of b and returns the header
// length and the total length.
func checkIPv4(b []byte) (hl, tl int, err error) {
	if len(b) < IPv4MinHeaderLen {
		return 0, 0, sa.DropTruncated
	}
	h := IPv4(b)
	if h.Version() != 4 {
		return 0, 0, sa.DropMalformed
	}
	hl = h.HeaderLen()
	if hl < IPv4MinHeaderLen {
		return 0, 0, sa.DropMalformed
	}
	if hl > len(b) {
		return 0, 0, sa.DropTruncated
	}
	tl = int(h.TotalLength())
	if tl < hl {
		return 0, 0, sa.DropMalformed
	}
	if tl > len(b) {
		return 0, 0, sa.DropTruncated
	}
	return hl, tl, nil
}

func decode4(b []byte, info *Info) error {
	hl, tl, err := checkIPv4(b)
	if err != nil {
		return err
	}
	h := IPv4(b)
	info.Version = 4
	info.Src = h.Src()
	info.Dst = h.Dst()
	info.Proto = h.Protocol()
	info.L4Offset = hl
	info.TotalLen = tl
	off := h.FragOff()
	info.Split = Split{Version: 4, HdrLen: hl, NextHdrOff: 9, TotalLen: tl,
		Fragment: h.Flags()&IPv4FlagMF != 0 || off != 0}
	if h.Flags()&IPv4FlagMF != 0 || off != 0 {
		info.IsFragment = true
		info.FirstFragment = off == 0
		if off != 0 {
			return nil
		}
	}
	return decodeL4(b[hl:tl], info)
}

// checkIPv6 validates the fixed IPv6 header of b and returns the total length.
func checkIPv6(b []byte) (tl int, err error) {
	if len(b) < IPv6HeaderLen {
		return 0, sa.DropTruncated
	}
	h := IPv6(b)
	if h.Version() != 6 {
		return 0, sa.DropMalformed
	}
	pl := int(h.PayloadLength())
	if pl == 0 && h.NextHeader() == iana.ProtoHopOpts {
		// A jumbogram (RFC 2675, Section 2) carries its length in a
		// hop-by-hop option. Not supported here.
		return 0, sa.DropUnsupported
	}
	tl = IPv6HeaderLen + pl
	if tl > len(b) {
		return 0, sa.DropTruncated
	}
	return tl, nil
}

func decode6(b []byte, info *Info) error {
	tl, err := checkIPv6(b)
	if err != nil {
		return err
	}
	h := IPv6(b)
	info.Version = 6
	info.Src = h.Src()
	info.Dst = h.Dst()
	info.TotalLen = tl
	w := WalkIPv6(b[:tl])
	info.Split = Split{Version: 6, TotalLen: tl}
	split := false // info.Split.HdrLen is set
	for w.IsExt() {
		if !split && w.NextHeader == iana.ProtoDstOpts {
			// The split stops at options for the final destination
			// (see SplitTransport).
			if next, ok := w.Peek(); ok && next != iana.ProtoRouting {
				info.Split.HdrLen, info.Split.NextHdrOff, info.Split.Fragment = w.Off, w.NextHeaderOff, w.Fragment
				split = true
			}
		}
		if _, err := w.Skip(); err != nil {
			return err
		}
		// An atomic fragment (offset 0, M 0) is a whole packet,
		// processed in isolation (RFC 6946, Section 4): not a fragment
		// here.
		if w.Fragment && (w.FragOff != 0 || w.MoreFragments) {
			info.IsFragment = true
			info.FirstFragment = w.FragOff == 0
			if w.FragOff != 0 {
				// The headers after the fragment header belong to
				// the first fragment only (RFC 8200, Section 4.5).
				if !split {
					info.Split.HdrLen, info.Split.NextHdrOff, info.Split.Fragment = w.Off, w.NextHeaderOff, true
				}
				info.Proto = w.NextHeader
				info.L4Offset = w.Off
				return nil
			}
		}
	}
	if !split {
		info.Split.HdrLen, info.Split.NextHdrOff, info.Split.Fragment = w.Off, w.NextHeaderOff, w.Fragment
	}
	info.Proto = w.NextHeader
	info.L4Offset = w.Off
	return decodeL4(b[w.Off:tl], info)
}

// decodeL4 reads the ports or ICMP type and code from the upper-layer header
// l4 (bounded by the IP total length) of a packet that is not a non-first
// fragment.
func decodeL4(l4 []byte, info *Info) error {
	var need int
	switch info.Proto {
	case iana.ProtoTCP:
		need = tcpMinHeaderLen
	case iana.ProtoUDP:
		need = udpHeaderLen
	case protoSCTP:
		need = sctpCommonHdrLen
	case iana.ProtoICMP:
		if info.Version != 4 {
			return nil
		}
		need = icmpMinHeaderLen
	case iana.ProtoICMPv6:
		if info.Version != 6 {
			return nil
		}
		need = icmpMinHeaderLen
	default:
		return nil
	}
	if len(l4) < need {
		if info.IsFragment {
			// A first fragment that does not hold the whole
			// upper-layer header: the ports are unknown (RFC 4301,
			// Section 7.3), and the SPD decides what to do.
			return nil
		}
		return sa.DropTruncated
	}
	if need == icmpMinHeaderLen {
		info.HasICMP = true
		info.ICMPType = l4[0]
		info.ICMPCode = l4[1]
		return nil
	}
	info.HasPorts = true
	info.SrcPort = binary.BigEndian.Uint16(l4[0:])
	info.DstPort = binary.BigEndian.Uint16(l4[2:])
	return nil
}

// TransportSplit returns where transport-mode ESP or AH inserts its header in
// the IP packet b (RFC 4303, Section 3.1.1; RFC 4302, Section 3.1.1):
// hdrLen is the offset at which the ESP or AH header goes (everything before
// it stays in clear in front of it), and nextHdrOff is the offset of the byte
// that holds the next header value there, which the caller saves as the
// ESP/AH Next Header and replaces with 50 or 51. It allocates nothing and
// never panics; the error is an sa.Drop reason as for Decode.
//
// For IPv4, hdrLen is the header length with options and nextHdrOff is 9, the
// Protocol field.
//
// For IPv6, RFC 4303, Section 3.1.1 (and the same figure in RFC 4302) places
// ESP after the hop-by-hop, routing and fragment extension headers, which are
// examined by nodes before the final destination:
//
//	| orig IP hdr | hop-by-hop, dest*, routing, fragment | ESP | dest* | TCP | Data |
//
// where a destination options header "could be before ESP, after ESP, or
// both". RFC 8200, Section 4.1 gives it two places: before a routing header
// (options for the first destination and the ones the routing header lists)
// and before the upper layer (options for the final destination only). The
// first kind must be readable by intermediate destinations, so it stays
// before ESP; the second kind is end-to-end, and both RFCs note that placing
// it after ESP protects it, so it goes after. TransportSplit therefore walks
// hop-by-hop (only first, RFC 8200, Section 4.1), routing and fragment
// headers, and a destination options header only when the header right after
// it is a routing header; it stops at anything else, including an existing
// ESP or AH header (a bundle applies the outer protocol in front of it). Home
// Address destination options of Mobile IPv6 (RFC 6275, Section 6.3), which
// belong before ESP without a routing header, are not supported.
//
// RFC 4301, Section 7 defines transport-mode SAs not to carry fragments; that
// is the caller's decision, and TransportSplit walks a fragment header as the
// figure shows.
func TransportSplit(b []byte) (hdrLen int, nextHdrOff int, err error) {
	var sp Split
	if err := SplitTransport(b, &sp); err != nil {
		return 0, 0, err
	}
	return sp.HdrLen, sp.NextHdrOff, nil
}

// Split is where transport-mode ESP or AH goes in an IP packet, as
// SplitTransport finds it.
type Split struct {
	// Version is 4 or 6.
	Version uint8
	// HdrLen and NextHdrOff are TransportSplit's results.
	HdrLen, NextHdrOff int
	// TotalLen is the packet's length per its IP header.
	TotalLen int
	// Fragment reports an IPv4 fragment (MF set or a non-zero offset) or
	// an IPv6 packet with a Fragment header before HdrLen, atomic
	// fragments included. Transport-mode SAs carry whole datagrams only
	// (RFC 4301, Section 7; RFC 4303, Section 3.4.1).
	Fragment bool
}

// SplitTransport fills sp with what TransportSplit returns for b and the
// packet's version, total length and fragment status, in one pass over the
// headers. The error is that of TransportSplit.
func SplitTransport(b []byte, sp *Split) error {
	*sp = Split{}
	if len(b) == 0 {
		return sa.DropTruncated
	}
	switch b[0] >> 4 {
	case 4:
		hl, tl, err := checkIPv4(b)
		if err != nil {
			return err
		}
		*sp = Split{Version: 4, HdrLen: hl, NextHdrOff: 9, TotalLen: tl,
			Fragment: binary.BigEndian.Uint16(b[6:])&0x3fff != 0}
		return nil
	case 6:
	default:
		return sa.DropMalformed
	}
	tl, err := checkIPv6(b)
	if err != nil {
		return err
	}
	w := WalkIPv6(b[:tl])
	for w.IsExt() {
		if w.NextHeader == iana.ProtoDstOpts {
			next, ok := w.Peek()
			if !ok {
				return sa.DropTruncated
			}
			if next != iana.ProtoRouting {
				// Options for the final destination: after ESP/AH.
				break
			}
		}
		if _, err := w.Skip(); err != nil {
			return err
		}
	}
	*sp = Split{Version: 6, HdrLen: w.Off, NextHdrOff: w.NextHeaderOff, TotalLen: tl, Fragment: w.Fragment}
	return nil
}

// FixTransportChecksum recomputes the TCP, UDP or ICMPv6 checksum of the whole
// IP packet pkt over its current addresses. After NAT-T transport-mode
// decapsulation the checksum covers addresses a NAT rewrote, and the receiver
// must fix it (RFC 3948, Section 3.1.2).
//
// A UDP checksum of zero over IPv4 means none was sent (RFC 768) and is left
// zero, which RFC 3948, Section 3.1.2 also allows a sender to use; a computed
// UDP checksum of zero is sent as 0xffff (RFC 768; RFC 8200, Section 8.1).
// Other protocols, whose checksums do not cover the addresses (ICMP over IPv4,
// SCTP), are left unchanged and give nil. It is meant for the receiver: with
// an IPv6 routing header, the pseudo header uses the Destination Address
// field, which is the final destination only at the recipient (RFC 8200,
// Section 8.1). Fragments give sa.DropUnsupported:
// their checksum covers the reassembled datagram, which this function cannot
// see. Other errors are those of Decode, or sa.DropTruncated and
// sa.DropMalformed for a bad UDP length.
func FixTransportChecksum(pkt []byte) error {
	var info Info
	if err := Decode(pkt, &info); err != nil {
		return err
	}
	switch {
	case info.Proto == iana.ProtoTCP, info.Proto == iana.ProtoUDP:
	case info.Proto == iana.ProtoICMPv6 && info.Version == 6:
	default:
		return nil
	}
	if info.IsFragment {
		return sa.DropUnsupported
	}
	// Decode checked that the header is whole for these protocols.
	return fixL4(pkt[info.L4Offset:info.TotalLen], info.Proto, info.Version, info.Src, info.Dst)
}
