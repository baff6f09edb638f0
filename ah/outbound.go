package ah

import (
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// Outbound is the sending side of an AH SA. Its methods are safe for
// concurrent use: NextSeq hands out sequence numbers atomically and SealSeq
// may run on many goroutines at once. It allocates nothing per packet.
type Outbound struct {
	engine
	local, remote netip.Addr
	outer6        bool // tunnel mode: the outer header is IPv6
	ttl           uint8
	seq           *sa.SeqCounter
}

// NewOutbound returns the sending side of the SA described by c.
func NewOutbound(c Config) (*Outbound, error) {
	e, err := newEngine(&c, sa.Outbound)
	if err != nil {
		return nil, err
	}
	o := &Outbound{engine: e, ttl: c.TTL}
	if o.ttl == 0 {
		o.ttl = DefaultTTL
	}
	if c.Mode == sa.Tunnel {
		l, r := c.Local.Unmap(), c.Remote.Unmap()
		if !l.IsValid() || !r.IsValid() {
			return nil, errors.New("ah: tunnel mode needs Local and Remote addresses")
		}
		if l.Is4() != r.Is4() {
			return nil, fmt.Errorf("ah: Local %v and Remote %v are of different families", l, r)
		}
		o.local, o.remote, o.outer6 = l, r, l.Is6()
	}
	// RFC 4302, Section 3.3.2: the counter never cycles; the last number is
	// 2^32-1, or 2^64-1 with ESN (Section 2.5.1).
	o.seq, err = sa.NewSeqCounter(c.StartSeq, c.ESN, c.SeqSoftMargin, o.meter)
	if err != nil {
		return nil, fmt.Errorf("ah: StartSeq: %w", err)
	}
	return o, nil
}

// SPI returns the SA's SPI.
func (o *Outbound) SPI() uint32 { return o.spi }

// Meter returns the SA's meter: bytes and packets sealed, limits crossed.
func (o *Outbound) Meter() *sa.Meter { return o.meter }

// LastSeq returns the last sequence number handed out by NextSeq (StartSeq
// if none was).
func (o *Outbound) LastSeq() uint64 { return o.seq.Last() }

// Overhead returns the room Seal needs before start (head) and after end
// (tail). In tunnel mode head is the outer IP header and the AH header; in
// transport mode it is the AH header, with the padding IPv6 needs (the
// longer of the two, RFC 4302, Section 2.6). AH needs no tail.
func (o *Outbound) Overhead() (head, tail int) {
	if o.mode == sa.Transport {
		return o.ahLen(true), 0
	}
	if o.outer6 {
		return ipv6HeaderLen + o.ahLen(true), 0
	}
	return ipv4HeaderLen + o.ahLen(false), 0
}

// NextSeq assigns the next sequence number. Numbers are handed out in order
// and never cycle (RFC 4302, Section 3.3.2): the last is 2^32-1 without ESN
// and 2^64-1 with it. After the last, NextSeq reports a hard sa.LimitSeq
// event (once) and returns sa.DropSeqExhausted; when fewer than
// Config.SeqSoftMargin numbers remain it reports a soft sa.LimitSeq event
// (once). After any hard limit it returns sa.DropExpired.
func (o *Outbound) NextSeq() (uint64, error) { return o.seq.Next() }

// Seal assigns the next sequence number and protects the packet: NextSeq
// followed by SealSeq.
func (o *Outbound) Seal(buf []byte, start, end int) (nstart, nend int, err error) {
	seq, err := o.NextSeq()
	if err != nil {
		return 0, 0, err
	}
	return o.SealSeq(buf, start, end, seq)
}

// SealSeq protects the IP packet buf[start:end] in place with AH and sequence
// number seq, which must come from NextSeq. It uses the headroom buf[:start]
// (see Overhead) and returns the bounds of the resulting IP packet in buf:
//
//   - tunnel mode (RFC 4302, Section 3.1.2): a new outer IPv4 or IPv6 header
//     from Local to Remote, protocol 51, then the AH header, next header 4
//     or 41, then the inner packet;
//   - transport mode (RFC 4302, Section 3.1.1): the packet's own IP header,
//     with IPv4 options and the IPv6 extension headers that precede AH
//     (packet.TransportSplit) kept in place, protocol or next header set to
//     51 and lengths (and the IPv4 header checksum) fixed, then the AH
//     header with the original next header, then the rest of the packet.
//
// The ICV covers the whole resulting packet with its mutable fields zeroed
// (RFC 4302, Section 3.3.3); they are left as they were.
//
// Errors are sa.Drop values: DropTooBig when the headroom is short or the
// result exceeds 65535 bytes; DropMalformed for a packet that is not a whole,
// well-formed IP packet (fragments included, Section 3.3.4, in transport
// mode); DropUnsupported for IPv6 routing headers with segments left and
// extension headers longer than 256 bytes before AH (see walk6);
// DropSeqExhausted for a sequence number out of range; DropExpired after a
// hard limit. On error the contents of buf are unspecified. Each sealed packet
// is counted on the Meter with the length of the packet given.
func (o *Outbound) SealSeq(buf []byte, start, end int, seq uint64) (nstart, nend int, err error) {
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
		return o.sealTunnel(buf, start, end, seq, v6)
	}
	return o.sealTransport(buf, start, end, seq, v6, ihl)
}

func (o *Outbound) sealTunnel(buf []byte, start, end int, seq uint64, inner6 bool) (int, int, error) {
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
		packet.IPv6(q).SetTrafficClass(innerTOS(p, inner6))
	} else {
		// RFC 4301, Section 5.1.2.1 leaves the outer IPv4 ID to the
		// encapsulator; the low bits of the sequence number differ between
		// consecutive packets of the SA (RFC 6864, Section 4).
		packet.PutIPv4Header(q, o.local, o.remote, iana.ProtoAH, total, o.ttl, uint16(seq))
		h := packet.IPv4(q)
		h.SetTOS(innerTOS(p, inner6))
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
func innerTOS(p []byte, v6 bool) uint8 {
	if v6 {
		return packet.IPv6(p).TrafficClass()
	}
	return packet.IPv4(p).TOS()
}

func (o *Outbound) sealTransport(buf []byte, start, end int, seq uint64, v6 bool, ihl int) (int, int, error) {
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
