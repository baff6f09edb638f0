package ah

// The whole-packet AH path as it was before the data plane took over the
// framing (issue 9), kept for BenchmarkFramingOldNew only: SealSeq parsed
// the packet itself and built its own tunnel-mode outer header, Decrypt
// parsed the received packet again. The ICV computation (auth) is the
// package's.

import (
	"encoding/binary"
	"math"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

func (o *Outbound) oldSealSeq(buf []byte, start, end int, seq uint64) (nstart, nend int, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, sa.DropMalformed
	}
	if !o.seq.InRange(seq) {
		return 0, 0, sa.DropSeqExhausted
	}
	if !o.alive() {
		return 0, 0, sa.DropExpired
	}
	p := buf[start:end]
	n, ihl, v6, d := ipLength(p)
	if d != sa.DropNone {
		return 0, 0, sa.DropMalformed
	}
	if n != len(p) {
		return 0, 0, sa.DropMalformed
	}
	if o.mode == sa.Tunnel {
		return o.oldSealTunnel(buf, start, end, seq, v6)
	}
	return o.oldSealTransport(buf, start, end, seq, v6, ihl)
}

func (o *Outbound) oldSealTunnel(buf []byte, start, end int, seq uint64, inner6 bool) (int, int, error) {
	hl := ipv4HeaderLen
	if o.outer6 {
		hl = ipv6HeaderLen
	}
	ahLen := o.ahLen(o.outer6)
	ns := start - hl - ahLen
	if ns < 0 {
		return 0, 0, sa.DropTooBig
	}
	total := end - ns
	if o.outer6 && total-ipv6HeaderLen > math.MaxUint16 || !o.outer6 && total > math.MaxUint16 {
		return 0, 0, sa.DropTooBig
	}
	if !o.meter.Add(end - start) {
		return 0, 0, sa.DropExpired
	}
	// RFC 4301, Section 5.1.2.1: DSCP and ECN are copied from the inner
	// header, and DF too from an inner IPv4 header. They are mutable, so
	// outside the ICV.
	p := buf[start:end]
	q := buf[ns:end]
	if o.outer6 {
		packet.PutIPv6Header(q, o.local, o.remote, iana.ProtoAH, total-ipv6HeaderLen, o.ttl)
		packet.IPv6(q).SetTrafficClass(oldInnerTOS(p, inner6))
	} else {
		// RFC 4301, Section 5.1.2.1 leaves the outer IPv4 ID to the
		// encapsulator; the low bits of the sequence number differ between
		// consecutive packets of the SA (RFC 6864, Section 4).
		packet.PutIPv4Header(q, o.local, o.remote, iana.ProtoAH, total, o.ttl, uint16(seq))
		h := packet.IPv4(q)
		h.SetTOS(oldInnerTOS(p, inner6))
		if !inner6 {
			h.SetFlagsFragOff(packet.IPv4(p).Flags()&packet.IPv4FlagDF, 0)
		}
		h.UpdateChecksum()
	}
	putHeader(q[hl:], ahLen, innerProto(inner6), o.spi, seq)
	if d := o.auth(q, o.outer6, hl, uint32(seq>>32), false); d != sa.DropNone {
		return 0, 0, d
	}
	return ns, end, nil
}

// innerTOS returns the DSCP and ECN byte of the inner packet p.
func oldInnerTOS(p []byte, v6 bool) uint8 {
	if v6 {
		return packet.IPv6(p).TrafficClass()
	}
	return packet.IPv4(p).TOS()
}

