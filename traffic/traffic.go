// Package traffic holds traffic selectors as values: an address prefix, an IP
// protocol and a port range, written in strongSwan's syntax
// ("10.3.0.0/16[tcp/443]"). The SPD, the configuration and IKE's TSi/TSr
// payloads all speak in these types, so this package imports nothing but the
// standard library.
//
// A selector is one side of a policy (RFC 4301, Section 4.4.1.1): the local
// side or the remote side. A pair of sets of selectors, one per side, says
// which packets a policy covers.
package traffic

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/goipsec/goipsec/iana"
)

// IP protocol numbers this package names, from package iana.
const (
	ProtoICMP    = iana.ProtoICMP
	ProtoTCP     = iana.ProtoTCP
	ProtoUDP     = iana.ProtoUDP
	ProtoDCCP    = iana.ProtoDCCP
	ProtoGRE     = iana.ProtoGRE
	ProtoESP     = iana.ProtoESP
	ProtoAH      = iana.ProtoAH
	ProtoICMPv6  = iana.ProtoICMPv6
	ProtoSCTP    = iana.ProtoSCTP
	ProtoUDPLite = iana.ProtoUDPLite
)

// Selector is one side of a traffic selector: packets whose address (source
// for the local side of an outbound packet, destination for the remote side)
// lies in Prefix, whose next-layer protocol is Proto and whose port lies in
// [PortLo, PortHi].
//
// For ICMP and ICMPv6 the port is the message type in the high 8 bits and the
// code in the low 8 bits (RFC 7296, Section 3.13.1; RFC 4301, Section
// 4.4.1.1), so [icmp/8] (echo request, any code) is PortLo 0x0800, PortHi
// 0x08ff.
//
// The zero value is invalid (it has no prefix). Selectors are comparable with
// ==; ParseSelector returns them in canonical form (Prefix masked).
type Selector struct {
	// Prefix holds the addresses. It is masked: 10.1.2.3/16 becomes 10.1.0.0/16.
	Prefix netip.Prefix
	// Proto is the IP protocol (next header); 0 means any protocol.
	Proto uint8
	// PortLo and PortHi bound the port range, inclusive. 0 and 65535 mean
	// any port. PortLo > PortHi is the OPAQUE range of RFC 4301, Section
	// 4.4.1.1 (encoded as in RFC 7296, Section 3.13.1): it matches only
	// packets whose ports are not available, such as non-initial fragments.
	PortLo, PortHi uint16
}

// Opaque is the port range of an OPAQUE selector: start greater than end
// (RFC 7296, Section 3.13.1).
const (
	opaqueLo = 0xffff
	opaqueHi = 0
)

// Any returns the selector that matches every packet of addr's family: 0.0.0.0/0
// or ::/0, any protocol, any port.
func Any(is6 bool) Selector {
	if is6 {
		return Selector{Prefix: netip.PrefixFrom(netip.IPv6Unspecified(), 0), PortHi: 0xffff}
	}
	return Selector{Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 0), PortHi: 0xffff}
}

// Host returns the selector that matches only addr, any protocol and port: addr/32
// or addr/128.
func Host(addr netip.Addr) Selector {
	return Selector{Prefix: netip.PrefixFrom(addr, addr.BitLen()), PortHi: 0xffff}
}

// IsValid reports whether s has a valid prefix and, if it restricts ports, a
// protocol that has ports.
func (s Selector) IsValid() bool {
	if !s.Prefix.IsValid() || s.Prefix != s.Prefix.Masked() || s.Prefix.Addr().Zone() != "" {
		return false
	}
	if s.AnyPort() {
		return true
	}
	return hasPorts(s.Proto)
}

// AnyPort reports whether s matches every port (0-65535), including packets
// whose ports are not available.
func (s Selector) AnyPort() bool { return s.PortLo == 0 && s.PortHi == 0xffff }

// Opaque reports whether s is an OPAQUE selector, which matches only packets
// whose ports are not available (RFC 4301, Section 4.4.1.1).
func (s Selector) Opaque() bool { return s.PortLo > s.PortHi }

// Is6 reports whether s selects IPv6 addresses.
func (s Selector) Is6() bool { return s.Prefix.Addr().Is6() }

// Contains reports whether addr lies in s's prefix. An IPv4 address never
// lies in an IPv6 prefix, nor the reverse; IPv4-mapped IPv6 addresses are
// IPv6 addresses here.
func (s Selector) Contains(addr netip.Addr) bool { return s.Prefix.Contains(addr) }

