package e2e

import (
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
)

// TestRebootInitialContact: A's daemon is killed (SIGKILL: no Delete is
// sent) and started again; its new IKE SA carries INITIAL_CONTACT, so B
// (unique: no, the default) replaces the old IKE SA and CHILD SA instead of
// keeping both (RFC 7296, Section 2.4).
func TestRebootInitialContact(t *testing.T) {
	requireBins(t)
	a, b, _ := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "start",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
	cb := ca
	cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
	b.startDaemon(t, ikeConfig(b, a, cb))
	a.startDaemon(t, ikeConfig(a, b, ca))
	a.waitEstablished(t, 15*time.Second)
	old, _ := b.waitEstablished(t, 5*time.Second)

	a.proc.Cmd.Process.Kill()
	a.proc.Stop()
	a.startDaemon(t, ikeConfig(a, b, ca))
	ia, _ := a.waitEstablished(t, 15*time.Second)
	var last any
	if !nstest.WaitFor(10*time.Second, func() bool {
		s := b.trySAs()
		last = s
		return s != nil && len(s.IKESAs) == 1 && len(s.ChildSAs) == 1 && s.IKESAs[0].SPIi == ia.SPIi
	}) {
		t.Fatalf("B did not replace the old IKE SA %v: %+v", old.SPIi, last)
	}
	mustPing(t, a.ns, a.inner, b.inner, 3)
	a.checkAlive(t)
	b.checkAlive(t)
}
