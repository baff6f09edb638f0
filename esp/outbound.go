package esp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// Outbound is the sending side of an ESP SA. Its methods are safe for
// concurrent use: NextSeq hands out sequence numbers atomically and SealSeq
// may run on many goroutines at once. It allocates nothing per packet.
type Outbound struct {
	engine
	outerLen int // tunnel mode: 20 or 40; transport mode: 0
	cfg      Config
	seq      sa.SeqCounter
}

// NewOutbound returns the sending side of the SA described by c.
func NewOutbound(c Config) (*Outbound, error) {
	o := new(Outbound)
	if err := o.init(&c, sa.Outbound); err != nil {
		return nil, err
	}
	if c.Mode == sa.Tunnel {
		l, r := c.Local.Unmap(), c.Remote.Unmap()
		if !l.IsValid() || !r.IsValid() {
			return nil, errors.New("esp: tunnel mode needs Local and Remote addresses")
		}
		if l.Is4() != r.Is4() {
			return nil, fmt.Errorf("esp: Local %v and Remote %v are of different families", l, r)
		}
		c.Local, c.Remote = l, r
		o.outerLen = ipv4HeaderLen
		if l.Is6() {
			o.outerLen = ipv6HeaderLen
		}
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	// RFC 4303, Section 3.3.3: the counter never cycles.
	if err := o.seq.Init(c.StartSeq, c.ESN, c.SeqSoftMargin, &o.meter); err != nil {
		return nil, fmt.Errorf("esp: StartSeq: %w", err)
	}
	o.cfg = c
	return o, nil
}

// SPI returns the SA's SPI.
func (o *Outbound) SPI() uint32 { return o.spi }

// Meter returns the SA's meter: bytes and packets sealed, limits crossed.
func (o *Outbound) Meter() *sa.Meter { return &o.meter }

// LastSeq returns the last sequence number handed out by NextSeq (StartSeq
// if none was).
func (o *Outbound) LastSeq() uint64 { return o.seq.Last() }

// Overhead returns the room Seal needs in the worst case before start
// (head: outer IP header in tunnel mode, ESP header and IV) and after end
// (tail: TFC padding, padding, trailer and ICV).
func (o *Outbound) Overhead() (head, tail int) {
	head = o.outerLen + HeaderLen + o.ivLen
	tail = o.cfg.TFCPadTo + o.bs - 1 + trailerLen + o.icvLen
	return head, tail
}

// NextSeq assigns the next sequence number. Numbers are handed out in order
// and never cycle (RFC 4303, Section 3.3.3): the last is 2^32-1 without ESN
// and 2^64-1 with it. After the last, NextSeq reports a hard sa.LimitSeq
// event (once) and returns sa.DropSeqExhausted; when fewer than
// Config.SeqSoftMargin numbers remain it reports a soft sa.LimitSeq event
// (once). After any hard limit it returns sa.DropExpired.
func (o *Outbound) NextSeq() (uint64, error) { return o.seq.Next() }

// Seal assigns the next sequence number and protects the packet: NextSeq
// followed by SealSeq. Packets sealed on several goroutines at once may leave
// in a different order than their numbers; that is allowed (RFC 4303,
// Section 3.4.3) but the data plane keeps the order per SA where it can.
func (o *Outbound) Seal(buf []byte, start, end int) (nstart, nend int, err error) {
	seq, err := o.NextSeq()
	if err != nil {
		return 0, 0, err
	}
	return o.SealSeq(buf, start, end, seq)
}

// SealSeq protects the IP packet buf[start:end] in place with sequence number
// seq, which must come from NextSeq. It uses headroom buf[:start] and
// tailroom buf[end:cap(buf)] (see Overhead) and returns the bounds of the
// resulting IP packet within buf[:cap(buf)]:
//
//   - tunnel mode (RFC 4303, Section 3.1.2): a new outer IPv4 or IPv6 header
//     from Local to Remote, then the ESP packet whose payload is the whole
//     inner packet, next header 4 or 41;
//   - transport mode (RFC 4303, Section 3.1.1): the packet's own IP header,
//     with IPv4 options and the IPv6 extension headers that precede ESP
//     kept in place, protocol or next header set to 50 and lengths (and the
//     IPv4 header checksum) fixed, then the ESP packet whose payload is the
//     upper-layer part and whose trailer keeps the original next header.
//
// Errors are sa.Drop values: DropTooBig when the head or tail room is short or
// the result exceeds 65535 bytes, DropMalformed for a packet that is not a
// whole, well-formed IP packet, DropSeqExhausted for a sequence number out of
// range and DropExpired after a hard limit. Each sealed packet is counted on
// the Meter with the length of the packet given.
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
	pkt := buf[start:end]
	n, proto, d := ipLength(pkt)
	if d != sa.DropNone {
		return 0, 0, sa.DropMalformed
	}
	if n != len(pkt) {
		// The receiver finds the inner packet's end by its length field
		// (RFC 4303, Section 2.7), so it must be exact.
		return 0, 0, sa.DropMalformed
	}
	buf = buf[:cap(buf)]
	if o.mode == sa.Tunnel {
		return o.sealTunnel(buf, start, end, seq, proto)
	}
	return o.sealTransport(buf, start, end, seq)
}

