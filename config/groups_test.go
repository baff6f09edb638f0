package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/sa"
)

const groupsConn = `connections:
  wild:
    remote_addrs: [10.1.0.0/16]
    local: {certs: [a.pem]}
    remote: {cacerts: [ca.pem], id: "%any"}
    children:
      host: {mode: transport}
  hosts:
    remote_addrs: [10.77.0.0/24]
    local: {certs: [a.pem]}
    remote: {cacerts: [ca.pem]}
    children:
      host: {mode: transport, start_action: trap}
`

// TestRemoteAddrsRanges checks that remote_addrs takes ranges, stored as
// the prefixes that cover them exactly, and the plain spelling any.
func TestRemoteAddrsRanges(t *testing.T) {
	c, err := Parse("r.yaml", []byte(strings.Replace(groupsConn, "[10.77.0.0/24]", "[10.0.0.10-10.0.0.50, any, 10.1.0.0-10.1.0.255]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.10/31", "10.0.0.12/30", "10.0.0.16/28", "10.0.0.32/28", "10.0.0.48/31", "10.0.0.50/32", "%any", "10.1.0.0/24"}
	if got := c.Connections[1].RemoteAddrs; !slices.Equal(got, want) {
		t.Errorf("remote_addrs = %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.50-10.0.0.10", "10.0.0.1-::1", "10.0.0.1-x"} {
		_, err := Parse("r.yaml", []byte(strings.Replace(groupsConn, "[10.77.0.0/24]", "["+bad+"]", 1)))
		if err == nil {
			t.Errorf("range %s: no error", bad)
		}
	}
	ps, err := RangePrefixes("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	if err != nil || len(ps) != 1 || ps[0] != netip.MustParsePrefix("::/0") {
		t.Errorf("the whole IPv6 space = %v, %v", ps, err)
	}
}

// TestAnyUnquoted checks that an unquoted %any, which YAML refuses, gets
// an error that says to quote it.
func TestAnyUnquoted(t *testing.T) {
	_, err := Parse("a.yaml", []byte(strings.Replace(groupsConn, "[10.77.0.0/24]", "%any", 1)))
	if err == nil || !strings.Contains(err.Error(), `must be quoted: "%any"; or write any`) {
		t.Errorf("err = %v", err)
	}
}

// TestGroups checks the groups section: defaults, order, and the checks
// against connections.
func TestGroups(t *testing.T) {
	c, err := Parse("g.yaml", []byte(groupsConn+`groups:
  block: {prefixes: [10.77.0.254]}
  private-or-clear: {prefixes: [10.77.0.128/25], connection: hosts, fallback_timeout: 2s}
  private: {prefixes: [10.77.0.0/24], connection: hosts}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Groups) != 3 || c.Groups[0].Action != GroupPrivate || c.Groups[1].Action != GroupPrivateOrClear || c.Groups[2].Action != GroupBlock {
		t.Fatalf("groups = %+v", c.Groups)
	}
	if g := c.Groups[1]; g.FallbackTimeout != 2*time.Second || g.FallbackTime != DefaultFallbackTime {
		t.Errorf("private-or-clear timers = %v %v", g.FallbackTimeout, g.FallbackTime)
	}
	if c.Groups[2].Prefixes[0] != netip.MustParsePrefix("10.77.0.254/32") {
		t.Errorf("block = %v", c.Groups[2].Prefixes)
	}
	ch := c.Connections[1].Children[0]
	if ch.LocalTS != nil || ch.RemoteTS != nil {
		t.Errorf("transport child without selectors: %v %v, want dynamic (nil)", ch.LocalTS, ch.RemoteTS)
	}
	for _, tc := range []struct{ groups, want string }{
		{"  private: {prefixes: [10.77.0.0/24]}\n", "groups.private.connection: required"},
		{"  private: {prefixes: [10.77.0.0/24], connection: nope}\n", `no connection "nope"`},
		{"  private: {connection: hosts}\n", "groups.private.prefixes: required"},
		{"  clear: {prefixes: [10.1.0.0/16], connection: hosts}\n", "unknown key"},
		{"  private: {prefixes: [10.1.0.0/16], connection: hosts}\n  block: {prefixes: [10.1.0.0/16]}\n", "already in group private"},
		{"  secret: {prefixes: [10.1.0.0/16]}\n", "unknown key"},
		{"  private: {prefixes: [10.1.0.0/16], connection: wild}\n", "leave remote.id out"},
		{"  private-or-clear: {prefixes: [10.1.0.0/16], connection: hosts, fallback_time: 0s}\n", "must be positive"},
	} {
		_, err := Parse("g.yaml", []byte(groupsConn+"groups:\n"+tc.groups))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.groups, err, tc.want)
		}
	}
	// Dynamic selectors with remote_addrs %any and no group would protect
	// everything.
	_, err = Parse("g.yaml", []byte(strings.Replace(groupsConn, "[10.77.0.0/24]", `["%any"]`, 1)))
	if err == nil || !strings.Contains(err.Error(), "dynamic selectors would protect all traffic") {
		t.Errorf("dynamic with %%any: err = %v", err)
	}
	// Outside a group's connection, tunnel mode needs its selectors.
	_, err = Parse("g.yaml", []byte(strings.Replace(groupsConn, "mode: transport, ", "mode: tunnel, ", 1)))
	if err == nil || !strings.Contains(err.Error(), "local_ts: required") {
		t.Errorf("tunnel without selectors: err = %v", err)
	}
	// A group's connection may have a tunnel between the two hosts
	// (dynamic selectors), for peers that only do tunnel mode, such as
	// strongSwan with kernel-libipsec.
	c, err = Parse("g.yaml", []byte(strings.Replace(groupsConn, "mode: transport, ", "mode: tunnel, ", 1)+
		"groups:\n  private: {prefixes: [10.77.0.0/24], connection: hosts}\n"))
	if err != nil {
		t.Errorf("tunnel without selectors in a group's connection: %v", err)
	} else if ch := c.Connections[1].Children[0]; ch.Mode != sa.Tunnel || ch.LocalTS != nil || ch.RemoteTS != nil {
		t.Errorf("tunnel child of a group: mode %v, selectors %v %v; want tunnel, dynamic (nil)", ch.Mode, ch.LocalTS, ch.RemoteTS)
	}
	// Without mode and selectors, a child is in transport mode between
	// the two hosts.
	c, err = Parse("g.yaml", []byte(strings.Replace(groupsConn, "mode: transport, ", "", 1)))
	if err != nil {
		t.Errorf("a child without mode and selectors: %v", err)
	} else if m := c.Connections[1].Children[0].Mode; m != sa.Transport {
		t.Errorf("a child without mode and selectors is in %v mode, want transport", m)
	}
}
