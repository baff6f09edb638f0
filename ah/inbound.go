package ah

import (
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/replay"
	"github.com/goipsec/goipsec/sa"
)

// Inbound is the receiving side of an AH SA. Its methods are safe for
// concurrent use: Decrypt may run on many goroutines at once, and Accept
// serialises the window updates (replay.Window has its own lock). It
// allocates nothing per packet.
type Inbound struct {
	engine
	window *replay.Window
}

// NewInbound returns the receiving side of the SA described by c.
func NewInbound(c Config) (*Inbound, error) {
	e, err := newEngine(&c, sa.Inbound)
	if err != nil {
		return nil, err
	}
	size := c.ReplayWindow
	if size == 0 {
		size = replay.DefaultSize
	}
	w, err := replay.New(size, c.ESN)
	if err != nil {
		return nil, fmt.Errorf("ah: replay window: %w", err)
	}
	return &Inbound{engine: e, window: w}, nil
}

// SPI returns the SA's SPI.
func (in *Inbound) SPI() uint32 { return in.spi }

// Meter returns the SA's meter: bytes and packets opened, limits crossed.
func (in *Inbound) Meter() *sa.Meter { return in.meter }

// Open verifies the IP packet buf[start:end] (an IP header followed, after
// any IPv6 extension headers, by AH) in place, removes AH and returns the
// bounds of the result within buf: the inner IP packet in tunnel mode, or in
// transport mode the packet without AH (its IP header kept, protocol or next
// header restored from the AH header, lengths and IPv4 checksum fixed). It is
// Decrypt followed by Accept; see both for the checks and the errors, which
// are sa.Drop values.
func (in *Inbound) Open(buf []byte, start, end int) (nstart, nend int, err error) {
	return sa.Open(in, buf, start, end)
}

// Decrypt is the parallel stage of Open: everything but the window update.
// AH encrypts nothing; the name matches package esp. In order (RFC 4302,
// Section 3.4):
//
//  1. parse the IP header, the IPv6 extension headers before AH (see walk6)
//     and the AH header: DropTruncated for input shorter than its headers
//     say; DropMalformed for a packet without AH, an IPv4 fragment (Section
//     3.4.1), malformed IPv4 options or IPv6 options, or an AH length that is
//     not this SA's ICV length with the padding of Section 2.6;
//     DropUnsupported for what walk6 refuses; DropUnknownSPI when the SPI is
//     not this SA's;
//  2. DropExpired after a hard limit;
//  3. the replay pre-check, which also infers the high half of an extended
//     sequence number (Section 3.4.3, RFC 4303 Appendix A): DropReplay;
//  4. the ICV check over the packet with its mutable fields zeroed (Section
//     3.4.4): DropBadICV;
//  5. in tunnel mode the next header must be 4 or 41 (DropBadNextHeader) and
//     the inner packet must be a whole IP packet of that version
//     (DropMalformed);
//  6. in tunnel mode the outer ECN field is combined into the inner header
//     (RFC 6040, Section 4.2, packet.DecapECN): CE over a Not-ECT inner
//     packet is DropECN. DecryptAH leaves this to its caller.
//
// seq is non-zero exactly when the ICV verified. The sequence number is then
// authentic, and the caller must pass it to Accept even if err is not nil
// (steps 5 and 6): a packet whose integrity check succeeded updates the window
// (Section 3.4.3). A packet is counted on the Meter when Decrypt returns no
// error.
func (in *Inbound) Decrypt(buf []byte, start, end int) (nstart, nend int, seq uint64, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, 0, sa.DropTruncated
	}
	var sp packet.Split
	if d := splitAH(buf[start:end], &sp); d != sa.DropNone {
		return 0, 0, 0, d
	}
	ps, pe, nh, seq, err := in.DecryptAH(buf, start, start+sp.TotalLen, &sp)
	if err != nil {
		return ps, pe, seq, err
	}
	if in.mode == sa.Tunnel {
		// The outer ECN field into the inner header (RFC 6040, Section
		// 4.2), as SealSeq copied it out (packet.PutTunnelHeader).
		return ps, pe, seq, packet.DecapECN(packet.TOS(buf[start:]), buf[ps:pe])
	}
	// Transport mode: put the IP header back in front of the payload with
	// AH's next header (RFC 4302, Section 3.1.1).
	nstart = packet.MoveHeader(buf, start, &sp, ps, nh)
	if packet.SetLength(buf[nstart:pe], pe-nstart) != nil {
		return 0, 0, seq, sa.DropMalformed
	}
	return nstart, pe, seq, nil
}

// splitAH finds the AH header of the IP packet p for Decrypt: behind the
// IPv4 header, or behind the IPv6 extension headers that walk6 crosses.
func splitAH(p []byte, sp *packet.Split) sa.Drop {
	n, ihl, v6, d := ipLength(p)
	if d != sa.DropNone {
		return d
	}
	if !v6 {
		*sp = packet.Split{Version: 4, HdrLen: ihl, NextHdrOff: 9, TotalLen: n, Fragment: ipv4Fragment(p)}
		return sa.DropNone
	}
	ahOff, nhOff, d := walk6(p[:n], -1, false)
	if d != sa.DropNone {
		return d
	}
	*sp = packet.Split{Version: 6, HdrLen: ahOff, NextHdrOff: nhOff, TotalLen: n}
	return sa.DropNone
}

