// Package esp implements the IP Encapsulating Security Payload (RFC 4303) for
// one SA at a time, in tunnel and transport mode, over IPv4 and IPv6, with
// 32-bit or extended (64-bit) sequence numbers.
//
// The engine seals and opens bare ESP packets, SPI to ICV, in place
// (Outbound.SealESP, Inbound.DecryptESP): the caller owns the IP and UDP
// headers around them and passes in the parsed view of the packet
// (packet.Split) or the outer addresses where ESP needs them. Seal and Open
// are the same on whole IP packets, for callers that hold those.
//
// The package does no I/O and keeps no global state. The cryptography comes
// from package transform (an ESP transform works on the region that starts at
// the ESP header), the anti-replay window from package replay and the SA's
// counters and lifetimes from sa.Meter.
//
// An outbound packet goes through NextSeq (sequential, in order) and SealSeq
// (parallel); Seal does both. An inbound packet goes through Decrypt
// (parallel: parse, replay pre-check, ICV check, decryption, trailer checks)
// and Accept (sequential: the replay window moves); Open does both. This is
// the split of RFC 4303, Section 3.4.3, where the window is updated only after
// the integrity check has succeeded.
//
// Errors returned per packet are always sa.Drop values, which do not
// allocate; malformed input never panics.
package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/replay"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// HeaderLen is the length of the ESP header: the SPI and the low 32 bits of
// the sequence number. RFC 4303, Section 2.
const HeaderLen = transform.ESPHeaderLen

// trailerLen is the length of the Pad Length and Next Header fields.
// RFC 4303, Sections 2.5 and 2.6.
const trailerLen = 2

// IP header lengths without options or extension headers.
const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
)

// IP protocol numbers used here.
const (
	protoIPv4   = iana.ProtoIPv4
	protoIPv6   = iana.ProtoIPv6
	protoESP    = iana.ProtoESP
	protoNoNext = iana.ProtoNoNext
)

// Default sequence-number margins for the soft LimitSeq event: the event
// fires when fewer than this many sequence numbers remain. With 32-bit
// numbers 2^28 leaves about 6% of the space, time for a CHILD SA rekey
// (RFC 7296, Section 2.8) even at ten million packets per second; with ESN
// 2^32 is a whole low half, far more than any rekey needs.
const (
	DefaultSeqSoftMargin    = sa.DefaultSeqSoftMargin
	DefaultSeqSoftMarginESN = sa.DefaultSeqSoftMarginESN
)

// DefaultTTL is the outer TTL (IPv4) or hop limit (IPv6) of tunnel-mode
// packets when Config.TTL is zero.
const DefaultTTL = 64

// Config describes one direction of an ESP SA. It is read by NewOutbound or
// NewInbound and not retained afterwards (except the Transform, OnEvent and
// Now values), so changing it later has no effect on the SA.
type Config struct {
	// SPI is the Security Parameters Index of the SA. Zero is reserved
	// (RFC 4303, Section 2.1) and rejected.
	SPI uint32

	// Mode is sa.Tunnel (the zero value) or sa.Transport.
	Mode sa.Mode

	// Transform is the SA's keyed cryptographic transform. Required.
	Transform transform.ESP

	// ESN enables 64-bit extended sequence numbers (RFC 4303,
	// Section 2.2.1): only the low 32 bits travel in the packet, the high
	// 32 bits take part in the ICV and the receiver infers them
	// (RFC 4303, Appendix A).
	ESN bool

	// Local and Remote are the outer source and destination addresses of
	// tunnel-mode packets sent on an outbound SA. They must be valid and of
	// the same family; that family (IPv4 or IPv6) is the outer header's,
	// independent of the inner packet's (next header 4 or 41). They are
	// ignored by inbound SAs and in transport mode.
	Local, Remote netip.Addr

	// ReplayWindow is the size in packets of the anti-replay window of an
	// inbound SA (RFC 4303, Section 3.4.3); 0 means replay.DefaultSize.
	// Ignored by outbound SAs.
	ReplayWindow int

	// Limits are the soft and hard lifetimes of the SA. Bytes count the
	// payloads ESP carries: the inner packets (tunnel mode) or the
	// upper-layer parts after the IP header (transport mode).
	Limits sa.Limits

	// OnEvent, if not nil, is called once for each soft or hard limit the
	// SA crosses, including the sequence-number limit (sa.LimitSeq) of an
	// outbound SA. It is called from whichever goroutine crossed the limit
	// and must not block.
	OnEvent func(sa.Event)

	// Now returns the current time; nil means time.Now. It is called when
	// the SA is created and, only when Limits has a time limit, once per
	// packet so that a hard time limit is enforced without waiting for a
	// timer.
	Now func() time.Time

	// StartSeq is the last sequence number already used by an outbound SA:
	// the next packet gets StartSeq+1. Zero is a fresh SA, whose first
	// packet has sequence number 1 (RFC 4303, Section 3.3.3). Ignored by
	// inbound SAs.
	StartSeq uint64

	// SeqSoftMargin makes an outbound SA report a soft sa.LimitSeq event
	// when fewer than this many sequence numbers remain, so that IKE can
	// rekey before the hard end. Zero means DefaultSeqSoftMargin
	// (DefaultSeqSoftMarginESN with ESN).
	SeqSoftMargin uint64

	// TFCPadTo, if not zero, makes an outbound tunnel-mode SA append
	// Traffic Flow Confidentiality padding to every inner packet shorter
	// than TFCPadTo bytes, up to that length (RFC 4303, Section 2.7). The
	// receiver removes it using the inner IP header's length. It must be
	// zero in transport mode, where the payload need not carry its own
	// length.
	TFCPadTo int

	// TTL is the TTL (IPv4) or hop limit (IPv6) of the outer header of
	// tunnel-mode packets; 0 means DefaultTTL.
	TTL uint8

	// EncapUDP says that an inbound transport-mode SA is UDP-encapsulated
	// (RFC 3948). Open then recomputes the TCP and UDP checksums of the
	// decapsulated packet, whose pseudo-header addresses a NAT may have
	// changed (RFC 3948, Section 3.1.2). Tunnel mode needs nothing of the
	// kind: the inner packet is untouched by NATs.
	EncapUDP bool
}

