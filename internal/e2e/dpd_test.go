package e2e

import (
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
)

// TestDPDActions checks item 2 of issue 8 in namespaces: two goipsec
// daemons, B brings the tunnel up, A checks B's liveness every 2 s and
// gives up after two retransmissions 1 s apart (growing by 1.8). B's link
// goes down; once A declared B dead it comes back. With dpd_action start
// A brings the tunnel back on its own; with clear A's SAs are gone and stay
// gone; with trap A's child (start_action none) is trapped, and the next
// ping from A brings the tunnel back. The times are logged. The case
// "start encap" runs IKE and ESP in UDP on port 4500 (encap: yes), where
// the engine alone strips and adds the non-ESP marker (RFC 3948, Section
// 2.2).
func TestDPDActions(t *testing.T) {
	requireBins(t)
	for _, tc := range []struct {
		action string
		encap  bool
	}{{"start", false}, {"clear", false}, {"trap", false}, {"start", true}} {
		name := tc.action
		if tc.encap {
			name += "_encap"
		}
		t.Run(name, func(t *testing.T) { runDPDCase(t, tc.action, tc.encap) })
	}
}

func runDPDCase(t *testing.T, action string, encap bool) {
	a, b, _ := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "none",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk,
		daemonIKE: "{retransmit_timeout: 1s, retransmit_tries: 2}",
		connKeys:  "dpd_delay: 2s\ndpd_action: " + action}
	cb := ca
	cb.start, cb.localID, cb.remoteID, cb.daemonIKE, cb.connKeys = "start", ca.remoteID, ca.localID, "", ""
	if encap {
		ca.connKeys += "\nencap: yes"
		cb.connKeys = "encap: yes"
	}
	a.startDaemon(t, ikeConfig(a, b, ca))
	b.startDaemon(t, ikeConfig(b, a, cb))
	ia, ca1 := a.waitEstablished(t, 15*time.Second)
	if encap && (!ia.Encap || ia.LocalAddr.Port() != 4500 || ca1.Encap != "udp") {
		t.Fatalf("encap yes: IKE SA encap %v on %v, CHILD SA encap %s", ia.Encap, ia.LocalAddr, ca1.Encap)
	}
	mustPing(t, a.ns, a.inner, b.inner, 2)

	// The cut. The link comes back once A declared B dead.
	b.ns.MustRun("ip", "link", "set", "eth0", "down")
	restored := false
	restore := func() {
		if !restored {
			b.ns.MustRun("ip", "link", "set", "eth0", "up")
			restored = true
		}
	}
	t.Cleanup(restore)
	cut := time.Now()
	if !nstest.WaitFor(30*time.Second, func() bool {
		s := a.trySAs()
		if s == nil {
			return false
		}
		for _, x := range s.IKESAs {
			if x.SPIi == ia.SPIi {
				return false
			}
		}
		return true
	}) {
		t.Fatal("A did not declare B dead within 30s")
	}
	dead := time.Since(cut)
	restore()
	back := time.Now()

	switch action {
	case "start":
		a.waitEstablished(t, 30*time.Second)
		t.Logf("dpd_action start: B declared dead %v after the cut, tunnel up again %v after the link came back",
			dead.Round(10*time.Millisecond), time.Since(back).Round(10*time.Millisecond))
		mustPing(t, a.ns, a.inner, b.inner, 2)
	case "clear":
		time.Sleep(5 * time.Second)
		if s := a.sas(t); len(s.IKESAs) != 0 || len(s.ChildSAs) != 0 {
			t.Fatalf("dpd_action clear: A has SAs again: %+v", s)
		}
		t.Logf("dpd_action clear: B declared dead %v after the cut; no SA 5 s after the link came back", dead.Round(10*time.Millisecond))
	case "trap":
		time.Sleep(time.Second)
		if s := a.sas(t); len(s.IKESAs) != 0 {
			t.Fatalf("dpd_action trap: A initiated without traffic: %+v", s)
		}
		ping0 := time.Now()
		// The first echo request is held while IKE runs.
		mustPing(t, a.ns, a.inner, b.inner, 3)
		ia2, _ := a.waitEstablished(t, 10*time.Second)
		if !ia2.Initiator {
			t.Error("dpd_action trap: the new IKE SA was not initiated by A")
		}
		t.Logf("dpd_action trap: B declared dead %v after the cut; the first ping brought the tunnel back, 3 replies in %v",
			dead.Round(10*time.Millisecond), time.Since(ping0).Round(10*time.Millisecond))
	}
	a.checkAlive(t)
	b.checkAlive(t)
}
