// Package ah implements the IP Authentication Header (RFC 4302) for one SA at
// a time: Seal builds an AH packet in place, in tunnel or transport mode, and
// Open checks and removes it. It does no I/O and allocates nothing per packet.
//
// AH authenticates the IP header as well as the payload, so the ICV is
// computed over the whole packet with the fields that routers may change
// (TTL, TOS, flags, mutable IPv4 options, IPv6 hop limit, traffic class, flow
// label and mutable option data) set to zero, and with the destination
// address the packet will have at its final destination (RFC 4302,
// Section 3.3.3.1). Those fields are zeroed in place for the computation and
// restored afterwards, so no copy of the packet is made.
//
// The API mirrors package esp: Outbound has NextSeq, SealSeq and Seal;
// Inbound has Decrypt (the parallel stage: checks the ICV without moving the
// replay window), Accept (the sequential stage) and Open (both). Those take
// whole IP packets. A data plane that parses each packet once and owns the
// outer headers calls SealAH and DecryptAH instead, with its parse (a
// packet.Split) and, in tunnel mode, the outer header it wrote
// (packet.PutTunnelHeader): AH's ICV covers the IP header in front of it
// (Section 3.3.3), so AH is inserted behind that header and verified in
// front of it, but the engine neither parses the packet again nor builds a
// header of its own. The whole-packet methods are those two with the parse
// and the header around them.
//
// IPv4 options are classified as in RFC 4302, Appendix A1: the options listed
// there as immutable are authenticated as they are, every other option,
// including types the table does not list, is zeroed whole. Not supported,
// each with a drop reason rather than a wrong ICV:
//
//   - IPv6 Routing headers with Segments Left other than zero in front of AH
//     (the sender would have to reorder the addresses as the receiver will
//     see them, Appendix A2): sa.DropUnsupported. A Routing header that has
//     reached the end of its route (Segments Left 0) is authenticated as is.
//   - More than 256 bytes of IPv6 extension headers in front of AH:
//     sa.DropUnsupported.
//   - Fragments, which AH neither protects nor accepts (Sections 3.3.4 and
//     3.4.1; the data plane reassembles first), and IPv6 jumbograms:
//     sa.DropMalformed, as in package esp.
//
// Errors returned per packet are always sa.Drop values, which do not
// allocate; malformed input never panics.
package ah

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// HeaderLen is the length of the fixed part of the AH header: Next Header,
// Payload Len, Reserved, SPI and Sequence Number. The ICV (and any padding)
// follows it. RFC 4302, Section 2.
const HeaderLen = 12

// maxICVLen bounds the ICV length accepted from a transform.Integrity; the
// longest AH integrity algorithm, HMAC-SHA2-512-256, has a 32-byte ICV.
const maxICVLen = 64

// maxExtLen is the most bytes of IPv6 extension headers this package accepts
// in front of AH. It bounds the stack copy of the mutable bytes; packets with
// more are dropped with sa.DropUnsupported.
const maxExtLen = 256

// maxHdrLen is the longest IP header (with options or extension headers) that
// can precede AH: 60 bytes for IPv4, 40+maxExtLen for IPv6.
const maxHdrLen = ipv6HeaderLen + maxExtLen

// DefaultTTL is the outer TTL (IPv4) or hop limit (IPv6) of tunnel-mode
// packets when Config.TTL is zero.
const DefaultTTL = 64

// Default sequence-number margins for the soft LimitSeq event, the same as
// package esp's: the event fires when fewer than this many sequence numbers
// remain. 2^28 leaves about 6% of the 32-bit space, time for a CHILD SA
// rekey (RFC 7296, Section 2.8) at millions of packets per second.
const (
	DefaultSeqSoftMargin    = sa.DefaultSeqSoftMargin
	DefaultSeqSoftMarginESN = sa.DefaultSeqSoftMarginESN
)

