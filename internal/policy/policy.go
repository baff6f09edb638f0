// Package policy is the policy agent's compiler: it turns a parsed
// configuration into the desired state of the data plane, an SPD (RFC 4301,
// Section 4.4.1), the statically keyed SAs to install, the routes that
// bring protected and discarded traffic to the TUN device, the IKE peers
// (credentials included) and the PAD (RFC 4301, Section 4.4.3) that says
// which selectors each peer may claim. The daemon applies a
// Snapshot; comparing two snapshots tells what a reload changes.
package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// Snapshot is the compiled desired state. It is immutable once returned.
type Snapshot struct {
	// Rules are the SPD rules in evaluation order: the policies section
	// first (BYPASS and DISCARD rules, like strongSwan's passthrough and
	// drop policies, take precedence over IPsec policies), then one
	// PROTECT rule per manual SA, then one per connection child.
	Rules []spd.Rule
	// SPD is Rules compiled, with BYPASS as the default: the TUN device
	// receives only the traffic that Routes send to it.
	SPD *spd.Snapshot
	// Manual are the manual SAs with the Ref of their PROTECT rule.
	Manual []Manual
	// Children are the connection children with the Ref of their PROTECT
	// rule, in configuration order.
	Children []Child
	// Routes are the destinations to route into the TUN device.
	Routes []Route
	// Filter are the SPD rules, in order, as the host firewall applies
	// them to cleartext packets that do not pass through the TUN device,
	// inbound, outbound and forwarded (see FilterRule); nil when no rule
	// protects or discards anything.
	Filter []FilterRule
	// Peers are the connections as the IKE engine's peer configurations,
	// each child's ChildConfig.Ref the Ref of its PROTECT rule.
	Peers []ike.Peer
	// PAD is the Peer Authorization Database of the connections.
	PAD *PAD
	// Groups are the prefixes of the policy groups, most specific first
	// (see GroupOf), whose rules end Rules.
	Groups []GroupRule
	// Exceptions are the per-peer rules WithExceptions added.
	Exceptions []Exception

	refs       *refs     // the Refs by name, for the next Compile
	groupStart int       // the index in Rules of the first group rule
	base       *Snapshot // the snapshot WithExceptions started from
}

// FilterAction is what the host firewall does with the cleartext packets a
// FilterRule matches. The zero value is FilterDrop, so that a forgotten
// action fails closed.
type FilterAction uint8

// Filter actions.
const (
	FilterDrop   FilterAction = iota // a PROTECT or DISCARD rule
	FilterAccept                     // a BYPASS rule
)

// FilterRule is an SPD rule applied by the host firewall to cleartext packets
// that neither arrive from nor go into the TUN device, in both directions:
// inbound (input and forward chains), a packet whose source matches Remote
// and whose destination matches Local; outbound (output and forward chains),
// one whose source matches Local and whose destination matches Remote. RFC
// 4301, Sections 5.1 and 5.2: a packet that is not IPsec-protected and that
// the SPD says to PROTECT is discarded, like one it says to DISCARD; BYPASS
// lets it through. Empty sets mean any. See osnet.Filter for the chains.
type FilterRule struct {
	Action        FilterAction
	Remote, Local traffic.Set
}

// Child names the PROTECT rule of a connection's child.
type Child struct {
	Conn, Child string
	Ref         uint32
	Start       config.StartAction
	// Group is set for the child of a group's connection, whose rules are
	// the group's.
	Group bool
}

// ChildByRef returns the child whose rule has Ref ref.
func (s *Snapshot) ChildByRef(ref uint32) (Child, bool) {
	for _, c := range s.Children {
		if c.Ref == ref {
			return c, true
		}
	}
	return Child{}, false
}

// ChildRef returns the Ref of child of connection conn.
func (s *Snapshot) ChildRef(conn, child string) (uint32, bool) {
	for _, c := range s.Children {
		if c.Conn == conn && c.Child == child {
			return c.Ref, true
		}
	}
	return 0, false
}

