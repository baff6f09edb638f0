package dataplane

// The framing contract between the packet engines and the data plane.
//
// The engines seal and open bare ESP, SPI to ICV (esp.Outbound.SealESP,
// esp.Inbound.DecryptESP); the data plane owns the headers around it:
//
//	outbound: packet.Decode in classifyOutbound parses each packet once, and
//	    its view (packet.Info.Split) travels with the buffer in elem.sp to
//	    SealESP. ESP in UDP leaves bare for the UDP socket, whose kernel
//	    writes the IP and UDP headers (RFC 3948, Section 2.1); raw ESP gets an
//	    outer IP header here (tunnel mode, RFC 4303, Section 3.1.2) or keeps
//	    the packet's own, which SealESP moved in front of ESP, with its length
//	    fixed here (transport mode, Section 3.1.1).
//	inbound: ESP in UDP arrives bare, with the peer's address from the
//	    socket; raw ESP is split once in classifyRaw (elem.sp). DecryptESP
//	    opens the bare packet; in transport mode the IP header goes back in
//	    front of the payload here: the received one moved (raw), or one built
//	    from the outer addresses (ESP in UDP, whose header the kernel
//	    consumed).
//
// AH (raw sockets only) authenticates the IP header in front of it with the
// packet (RFC 4302, Section 3.3.3), so its engine sees that header, but the
// data plane still owns it and parses the packet once:
//
//	outbound: tunnel mode writes the outer header here, with room for AH
//	    between it and the inner packet (packet.PutTunnelHeader);
//	    transport mode keeps the packet's own, which Decode split
//	    (elem.sp). ah.Outbound.SealAH puts AH behind the header that the
//	    split describes (in transport mode moving the header and fixing
//	    its length) and computes the ICV.
//	inbound: classifyRaw's split (elem.sp) says where AH is;
//	    ah.Inbound.DecryptAH verifies the ICV over the packet as received
//	    and returns what follows AH; in transport mode the IP header goes
//	    back in front of it here, as for raw ESP.
//
// DSCP and ECN in tunnel mode, raw ESP and AH (RFC 6040, normal mode; RFC
// 4301, Section 5.1.2.1): the outer header gets the inner header's DSCP
// and ECN bits (packet.PutOuterHeader, packet.PutTunnelHeader), and after
// the ICV check the outer ECN field is combined into the inner header
// (decapECN). ESP in UDP does the same through the UDP socket, whose
// kernel writes and reads that header: the byte travels in elem.tos, sent
// with IP_TOS or IPV6_TCLASS and received with IP_RECVTOS or
// IPV6_RECVTCLASS (conn.UDPConn.WriteBatchTOS, ReadTOS).

import (
	"net/netip"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// espOutbound is an outbound engine that seals bare ESP: *esp.Outbound.
type espOutbound interface {
	Mode() sa.Mode
	Outer() (local, remote netip.Addr, ttl uint8)
	SealESP(buf []byte, start, end int, sp *packet.Split, seq uint64) (nstart, nend int, err error)
}

// espInbound is an inbound engine that opens bare ESP: *esp.Inbound.
type espInbound interface {
	Mode() sa.Mode
	DecryptESP(buf []byte, start, end int, src, dst netip.Addr) (pstart, pend int, nh uint8, seq uint64, err error)
}

// ahOutbound is an outbound engine that inserts AH behind an IP header the
// data plane has parsed or written: *ah.Outbound.
type ahOutbound interface {
	Mode() sa.Mode
	Outer() (local, remote netip.Addr, ttl uint8)
	AHLen() int
	SealAH(buf []byte, start, end int, sp *packet.Split, seq uint64) (nstart, nend int, err error)
}

// ahInbound is an inbound engine that verifies AH in a packet the data
// plane has split: *ah.Inbound.
type ahInbound interface {
	Mode() sa.Mode
	DecryptAH(buf []byte, start, end int, sp *packet.Split) (pstart, pend int, nh uint8, seq uint64, err error)
}

// engineOut returns o's engine of type E (espOutbound or ahOutbound),
// looking through wrappers that only add to the engine's sequence numbers
// or bookkeeping and say so with an Unwrap method (the daemon's manual SAs
// reserve their numbers on disk).
func engineOut[E any](o sad.Outbound) (E, bool) {
	for {
		if e, ok := o.(E); ok {
			return e, true
		}
		u, ok := o.(interface{ Unwrap() sad.Outbound })
		if !ok {
			var zero E
			return zero, false
		}
		o = u.Unwrap()
	}
}

// ipHeaderLen is the length of an IP header without options from or to a.
func ipHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return packet.IPv4MinHeaderLen
	}
	return packet.IPv6HeaderLen
}