// Matches reports whether a packet with IP protocol proto and port port
// matches s's protocol and port range. hasPort says whether the packet's
// port is available: it is not for protocols without ports and for
// non-initial fragments. A selector that restricts ports never matches a
// packet without them; an OPAQUE selector matches only such packets
// (RFC 4301, Sections 4.4.1.1 and 7). For ICMP and ICMPv6, port is the type in
// the high byte and the code in the low byte.
func (s Selector) Matches(proto uint8, port uint16, hasPort bool) bool {
	if s.Proto != 0 && s.Proto != proto {
		return false
	}
	if s.AnyPort() {
		return true
	}
	if s.Opaque() {
		return !hasPort
	}
	return hasPort && s.PortLo <= port && port <= s.PortHi
}

// ICMPPort returns the port value that selectors compare for an ICMP or
// ICMPv6 message: the type in the high byte, the code in the low byte
// (RFC 7296, Section 3.13.1).
func ICMPPort(typ, code uint8) uint16 { return uint16(typ)<<8 | uint16(code) }

// IsICMP reports whether proto is ICMP or ICMPv6, whose selectors hold type
// and code instead of ports.
func IsICMP(proto uint8) bool { return proto == ProtoICMP || proto == ProtoICMPv6 }

// hasPorts reports whether a selector for proto may restrict ports: the
// protocols with 16-bit source and destination ports at the start of their
// header, and ICMP with its type and code (RFC 4301, Section 4.4.1.1).
func hasPorts(proto uint8) bool {
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoDCCP, ProtoUDPLite, ProtoICMP, ProtoICMPv6:
		return true
	}
	return false
}

var protoNames = []struct {
	name  string
	proto uint8
}{
	// The first name of a number is the one String prints.
	{"icmp", ProtoICMP},
	{"tcp", ProtoTCP},
	{"udp", ProtoUDP},
	{"dccp", ProtoDCCP},
	{"gre", ProtoGRE},
	{"esp", ProtoESP},
	{"ah", ProtoAH},
	{"ipv6-icmp", ProtoICMPv6},
	{"icmpv6", ProtoICMPv6},
	{"sctp", ProtoSCTP},
	{"udplite", ProtoUDPLite},
}

// ProtoName returns the name ParseSelector takes for proto ("tcp", "ipv6-icmp"),
// or its decimal number when it has none.
func ProtoName(proto uint8) string {
	for _, p := range protoNames {
		if p.proto == proto {
			return p.name
		}
	}
	return strconv.Itoa(int(proto))
}

// ErrDynamic is wrapped by ParseSelector for the keyword "dynamic", which
// stands for an address that IKE fills in (the tunnel endpoint or a virtual
// IP) and is not a selector on its own.
var ErrDynamic = errors.New("traffic: \"dynamic\" is resolved by IKE and is not supported here yet")

// ParseSelector parses a traffic selector in strongSwan's syntax:
//
//	10.2.0.0/16              a prefix, any protocol and port
//	10.1.0.1                 a single address (/32 or /128)
//	::/0                     all IPv6 addresses
//	10.3.0.0/16[tcp/443]     TCP to or from port 443
//	10.1.0.1/32[udp]         UDP, any port
//	10.0.0.0/8[udp/1000-2000] a port range
//	10.0.0.0/8[tcp/%any]     any port (same as [tcp])
//	10.0.0.0/8[17/53]        protocols by number
//	0.0.0.0/0[icmp/8]        ICMP type 8 (echo request), any code
//	0.0.0.0/0[icmp/769]      ICMP type 3, code 1: values of 256 and more
//	                         hold the type in the high byte
//	10.0.0.0/8[tcp/opaque]   RFC 4301 OPAQUE ports
//
// Service names (getservent) are not looked up; ports are numbers. Address
// ranges ("10.0.0.1-10.0.0.9") and "dynamic" are not supported and return an
// error that says so.
func ParseSelector(s string) (Selector, error) {
	sel, err := parseSelector(s)
	if err == ErrDynamic {
		return Selector{}, err
	}
	if err != nil {
		return Selector{}, fmt.Errorf("traffic: selector %q: %w", s, err)
	}
	return sel, nil
}