// dynamicTS returns the SPD selectors of a child with dynamic selectors:
// the connection's local and remote addresses (empty local_addrs: any).
func dynamicTS(conn config.Connection) (local, remote traffic.Set, err error) {
	lp, err := prefixes(conn.LocalAddrs)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: connection %s: local_addrs: %w", conn.Name, err)
	}
	rp, err := prefixes(conn.RemoteAddrs)
	if err != nil || len(rp) == 0 {
		return nil, nil, fmt.Errorf("policy: connection %s: dynamic selectors need remote_addrs (%v)", conn.Name, err)
	}
	set := func(ps []netip.Prefix) traffic.Set {
		var out traffic.Set
		for _, p := range ps {
			sel := traffic.Host(p.Addr())
			sel.Prefix = p
			out = append(out, sel)
		}
		return out
	}
	return set(lp), set(rp), nil
}

// firstHost returns the first of addrs that is a single IP address.
func firstHost(addrs []string) netip.Addr {
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			return ip
		}
		if p, err := netip.ParsePrefix(a); err == nil && p.IsSingleIP() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// Manual is one statically keyed SA pair and the SPD bundle it serves.
type Manual struct {
	config.ManualSA
	// Ref is the spd.Rule.Ref of the SA's PROTECT rule.
	Ref uint32
}

// Route sends traffic for Dst into the TUN device, with Src as the preferred
// source address when it is valid.
type Route struct {
	Dst netip.Prefix
	Src netip.Addr
}

// Compile builds the desired state for c. localAddrs, if not nil, are the
// host's addresses; they pick the source address of routes into the TUN
// (the address inside a tunnel's local selectors that the host owns). prev,
// if not nil, is the snapshot in force: every manual SA and connection child
// that it names keeps its Ref (see refs), so that a reload that adds,
// removes or reorders rules leaves the SAs of the others with their rule.
func Compile(c *config.Config, localAddrs []netip.Addr, prev *Snapshot) (*Snapshot, error) {
	s := &Snapshot{refs: newRefs(prev)}
	for _, p := range c.Policies {
		action := spd.Bypass
		if p.Action == config.PolicyDiscard {
			action = spd.Discard
			s.addRoutes(p.RemoteTS, p.LocalTS, netip.Addr{}, localAddrs)
		}
		s.Rules = append(s.Rules, spd.Rule{Name: p.Name, Local: p.LocalTS, Remote: p.RemoteTS, Action: action})
	}
	for _, m := range c.ManualSAs {
		ref, err := s.refs.manual(prev, m.Name)
		if err != nil {
			return nil, err
		}
		s.Manual = append(s.Manual, Manual{ManualSA: m, Ref: ref})
		s.Rules = append(s.Rules, spd.Rule{Name: m.Name, Local: m.LocalTS, Remote: m.RemoteTS, Action: spd.Protect, Ref: ref})
		src := netip.Addr{}
		if m.Mode == sa.Transport {
			src = m.LocalAddr
		}
		s.addRoutes(m.RemoteTS, m.LocalTS, src, localAddrs)
	}
	for _, conn := range c.Connections {
		template := c.GroupConnection(conn.Name)
		for _, ch := range conn.Children {
			// Every child gets its PROTECT rule and routes, whatever its
			// start action: traffic that the configuration says must be
			// protected never leaves in the clear. Without an SA it is
			// staged and, for trap children, starts IKE; for the others it
			// is dropped until "ipsecctl up" or the peer brings the child up.
			name := conn.Name + "/" + ch.Name
			ref, err := s.refs.child(prev, conn.Name, ch.Name)
			if err != nil {
				return nil, err
			}
			start := ch.StartAction
			if template {
				// The groups' rules carry its Ref, prefix by prefix;
				// a packet of a private group starts IKE as a trap.
				s.Children = append(s.Children, Child{Conn: conn.Name, Child: ch.Name, Ref: ref, Start: config.StartTrap, Group: true})
				continue
			}
			r := spd.Rule{Name: name, Local: ch.LocalTS, Remote: ch.RemoteTS, Action: spd.Protect, Ref: ref}
			if ch.LocalTS == nil && ch.RemoteTS == nil {
				// Dynamic selectors (transport mode): the policy covers
				// the connection's addresses, one SA per peer.
				var err error
				if r.Local, r.Remote, err = dynamicTS(conn); err != nil {
					return nil, err
				}
				r.PerPeer = true
			}
			s.Rules = append(s.Rules, r)
			s.Children = append(s.Children, Child{Conn: conn.Name, Child: ch.Name, Ref: ref, Start: start})
			src := netip.Addr{}
			if ch.Mode == sa.Transport {
				src = firstHost(conn.LocalAddrs)
			}
			s.addRoutes(r.Remote, r.Local, src, localAddrs)
		}
	}
	s.groupStart = len(s.Rules)
	if err := s.compileGroups(c, localAddrs); err != nil {
		return nil, err
	}
	peers, err := ikePeers(c, func(conn, child string) uint32 { r, _ := s.ChildRef(conn, child); return r })
	if err != nil {
		return nil, err
	}
	s.Peers, s.PAD = peers, compilePAD(peers)
	snap, err := spd.Compile(s.Rules, spd.Bypass)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	s.SPD = snap
	s.Filter = filterRules(s.Rules)
	return s, nil
}

