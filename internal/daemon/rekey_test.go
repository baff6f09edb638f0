package daemon

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ike"
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

// sourceUDP is a NAT-T socket twin that records the source address asked
// for by each WriteFrom (conn.UDPConn sends from it).
type sourceUDP struct {
	*conntest.UDP
	mu    sync.Mutex
	froms []netip.AddrPort
}

func (u *sourceUDP) WriteFrom(b []byte, from, to netip.AddrPort) error {
	u.mu.Lock()
	u.froms = append(u.froms, from)
	u.mu.Unlock()
	return u.UDP.Write([][]byte{b}, to)
}

// TestIKEOverNATTSendsFromLocalAddrs is the daemon half of the regression
// test of issue 8's first daemon bug (the socket half is conn's
// TestWriteFromSource, the namespace one e2e's TestIKEFromLocalAddrs):
// with encap yes, IKE moves to port 4500 after IKE_SA_INIT (RFC 7296,
// Section 2.23), and every message the initiator sends there must go out
// through WriteFrom with the connection's local_addrs (192.0.2.1:4500),
// not through Write, which leaves the source to the routing table. Here
// the routing table (IKEConfig.LocalAddr) prefers another address,
// 192.0.2.99, as it does on a host whose local_addrs is a secondary
// address: the answers that reach the NAT-T socket, which does not say
// which address they reached, must not move the IKE SA there.
func TestIKEOverNATTSendsFromLocalAddrs(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	ca, cb := ikeConfig(t, "a", "start", "correct horse battery staple"), ikeConfig(t, "b", "none", "correct horse battery staple")
	ca.Connections[0].Encap, cb.Connections[0].Encap = true, true
	local, preferred := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.99")
	var rec *sourceUDP
	newIKEPeer(t, nw, inw, "b", cb)
	a, _ := startTweaked(t, nw, local, ca, inw.listen(local), func(o *Options) {
		rec = &sourceUDP{UDP: o.UDP.(*conntest.UDP)}
		o.UDP = rec
		o.IKEConfig.LocalAddr = func(netip.Addr) (netip.Addr, error) { return preferred, nil }
	})
	waitFor(t, "the IKE and CHILD SA up", func() bool {
		sas := a.d.ike.SAs()
		return len(sas) == 1 && sas[0].State == ike.StateEstablished && len(sas[0].Children) == 1
	})
	if s := a.d.ike.SAs()[0]; s.Local != netip.AddrPortFrom(local, conn.NATTPort) {
		t.Errorf("IKE SA on %v, want %v:4500", s.Local, local)
	}
	if err := a.d.Rekey(t.Context(), "net/lan"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the CHILD SA rekeyed", func() bool { return a.d.ike.Stats().ChildRekeys == 1 })
	if s := a.d.ike.SAs()[0]; s.Local != netip.AddrPortFrom(local, conn.NATTPort) || s.Children[len(s.Children)-1].Local.Addr() != local {
		t.Errorf("after the rekey: IKE SA on %v, CHILD SA from %v; want %v", s.Local, s.Children[len(s.Children)-1].Local, local)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.froms) < 2 {
		t.Fatalf("%d IKE messages sent through WriteFrom, want IKE_AUTH and CREATE_CHILD_SA at least", len(rec.froms))
	}
	for _, f := range rec.froms {
		if f != netip.AddrPortFrom(local, conn.NATTPort) {
			t.Errorf("IKE sent from %v, want %v:4500", f, local)
		}
	}
}
