package ah

import (
	"errors"
	"fmt"
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
// SealSeq is SealAH with the parse and, in tunnel mode, the outer header
// (packet.PutTunnelHeader) around it, for callers that hold whole IP
// packets; a data plane that parses each packet once and owns the outer
// headers calls SealAH.
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
	n, _, _, d := ipLength(buf[start:end])
	if d != sa.DropNone || n != end-start {
		return 0, 0, sa.DropMalformed
	}
	var sp packet.Split
	if o.mode == sa.Transport {
		if packet.SplitTransport(buf[start:end], &sp) != nil {
			return 0, 0, sa.DropMalformed
		}
		return o.SealAH(buf, start, end, &sp, seq)
	}
	// RFC 4301, Section 5.1.2.1 leaves the outer IPv4 ID to the
	// encapsulator; the low bits of the sequence number differ between
	// consecutive packets of the SA (RFC 6864, Section 4).
	ns := packet.PutTunnelHeader(buf, start, end, o.AHLen(), o.local, o.remote, iana.ProtoAH, o.ttl, uint16(seq), &sp)
	if ns < 0 {
		return 0, 0, sa.DropTooBig
	}
	return o.SealAH(buf, ns, end, &sp, seq)
}

// AHLen returns the length of the AH header, ICV and padding included
// (RFC 4302, Section 2.6), that SealAH puts behind a tunnel-mode outer
// header of Config.Local's family: the gap to leave between that header
// and the inner packet (packet.PutTunnelHeader). In transport mode it is
// the length behind an IPv6 header, the longer of the two.
func (o *Outbound) AHLen() int {
	return o.ahLen(o.mode == sa.Transport || o.outer6)
}

// Mode returns the SA's mode.
func (o *Outbound) Mode() sa.Mode { return o.mode }

// Outer returns the outer addresses and TTL of a tunnel-mode SA
// (Config.Local, Config.Remote, Config.TTL), for a data plane that writes
// the outer header in front of the inner packet (packet.PutTunnelHeader)
// before SealAH. In transport mode the addresses are invalid: the packet
// keeps its own header.
func (o *Outbound) Outer() (local, remote netip.Addr, ttl uint8) {
	return o.local, o.remote, o.ttl
}

// SealAH protects in place, with sequence number seq from NextSeq, the IP
// packet buf[start:end] whose header sp describes, by inserting AH behind
// that header, and returns the bounds of the resulting IP packet. The
// caller has parsed the packet (packet.Decode's Info.Split or
// packet.SplitTransport) and, in tunnel mode, written the outer header:
//
//   - transport mode (RFC 4302, Section 3.1.1): buf[start:end] is the
//     packet to protect and sp its split, the IP header with the IPv4
//     options or the IPv6 extension headers that precede AH;
//   - tunnel mode (RFC 4302, Section 3.1.2): buf[start:end] is the outer
//     header that the caller wrote, protocol 51 and lengths that count AH,
//     then AHLen bytes of room for AH, then the inner packet
//     (packet.PutTunnelHeader with a gap of AHLen writes it and fills sp),
//     and sp describes that outer header.
//
// In transport mode the header moves toward the front by the AH length
// (into the headroom buf[:start], see Overhead), its next header becomes 51
// and its lengths (and the IPv4 header checksum) are fixed; in tunnel mode
// nothing moves. The AH header goes behind the IP header, with the
// header's former next header (transport mode) or 4 or 41 for the inner
// packet's version (tunnel mode); then the ICV over the whole packet with
// its mutable fields zeroed (Section 3.3.3), which are left as they were.
// The errors are those of SealSeq; a split or an outer header that does not
// describe the packet is DropMalformed. Each sealed packet is counted on the
// Meter with the length of the inner packet (tunnel mode) or of the packet
// given (transport mode).
func (o *Outbound) SealAH(buf []byte, start, end int, sp *packet.Split, seq uint64) (nstart, nend int, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, sa.DropMalformed
	}
	if !o.seq.InRange(seq) {
		return 0, 0, sa.DropSeqExhausted
	}
	if !o.alive() {
		return 0, 0, sa.DropExpired
	}
	hl, v6 := sp.HdrLen, sp.Version == 6
	if sp.TotalLen != end-start || hl >= sp.TotalLen || sp.NextHdrOff < 0 || sp.NextHdrOff >= hl || sp.Fragment ||
		sp.Version != 4 && sp.Version != 6 || buf[start]>>4 != sp.Version {
		// RFC 4302, Section 3.3.4: AH protects whole datagrams.
		return 0, 0, sa.DropMalformed
	}
	if !v6 && hl != int(buf[start]&0x0f)*4 {
		return 0, 0, sa.DropMalformed
	}
	if hl > maxHdrLen {
		return 0, 0, sa.DropUnsupported
	}
	ahLen := o.ahLen(v6)
	if o.mode == sa.Tunnel {
		return o.sealTunnel(buf, start, end, sp, seq, ahLen)
	}
	nh := buf[start+sp.NextHdrOff]
	ns := start - ahLen
	if ns < 0 {
		return 0, 0, sa.DropTooBig
	}
	// RFC 4302, Section 3.1.1: AH right behind the IP header (with its
	// options or extension headers).
	packet.MoveHeader(buf, start, sp, ns+hl, iana.ProtoAH)
	q := buf[ns:end]
	putHeader(q[hl:], ahLen, nh, o.spi, seq)
	if packet.SetLength(q, len(q)) != nil {
		return 0, 0, sa.DropTooBig
	}
	return o.sign(q, sp, seq, end-start, ns, end)
}

// sealTunnel is SealAH in tunnel mode: AH goes into the room the caller
// left behind the outer header it wrote.
func (o *Outbound) sealTunnel(buf []byte, start, end int, sp *packet.Split, seq uint64, ahLen int) (int, int, error) {
	hl := sp.HdrLen
	q := buf[start:end]
	inner := hl + ahLen
	if inner >= len(q) || q[sp.NextHdrOff] != iana.ProtoAH || ipTotal(q, sp.Version) != len(q) {
		return 0, 0, sa.DropMalformed
	}
	// The next header names the inner packet's version: RFC 4302,
	// Section 3.1.2.
	putHeader(q[hl:], ahLen, innerProto(q[inner]>>4 == 6), o.spi, seq)
	return o.sign(q, sp, seq, len(q)-inner, start, end)
}

// sign computes the ICV of the AH packet q, whose IP header sp describes,
// counts counted bytes on the meter and returns the packet's bounds start
// and end.
func (o *Outbound) sign(q []byte, sp *packet.Split, seq uint64, counted, start, end int) (int, int, error) {
	if d := o.auth(q, sp.Version == 6, sp.HdrLen, uint32(seq>>32), false); d != sa.DropNone {
		return 0, 0, d
	}
	if !o.meter.Add(counted) {
		return 0, 0, sa.DropExpired
	}
	return start, end, nil
}
