package esp

import (
	"encoding/binary"
	"net/netip"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/replay"
	"github.com/goipsec/goipsec/sa"
)

// Inbound is the receiving side of an ESP SA. Its methods are safe for
// concurrent use: Decrypt may run on many goroutines at once, and Accept
// serialises the window updates. It allocates nothing per packet.
type Inbound struct {
	engine
	encapUDP bool
	window   replay.Window // safe for concurrent use
}

// NewInbound returns the receiving side of the SA described by c.
func NewInbound(c Config) (*Inbound, error) {
	in := new(Inbound)
	if err := in.init(&c, sa.Inbound); err != nil {
		return nil, err
	}
	if err := initWindow(&in.window, &c); err != nil {
		return nil, err
	}
	in.encapUDP = c.EncapUDP && c.Mode == sa.Transport
	return in, nil
}

// SPI returns the SA's SPI.
func (in *Inbound) SPI() uint32 { return in.spi }

// Meter returns the SA's meter: bytes and packets opened, limits crossed.
func (in *Inbound) Meter() *sa.Meter { return &in.meter }

// Warm reads the SA's state that opening a packet reads, level pointer
// hops away from the SA: 0 the engine, its meter and the replay window's
// header; 1 and 2 the transform's (transform.Warmer: the transform, then
// the cipher's keys). It returns a number computed from what it read,
// which means nothing. The data plane warms a batch's SAs one level at a
// time, so that their cache misses overlap, before it opens the batch's
// packets one by one. Safe for concurrent use.
func (in *Inbound) Warm(level int) int {
	if level == 0 {
		return in.warm(0) + in.window.Size()
	}
	return in.warm(level)
}

// Open verifies and decrypts the IP packet buf[start:end] (an outer IP header
// followed by ESP) in place and returns the bounds of the result within buf:
// the inner IP packet in tunnel mode, or in transport mode the reconstructed
// packet (its IP header kept, protocol or next header restored from the ESP
// trailer, lengths and IPv4 checksum fixed). It is Decrypt followed by
// Accept; see both for the checks and the errors, which are sa.Drop values.
func (in *Inbound) Open(buf []byte, start, end int) (nstart, nend int, err error) {
	return sa.Open(in, buf, start, end)
}

// Decrypt is the parallel stage of Open: everything but the window update.
// In order (RFC 4303, Section 3.4):
//
//  1. parse the outer IP header and the ESP header: DropTruncated for input
//     shorter than its headers, ESP header, IV, trailer and ICV;
//     DropMalformed for a packet that is not ESP, an IPv4 fragment, or a
//     ciphertext that is not a whole number of cipher blocks;
//     DropUnknownSPI when the SPI is not this SA's;
//  2. DropExpired after a hard limit;
//  3. the replay pre-check, which also infers the high half of an extended
//     sequence number (RFC 4303, Section 3.4.3 and Appendix A): DropReplay;
//  4. the ICV check and decryption (RFC 4303, Section 3.4.4): DropBadICV;
//  5. the padding check (RFC 4303, Section 2.4: Pad Length within the
//     payload, pad bytes 1, 2, 3, ...): DropBadPadding;
//  6. next header 59 marks a dummy packet (RFC 4303, Section 2.6), which is
//     discarded by design: DropTFCDummy; in tunnel mode the next header must
//     be 4 or 41 (DropBadNextHeader) and the inner packet must fit in the
//     payload (DropMalformed); TFC padding after it is removed by its length
//     (RFC 4303, Section 2.7);
//  7. in tunnel mode the outer ECN field is combined into the inner header
//     (RFC 6040, Section 4.2, packet.DecapECN): CE over a Not-ECT inner
//     packet is DropECN.
//
// seq is non-zero exactly when the ICV verified. The sequence number is then
// authentic, and the caller must pass it to Accept even if err is not nil
// (steps 5 to 7): a packet whose integrity check succeeded updates the
// window (RFC 4303, Section 3.4.3), whatever happens to its payload after
// decryption. A packet is counted on the Meter when Decrypt returns no
// error.
func (in *Inbound) Decrypt(buf []byte, start, end int) (nstart, nend int, seq uint64, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, 0, sa.DropTruncated
	}
	pkt := buf[start:end]
	n, _, d := ipLength(pkt)
	if d != sa.DropNone {
		return 0, 0, 0, d
	}
	pkt = pkt[:n]
	var sp packet.Split
	if perr := packet.SplitTransport(pkt, &sp); perr != nil {
		if d, ok := perr.(sa.Drop); ok && d == sa.DropTruncated {
			return 0, 0, 0, d
		}
		return 0, 0, 0, sa.DropMalformed
	}
	if pkt[sp.NextHdrOff] != protoESP {
		return 0, 0, 0, sa.DropMalformed
	}
	if sp.Fragment {
		// ESP is removed from whole datagrams only: the IP layer
		// reassembles first (RFC 4303, Section 3.4.1).
		return 0, 0, 0, sa.DropMalformed
	}
	var src, dst netip.Addr
	if in.encapUDP {
		src, dst = ipAddrs(pkt)
	}
	ps, pe, nh, seq, err := in.DecryptESP(buf, start+sp.HdrLen, start+n, src, dst)
	if err != nil {
		return ps, pe, seq, err
	}
	if in.mode == sa.Tunnel {
		// The outer ECN field into the inner header (RFC 6040, Section
		// 4.2): the outer header is still in place.
		return ps, pe, seq, packet.DecapECN(packet.TOS(pkt), buf[ps:pe])
	}
	// Transport mode: put the IP header back in front of the payload and
	// restore its next header (RFC 4303, Section 3.1.1).
	nstart = packet.MoveHeader(buf, start, &sp, ps, nh)
	out := buf[nstart:pe]
	if packet.SetLength(out, len(out)) != nil {
		return 0, 0, seq, sa.DropMalformed
	}
	if _, _, d := ipLength(out); d != sa.DropNone {
		// An IPv6 packet without payload would read as a jumbogram
		// (RFC 2675); Seal never produces one.
		return 0, 0, seq, sa.DropMalformed
	}
	return nstart, pe, seq, nil
}