// filterRules returns rules as firewall rules, up to the last PROTECT or
// DISCARD rule: BYPASS rules after it change nothing, since what no rule
// matches is let through (the SPD's default is BYPASS).
func filterRules(rules []spd.Rule) []FilterRule {
	last := -1
	for i, r := range rules {
		if r.Action != spd.Bypass {
			last = i
		}
	}
	var out []FilterRule
	for _, r := range rules[:last+1] {
		a := FilterDrop
		if r.Action == spd.Bypass {
			a = FilterAccept
		}
		out = append(out, FilterRule{Action: a, Remote: slices.Clone(r.Remote), Local: slices.Clone(r.Local)})
	}
	return out
}

// addRoutes adds a route into the TUN for every remote prefix. The source is
// src when valid, else the first host address inside the local selectors.
func (s *Snapshot) addRoutes(remote, local traffic.Set, src netip.Addr, localAddrs []netip.Addr) {
	for _, r := range remote {
		p := r.Prefix.Masked()
		rsrc := src
		if !rsrc.IsValid() || rsrc.Is4() != p.Addr().Is4() {
			rsrc = pickSource(local, localAddrs, p.Addr().Is4())
		}
		rt := Route{Dst: p, Src: rsrc}
		if !slices.Contains(s.Routes, rt) {
			s.Routes = append(s.Routes, rt)
		}
	}
}

func pickSource(local traffic.Set, addrs []netip.Addr, v4 bool) netip.Addr {
	for _, a := range addrs {
		if a.Is4() != v4 || a.IsLoopback() && !insideAny(local, a) {
			continue
		}
		if insideAny(local, a) {
			return a
		}
	}
	return netip.Addr{}
}

func insideAny(set traffic.Set, a netip.Addr) bool {
	for _, sel := range set {
		if sel.Prefix.Contains(a) && sel.Prefix.Bits() > 0 {
			return true
		}
	}
	return false
}

// ManualByName returns the manual SA named name.
func (s *Snapshot) ManualByName(name string) (Manual, bool) {
	for _, m := range s.Manual {
		if m.Name == name {
			return m, true
		}
	}
	return Manual{}, false
}

// Equal reports whether two manual SAs have the same definition, keys
// included, so that a reload can keep an unchanged SA (and its replay window
// and counters) running.
func (m Manual) Equal(o Manual) bool {
	a, b := m.ManualSA, o.ManualSA
	return m.Ref == o.Ref && a.Name == b.Name && a.Protocol == b.Protocol && a.Mode == b.Mode &&
		a.LocalAddr == b.LocalAddr && a.RemoteAddr == b.RemoteAddr && a.UDPEncap == b.UDPEncap &&
		a.SPIOut == b.SPIOut && a.SPIIn == b.SPIIn && a.Suite == b.Suite &&
		a.KeyOut.Equal(b.KeyOut) && a.KeyIn.Equal(b.KeyIn) && a.ESN == b.ESN &&
		a.ReplayWindow == b.ReplayWindow && slices.Equal(a.LocalTS, b.LocalTS) &&
		slices.Equal(a.RemoteTS, b.RemoteTS) && a.Limits == b.Limits
}
