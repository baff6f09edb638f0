package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// TestDPDActionTrapRearmsAcquire: a's child has start_action none, so an
// acquire does not start IKE; b brings the tunnel up. When b stops
// answering, a declares it dead after dpd_delay and the retransmissions;
// with dpd_action trap the next packet to b's network starts IKE from a,
// with dpd_action clear it does not.
func TestDPDActionTrapRearmsAcquire(t *testing.T) {
	for _, act := range []config.Action{config.ActionTrap, config.ActionClear} {
		t.Run(act.String(), func(t *testing.T) {
			nw, inw := conntest.NewNetwork(1024), &ikeNet{}
			ca := ikeConfig(t, "a", "none", "correct horse battery staple")
			ca.Connections[0].DPDDelay, ca.Connections[0].DPDAction = time.Second, act
			ca.Daemon.IKE.RetransmitTimeout, ca.Daemon.IKE.RetransmitTries = 100*time.Millisecond, 1
			a := newIKEPeer(t, nw, inw, "a", ca)
			b := newIKEPeer(t, nw, inw, "b", ikeConfig(t, "b", "start", "correct horse battery staple"))
			up := func() bool {
				sas := a.d.ike.SAs()
				return len(sas) == 1 && len(sas[0].Children) == 1
			}
			waitFor(t, "the tunnel up", up)

			// b's IKE socket goes deaf and mute; a's DPD gives up.
			bAddr := netip.MustParseAddr("192.0.2.2")
			inw.mu.Lock()
			bSock := inw.socks[bAddr]
			delete(inw.socks, bAddr)
			inw.mu.Unlock()
			cut := time.Now()
			waitFor(t, "a declares b dead", func() bool { return len(a.d.ike.SAs()) == 0 })
			t.Logf("b declared dead %v after the cut", time.Since(cut).Round(time.Millisecond))
			inw.mu.Lock()
			inw.socks[bAddr] = bSock
			inw.mu.Unlock()
			if act == config.ActionTrap {
				// The trap may be re-armed a moment after the SAs went.
				waitFor(t, "the trap re-armed", func() bool {
					a.d.mu.Lock()
					defer a.d.mu.Unlock()
					return a.d.traps["net/lan"]
				})
			}

			a.tun.In <- tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:1000"), netip.MustParseAddrPort("10.2.0.1:2000"), []byte("after"))
			if act == config.ActionClear {
				time.Sleep(time.Second)
				if len(a.d.ike.SAs()) != 0 {
					t.Fatal("an acquire started IKE for a start_action none child with dpd_action clear")
				}
				return
			}
			waitFor(t, "the tunnel up again from a", up)
			if sas := a.d.ike.SAs(); !sas[0].Initiator {
				t.Error("a is not the initiator of the new IKE SA")
			}
			recv(t, b.tun)
		})
	}
}
