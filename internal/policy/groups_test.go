package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

const groupsText = `
connections:
  site:
    remote_addrs: [192.0.2.9]
    local: {auth: psk, id: a}
    remote: {auth: psk, id: b}
    children:
      net: {local_ts: [10.1.0.0/16], remote_ts: [10.2.0.0/16]}
  hosts:
    remote_addrs: [10.77.0.0/16]
    local: {auth: psk}
    remote: {auth: psk}
    children:
      host: {mode: transport}
groups:
  private: {prefixes: [10.77.0.0/24], connection: hosts}
  private-or-clear: {prefixes: [10.77.0.128/25, 10.77.1.0/24], connection: hosts, fallback_timeout: 2s, fallback_time: 1m}
  clear-or-private: {prefixes: [10.0.0.0/8], connection: hosts}
  clear: {prefixes: [10.77.0.1/32]}
  block: {prefixes: [10.77.0.254/32]}
secrets:
  ike:
    - {ids: [a, b], secret: "correct horse battery staple"}
`

func lookup(t *testing.T, s *Snapshot, dir sa.Direction, src, dst string) *spd.Rule {
	t.Helper()
	info := packet.Info{Version: 4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6}
	_, r := s.SPD.Match(dir, &info)
	return r
}

// compileGroupsText compiles the configuration text for host 10.77.0.2 and
// returns the snapshot and the bundle of the template hosts/host.
func compileGroupsText(t *testing.T, text string) (*Snapshot, uint32) {
	t.Helper()
	c, err := config.Parse("g.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, []netip.Addr{netip.MustParseAddr("10.77.0.2")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := s.ChildRef("hosts", "host")
	return s, ref
}

// TestCompileGroups checks that groups compile into SPD rules after the
// connections, most specific prefix first, with the template's bundle on
// the rules that protect, and firewall rules and routes that agree.
func TestCompileGroups(t *testing.T) {
	s, ref := compileGroupsText(t, groupsText)
	for _, tc := range []struct {
		dst    string
		rule   string
		action spd.Action
		ref    uint32
	}{
		{"10.2.0.5", "site/net", spd.Protect, 0},
		{"10.77.0.5", "group private 10.77.0.0/24", spd.Protect, ref},
		{"10.77.0.200", "group private-or-clear 10.77.0.128/25", spd.Protect, ref},
		{"10.77.1.7", "group private-or-clear 10.77.1.0/24", spd.Protect, ref},
		{"10.77.0.1", "group clear 10.77.0.1/32", spd.Bypass, 0},
		{"10.77.0.254", "group block 10.77.0.254/32", spd.Discard, 0},
		{"10.9.9.9", "group clear-or-private 10.0.0.0/8", spd.Bypass, 0},
		{"192.0.2.77", "default", spd.Bypass, 0},
	} {
		src := "10.77.0.2"
		if tc.rule == "site/net" {
			src = "10.1.0.1"
		}
		r := lookup(t, s, sa.Outbound, src, tc.dst)
		if r.Name != tc.rule || r.Action != tc.action || (tc.ref != 0 && r.Ref != tc.ref) {
			t.Errorf("to %s: rule %q %v ref %d, want %q %v ref %d", tc.dst, r.Name, r.Action, r.Ref, tc.rule, tc.action, tc.ref)
		}
		if r.Action == spd.Protect && tc.ref != 0 && !r.PerPeer {
			t.Errorf("to %s: group rule is not per peer", tc.dst)
		}
	}
	if g, ok := s.GroupOf(netip.MustParseAddr("10.77.0.130")); !ok || g.Action != config.GroupPrivateOrClear || g.FallbackTimeout.Seconds() != 2 || g.Conn != "hosts" || g.Child != "host" {
		t.Errorf("GroupOf(10.77.0.130) = %+v, %v", g, ok)
	}
	// The template has no rule of its own: the groups are its rules.
	for _, r := range s.Rules {
		if r.Name == "hosts/host" {
			t.Errorf("the template connection has a rule of its own: %+v", r)
		}
	}
	// Inbound cleartext from a private prefix is dropped by the host
	// firewall; from the clear /32 inside it, accepted first.
	var privateDrop, clearAccept = -1, -1
	for i, f := range s.Filter {
		if len(f.Remote) == 1 && f.Remote[0].Prefix == netip.MustParsePrefix("10.77.0.0/24") && f.Action == FilterDrop {
			privateDrop = i
		}
		if len(f.Remote) == 1 && f.Remote[0].Prefix == netip.MustParsePrefix("10.77.0.1/32") && f.Action == FilterAccept {
			clearAccept = i
		}
	}
	if privateDrop < 0 || clearAccept < 0 || clearAccept > privateDrop {
		t.Errorf("filter: private drop at %d, clear accept at %d: %+v", privateDrop, clearAccept, s.Filter)
	}
	routed := map[netip.Prefix]bool{}
	for _, r := range s.Routes {
		routed[r.Dst] = true
	}
	if !routed[netip.MustParsePrefix("10.77.0.0/24")] || !routed[netip.MustParsePrefix("10.77.0.254/32")] || routed[netip.MustParsePrefix("10.0.0.0/8")] {
		t.Errorf("routes: %+v", s.Routes)
	}
}

// TestCompileGroupTunnel checks a group whose connection has a tunnel
// between the two hosts (mode tunnel, dynamic selectors), as peers that
// only do tunnel mode need (strongSwan with kernel-libipsec): its rules
// are per peer with the template's bundle, the engine's child is in tunnel
// mode with dynamic selectors, and the PAD lets each peer claim its own
// address only (RFC 4301, Section 4.4.3.2), as in transport mode.
func TestCompileGroupTunnel(t *testing.T) {
	s, ref := compileGroupsText(t, strings.Replace(groupsText, "host: {mode: transport}", "host: {mode: tunnel}", 1))
	if r := lookup(t, s, sa.Outbound, "10.77.0.2", "10.77.0.5"); r.Action != spd.Protect || r.Ref != ref || !r.PerPeer {
		t.Errorf("to 10.77.0.5: rule %q %v ref %d per peer %v, want the group's, per peer", r.Name, r.Action, r.Ref, r.PerPeer)
	}
	found := false
	for _, p := range s.Peers {
		if p.Name != "hosts" {
			continue
		}
		found = true
		if ch := p.Children[0]; ch.Mode != sa.Tunnel || len(ch.LocalTS) != 0 || len(ch.RemoteTS) != 0 {
			t.Errorf("engine's child: %v mode, selectors %v %v; want tunnel, dynamic", ch.Mode, ch.LocalTS, ch.RemoteTS)
		}
	}
	if !found {
		t.Errorf("no engine peer for connection hosts: %+v", s.Peers)
	}
	peer := netip.MustParseAddr("10.77.0.5")
	got, err := s.PAD.Authorize("hosts", ike.AddrIdentity(peer), peer, "host", traffic.MustParseSet("10.77.0.0/24"))
	if err != nil || !got.Equal(traffic.MustParseSet("10.77.0.5/32")) {
		t.Errorf("a tunnel peer claiming the group's prefix gets %v, %v; want its own address", got, err)
	}
	if got, err := s.PAD.Authorize("hosts", ike.AddrIdentity(peer), peer, "host", traffic.MustParseSet("10.77.0.6/32")); err == nil {
		t.Errorf("a tunnel peer may claim another host: %v", got)
	}
}

// TestWithExceptions checks the per-peer rules of the fallback cache and of
// clear-or-private peers: they override the group, in the SPD and the
// firewall alike, and go away with the next call.
func TestWithExceptions(t *testing.T) {
	c, err := config.Parse("g.yaml", []byte(groupsText))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := s.ChildRef("hosts", "host")
	d, p := netip.MustParseAddr("10.77.1.9"), netip.MustParseAddr("10.9.0.5")
	e, err := s.WithExceptions([]Exception{
		{Peer: d, Action: spd.Bypass, Group: config.GroupPrivateOrClear},
		{Peer: p, Action: spd.Protect, Ref: ref, Group: config.GroupClearOrPrivate},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := lookup(t, e, sa.Outbound, "10.77.0.2", "10.77.1.9"); r.Action != spd.Bypass || r.Name != "fallback private-or-clear 10.77.1.9" {
		t.Errorf("fallback peer: %q %v", r.Name, r.Action)
	}
	if r := lookup(t, e, sa.Inbound, "10.77.0.2", "10.9.0.5"); r.Action != spd.Protect || r.Ref != ref {
		t.Errorf("clear-or-private peer with an SA: %q %v", r.Name, r.Action)
	}
	if r := lookup(t, e, sa.Outbound, "10.77.0.2", "10.77.1.10"); r.Action != spd.Protect {
		t.Errorf("another private-or-clear peer: %q %v", r.Name, r.Action)
	}
	if r := lookup(t, e, sa.Outbound, "10.1.0.1", "10.2.0.1"); r.Name != "site/net" {
		t.Errorf("connection rule: %q", r.Name)
	}
	found := false
	for _, rt := range e.Routes {
		found = found || rt.Dst == netip.PrefixFrom(p, 32)
	}
	if !found {
		t.Errorf("no route for the protected clear-or-private peer: %v", e.Routes)
	}
	back, err := e.WithExceptions(nil)
	if err != nil || back != s {
		t.Errorf("WithExceptions(nil) on a derived snapshot = %p, %v; want the compiled %p", back, err, s)
	}
	if r := lookup(t, back, sa.Outbound, "10.77.0.2", "10.77.1.9"); r.Action != spd.Protect {
		t.Errorf("after the fallback expired: %q %v", r.Name, r.Action)
	}
}
