package main

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/ctlserver/ctltest"
)

// TestPeers checks "ipsecctl peers": one line per on-demand peer with its
// group and state, the end of a fallback, and the API's JSON with --json.
func TestPeers(t *testing.T) {
	f := ctltest.NewFake()
	f.PeersResult = ctlapi.Peers{Peers: []ctlapi.Peer{
		{Addr: netip.MustParseAddr("10.77.0.2"), Connection: "hosts", Group: "private", State: ctlapi.PeerEstablished,
			RemoteID: "10.77.0.2", Initiator: true, Children: 1, Since: ctltest.T0.Add(-2 * time.Minute)},
		{Addr: netip.MustParseAddr("10.77.0.4"), Connection: "hosts", Group: "private-or-clear", State: ctlapi.PeerClear,
			Since: ctltest.T0.Add(-time.Minute), Until: ctltest.T0.Add(4 * time.Minute)},
	}}
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "peers")
	if code != 0 || errOut != "" {
		t.Fatalf("peers: exit %d, stderr %q", code, errOut)
	}
	t.Logf("peers:\n%s", out)
	contains(t, "peers", out, "PEER", "10.77.0.2", "private ", "established", "2m ago",
		"10.77.0.4", "private-or-clear", "clear", "in 4m")
	code, out, _ = ipsecctl(t, sock, "peers", "--json")
	var p ctlapi.Peers
	if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil || !reflect.DeepEqual(p, f.PeersResult) {
		t.Errorf("peers --json: exit %d, %v:\n%s", code, err, out)
	}
}

// TestExplainGroup checks that explain names the group that decided and
// the state of a private-or-clear fallback.
func TestExplainGroup(t *testing.T) {
	f := ctltest.NewFake()
	f.ExplainResult.Group, f.ExplainResult.GroupPrefix = "private-or-clear", "10.77.0.4/32"
	f.ExplainResult.Fallback = &ctlapi.Fallback{Active: true, Until: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "explain", "10.77.0.1", "10.77.0.4")
	if code != 0 || errOut != "" {
		t.Fatalf("explain: exit %d, stderr %q", code, errOut)
	}
	contains(t, "explain", out, "group: private-or-clear (prefix 10.77.0.4/32); fallback to the clear in force until 2026-01-02T03:04:05Z\n")
}