// DecryptESP is Decrypt for the bare ESP packet buf[start:end], SPI to ICV,
// whose outer IP (and UDP) header the caller has parsed and removed: it
// returns the bounds of the payload within buf and its next header. In
// tunnel mode the payload is the inner IP packet, TFC padding removed; in
// transport mode it is the upper-layer part, and the caller puts the IP
// header back in front of it with nh as its protocol or next header
// (packet.MoveHeader, or packet.PutIPHeader for ESP in UDP). src and dst
// are the outer addresses, which the IP header put in front of a
// transport-mode payload carries: with Config.EncapUDP the TCP and UDP
// checksums of the payload are recomputed over them (RFC 3948, Section
// 3.1.2); otherwise they are not used. The checks, errors and the rule for
// seq are those of Decrypt but step 7, which needs the outer header: a
// caller that has one applies packet.DecapECN. Each opened packet is counted on the Meter with
// the length of its payload.
func (in *Inbound) DecryptESP(buf []byte, start, end int, src, dst netip.Addr) (pstart, pend int, nh uint8, seq uint64, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, 0, 0, sa.DropTruncated
	}
	esp := buf[start:end]
	ct := len(esp) - HeaderLen - in.ivLen - in.icvLen // payload, padding, trailer
	if ct < trailerLen {
		return 0, 0, 0, 0, sa.DropTruncated
	}
	if ct&(in.bs-1) != 0 {
		// RFC 4303, Section 2.4: the ciphertext is a whole number of
		// blocks, and at least 4-byte aligned.
		return 0, 0, 0, 0, sa.DropMalformed
	}
	if binary.BigEndian.Uint32(esp) != in.spi {
		return 0, 0, 0, 0, sa.DropUnknownSPI
	}
	if !in.alive() {
		return 0, 0, 0, 0, sa.DropExpired
	}
	seq, ok := in.window.Check(binary.BigEndian.Uint32(esp[4:]))
	if !ok {
		return 0, 0, 0, 0, sa.DropReplay
	}
	if in.tr.Open(esp, seq, in.esn) != nil {
		return 0, 0, 0, 0, sa.DropBadICV
	}

	// From here on the packet is authentic: report seq with every error.
	tEnd := len(esp) - in.icvLen // end of the trailer
	pad := int(esp[tEnd-2])
	nh = esp[tEnd-1]
	pStart := HeaderLen + in.ivLen // payload start, relative to esp
	if pad > ct-trailerLen {
		return 0, 0, 0, seq, sa.DropBadPadding
	}
	pEnd := tEnd - trailerLen - pad
	for i, b := range esp[pEnd : tEnd-trailerLen] {
		if b != byte(i+1) {
			return 0, 0, 0, seq, sa.DropBadPadding
		}
	}
	if nh == protoNoNext {
		return 0, 0, 0, seq, sa.DropTFCDummy
	}
	if in.mode == sa.Tunnel {
		if nh != protoIPv4 && nh != protoIPv6 {
			return 0, 0, 0, seq, sa.DropBadNextHeader
		}
		m, proto, d := ipLength(esp[pStart:pEnd])
		if d != sa.DropNone || proto != nh {
			return 0, 0, 0, seq, sa.DropMalformed
		}
		pEnd = pStart + m // TFC padding dropped (RFC 4303, Section 2.7)
	} else if in.encapUDP {
		// RFC 3948, Section 3.1.2: NATs on the path changed the addresses
		// that the TCP or UDP checksum covers; recompute it.
		if packet.FixChecksum(esp[pStart:pEnd], nh, src, dst) != nil {
			return 0, 0, 0, seq, sa.DropMalformed
		}
	}
	if !in.meter.Add(pEnd - pStart) {
		return 0, 0, 0, seq, sa.DropExpired
	}
	return start + pStart, start + pEnd, nh, seq, nil
}

// ipAddrs returns the source and destination addresses of the IP header at
// the start of b, which ipLength accepted.
func ipAddrs(b []byte) (src, dst netip.Addr) {
	if b[0]>>4 == 4 {
		h := packet.IPv4(b)
		return h.Src(), h.Dst()
	}
	h := packet.IPv6(b)
	return h.Src(), h.Dst()
}

// Accept is the sequential stage of Open: it moves the replay window to
// include seq, a number returned by Decrypt. It returns sa.DropReplay if seq
// has been accepted before or has fallen to the left of the window since
// Decrypt checked it (another copy of the packet won). RFC 4303,
// Section 3.4.3.
func (in *Inbound) Accept(seq uint64) error {
	if !in.window.Accept(seq) {
		return sa.DropReplay
	}
	return nil
}
