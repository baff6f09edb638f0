// Package spd is the Security Policy Database of RFC 4301, Section 4.4.1: an
// ordered list of rules, each a pair of traffic selector sets (local and
// remote) and an action, PROTECT, BYPASS or DISCARD.
//
// Compile turns the rules into an immutable Snapshot that the data plane
// consults for every packet and swaps whole (atomic.Pointer) on
// reconfiguration. Rules are evaluated in order and the first match wins.
// RFC 4301, Section 4.4.1 defines the SPD as ordered, with entries that may
// overlap; decorrelation (Section 4.4.1 and Appendix B) is needed only to
// cache entries or look them up out of order, which this SPD does not do.
//
// Packets that no rule matches get the snapshot's default action. RFC 4301,
// Section 4.4.1 has the SPD consulted for all traffic; the default is the
// final, catch-all entry that makes that explicit. The daemon uses BYPASS: the TUN device receives
// only the traffic that routing sends to it.
//
// # Fragments and ports
//
// Non-initial fragments carry no ports (and no ICMP type or code). RFC 4301,
// Section 7 offers several ways to handle them; this SPD takes the simplest
// safe one: a selector that restricts ports never matches a packet whose
// ports are unknown, a selector whose ports are ANY matches it, and an OPAQUE
// selector (RFC 4301, Section 4.4.1.1) matches only such packets. So a
// non-initial fragment falls through port-specific rules to a rule without
// port restrictions or to the default; to protect fragments of port-specific
// traffic, add a rule with ANY or OPAQUE ports for the same addresses (or let
// the data plane reassemble first).
//
// # ICMP
//
// For ICMP and ICMPv6 packets the "port" that selectors compare is the
// message type in the high byte and the code in the low byte (RFC 7296,
// Section 3.13.1), on both the local and the remote side: [icmp/8] in
// remote_ts covers echo requests sent to the remote network.
package spd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// Action is what the SPD decides for a packet. RFC 4301, Section 4.4.1.
type Action uint8

// Actions. The zero value is Discard, so that a forgotten action fails closed.
const (
	Discard Action = iota // drop the packet
	Bypass                // pass it without IPsec processing
	Protect               // apply the SA bundle the rule's Ref names
)