func (o *Outbound) oldSealTransport(buf []byte, start, end int, seq uint64, v6 bool, ihl int) (int, int, error) {
	p := buf[start:end]
	var sp packet.Split
	if packet.SplitTransport(p, &sp) != nil || sp.HdrLen > len(p) {
		return 0, 0, sa.DropMalformed
	}
	hdrLen, nhOff := sp.HdrLen, sp.NextHdrOff
	// Check the headers the ICV will cover before anything is moved.
	if v6 {
		if _, _, d := walk6(p, hdrLen, false); d != sa.DropNone {
			return 0, 0, d
		}
	} else {
		if sp.Fragment || hdrLen != ihl {
			return 0, 0, sa.DropMalformed
		}
		if d := options4(p[:ihl], false); d != sa.DropNone {
			return 0, 0, d
		}
	}
	ahLen := o.ahLen(v6)
	ns := start - ahLen
	if ns < 0 {
		return 0, 0, sa.DropTooBig
	}
	total := end - ns
	if v6 && total-ipv6HeaderLen > math.MaxUint16 || !v6 && total > math.MaxUint16 {
		return 0, 0, sa.DropTooBig
	}
	if !o.meter.Add(end - start) {
		return 0, 0, sa.DropExpired
	}
	// Move the IP header (with options or extension headers) in front of
	// the AH header: RFC 4302, Section 3.1.1.
	nh := p[nhOff]
	packet.MoveHeader(buf, start, &sp, ns+hdrLen, iana.ProtoAH)
	q := buf[ns:end]
	putHeader(q[hdrLen:], ahLen, nh, o.spi, seq)
	if packet.SetLength(q, total) != nil {
		return 0, 0, sa.DropTooBig
	}
	if d := o.auth(q, v6, hdrLen, uint32(seq>>32), false); d != sa.DropNone {
		return 0, 0, d
	}
	return ns, end, nil
}

func (in *Inbound) oldDecrypt(buf []byte, start, end int) (nstart, nend int, seq uint64, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, 0, sa.DropTruncated
	}
	pkt := buf[start:end]
	n, ihl, v6, d := ipLength(pkt)
	if d != sa.DropNone {
		return 0, 0, 0, d
	}
	pkt = pkt[:n]
	var ahOff, nhOff int
	if v6 {
		if ahOff, nhOff, d = walk6(pkt, -1, false); d != sa.DropNone {
			return 0, 0, 0, d
		}
	} else {
		if pkt[9] != iana.ProtoAH || ipv4Fragment(pkt) {
			return 0, 0, 0, sa.DropMalformed
		}
		ahOff, nhOff = ihl, 9
	}
	if ahOff+HeaderLen > len(pkt) {
		return 0, 0, 0, sa.DropTruncated
	}
	ah := pkt[ahOff:]
	ahLen := (int(ah[1]) + 2) * 4 // RFC 4302, Section 2.2
	if ahLen != in.ahLen(v6) {
		return 0, 0, 0, sa.DropMalformed
	}
	if ahLen > len(ah) {
		return 0, 0, 0, sa.DropTruncated
	}
	// RFC 4302, Section 2.3: Reserved is ignored on receipt (but covered
	// by the ICV).
	if binary.BigEndian.Uint32(ah[4:8]) != in.spi {
		return 0, 0, 0, sa.DropUnknownSPI
	}
	if !in.alive() {
		return 0, 0, 0, sa.DropExpired
	}
	seq, ok := in.window.Check(binary.BigEndian.Uint32(ah[8:12]))
	if !ok {
		return 0, 0, 0, sa.DropReplay
	}
	if d := in.auth(pkt, v6, ahOff, uint32(seq>>32), true); d != sa.DropNone {
		return 0, 0, 0, d
	}

	// From here on the packet is authentic: report seq with every error.
	nh := ah[0]
	if in.mode == sa.Tunnel {
		if nh != iana.ProtoIPv4 && nh != iana.ProtoIPv6 {
			return 0, 0, seq, sa.DropBadNextHeader
		}
		inner := ah[ahLen:]
		m, _, inner6, d := ipLength(inner)
		if d != sa.DropNone || innerProto(inner6) != nh {
			return 0, 0, seq, sa.DropMalformed
		}
		if !in.meter.Add(m) {
			return 0, 0, seq, sa.DropExpired
		}
		nstart = start + ahOff + ahLen
		return nstart, nstart + m, seq, nil
	}

	// Transport mode: put the IP header back in front of the payload with
	// AH's next header (RFC 4302, Section 3.1.1).
	sp := packet.Split{HdrLen: ahOff, NextHdrOff: nhOff}
	nstart = packet.MoveHeader(buf, start, &sp, start+ahOff+ahLen, nh)
	nend = start + n
	out := buf[nstart:nend]
	if packet.SetLength(out, len(out)) != nil {
		return 0, 0, seq, sa.DropMalformed
	}
	if !in.meter.Add(len(out)) {
		return 0, 0, seq, sa.DropExpired
	}
	return nstart, nend, seq, nil
}