// trailer writes, after the payload that ends at pend, TFC padding (zeros)
// up to tfcEnd (RFC 4303, Section 2.7), pad bytes of monotonic padding 1, 2,
// 3, ... (RFC 4303, Section 2.4), Pad Length and Next Header, and returns the
// end of the trailer.
func trailer(buf []byte, pend, tfcEnd, pad int, nh uint8) int {
	clear(buf[pend:tfcEnd])
	p := tfcEnd
	for i := 1; i <= pad; i++ {
		buf[p] = byte(i)
		p++
	}
	buf[p] = byte(pad)
	buf[p+1] = nh
	return p + trailerLen
}

// putESPHeader writes the SPI and the low half of seq. RFC 4303, Section 2.
func (o *Outbound) putESPHeader(b []byte, seq uint64) {
	binary.BigEndian.PutUint32(b, o.spi)
	binary.BigEndian.PutUint32(b[4:], uint32(seq))
}

func (o *Outbound) sealTunnel(buf []byte, start, end int, seq uint64, nh uint8) (int, int, error) {
	inner := end - start
	tfcEnd := end
	if o.cfg.TFCPadTo > inner {
		tfcEnd = start + o.cfg.TFCPadTo
	}
	pad := padLen(tfcEnd-start, o.bs)
	espStart := start - HeaderLen - o.ivLen
	outStart := espStart - o.outerLen
	espEnd := tfcEnd + pad + trailerLen + o.icvLen
	if outStart < 0 || espEnd > len(buf) {
		return 0, 0, sa.DropTooBig
	}
	total := espEnd - outStart
	if o.outerLen == ipv4HeaderLen && total > 0xffff || total-ipv6HeaderLen > 0xffff {
		return 0, 0, sa.DropTooBig
	}
	if !o.meter.Add(inner) {
		return 0, 0, sa.DropExpired
	}
	trailer(buf, end, tfcEnd, pad, nh)
	o.putESPHeader(buf[espStart:], seq)
	o.tr.Seal(buf[espStart:espEnd], seq, o.esn)
	if o.outerLen == ipv4HeaderLen {
		// RFC 4301, Section 5.1.2.1 leaves the outer IPv4 ID to the
		// encapsulator; the low bits of the sequence number differ between
		// consecutive packets of the SA (RFC 6864, Section 4).
		packet.PutIPv4Header(buf[outStart:], o.cfg.Local, o.cfg.Remote, protoESP, total, o.cfg.TTL, uint16(seq))
	} else {
		packet.PutIPv6Header(buf[outStart:], o.cfg.Local, o.cfg.Remote, protoESP, total-ipv6HeaderLen, o.cfg.TTL)
	}
	return outStart, espEnd, nil
}

func (o *Outbound) sealTransport(buf []byte, start, end int, seq uint64) (int, int, error) {
	pkt := buf[start:end]
	hdrLen, nhOff, err := packet.TransportSplit(pkt)
	if err != nil || hdrLen > len(pkt) || nhOff < 0 || nhOff >= hdrLen {
		return 0, 0, sa.DropMalformed
	}
	if isFragment(pkt, hdrLen) {
		// RFC 4301, Section 7: transport-mode SAs carry whole datagrams.
		return 0, 0, sa.DropMalformed
	}
	nh := pkt[nhOff]
	shift := HeaderLen + o.ivLen
	nstart := start - shift
	pad := padLen(end-start-hdrLen, o.bs)
	espEnd := end + pad + trailerLen + o.icvLen
	if nstart < 0 || espEnd > len(buf) {
		return 0, 0, sa.DropTooBig
	}
	if pkt[0]>>4 == 4 && espEnd-nstart > 0xffff || pkt[0]>>4 == 6 && espEnd-nstart-ipv6HeaderLen > 0xffff {
		return 0, 0, sa.DropTooBig
	}
	if !o.meter.Add(end - start) {
		return 0, 0, sa.DropExpired
	}
	// Move the IP header (with options or extension headers) in front of
	// the ESP header: RFC 4303, Section 3.1.1.
	copy(buf[nstart:], buf[start:start+hdrLen])
	buf[nstart+nhOff] = protoESP
	espStart := nstart + hdrLen
	trailer(buf, end, end, pad, nh)
	o.putESPHeader(buf[espStart:], seq)
	o.tr.Seal(buf[espStart:espEnd], seq, o.esn)
	setIPLength(buf[nstart:], espEnd-nstart)
	return nstart, espEnd, nil
}