func (a Action) String() string {
	switch a {
	case Discard:
		return "discard"
	case Bypass:
		return "bypass"
	case Protect:
		return "protect"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Rule is one SPD entry. Local and Remote are the selectors of RFC 4301,
// Section 4.4.1.1 for the two sides; a packet matches the rule when its
// local-side address, protocol and port match some selector of Local and its
// remote-side ones match some selector of Remote. An empty set means any
// address, protocol and port. For an outbound packet the local side is the
// source; for an inbound one it is the destination.
type Rule struct {
	// Name identifies the rule to people: "site-b/net" for a connection's
	// child, a policy's name.
	Name string
	// Local and Remote select traffic; empty means any.
	Local, Remote traffic.Set
	// Action is applied to the packets the rule matches.
	Action Action
	// Ref identifies, for Protect rules, the SA bundle the data plane uses
	// (a policy ID that the SAD is keyed by). The SPD does not interpret it.
	Ref uint32
	// PerPeer marks a Protect rule whose bundle holds one SA per peer (a
	// connection for many hosts): the data plane asks for an SA per
	// destination, not once for the rule.
	PerPeer bool
}

// Direction is the direction of a packet relative to this host: sa.Outbound
// for packets read from the TUN device, sa.Inbound for decapsulated packets
// being checked against the policy (RFC 4301, Section 5.2).
type Direction = sa.Direction

// csel is a selector compiled for matching: the prefix as a 128-bit value and
// mask, the family, the protocol and the port range.
type csel struct {
	hi, lo   uint64 // masked address
	mhi, mlo uint64 // mask
	is6      bool
	proto    uint8
	plo, phi uint16
}

// crule is a compiled rule: its selectors live in Snapshot.sels.
type crule struct {
	local, remote []csel // empty: any
}

// counter is a hit counter alone on its cache line, so that cores counting
// hits on different rules do not contend.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// Snapshot is a compiled, immutable SPD. Lookup and Explain are safe for
// concurrent use; the hit counters are updated atomically.
type Snapshot struct {
	rules  []Rule
	crules []crule
	def    Rule
	hits   []counter // len(rules)+1: the last one counts the default
}

// Compile checks rules and compiles them, in order, into a Snapshot whose
// default action is def. It copies rules; the caller may reuse them.
func Compile(rules []Rule, def Action) (*Snapshot, error) {
	if def > Protect {
		return nil, fmt.Errorf("spd: invalid default action %d", def)
	}
	if def == Protect {
		return nil, errors.New("spd: the default action cannot be protect: it has no SA")
	}
	s := &Snapshot{
		rules:  make([]Rule, len(rules)),
		crules: make([]crule, len(rules)),
		def:    Rule{Name: "default", Action: def},
		hits:   make([]counter, len(rules)+1),
	}
	n := 0
	for _, r := range rules {
		n += len(r.Local) + len(r.Remote)
	}
	sels := make([]csel, 0, n)
	for i, r := range rules {
		if r.Action > Protect {
			return nil, fmt.Errorf("spd: rule %d (%s): invalid action %d", i, r.Name, r.Action)
		}
		if err := r.Local.Validate(); err != nil {
			return nil, fmt.Errorf("spd: rule %d (%s): local: %w", i, r.Name, err)
		}
		if err := r.Remote.Validate(); err != nil {
			return nil, fmt.Errorf("spd: rule %d (%s): remote: %w", i, r.Name, err)
		}
		if !families(r.Local, r.Remote) {
			return nil, fmt.Errorf("spd: rule %d (%s): local and remote selectors share no address family, so it never matches", i, r.Name)
		}
		r.Local = append(traffic.Set(nil), r.Local...)
		r.Remote = append(traffic.Set(nil), r.Remote...)
		s.rules[i] = r
		start := len(sels)
		for _, sel := range r.Local {
			sels = append(sels, compileSel(sel))
		}
		mid := len(sels)
		for _, sel := range r.Remote {
			sels = append(sels, compileSel(sel))
		}
		s.crules[i] = crule{local: sels[start:mid:mid], remote: sels[mid:len(sels):len(sels)]}
	}
	return s, nil
}

// families reports whether some address family occurs on both sides (an
// empty side allows both).
func families(local, remote traffic.Set) bool {
	fam := func(set traffic.Set) (v4, v6 bool) {
		if len(set) == 0 {
			return true, true
		}
		for _, s := range set {
			if s.Is6() {
				v6 = true
			} else {
				v4 = true
			}
		}
		return v4, v6
	}
	l4, l6 := fam(local)
	r4, r6 := fam(remote)
	return l4 && r4 || l6 && r6
}

func compileSel(s traffic.Selector) csel {
	a := s.Prefix.Addr()
	hi, lo := addr128(a)
	bits := s.Prefix.Bits()
	if !a.Is6() {
		bits += 96 // the IPv4 address sits in the low 32 bits of As16
	}
	var mhi, mlo uint64
	switch {
	case bits >= 128:
		mhi, mlo = ^uint64(0), ^uint64(0)
	case bits > 64:
		mhi, mlo = ^uint64(0), ^uint64(0)<<(128-bits)
	case bits > 0:
		mhi = ^uint64(0) << (64 - bits)
	}
	return csel{
		hi: hi & mhi, lo: lo & mlo, mhi: mhi, mlo: mlo,
		is6:   a.Is6(),
		proto: s.Proto,
		plo:   s.PortLo, phi: s.PortHi,
	}
}

func addr128(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// key is one side of a packet as the selectors see it.
type key struct {
	hi, lo  uint64
	is6     bool
	proto   uint8
	port    uint16
	hasPort bool
}

func (c *csel) match(k *key) bool {
	if c.is6 != k.is6 || k.hi&c.mhi != c.hi || k.lo&c.mlo != c.lo {
		return false
	}
	if c.proto != 0 && c.proto != k.proto {
		return false
	}
	switch {
	case c.plo == 0 && c.phi == 0xffff: // any port
		return true
	case c.plo > c.phi: // OPAQUE: RFC 4301, Section 4.4.1.1
		return !k.hasPort
	}
	return k.hasPort && c.plo <= k.port && k.port <= c.phi
}

func matchSide(sels []csel, k *key) bool {
	if len(sels) == 0 {
		return true
	}
	for i := range sels {
		if sels[i].match(k) {
			return true
		}
	}
	return false
}

// keys splits a packet into its local and remote sides for dir.
func keys(dir Direction, info *packet.Info) (local, remote key) {
	src := key{is6: info.Src.Is6(), proto: info.Proto}
	src.hi, src.lo = addr128(info.Src)
	dst := key{is6: info.Dst.Is6(), proto: info.Proto}
	dst.hi, dst.lo = addr128(info.Dst)
	switch {
	case info.HasPorts:
		src.port, src.hasPort = info.SrcPort, true
		dst.port, dst.hasPort = info.DstPort, true
	case info.HasICMP:
		// RFC 7296, Section 3.13.1: type and code in place of the port,
		// on both sides.
		p := traffic.ICMPPort(info.ICMPType, info.ICMPCode)
		src.port, src.hasPort = p, true
		dst.port, dst.hasPort = p, true
	}
	if dir == sa.Inbound {
		return dst, src
	}
	return src, dst
}

// Lookup returns the first rule that matches the packet described by info in
// direction dir, and its index; when none matches it returns -1 and the
// default rule (Name "default", the default Action). It counts a hit on the
// rule it returns. It allocates nothing. The returned rule must not be
// modified.
func (s *Snapshot) Lookup(dir Direction, info *packet.Info) (idx int, r *Rule) {
	idx, r = s.Match(dir, info)
	if idx < 0 {
		s.hits[len(s.rules)].n.Add(1)
	} else {
		s.hits[idx].n.Add(1)
	}
	return idx, r
}

// Match is Lookup without counting a hit, for a packet that was counted
// before (one held while its SA was negotiated and looked up again).
func (s *Snapshot) Match(dir Direction, info *packet.Info) (idx int, r *Rule) {
	local, remote := keys(dir, info)
	// matchSide, inlined by hand: the compiler does not inline loops, and
	// this loop is the SPD's whole cost.
rules:
	for i := range s.crules {
		c := &s.crules[i]
		if len(c.local) > 0 {
			j := 0
			for j < len(c.local) && !c.local[j].match(&local) {
				j++
			}
			if j == len(c.local) {
				continue rules
			}
		}
		if len(c.remote) > 0 {
			j := 0
			for j < len(c.remote) && !c.remote[j].match(&remote) {
				j++
			}
			if j == len(c.remote) {
				continue rules
			}
		}
		return i, &s.rules[i]
	}
	return -1, &s.def
}

// Hits returns how many packets Lookup has matched to rule idx; idx -1 (or
// Len()) counts the packets that got the default action.
func (s *Snapshot) Hits(idx int) uint64 {
	if idx < 0 {
		idx = len(s.rules)
	}
	if idx > len(s.rules) {
		return 0
	}
	return s.hits[idx].n.Load()
}

// Len returns the number of rules, not counting the default.
func (s *Snapshot) Len() int { return len(s.rules) }

// Rules returns a copy of the rules in evaluation order.
func (s *Snapshot) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, r := range s.rules {
		r.Local = append(traffic.Set(nil), r.Local...)
		r.Remote = append(traffic.Set(nil), r.Remote...)
		out[i] = r
	}
	return out
}

// Default returns the action for packets no rule matches.
func (s *Snapshot) Default() Action { return s.def.Action }

// Step is one rule that Explain tried.
type Step struct {
	// Index is the rule's index, or -1 for the default.
	Index int
	// Name and Action are the rule's.
	Name   string
	Action Action
	// Matched reports whether the rule matched (only the last step can).
	Matched bool
	// Reason says why the rule matched or did not, in words.
	Reason string
}

// Explain tells which rules a packet would be tried against, in order, and
// why each matched or did not, ending with the rule Lookup would return (the
// default when none matches). It counts no hits. It is meant for
// "ipsecctl explain", not for the data path: it allocates.
func (s *Snapshot) Explain(dir Direction, info *packet.Info) []Step {
	local, remote := keys(dir, info)
	localAddr, remoteAddr := info.Src, info.Dst
	if dir == sa.Inbound {
		localAddr, remoteAddr = info.Dst, info.Src
	}
	var steps []Step
	for i, r := range s.rules {
		c := &s.crules[i]
		st := Step{Index: i, Name: r.Name, Action: r.Action}
		lok := matchSide(c.local, &local)
		rok := lok && matchSide(c.remote, &remote)
		switch {
		case !lok:
			st.Reason = "local side: " + sideMismatch(r.Local, localAddr, &local)
		case !rok:
			st.Reason = "remote side: " + sideMismatch(r.Remote, remoteAddr, &remote)
		default:
			st.Matched = true
			st.Reason = fmt.Sprintf("local %s matches %s; remote %s matches %s",
				describe(localAddr, &local), setString(r.Local), describe(remoteAddr, &remote), setString(r.Remote))
		}
		steps = append(steps, st)
		if st.Matched {
			return steps
		}
	}
	return append(steps, Step{
		Index: -1, Name: s.def.Name, Action: s.def.Action, Matched: true,
		Reason: "no rule matched; the default action applies",
	})
}

func setString(set traffic.Set) string {
	if len(set) == 0 {
		return "any"
	}
	return set.String()
}

// describe prints one side of a packet: "10.1.0.5 tcp/443".
func describe(a netip.Addr, k *key) string {
	s := a.String() + " " + traffic.ProtoName(k.proto)
	switch {
	case !k.hasPort:
		if traffic.IsICMP(k.proto) || k.proto == traffic.ProtoTCP || k.proto == traffic.ProtoUDP || k.proto == traffic.ProtoSCTP {
			s += " (ports unknown)"
		}
	case traffic.IsICMP(k.proto):
		s += fmt.Sprintf(" type %d code %d", k.port>>8, k.port&0xff)
	default:
		s += fmt.Sprintf(" port %d", k.port)
	}
	return s
}

// sideMismatch explains why no selector of set matches one side of a packet.
func sideMismatch(set traffic.Set, a netip.Addr, k *key) string {
	var why []string
	for _, sel := range set {
		c := compileSel(sel)
		switch {
		case c.match(k):
			// Cannot happen: the side did not match.
			why = append(why, sel.String()+": matches")
		case !sel.Contains(a):
			why = append(why, sel.String()+": address not in prefix")
		case sel.Proto != 0 && sel.Proto != k.proto:
			why = append(why, sel.String()+": protocol differs")
		case sel.Opaque():
			why = append(why, sel.String()+": OPAQUE matches only packets without ports")
		case !k.hasPort:
			why = append(why, sel.String()+": restricts ports but the packet's are unknown (RFC 4301, Section 7)")
		default:
			why = append(why, sel.String()+": port out of range")
		}
	}
	return describe(a, k) + " matches none of: " + strings.Join(why, "; ")
}