// seal protects one packet in place and leaves e.start and e.end around
// what the socket sends.
func (d *Dataplane) seal(e *elem) {
	e.inner = e.end - e.start
	e.tos = 0 // sealESP sets it for ESP in UDP
	var ns, ne int
	var err error
	if o, ok := engineOut[espOutbound](e.out.SA); ok {
		ns, ne, err = sealESP(e, o)
	} else if e.out.Encap == sad.EncapUDP {
		err = sa.DropUnsupported // only ESP travels in UDP (RFC 3948)
	} else if o, ok := engineOut[ahOutbound](e.out.SA); ok {
		ns, ne, err = sealAH(e, o)
	} else {
		ns, ne, err = e.out.SA.SealSeq(e.buf, e.start, e.end, e.seq)
	}
	if err != nil {
		e.drop = asDrop(err)
		d.dropElem(e)
		return
	}
	e.start, e.end = ns, ne
}

// sealESP seals e with o and frames the result for its socket.
func sealESP(e *elem, o espOutbound) (int, int, error) {
	// The inner header's DSCP and ECN bits, read before they are
	// encrypted: the outer header's in tunnel mode, raw or in UDP (RFC
	// 6040, Section 4.1, normal mode; RFC 4301, Section 5.1.2.1). ESP in
	// UDP hands them to the socket (elem.tos), whose kernel writes that
	// header. In transport mode there is no outer header to copy into: the
	// packet's own header travels on with its own TOS, and ESP in UDP's
	// leaves with 0, the socket's (RFC 4301 copies for tunnel mode only).
	tos := packet.TOS(e.buf[e.start:e.end])
	es, ee, err := o.SealESP(e.buf, e.start, e.end, &e.sp, e.seq)
	if e.out.Encap == sad.EncapUDP {
		e.tos = 0
		if o.Mode() == sa.Tunnel {
			e.tos = tos
		}
		return es, ee, err
	}
	if err != nil {
		return es, ee, err
	}
	if o.Mode() == sa.Transport {
		// SealESP moved the packet's own header in front of ESP.
		ns := es - e.sp.HdrLen
		if packet.SetLength(e.buf[ns:ee], ee-ns) != nil {
			return 0, 0, sa.DropTooBig
		}
		return ns, ee, nil
	}
	local, remote, ttl := o.Outer()
	ns := es - ipHeaderLen(local)
	if ns < 0 {
		return 0, 0, sa.DropTooBig
	}
	// RFC 4301, Section 5.1.2.1 leaves the outer IPv4 ID to the
	// encapsulator; the low bits of the sequence number differ between
	// consecutive packets of the SA (RFC 6864, Section 4). DSCP and ECN
	// are copied from the inner header (RFC 6040, Section 4.1, normal
	// mode; openESP propagates the outer ECN at the far end). DF is not
	// copied, unlike AH's outer header: setting it would stop the outer
	// packet from being fragmented on its way, a change of behaviour this
	// data path has not made.
	packet.PutOuterHeader(e.buf[ns:], local, remote, protoESP, ee-es, ttl, uint16(e.seq), tos)
	return ns, ee, nil
}

// sealAH protects e with o: in tunnel mode behind the outer header written
// here, in transport mode behind the packet's own header (RFC 4302,
// Sections 3.1.2 and 3.1.1).
func sealAH(e *elem, o ahOutbound) (int, int, error) {
	if o.Mode() == sa.Transport {
		return o.SealAH(e.buf, e.start, e.end, &e.sp, e.seq)
	}
	local, remote, ttl := o.Outer()
	// The outer header leaves room for AH behind it. RFC 4301, Section
	// 5.1.2.1 leaves the outer IPv4 ID to the encapsulator; the low bits of
	// the sequence number differ between consecutive packets of the SA
	// (RFC 6864, Section 4). The element's split now describes the outer
	// header (a split on the stack would escape through the interface).
	ns := packet.PutTunnelHeader(e.buf, e.start, e.end, o.AHLen(), local, remote, protoAH, ttl, uint16(e.seq), &e.sp)
	if ns < 0 {
		return 0, 0, sa.DropTooBig
	}
	return o.SealAH(e.buf, ns, e.end, &e.sp, e.seq)
}

