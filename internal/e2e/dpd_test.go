package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
)

// trapLogLine is what ipsecd logs when a dpd_action or close_action trap
// re-installed a child's trap (internal/daemon, ike.EventChildTrap).
const trapLogLine = "trap re-installed after the peer's death or close"

// TestDPDActions checks the dead-peer item of issue 8 in namespaces: two
// goipsec daemons, B brings the tunnel up, A checks B's liveness every 2 s
// (dpd_delay, RFC 7296, Section 2.4) and gives up after two
// retransmissions 1 s apart (growing by 1.8). B's link goes down; once A
// declared B dead and took its action, the link comes back. With
// dpd_action start A re-initiates at once and the tunnel comes back on its
// own; with clear A's SAs are gone and stay gone; with trap A's child
// (start_action none) is trapped, and the next ping from A brings the
// tunnel back. The case "start encap" runs IKE and ESP in UDP on port 4500
// (encap: yes), where the engine alone strips and adds the non-ESP marker
// (RFC 3948, Section 2.2).
//
// Each case logs one line, "DPD action=... dead=... action_taken=...
// traffic_after_restore=...": the time from the cut until A declared B
// dead (its IKE SA gone), until A took the action (start: a new IKE SA
// being initiated; trap: the trap re-installed; clear: the SAs removed,
// the same moment), and from the link's return until a ping from A got
// its first reply (sent every 0.1 s; "none" for clear, where no traffic
// may flow).
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

	// The cut. The link comes back once A declared B dead and acted.
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
		return s != nil && !hasIKESA(s, ia.SPIi)
	}) {
		t.Fatal("A did not declare B dead within 30s")
	}
	dead := time.Since(cut)
	var acted time.Duration
	switch action {
	case "start":
		// A new IKE SA, initiated while the link is still down.
		if !nstest.WaitFor(10*time.Second, func() bool {
			s := a.trySAs()
			return s != nil && len(s.IKESAs) > 0 && !hasIKESA(s, ia.SPIi)
		}) {
			t.Fatal("dpd_action start: A did not initiate again within 10s of declaring B dead")
		}
	case "trap":
		if !nstest.WaitFor(10*time.Second, func() bool { return strings.Contains(a.proc.Output.String(), trapLogLine) }) {
			t.Fatalf("dpd_action trap: A did not log %q within 10s", trapLogLine)
		}
	}
	acted = time.Since(cut)
	if action != "start" {
		// Neither clear nor trap initiates without traffic.
		time.Sleep(time.Second)
		if s := a.sas(t); len(s.IKESAs) != 0 || len(s.ChildSAs) != 0 {
			t.Fatalf("dpd_action %s: A has SAs without traffic: %+v", action, s)
		}
	}
	restore()
	back := time.Now()

	traffic := "none"
	switch action {
	case "start", "trap":
		// For trap the first echo request is the acquire that starts IKE.
		if !firstReply(a.ns, a, b, 30*time.Second) {
			t.Fatalf("dpd_action %s: no ping reply within 30s of the link's return", action)
		}
		traffic = time.Since(back).Round(10 * time.Millisecond).String()
		ia2, _ := a.waitEstablished(t, 10*time.Second)
		if action == "trap" && !ia2.Initiator {
			t.Error("dpd_action trap: the new IKE SA was not initiated by A")
		}
		mustPing(t, a.ns, a.inner, b.inner, 2)
	case "clear":
		if firstReply(a.ns, a, b, 3*time.Second) {
			t.Error("dpd_action clear: a ping from A got through after the link came back")
		}
		time.Sleep(2 * time.Second)
		if s := a.sas(t); len(s.IKESAs) != 0 || len(s.ChildSAs) != 0 {
			t.Fatalf("dpd_action clear: A has SAs again: %+v", s)
		}
	}
	t.Logf("DPD action=%s encap=%v dead=%v action_taken=%v traffic_after_restore=%s (dpd_delay 2s, retransmit_timeout 1s, retransmit_tries 2)",
		action, encap, dead.Round(10*time.Millisecond), acted.Round(10*time.Millisecond), traffic)
	a.checkAlive(t)
	b.checkAlive(t)
}

