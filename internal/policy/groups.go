package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/traffic"
)

// GroupRule is one prefix of a policy group (config.Group) as compiled:
// Snapshot.Groups holds them most specific first, the order of their SPD
// rules, so the first whose Prefix contains an address is the one that
// decides for it.
type GroupRule struct {
	Action config.GroupAction
	Prefix netip.Prefix
	// Conn and Child name the template that protects the group's traffic
	// and Ref its rule's bundle (zero for clear and block).
	Conn, Child string
	Ref         uint32
	// Rule is the name of the group's SPD rule for Prefix.
	Rule string
	// FallbackTimeout and FallbackTime are the group's (private-or-clear).
	FallbackTimeout, FallbackTime time.Duration
}

// GroupOf returns the group rule that decides for the peer address a: the
// most specific prefix of all groups that contains it.
func (s *Snapshot) GroupOf(a netip.Addr) (GroupRule, bool) {
	a = a.Unmap()
	for _, g := range s.Groups {
		if g.Prefix.Contains(a) {
			return g, true
		}
	}
	return GroupRule{}, false
}

// GroupOfRule returns the group rule whose SPD rule is named name.
func (s *Snapshot) GroupOfRule(name string) (GroupRule, bool) {
	for _, g := range s.Groups {
		if g.Rule == name {
			return g, true
		}
	}
	return GroupRule{}, false
}

// compileGroups appends the SPD rules of c's groups to s.Rules, most
// specific prefix first (ties in the order of config.GroupNames), and fills
// s.Groups. A group that protects gets PROTECT rules with its template's
// bundle and its template's local selectors (any, for dynamic ones); the
// engine then negotiates one IKE SA and one CHILD SA per peer.
func (s *Snapshot) compileGroups(c *config.Config, localAddrs []netip.Addr) error {
	for _, g := range c.Groups {
		for _, p := range g.Prefixes {
			gr := GroupRule{Action: g.Action, Prefix: p, Conn: g.Connection,
				FallbackTimeout: g.FallbackTimeout, FallbackTime: g.FallbackTime}
			gr.Rule = fmt.Sprintf("group %s %v", g.Action, p)
			s.Groups = append(s.Groups, gr)
		}
	}
	slices.SortStableFunc(s.Groups, func(a, b GroupRule) int { return cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()) })
	for i := range s.Groups {
		g := &s.Groups[i]
		r := spd.Rule{Name: g.Rule, Remote: traffic.Set{traffic.Host(g.Prefix.Addr())}}
		r.Remote[0].Prefix = g.Prefix
		switch g.Action {
		case config.GroupPrivate, config.GroupPrivateOrClear:
			r.Action = spd.Protect
		case config.GroupClearOrPrivate, config.GroupClear:
			r.Action = spd.Bypass
		case config.GroupBlock:
			r.Action = spd.Discard
		}
		if g.Action.Protects() {
			conn := connection(c, g.Conn)
			if conn == nil || len(conn.Children) != 1 {
				return fmt.Errorf("policy: group %s: connection %q with one child not found", g.Action, g.Conn)
			}
			ch := conn.Children[0]
			g.Child = ch.Name
			ref, ok := s.ChildRef(g.Conn, ch.Name)
			if !ok {
				return fmt.Errorf("policy: group %s: no rule for %s/%s", g.Action, g.Conn, ch.Name)
			}
			g.Ref = ref
			if r.Action == spd.Protect {
				r.Ref, r.Local, r.PerPeer = ref, ch.LocalTS, true
			}
		}
		if r.Action != spd.Bypass {
			s.addRoutes(r.Remote, r.Local, netip.Addr{}, localAddrs)
		}
		s.Rules = append(s.Rules, r)
	}
	return nil
}

func connection(c *config.Config, name string) *config.Connection {
	for i := range c.Connections {
		if c.Connections[i].Name == name {
			return &c.Connections[i]
		}
	}
	return nil
}

// Exception is a rule for one peer that the daemon puts before the group
// rules while it lasts: a private-or-clear peer that fell back to the
// clear (BYPASS), or a clear-or-private peer that initiated IKE and has an
// SA (PROTECT with the group's bundle).
type Exception struct {
	Peer   netip.Addr
	Action spd.Action
	// Ref is the bundle of a PROTECT exception.
	Ref uint32
	// Group is the group the exception overrides.
	Group config.GroupAction
}

// Name is the exception's SPD rule name.
func (e Exception) Name() string {
	if e.Action == spd.Bypass {
		return fmt.Sprintf("fallback %s %v", e.Group, e.Peer)
	}
	return fmt.Sprintf("peer %s %v", e.Group, e.Peer)
}

// WithExceptions returns the snapshot that Compile returned (s, or the
// one s was made from) with exceptions ex, one host rule each, before the
// group rules: a new Snapshot that shares everything but Rules, SPD and
// Filter with it. With no exceptions it returns the compiled snapshot.
func (s *Snapshot) WithExceptions(ex []Exception) (*Snapshot, error) {
	if s.base != nil {
		s = s.base
	}
	if len(ex) == 0 {
		return s, nil
	}
	n := *s
	n.base, n.Exceptions = s, slices.Clone(ex)
	n.Rules = slices.Clone(s.Rules[:s.groupStart])
	for _, e := range ex {
		r := spd.Rule{Name: e.Name(), Remote: traffic.Set{traffic.Host(e.Peer.Unmap())}, Action: e.Action}
		if e.Action == spd.Protect {
			// The peer's traffic now goes through the TUN device, to
			// its SA; the group's BYPASS rule had no route.
			r.Ref, r.PerPeer = e.Ref, true
			rt := Route{Dst: r.Remote[0].Prefix}
			if !slices.Contains(n.Routes, rt) {
				n.Routes = append(slices.Clip(n.Routes), rt)
			}
		}
		n.Rules = append(n.Rules, r)
	}
	n.Rules = append(n.Rules, s.Rules[s.groupStart:]...)
	snap, err := spd.Compile(n.Rules, spd.Bypass)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	n.SPD, n.Filter = snap, filterRules(n.Rules)
	return &n, nil
}