// open runs the parallel half of inbound processing: everything up to, not
// including, the replay window update, which the sequential stage does.
func (d *Dataplane) open(e *elem) {
	var ns, ne int
	var seq uint64
	var err error
	if in, ok := e.in.SA.(espInbound); ok {
		ns, ne, seq, err = openESP(e, in)
	} else if e.sp.Version == 0 {
		err = sa.DropUnsupported // only ESP travels in UDP (RFC 3948)
	} else if in, ok := e.in.SA.(ahInbound); ok {
		ns, ne, seq, err = openAH(e, in)
	} else {
		ns, ne, seq, err = e.in.SA.Decrypt(e.buf, e.start, e.end)
	}
	e.seq = seq
	if err != nil {
		e.drop = asDrop(err)
		if e.drop == sa.DropNone {
			e.drop = sa.DropMalformed
		}
		return // the sequential stage counts it, after Accept if seq != 0
	}
	e.start, e.end = ns, ne
}

// openESP opens e with in and returns the bounds of the cleartext IP
// packet: the inner packet (tunnel mode), or the payload with its IP header
// put back in front (transport mode, RFC 4303, Section 3.1.1).
func openESP(e *elem, in espInbound) (int, int, uint64, error) {
	start, end := e.start, e.end
	src, dst := e.from.Addr(), e.dst
	raw := e.sp.Version != 0
	if raw {
		if e.sp.Fragment {
			// ESP is removed from whole datagrams only: the IP layer
			// reassembles first (RFC 4303, Section 3.4.1).
			return 0, 0, 0, sa.DropMalformed
		}
		hdr := e.buf[e.start:]
		if e.sp.Version == 4 {
			src, dst = packet.IPv4(hdr).Src(), packet.IPv4(hdr).Dst()
		} else {
			src, dst = packet.IPv6(hdr).Src(), packet.IPv6(hdr).Dst()
		}
		start, end = e.start+e.sp.HdrLen, e.start+e.sp.TotalLen
	}
	ps, pe, nh, seq, err := in.DecryptESP(e.buf, start, end, src, dst)
	if err != nil {
		return ps, pe, seq, err
	}
	if in.Mode() == sa.Tunnel {
		return ps, pe, seq, decapECN(e, ps, pe)
	}
	if raw {
		return restoreHeader(e, ps, pe, nh, seq)
	}
	// The kernel consumed the real header: build one from the outer
	// addresses, which the transport-mode checksums cover (RFC 3948,
	// Section 3.1.2).
	ns := ps - ipHeaderLen(src)
	packet.PutIPHeader(e.buf[ns:], src, dst, nh, pe-ps, 64, 0)
	return ns, pe, seq, nil
}

// openAH verifies e with in, over the packet as received (classifyRaw's
// split says where AH is), and returns the bounds of the cleartext IP
// packet: the inner packet (tunnel mode), or the payload with its IP header
// put back in front (transport mode, RFC 4302, Section 3.1.1).
func openAH(e *elem, in ahInbound) (int, int, uint64, error) {
	ps, pe, nh, seq, err := in.DecryptAH(e.buf, e.start, e.start+e.sp.TotalLen, &e.sp)
	if err != nil {
		return ps, pe, seq, err
	}
	if in.Mode() == sa.Tunnel {
		return ps, pe, seq, decapECN(e, ps, pe)
	}
	return restoreHeader(e, ps, pe, nh, seq)
}

// decapECN combines the ECN field of the outer header of e, which
// classifyRaw split at e.start and the engine left in place, into the inner
// packet buf[ps:pe] that a tunnel-mode SA opened: RFC 6040, Section 4.2
// (packet.DecapECN). It runs after the ICV check, so a CE over a Not-ECT
// inner packet (sa.DropECN) is dropped with its authentic sequence number,
// which the window still takes. The outer DSCP is not copied inward (RFC
// 4301, Section 5.1.2.1). ESP in UDP has no outer header here: the kernel
// consumed it, and its TOS byte came with the datagram (elem.tos, 0 when
// the socket did not report it, which reads as Not-ECT).
func decapECN(e *elem, ps, pe int) error {
	if e.sp.Version == 0 {
		return packet.DecapECN(e.tos, e.buf[ps:pe])
	}
	return packet.DecapECN(packet.TOS(e.buf[e.start:]), e.buf[ps:pe])
}

// restoreHeader moves the received IP header of a transport-mode packet,
// which e.sp describes, from e.start to the front of the payload
// buf[ps:pe], with nh as its next header, and fixes its length: RFC 4303,
// Section 3.1.1; RFC 4302, Section 3.1.1.
func restoreHeader(e *elem, ps, pe int, nh uint8, seq uint64) (int, int, uint64, error) {
	ns := packet.MoveHeader(e.buf, e.start, &e.sp, ps, nh)
	if packet.SetLength(e.buf[ns:pe], pe-ns) != nil {
		return 0, 0, seq, sa.DropMalformed
	}
	return ns, pe, seq, nil
}