// TestCloseActions is the close_action half of the dead-peer item of
// issue 8: B deletes the IKE SA ("ipsecctl down", an INFORMATIONAL
// Delete, RFC 7296, Section 1.4.1) and A, whose child has start_action
// none, does what its close_action says: start initiates again at once,
// trap re-installs the trap so that the next ping brings the tunnel back,
// clear leaves the tunnel down. Each case logs "CLOSE action=...
// action_taken=... traffic=...": the time from B's down until A took
// the action (start: a new IKE SA; trap: the trap re-installed; clear:
// the SAs removed), and from the first echo request of a ping from A
// (every 0.1 s; for trap after a second's check that nothing initiated
// without traffic) until its first reply.
func TestCloseActions(t *testing.T) {
	requireBins(t)
	for _, action := range []string{"start", "trap", "clear"} {
		t.Run(action, func(t *testing.T) {
			a, b, _ := ikeTopology(t, false, "tunnel")
			psk := newPSK()
			ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "none",
				localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk, connKeys: "close_action: " + action}
			cb := ca
			cb.start, cb.localID, cb.remoteID, cb.connKeys = "start", ca.remoteID, ca.localID, ""
			a.startDaemon(t, ikeConfig(a, b, ca))
			b.startDaemon(t, ikeConfig(b, a, cb))
			ia, _ := a.waitEstablished(t, 15*time.Second)
			mustPing(t, a.ns, a.inner, b.inner, 2)

			closed := time.Now()
			if _, err := b.ctl(context.Background(), "down", connName); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool {
				s := a.trySAs()
				return s != nil && !hasIKESA(s, ia.SPIi)
			}) {
				t.Fatal("A kept the IKE SA that B deleted")
			}
			switch action {
			case "start":
				if !nstest.WaitFor(10*time.Second, func() bool {
					s := a.trySAs()
					return s != nil && len(s.IKESAs) > 0
				}) {
					t.Fatal("close_action start: A did not initiate again within 10s")
				}
			case "trap":
				if !nstest.WaitFor(10*time.Second, func() bool { return strings.Contains(a.proc.Output.String(), trapLogLine) }) {
					t.Fatalf("close_action trap: A did not log %q within 10s", trapLogLine)
				}
			}
			acted := time.Since(closed)
			if action != "start" {
				time.Sleep(time.Second)
				if s := a.sas(t); len(s.IKESAs) != 0 {
					t.Fatalf("close_action %s: A initiated without traffic: %+v", action, s)
				}
			}
			traffic := "none"
			if action == "clear" {
				if firstReply(a.ns, a, b, 3*time.Second) {
					t.Error("close_action clear: a ping from A got through after B closed")
				}
			} else {
				ping0 := time.Now()
				if !firstReply(a.ns, a, b, 15*time.Second) {
					t.Fatalf("close_action %s: no ping reply within 15s", action)
				}
				traffic = time.Since(ping0).Round(10 * time.Millisecond).String()
				if ia2, _ := a.waitEstablished(t, 10*time.Second); !ia2.Initiator {
					t.Errorf("close_action %s: the new IKE SA was not initiated by A", action)
				}
			}
			t.Logf("CLOSE action=%s action_taken=%v traffic=%s", action, acted.Round(10*time.Millisecond), traffic)
			a.checkAlive(t)
			b.checkAlive(t)
		})
	}
}

// hasIKESA reports whether s lists the IKE SA with initiator SPI spi.
func hasIKESA(s *ctlapi.SAs, spi ctlapi.IKESPI) bool {
	for _, x := range s.IKESAs {
		if x.SPIi == spi {
			return true
		}
	}
	return false
}

// firstReply pings from a's inner address to b's every 0.1 s until the
// first reply or until timeout, and reports whether one came (ping -c 1
// with a deadline waits for one reply).
func firstReply(ns *nstest.NS, a, b *host, timeout time.Duration) bool {
	secs := int((timeout + time.Second - 1) / time.Second)
	_, err := ns.Run("ping", "-n", "-q", "-c", "1", "-i", "0.1", "-w", strconv.Itoa(secs), "-I", a.inner.String(), b.inner.String())
	return err == nil
}
