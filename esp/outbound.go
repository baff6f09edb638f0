package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

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

// Warm reads the SA's state that sealing a packet reads, level pointer hops
// away from the SA (0: the engine and its meter), as Inbound.Warm does for
// opening. Safe for concurrent use.
func (o *Outbound) Warm(level int) int { return o.warm(level) }

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
//     from Local to Remote with the inner DSCP and ECN bits (RFC 6040,
//     Section 4.1; packet.PutOuterHeader), then the ESP packet whose payload is the whole
//     inner packet, next header 4 or 41;
//   - transport mode (RFC 4303, Section 3.1.1): the packet's own IP header,
//     with IPv4 options and the IPv6 extension headers that precede ESP
//     kept in place, protocol or next header set to 50 and lengths (and the
//     IPv4 header checksum) fixed, then the ESP packet whose payload is the
//     upper-layer part and whose trailer keeps the original next header.
//
// SealSeq is SealESP with the IP header work around it, for callers that
// hold whole IP packets; a data plane that owns the outer headers calls
// SealESP. Errors are sa.Drop values: DropTooBig when the head or tail room
// is short or the result exceeds 65535 bytes, DropMalformed for a packet
// that is not a whole, well-formed IP packet, DropSeqExhausted for a
// sequence number out of range and DropExpired after a hard limit.
func (o *Outbound) SealSeq(buf []byte, start, end int, seq uint64) (nstart, nend int, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, sa.DropMalformed
	}
	var sp packet.Split
	if packet.SplitTransport(buf[start:end], &sp) != nil {
		return 0, 0, sa.DropMalformed
	}
	tos := packet.TOS(buf[start:end]) // before it is encrypted
	es, ee, err := o.SealESP(buf, start, end, &sp, seq)
	if err != nil {
		return 0, 0, err
	}
	buf = buf[:cap(buf)]
	if o.mode == sa.Tunnel {
		nstart = es - o.outerLen
		if nstart < 0 {
			return 0, 0, sa.DropTooBig
		}
		// RFC 4301, Section 5.1.2.1 leaves the outer IPv4 ID to the
		// encapsulator; the low bits of the sequence number differ between
		// consecutive packets of the SA (RFC 6864, Section 4). DSCP and
		// ECN are copied from the inner header (RFC 6040, Section 4.1,
		// normal mode; Decrypt combines the outer ECN back), DF is not.
		packet.PutOuterHeader(buf[nstart:], o.cfg.Local, o.cfg.Remote, protoESP, ee-es, o.cfg.TTL, uint16(seq), tos)
		return nstart, ee, nil
	}
	// SealESP moved the IP header in front of the ESP header.
	nstart = es - sp.HdrLen
	if packet.SetLength(buf[nstart:], ee-nstart) != nil {
		return 0, 0, sa.DropTooBig
	}
	return nstart, ee, nil
}

// Outer returns the outer addresses and TTL of a tunnel-mode SA
// (Config.Local, Config.Remote, Config.TTL), for a data plane that builds
// the outer header of the ESP packets SealESP returns. In transport mode the
// addresses are invalid: the packet keeps its own header.
func (o *Outbound) Outer() (local, remote netip.Addr, ttl uint8) {
	if o.mode != sa.Tunnel {
		return netip.Addr{}, netip.Addr{}, o.cfg.TTL
	}
	return o.cfg.Local, o.cfg.Remote, o.cfg.TTL
}

