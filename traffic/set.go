package traffic

import (
	"fmt"
	"net/netip"
	"strings"
)

// Set is a list of selectors for one side of a policy; a packet matches the
// set when it matches any of them. An empty set matches nothing on its own;
// callers that mean "any" (the SPD does) say so explicitly.
type Set []Selector

// ParseSet parses each string with ParseSelector.
func ParseSet(ss []string) (Set, error) {
	set := make(Set, 0, len(ss))
	for _, s := range ss {
		sel, err := ParseSelector(s)
		if err != nil {
			return nil, err
		}
		set = append(set, sel)
	}
	return set, nil
}

// MustParseSet is like ParseSet but panics on error; for tests and tables.
func MustParseSet(ss ...string) Set {
	set, err := ParseSet(ss)
	if err != nil {
		panic(err)
	}
	return set
}

// Contains reports whether addr lies in the prefix of any selector.
func (set Set) Contains(addr netip.Addr) bool {
	for _, s := range set {
		if s.Contains(addr) {
			return true
		}
	}
	return false
}

// Matches reports whether some selector contains addr and matches proto and
// port (see Selector.Matches).
func (set Set) Matches(addr netip.Addr, proto uint8, port uint16, hasPort bool) bool {
	for _, s := range set {
		if s.Contains(addr) && s.Matches(proto, port, hasPort) {
			return true
		}
	}
	return false
}

// Strings returns the selectors in ParseSelector's syntax.
func (set Set) Strings() []string {
	out := make([]string, len(set))
	for i, s := range set {
		out[i] = s.String()
	}
	return out
}

// String returns the selectors separated by ", ", the way strongSwan prints
// them.
func (set Set) String() string { return strings.Join(set.Strings(), ", ") }

// Equal reports whether set and other hold the same selectors in the same
// order.
func (set Set) Equal(other Set) bool {
	if len(set) != len(other) {
		return false
	}
	for i := range set {
		if set[i] != other[i] {
			return false
		}
	}
	return true
}

// Validate returns an error naming the first invalid selector, if any.
func (set Set) Validate() error {
	for i, s := range set {
		if !s.IsValid() {
			return fmt.Errorf("traffic: selector %d (%s) is invalid", i, s)
		}
	}
	return nil
}

// Intersect returns the selectors of the traffic that both set and other
// select (RFC 7296, Section 2.9: narrowing), or nil if they share none.
func (set Set) Intersect(other Set) Set {
	var out Set
	for _, x := range set {
		for _, y := range other {
			if s, ok := x.intersect(y); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// Overlaps reports whether some traffic matches both set and other: what
// len(set.Intersect(other)) > 0 says, without building the intersection
// (the SAD checks it against every SA of a rule on each install).
func (set Set) Overlaps(other Set) bool {
	for _, x := range set {
		for _, y := range other {
			if _, ok := x.intersect(y); ok {
				return true
			}
		}
	}
	return false
}

// intersect returns the selector of the traffic both x and y select.
func (x Selector) intersect(y Selector) (Selector, bool) {
	if !x.Prefix.Overlaps(y.Prefix) {
		return Selector{}, false
	}
	s := x
	if y.Prefix.Bits() > x.Prefix.Bits() {
		s.Prefix = y.Prefix
	}
	switch {
	case x.Proto == 0:
		s.Proto = y.Proto
	case y.Proto != 0 && y.Proto != x.Proto:
		return Selector{}, false
	}
	switch {
	case x.Opaque() && (y.Opaque() || y.AnyPort()):
	case y.Opaque() && x.AnyPort():
		s.PortLo, s.PortHi = y.PortLo, y.PortHi
	case x.Opaque() || y.Opaque():
		// OPAQUE matches only packets without ports (RFC 4301, Section
		// 4.4.1.1): it shares nothing with a range of ports.
		return Selector{}, false
	default:
		s.PortLo, s.PortHi = max(x.PortLo, y.PortLo), min(x.PortHi, y.PortHi)
		if s.PortLo > s.PortHi {
			return Selector{}, false
		}
	}
	return s, true
}
