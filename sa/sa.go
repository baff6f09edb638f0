// Package sa holds the value types that describe a security association and
// what happens to it: modes, protocols, lifetimes, limit events and the reasons
// a packet is dropped. The packet engines (esp, ah), the data plane and IKE all
// speak in these types, so this package imports nothing but the standard
// library and iana.
package sa

import (
	"fmt"
	"time"

	"github.com/goipsec/goipsec/iana"
)

// Protocol is the IPsec protocol of an SA, numbered as the IP protocol.
type Protocol uint8

// IPsec protocols.
const (
	ESP Protocol = iana.ProtoESP // RFC 4303
	AH  Protocol = iana.ProtoAH  // RFC 4302
)

func (p Protocol) String() string {
	switch p {
	case ESP:
		return "esp"
	case AH:
		return "ah"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Mode is the IPsec mode of an SA. RFC 4301, Section 4.1.
type Mode uint8

// Modes. The zero value is Tunnel, the default of strongSwan and of this project.
const (
	Tunnel Mode = iota
	Transport
)

func (m Mode) String() string {
	switch m {
	case Tunnel:
		return "tunnel"
	case Transport:
		return "transport"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Direction says whether an SA protects traffic we send or traffic we receive.
type Direction uint8

// Directions.
const (
	Outbound Direction = iota
	Inbound
)

func (d Direction) String() string {
	if d == Inbound {
		return "in"
	}
	return "out"
}

// Lifetime is a set of limits on an SA's use. A zero field means no limit of
// that kind. RFC 4301, Section 4.4.2.1 ("SA Lifetime").
type Lifetime struct {
	Bytes   uint64        // bytes of protected payload (the inner packets)
	Packets uint64        // packets
	Time    time.Duration // time since the SA was installed
}

// Limits holds the soft and hard lifetimes of an SA. Crossing a soft limit asks
// for a rekey; crossing a hard limit ends the SA.
type Limits struct {
	Soft Lifetime
	Hard Lifetime
}

// LimitKind names what ran out.
type LimitKind uint8

// Limit kinds.
const (
	LimitBytes LimitKind = iota + 1
	LimitPackets
	LimitTime
	LimitSeq // the sequence-number space (RFC 4303, Section 3.3.3)
)

func (k LimitKind) String() string {
	switch k {
	case LimitBytes:
		return "bytes"
	case LimitPackets:
		return "packets"
	case LimitTime:
		return "time"
	case LimitSeq:
		return "sequence numbers"
	}
	return fmt.Sprintf("limit(%d)", uint8(k))
}

// Event reports that an SA crossed one of its limits. Each SA reports a given
// (Hard, Kind) pair at most once.
type Event struct {
	Protocol  Protocol
	SPI       uint32
	Direction Direction
	Hard      bool // false: soft limit (rekey now); true: hard limit (SA is dead)
	Kind      LimitKind
}

func (e Event) String() string {
	level := "soft"
	if e.Hard {
		level = "hard"
	}
	return fmt.Sprintf("%s SA %08x (%s): %s limit on %s", e.Protocol, e.SPI, e.Direction, level, e.Kind)
}