// Config describes one direction of an AH SA. It is read by NewOutbound or
// NewInbound and not retained afterwards (except the Integrity, OnEvent and
// Now values), so changing it later has no effect on the SA.
type Config struct {
	// SPI is the Security Parameters Index carried in every packet. Zero is
	// reserved and rejected (RFC 4302, Section 2.4).
	SPI uint32
	// Mode is sa.Tunnel (the zero value) or sa.Transport.
	Mode sa.Mode
	// Integrity is the keyed integrity algorithm (transform.Suite.NewAH).
	// Required. Its Sum must allow the icv slice to lie inside msg and write
	// it only after reading msg, as AH's ICV field is part of the
	// authenticated packet (RFC 4302, Section 3.3.3).
	Integrity transform.Integrity
	// ESN enables 64-bit extended sequence numbers (RFC 4302, Section 2.5.1).
	ESN bool
	// Local and Remote are the outer source and destination addresses of
	// tunnel-mode packets sent by an Outbound SA. They must be valid and of
	// the same family in tunnel mode; that family is the outer header's,
	// independent of the inner packet's (next header 4 or 41). Inbound SAs
	// and transport mode ignore them: the ICV covers the outer addresses.
	Local, Remote netip.Addr
	// ReplayWindow is the size of the inbound anti-replay window in packets;
	// zero means replay.DefaultSize. Outbound SAs ignore it.
	ReplayWindow int
	// Limits are the soft and hard lifetimes of the SA; the zero value
	// means none. Bytes count the inner packets (tunnel mode) or the whole
	// IP packets without AH (transport mode) as given to Seal or returned
	// by Open.
	Limits sa.Limits
	// OnEvent, if not nil, is called once for each crossed limit (including
	// sa.LimitSeq), from the goroutine that crossed it. It must not block.
	OnEvent func(sa.Event)
	// Now returns the current time; nil means time.Now. It is called when
	// the SA is created and, only when Limits has a time limit, once per
	// packet so that a hard time limit is enforced without waiting for a
	// timer.
	Now func() time.Time
	// StartSeq is the last sequence number already used by an outbound SA:
	// the next packet gets StartSeq+1. Zero is a fresh SA, whose first
	// packet has sequence number 1 (RFC 4302, Section 3.3.2). It must not
	// exceed the last sequence number (2^32-1 without ESN). Outbound only.
	StartSeq uint64
	// SeqSoftMargin makes an outbound SA report a soft sa.LimitSeq event
	// when fewer than this many sequence numbers remain, so that IKE can
	// rekey before the hard end. Zero means DefaultSeqSoftMargin
	// (DefaultSeqSoftMarginESN with ESN). Outbound only.
	SeqSoftMargin uint64
	// TTL is the TTL or hop limit of tunnel-mode outer headers; zero means
	// DefaultTTL. Outbound only.
	TTL uint8
}

// engine is the part of an SA that both directions share.
type engine struct {
	spi    uint32
	mode   sa.Mode
	integ  transform.Integrity
	esn    bool
	icvLen int
	now    func() time.Time
	meter  *sa.Meter
}

func newEngine(c *Config, dir sa.Direction) (engine, error) {
	if c.SPI == 0 {
		return engine{}, errors.New("ah: SPI 0 is reserved (RFC 4302, Section 2.4)")
	}
	if c.Mode != sa.Tunnel && c.Mode != sa.Transport {
		return engine{}, fmt.Errorf("ah: unknown mode %v", c.Mode)
	}
	if c.Integrity == nil {
		return engine{}, errors.New("ah: Config.Integrity is nil")
	}
	n := c.Integrity.ICVLen()
	// RFC 4302, Section 2.6: the ICV is a multiple of 32 bits.
	if n <= 0 || n > maxICVLen || n%4 != 0 {
		return engine{}, fmt.Errorf("ah: unsupported ICV length %d", n)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	tmpl := sa.Event{Protocol: sa.AH, SPI: c.SPI, Direction: dir}
	return engine{
		spi:    c.SPI,
		mode:   c.Mode,
		integ:  c.Integrity,
		esn:    c.ESN,
		icvLen: n,
		now:    now,
		meter:  sa.NewMeter(tmpl, c.Limits, now(), c.OnEvent),
	}, nil
}

// alive reports whether the SA may still carry packets: no hard limit has
// been crossed, time limits included.
func (e *engine) alive() bool { return e.meter.Usable(e.now) }

// ahLen returns the length of the AH header with its ICV and padding: a
// multiple of 4 bytes on IPv4 and of 8 bytes on IPv6 (RFC 4302, Section 2.6
// and Section 3.3.3.2.1). HMAC-SHA1-96 and AES-XCBC-MAC-96 need no padding on
// either; HMAC-SHA2-256-128, -384-192 and -512-256 need 4 bytes on IPv6.
func (e *engine) ahLen(v6 bool) int {
	n := HeaderLen + e.icvLen
	if v6 {
		return (n + 7) &^ 7
	}
	return (n + 3) &^ 3
}

// SPIOf returns the SPI of the AH header at the start of b, for the SAD
// lookup of an inbound packet. It returns false if b is shorter than the
// fixed AH header or the SPI is zero, which is never sent (RFC 4302,
// Section 2.4).
func SPIOf(b []byte) (uint32, bool) {
	if len(b) < HeaderLen {
		return 0, false
	}
	spi := binary.BigEndian.Uint32(b[4:8])
	return spi, spi != 0
}

// putHeader writes the fixed AH header and zeroes the ICV field and padding
// of the ahLen bytes at b. The Reserved field is zero when sending (RFC 4302,
// Section 2.3).
func putHeader(b []byte, ahLen int, nextHdr uint8, spi uint32, seq uint64) {
	b[0] = nextHdr
	b[1] = uint8(ahLen/4 - 2) // RFC 4302, Section 2.2: length in 32-bit words, minus 2.
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:8], spi)
	binary.BigEndian.PutUint32(b[8:12], uint32(seq)) // RFC 4302, Section 2.5: low 32 bits only.
	clear(b[HeaderLen:ahLen])
}