func parseSelector(s string) (Selector, error) {
	addr, rest, hasProto := strings.Cut(s, "[")
	var sel Selector
	switch {
	case addr == "dynamic":
		return sel, ErrDynamic
	case addr == "":
		return sel, errors.New("missing address")
	case strings.Contains(addr, "-"):
		return sel, errors.New("address ranges are not supported, use prefixes")
	case strings.Contains(addr, "%"):
		return sel, errors.New("addresses with a zone are not supported")
	case strings.Contains(addr, "/"):
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return sel, errors.New("invalid prefix")
		}
		sel.Prefix = p.Masked()
	default:
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return sel, errors.New("invalid address")
		}
		sel.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	sel.PortHi = 0xffff
	if !hasProto {
		return sel, nil
	}
	inner, ok := strings.CutSuffix(rest, "]")
	if !ok || strings.ContainsAny(inner, "[]") {
		return sel, errors.New("protocol/port must be in one pair of brackets at the end")
	}
	protoStr, portStr, hasPort := strings.Cut(inner, "/")
	proto, err := parseProto(protoStr)
	if err != nil {
		return sel, err
	}
	sel.Proto = proto
	if !hasPort || portStr == "%any" {
		return sel, nil
	}
	if proto == 0 {
		return sel, errors.New("a port needs a protocol")
	}
	if !hasPorts(proto) {
		return sel, fmt.Errorf("protocol %s has no ports", ProtoName(proto))
	}
	if portStr == "opaque" {
		sel.PortLo, sel.PortHi = opaqueLo, opaqueHi
		return sel, nil
	}
	loStr, hiStr, isRange := strings.Cut(portStr, "-")
	lo, err := parsePort(loStr)
	if err != nil {
		return sel, err
	}
	hi := lo
	if isRange {
		if hi, err = parsePort(hiStr); err != nil {
			return sel, err
		}
	}
	if IsICMP(proto) {
		// strongSwan's convention: values below 256 are a type with any
		// code, larger ones a type and code (RFC 7296, Section 3.13.1).
		if lo < 256 {
			lo <<= 8
		}
		if hi < 256 {
			hi = hi<<8 | 0xff
		}
	}
	if lo > hi {
		return sel, errors.New("port range ends before it starts")
	}
	sel.PortLo, sel.PortHi = lo, hi
	return sel, nil
}

func parseProto(s string) (uint8, error) {
	if s == "" || s == "%any" {
		return 0, nil
	}
	for _, p := range protoNames {
		if s == p.name {
			return p.proto, nil
		}
	}
	n, err := parseUint(s, 255)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q", s)
	}
	return uint8(n), nil
}

func parsePort(s string) (uint16, error) {
	n, err := parseUint(s, 0xffff)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q (service names are not supported)", s)
	}
	return uint16(n), nil
}

// parseUint parses a plain decimal number (no sign, no leading zeros beyond
// "0", no underscores) up to max.
func parseUint(s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, errors.New("not a decimal number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal number")
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// MustParseSelector is like ParseSelector but panics on error. It is meant
// for tests and constant tables.
func MustParseSelector(s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// String returns s in the syntax of ParseSelector, which parses it back to
// s: the prefix always with its length, the protocol by name, ICMP ranges of
// one type as that type.
func (s Selector) String() string {
	if !s.Prefix.IsValid() {
		return "invalid"
	}
	var b strings.Builder
	b.WriteString(s.Prefix.String())
	if s.Proto == 0 && s.AnyPort() {
		return b.String()
	}
	b.WriteByte('[')
	if s.Proto == 0 {
		b.WriteString("%any")
	} else {
		b.WriteString(ProtoName(s.Proto))
	}
	if !s.AnyPort() {
		b.WriteByte('/')
		b.WriteString(s.portString())
	}
	b.WriteByte(']')
	return b.String()
}

func (s Selector) portString() string {
	lo, hi := s.PortLo, s.PortHi
	switch {
	case s.Opaque():
		return "opaque"
	case IsICMP(s.Proto):
		// strongSwan's syntax: a value below 256 is a type (from code 0
		// at the low end, to code 255 at the high end); 256 and more is
		// type<<8|code. Ranges starting at type 0 with a code other than
		// 0, or ending at type 0 with a code other than 255, have no
		// spelling; they are printed raw and do not parse back.
		if lo == hi && lo >= 256 {
			return strconv.Itoa(int(lo))
		}
		l, h := strconv.Itoa(int(lo)), strconv.Itoa(int(hi))
		if lo&0xff == 0 {
			l = strconv.Itoa(int(lo >> 8))
		}
		if hi&0xff == 0xff {
			h = strconv.Itoa(int(hi >> 8))
		}
		if lo&0xff == 0 && hi&0xff == 0xff && lo>>8 == hi>>8 {
			return l
		}
		return l + "-" + h
	case lo == hi:
		return strconv.Itoa(int(lo))
	}
	return strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(hi))
}

// MarshalText implements encoding.TextMarshaler with String's syntax.
func (s Selector) MarshalText() ([]byte, error) {
	if !s.Prefix.IsValid() {
		return nil, errors.New("traffic: marshal of an invalid selector")
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseSelector.
func (s *Selector) UnmarshalText(b []byte) error {
	sel, err := ParseSelector(string(b))
	if err != nil {
		return err
	}
	*s = sel
	return nil
}
