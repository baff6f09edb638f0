package ike

import (
	"net/netip"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/traffic"
)

// tsRange is a traffic selector as IKEv2 carries it (RFC 7296, Section
// 3.13.1): an address range, an IP protocol (0 = any) and a port range.
// startPort > endPort is the OPAQUE range.
type tsRange struct {
	proto              uint8
	startPort, endPort uint16
	start, end         netip.Addr
}

// maxTSRanges bounds the selectors this side sends or installs per set.
const maxTSRanges = 255

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func fromSelector(s traffic.Selector) tsRange {
	p := s.Prefix.Masked()
	return tsRange{proto: s.Proto, startPort: s.PortLo, endPort: s.PortHi, start: p.Addr(), end: lastAddr(p)}
}

func fromSet(set traffic.Set) []tsRange {
	out := make([]tsRange, 0, len(set))
	for _, s := range set {
		if s.IsValid() {
			out = append(out, fromSelector(s))
		}
	}
	return out
}

func hostRange(a netip.Addr, proto uint8, port uint16, hasPort bool) tsRange {
	a = a.Unmap()
	r := tsRange{proto: proto, endPort: 0xffff, start: a, end: a}
	if hasPort && proto != 0 {
		r.startPort, r.endPort = port, port
	}
	return r
}

func (r tsRange) wire() ikewire.TrafficSelector {
	t := ikewire.TS_IPV4_ADDR_RANGE
	if r.start.Is6() {
		t = ikewire.TS_IPV6_ADDR_RANGE
	}
	return ikewire.TrafficSelector{Type: t, IPProtocol: r.proto, StartPort: r.startPort, EndPort: r.endPort, StartAddress: r.start, EndAddress: r.end}
}

func wireTS(rs []tsRange) ikewire.TrafficSelectors {
	out := ikewire.TrafficSelectors{}
	for _, r := range rs {
		out.Selectors = append(out.Selectors, r.wire())
	}
	return out
}

// fromWire converts received selectors; types other than the address
// ranges (and inverted address ranges) are skipped (RFC 7296, Section
// 3.13.1).
func fromWire(ts ikewire.TrafficSelectors) []tsRange {
	var out []tsRange
	for _, t := range ts.Selectors {
		if t.Type != ikewire.TS_IPV4_ADDR_RANGE && t.Type != ikewire.TS_IPV6_ADDR_RANGE {
			continue
		}
		if !t.StartAddress.IsValid() || t.StartAddress.Is4() != t.EndAddress.Is4() || t.EndAddress.Less(t.StartAddress) {
			continue
		}
		out = append(out, tsRange{proto: t.IPProtocol, startPort: t.StartPort, endPort: t.EndPort, start: t.StartAddress, end: t.EndAddress})
		if len(out) == maxTSRanges {
			break
		}
	}
	return out
}

func (r tsRange) opaque() bool  { return r.startPort > r.endPort }
func (r tsRange) anyPort() bool { return r.startPort == 0 && r.endPort == 0xffff }

// intersect returns the selector both a and b allow (RFC 7296, Section
// 2.9: narrowing).
func intersect(a, b tsRange) (tsRange, bool) {
	if a.start.Is4() != b.start.Is4() {
		return tsRange{}, false
	}
	var r tsRange
	switch {
	case a.proto == 0:
		r.proto = b.proto
	case b.proto == 0 || a.proto == b.proto:
		r.proto = a.proto
	default:
		return tsRange{}, false
	}
	switch {
	case a.opaque() && (b.opaque() || b.anyPort()), b.opaque() && a.anyPort():
		r.startPort, r.endPort = 0xffff, 0
	case a.opaque() || b.opaque():
		return tsRange{}, false
	default:
		r.startPort, r.endPort = max(a.startPort, b.startPort), min(a.endPort, b.endPort)
		if r.startPort > r.endPort {
			return tsRange{}, false
		}
	}
	if r.proto == 0 && !(r.anyPort()) {
		// Ports without a protocol cannot be expressed (RFC 7296,
		// Section 3.13.1 ties ports to a protocol).
		return tsRange{}, false
	}
	r.start, r.end = a.start, a.end
	if b.start.Compare(r.start) > 0 {
		r.start = b.start
	}
	if b.end.Compare(r.end) < 0 {
		r.end = b.end
	}
	if r.end.Less(r.start) {
		return tsRange{}, false
	}
	return r, true
}

// within reports whether a lies entirely inside b.
func within(a, b tsRange) bool {
	x, ok := intersect(a, b)
	return ok && x == a
}

// narrow intersects the proposed selectors with the configured ones and
// drops results that another result contains (RFC 7296, Section 2.9).
func narrow(proposed, configured []tsRange) []tsRange {
	var out []tsRange
	for _, p := range proposed {
		for _, c := range configured {
			if x, ok := intersect(p, c); ok {
				out = append(out, x)
			}
		}
	}
	var res []tsRange
	for i, x := range out {
		redundant := false
		for j, y := range out {
			if i != j && within(x, y) && (x != y || j < i) {
				redundant = true
				break
			}
		}
		if !redundant {
			res = append(res, x)
		}
		if len(res) == maxTSRanges {
			break
		}
	}
	return res
}

// allWithin reports whether every selector of got lies inside one of
// offered: the initiator's check of the responder's narrowing.
func allWithin(got, offered []tsRange) bool {
	for _, g := range got {
		ok := false
		for _, o := range offered {
			if within(g, o) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return len(got) > 0
}

// toSet converts ranges to prefixes for the SPD and SAD: each address range
// becomes the prefixes that cover exactly it.
func toSet(rs []tsRange) traffic.Set {
	var out traffic.Set
	for _, r := range rs {
		a := r.start
		for n := 0; n < 2*129 && !r.end.Less(a); n++ {
			var p netip.Prefix
			for bits := 0; bits <= a.BitLen(); bits++ {
				q := netip.PrefixFrom(a, bits)
				if q.Masked().Addr() == a && !r.end.Less(lastAddr(q)) {
					p = q
					break
				}
			}
			out = append(out, traffic.Selector{Prefix: p, Proto: r.proto, PortLo: r.startPort, PortHi: r.endPort})
			next := lastAddr(p).Next()
			if !next.IsValid() || next.Is4() != a.Is4() {
				break
			}
			a = next
		}
	}
	return out
}
