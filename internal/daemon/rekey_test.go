package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/ctlapi"
)

// TestRekeyBeforeEstablishedIsAnError is the regression test of issue 8's
// second daemon bug: Rekey called right after Initiate, while the IKE SA
// is still connecting, returned nil and did nothing. The peer is not there
// yet, so the IKE SA cannot get past IKE_SA_INIT; rekeying it or its child
// must fail with a conflict that says why. Once the peer is up and the SA
// established, the same rekeys run.
func TestRekeyBeforeEstablishedIsAnError(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	ca := ikeConfig(t, "a", "none", "correct horse battery staple")
	ca.Daemon.IKE.RetransmitTimeout, ca.Daemon.IKE.RetransmitTries = 200*time.Millisecond, 10
	a := newIKEPeer(t, nw, inw, "a", ca)
	if err := a.d.ike.Initiate("net", "lan", nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"net", "net/lan"} {
		err := a.d.Rekey(t.Context(), name)
		if !errors.Is(err, ctlapi.ErrConflict) || !strings.Contains(err.Error(), "established") {
			t.Errorf("Rekey(%s) while connecting: %v, want a conflict saying the IKE SA is not established", name, err)
		}
	}
	if err := a.d.Rekey(t.Context(), "nosuch"); err == nil {
		t.Error("Rekey of an unknown connection: nil error")
	}

	// b comes up; a's retransmission of IKE_SA_INIT reaches it.
	newIKEPeer(t, nw, inw, "b", ikeConfig(t, "b", "none", "correct horse battery staple"))
	waitFor(t, "the IKE and CHILD SA up", func() bool {
		sas := a.d.ike.SAs()
		return len(sas) == 1 && len(sas[0].Children) == 1
	})
	if err := a.d.Rekey(t.Context(), "net/lan"); err != nil {
		t.Fatalf("Rekey(net/lan) once established: %v", err)
	}
	waitFor(t, "the CHILD SA rekeyed", func() bool { return a.d.ike.Stats().ChildRekeys == 1 })
	if err := a.d.Rekey(t.Context(), "net"); err != nil {
		t.Fatalf("Rekey(net) once established: %v", err)
	}
	waitFor(t, "the IKE SA rekeyed", func() bool { return a.d.ike.Stats().IKERekeys == 1 })
}