// SealESP protects in place, with sequence number seq from NextSeq, the IP
// packet buf[start:end] whose headers sp describes (from packet.Decode's
// Info.Split or packet.SplitTransport: the packet is parsed once, by the
// caller), and returns the bounds of the bare ESP packet, ESP header to
// ICV, within buf[:cap(buf)]. It writes no IP header: the caller owns the
// outer headers.
//
//   - tunnel mode (RFC 4303, Section 3.1.2): the payload is the whole inner
//     packet, next header 4 or 41, with TFC padding (Config.TFCPadTo); the
//     caller puts an outer IP header (see Outer), or a UDP header
//     (RFC 3948), in front;
//   - transport mode (RFC 4303, Section 3.1.1): the payload is the
//     upper-layer part after sp.HdrLen, and the trailer keeps the next
//     header found at sp.NextHdrOff; the IP header (with options or
//     extension headers) moves in front of the ESP header, buf[nstart-
//     sp.HdrLen:nstart], with next header 50 (packet.MoveHeader). The
//     caller fixes its length with packet.SetLength, or drops it for ESP
//     in UDP.
//
// The ESP header and IV go into headroom buf[:start] (tunnel mode) or in
// place of the IP header (transport mode); padding, trailer and ICV into
// tailroom buf[end:cap(buf)]. Errors are those of SealSeq. Each sealed
// packet is counted on the Meter with the length of its payload.
func (o *Outbound) SealESP(buf []byte, start, end int, sp *packet.Split, seq uint64) (nstart, nend int, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, sa.DropMalformed
	}
	if !o.seq.InRange(seq) {
		return 0, 0, sa.DropSeqExhausted
	}
	if !o.alive() {
		return 0, 0, sa.DropExpired
	}
	if sp.TotalLen != end-start || sp.HdrLen > sp.TotalLen || sp.Version != 4 && sp.Version != 6 {
		// The receiver finds the inner packet's end by its length field
		// (RFC 4303, Section 2.7), so it must be exact.
		return 0, 0, sa.DropMalformed
	}
	buf = buf[:cap(buf)]
	pstart, nh, tfcEnd := start, uint8(protoIPv4), end
	if sp.Version == 6 {
		nh = protoIPv6
	}
	if o.mode == sa.Tunnel {
		if o.cfg.TFCPadTo > end-start {
			tfcEnd = start + o.cfg.TFCPadTo
		}
	} else {
		if sp.Fragment {
			// RFC 4301, Section 7: transport-mode SAs carry whole
			// datagrams.
			return 0, 0, sa.DropMalformed
		}
		pstart, nh = start+sp.HdrLen, buf[start+sp.NextHdrOff]
	}
	pad := padLen(tfcEnd-pstart, o.bs)
	espStart := pstart - HeaderLen - o.ivLen
	hdrRoom := 0 // transport mode: the IP header goes in front of ESP
	if o.mode == sa.Transport {
		hdrRoom = sp.HdrLen
	}
	espEnd := tfcEnd + pad + trailerLen + o.icvLen
	if espStart-hdrRoom < 0 || espEnd > len(buf) || espEnd-espStart > o.maxESPLen(sp) {
		return 0, 0, sa.DropTooBig
	}
	if !o.meter.Add(end - pstart) {
		return 0, 0, sa.DropExpired
	}
	if o.mode == sa.Transport {
		// RFC 4303, Section 3.1.1: the IP header stays in front of ESP.
		packet.MoveHeader(buf, start, sp, espStart, protoESP)
	}
	trailer(buf, end, tfcEnd, pad, nh)
	o.putESPHeader(buf[espStart:], seq)
	o.tr.Seal(buf[espStart:espEnd], seq, o.esn)
	return espStart, espEnd, nil
}

// maxESPLen is the longest ESP packet that fits in an IP packet: in tunnel
// mode behind the outer header, in transport mode behind the header sp
// describes; 65535 bytes of IPv4 Total Length, or of IPv6 Payload Length
// with the extension headers counted in.
func (o *Outbound) maxESPLen(sp *packet.Split) int {
	v, hdrLen := sp.Version, sp.HdrLen
	if o.mode == sa.Tunnel {
		v, hdrLen = 4, o.outerLen
		if o.outerLen == ipv6HeaderLen {
			v = 6
		}
	}
	if v == 6 {
		return 0xffff - (hdrLen - ipv6HeaderLen)
	}
	return 0xffff - hdrLen
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
