package e2e

import (
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
)

// TestReauthNoLoss checks reauth_time in namespaces: A reauthenticates
// every 8 s (no jitter) while 300 echo requests, 50 ms apart, cross the
// tunnel. Each reauthentication is a new IKE SA (new SPIs) with a new
// CHILD SA, made before the old one is deleted, so no echo request is
// lost. The loss is logged.
func TestReauthNoLoss(t *testing.T) {
	requireBins(t)
	a, b, _ := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "start",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk, connKeys: "reauth_time: 8s\nrand_time: 0"}
	cb := ca
	cb.start, cb.localID, cb.remoteID, cb.connKeys = "none", ca.remoteID, ca.localID, ""
	b.startDaemon(t, ikeConfig(b, a, cb))
	a.startDaemon(t, ikeConfig(a, b, ca))
	first, _ := a.waitEstablished(t, 15*time.Second)
	start := time.Now()
	n, out := ping(t, a.ns, a.inner, b.inner, 300, "0.05")
	took := time.Since(start)
	last, _ := a.waitEstablished(t, 5*time.Second)
	if last.SPIi == first.SPIi {
		t.Fatalf("no reauthentication during %v", took)
	}
	if !nstest.WaitFor(5*time.Second, func() bool {
		s := b.trySAs()
		return s != nil && len(s.IKESAs) == 1 && len(s.ChildSAs) == 1
	}) {
		t.Errorf("B keeps old SAs: %+v", b.trySAs())
	}
	t.Logf("reauth_time 8s: %d of 300 echo replies in %v", n, took.Round(10*time.Millisecond))
	if n != 300 {
		t.Errorf("%d echo requests lost across reauthentications\n%s", 300-n, out)
	}
	a.checkAlive(t)
	b.checkAlive(t)
}