// check validates the fields common to both directions.
func (c *Config) check() error {
	if c.Transform == nil {
		return errors.New("esp: Config.Transform is nil")
	}
	if c.SPI == 0 {
		return errors.New("esp: SPI 0 is reserved (RFC 4303, Section 2.1)")
	}
	if c.Mode != sa.Tunnel && c.Mode != sa.Transport {
		return fmt.Errorf("esp: unknown mode %v", c.Mode)
	}
	bs, iv, icv := c.Transform.BlockSize(), c.Transform.IVLen(), c.Transform.ICVLen()
	if bs < 4 || bs > 256 || bs&(bs-1) != 0 || iv < 0 || iv > 64 || icv < 0 || icv > 64 {
		return fmt.Errorf("esp: transform has unusable sizes (block %d, IV %d, ICV %d)", bs, iv, icv)
	}
	if c.TFCPadTo < 0 || c.TFCPadTo > 0xffff {
		return fmt.Errorf("esp: TFCPadTo %d out of range", c.TFCPadTo)
	}
	if c.TFCPadTo != 0 && c.Mode != sa.Tunnel {
		return errors.New("esp: TFC padding needs tunnel mode (RFC 4303, Section 2.7)")
	}
	return nil
}

func (c *Config) now() func() time.Time {
	if c.Now != nil {
		return c.Now
	}
	return time.Now
}

// engine is the part of an SA that both directions share. It is embedded,
// with the meter, the replay window (inbound) and the sequence counter
// (outbound), in one allocation per SA, so that with many SAs a packet's
// SA state is a few adjacent cache lines rather than a chain of pointers.
// It must not be copied once initialized.
type engine struct {
	spi    uint32
	mode   sa.Mode
	esn    bool
	ivLen  int
	icvLen int
	bs     int
	tr     transform.ESP
	now    func() time.Time
	meter  sa.Meter
}

// init validates c and makes e the shared part of an SA of direction dir,
// with its meter started now.
func (e *engine) init(c *Config, dir sa.Direction) error {
	if err := c.check(); err != nil {
		return err
	}
	now := c.now()
	e.spi, e.mode, e.tr, e.esn, e.now = c.SPI, c.Mode, c.Transform, c.ESN, now
	e.ivLen, e.icvLen, e.bs = c.Transform.IVLen(), c.Transform.ICVLen(), c.Transform.BlockSize()
	e.meter.Init(sa.Event{Protocol: sa.ESP, SPI: c.SPI, Direction: dir}, c.Limits, now(), c.OnEvent)
	return nil
}

// Mode returns the SA's mode: sa.Tunnel or sa.Transport.
func (e *engine) Mode() sa.Mode { return e.mode }

// warm reads the state of the SA level pointer hops away (see
// transform.Warmer): 0 the engine itself and its meter (the caller adds
// what else its allocation holds); 1 and 2 the transform's levels 0 and 1.
func (e *engine) warm(level int) int {
	if level == 0 {
		return int(e.spi) + int(e.meter.Packets())
	}
	if w, ok := e.tr.(transform.Warmer); ok {
		return w.Warm(level - 1)
	}
	return 0
}

// alive reports whether the SA may still carry packets: no hard limit has
// been crossed, time limits included.
func (e *engine) alive() bool { return e.meter.Usable(e.now) }

// SPIOf returns the SPI of the ESP header at the start of b, for the SAD
// lookup of an inbound packet. It returns false if b is shorter than an ESP
// header or the SPI is zero, which is never sent (RFC 4303, Section 2.1).
func SPIOf(b []byte) (uint32, bool) {
	if len(b) < HeaderLen {
		return 0, false
	}
	spi := binary.BigEndian.Uint32(b)
	return spi, spi != 0
}

// initWindow initializes the inbound replay window w.
func initWindow(w *replay.Window, c *Config) error {
	size := c.ReplayWindow
	if size == 0 {
		size = replay.DefaultSize
	}
	if err := w.Init(size, c.ESN); err != nil {
		return fmt.Errorf("esp: replay window: %w", err)
	}
	return nil
}

// padLen returns the number of padding bytes that align a payload of n bytes
// plus the 2-byte trailer to the block size bs, a power of two.
// RFC 4303, Section 2.4.
func padLen(n, bs int) int {
	return (bs - (n+trailerLen)&(bs-1)) & (bs - 1)
}