// Mode returns the SA's mode.
func (in *Inbound) Mode() sa.Mode { return in.mode }

// DecryptAH is Decrypt for an IP packet whose headers the caller has
// parsed: buf[start:end] is the whole packet, up to the length its header
// gives, and sp its split (packet.SplitTransport, which the data plane
// makes once per received packet), with the AH header at sp.HdrLen behind
// the IPv4 header or the IPv6 extension headers. AH's ICV covers that
// header (RFC 4302, Section 3.3.3), so it stays in place; DecryptAH returns
// the bounds of what follows AH and AH's next header nh: in tunnel mode the
// inner packet; in transport mode the upper-layer part, in front of which
// the caller puts the IP header back with nh as its protocol or next header
// (packet.MoveHeader, then packet.SetLength), as for raw ESP. The checks,
// errors and the rule for seq are those of Decrypt; a split that does not
// describe the packet is DropMalformed. Each opened packet is counted on the
// Meter with the length of the inner packet (tunnel mode) or of the packet
// without AH (transport mode).
func (in *Inbound) DecryptAH(buf []byte, start, end int, sp *packet.Split) (pstart, pend int, nh uint8, seq uint64, err error) {
	if start < 0 || end < start || end > len(buf) || sp.TotalLen > end-start {
		return 0, 0, 0, 0, sa.DropTruncated
	}
	pkt := buf[start : start+sp.TotalLen]
	ahOff, v6 := sp.HdrLen, sp.Version == 6
	if sp.Version != 4 && sp.Version != 6 || ahOff > len(pkt) || sp.NextHdrOff < 0 || sp.NextHdrOff >= ahOff ||
		pkt[0]>>4 != sp.Version || pkt[sp.NextHdrOff] != iana.ProtoAH || sp.Fragment {
		// RFC 4302, Section 3.4.1: AH is removed from whole datagrams.
		return 0, 0, 0, 0, sa.DropMalformed
	}
	if !v6 && ahOff != int(pkt[0]&0x0f)*4 {
		return 0, 0, 0, 0, sa.DropMalformed
	}
	if ahOff > maxHdrLen {
		return 0, 0, 0, 0, sa.DropUnsupported
	}
	if ahOff+HeaderLen > len(pkt) {
		return 0, 0, 0, 0, sa.DropTruncated
	}
	ah := pkt[ahOff:]
	ahLen := (int(ah[1]) + 2) * 4 // RFC 4302, Section 2.2
	if ahLen != in.ahLen(v6) {
		return 0, 0, 0, 0, sa.DropMalformed
	}
	if ahLen > len(ah) {
		return 0, 0, 0, 0, sa.DropTruncated
	}
	// RFC 4302, Section 2.3: Reserved is ignored on receipt (but covered
	// by the ICV).
	if binary.BigEndian.Uint32(ah[4:8]) != in.spi {
		return 0, 0, 0, 0, sa.DropUnknownSPI
	}
	if !in.alive() {
		return 0, 0, 0, 0, sa.DropExpired
	}
	seq, ok := in.window.Check(binary.BigEndian.Uint32(ah[8:12]))
	if !ok {
		return 0, 0, 0, 0, sa.DropReplay
	}
	// The ICV walk also checks the options and extension headers in front
	// of AH (see walk6 and options4).
	if d := in.auth(pkt, v6, ahOff, uint32(seq>>32), true); d != sa.DropNone {
		return 0, 0, 0, 0, d
	}

	// From here on the packet is authentic: report seq with every error.
	nh = ah[0]
	pstart = start + ahOff + ahLen
	if in.mode == sa.Tunnel {
		if nh != iana.ProtoIPv4 && nh != iana.ProtoIPv6 {
			return 0, 0, 0, seq, sa.DropBadNextHeader
		}
		m, _, inner6, d := ipLength(ah[ahLen:])
		if d != sa.DropNone || innerProto(inner6) != nh {
			return 0, 0, 0, seq, sa.DropMalformed
		}
		if !in.meter.Add(m) {
			return 0, 0, 0, seq, sa.DropExpired
		}
		return pstart, pstart + m, nh, seq, nil
	}
	if !in.meter.Add(len(pkt) - ahLen) {
		return 0, 0, 0, seq, sa.DropExpired
	}
	return pstart, start + len(pkt), nh, seq, nil
}

// Accept is the sequential stage of Open: it moves the replay window to
// include seq, a number returned by Decrypt. It returns sa.DropReplay if seq
// has been accepted before or has fallen to the left of the window since
// Decrypt checked it (another copy of the packet won). RFC 4302,
// Section 3.4.3.
func (in *Inbound) Accept(seq uint64) error {
	if !in.window.Accept(seq) {
		return sa.DropReplay
	}
	return nil
}
