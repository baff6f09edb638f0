package dataplane

import (
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// TestAcquirePerPeer checks that a rule whose bundle holds one SA per peer
// (spd.Rule.PerPeer) sends an Acquire per destination, not once for the
// rule, and that an SA for one peer takes only that peer's staged packets;
// a rule without the flag still sends one Acquire.
func TestAcquirePerPeer(t *testing.T) {
	nw := conntest.NewNetwork(4)
	d, err := New(Config{TUN: tuntest.New(1500, 1, 1), UDP: nw.UDP(netip.MustParseAddrPort("192.0.2.1:4500"), 1, 1), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src := netip.MustParseAddr("192.0.2.1")
	b, c := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	acquires := func() []netip.Addr {
		var out []netip.Addr
		for {
			select {
			case ev := <-d.Events():
				if ev.Kind == EventAcquire {
					out = append(out, ev.Packet.Dst)
				}
			default:
				return out
			}
		}
	}
	perPeer := &spd.Rule{Name: "hosts", Action: spd.Protect, Ref: 3, PerPeer: true}
	one := &spd.Rule{Name: "site", Action: spd.Protect, Ref: 4}
	for _, dst := range []netip.Addr{b, c, b} {
		d.stagePacket(perPeer, []byte("p"), &packet.Info{Src: src, Dst: dst})
		d.stagePacket(one, []byte("s"), &packet.Info{Src: src, Dst: dst})
	}
	got := acquires()
	if len(got) != 3 || got[0] != b || got[1] != b || got[2] != c { // per-peer B, the other rule (B), per-peer C
		t.Errorf("acquires for %v, want B and C for the per-peer rule, then B once for the other", got)
	}
	d.flushStaged(&sad.OutboundSA{Ref: 3, RemoteTS: traffic.Set{traffic.Host(b)}})
	d.stageMu.Lock()
	_, leftB := d.staged[stageKey{3, b}]
	_, leftC := d.staged[stageKey{3, c}]
	d.stageMu.Unlock()
	if leftB || !leftC {
		t.Errorf("after B's SA: B's packets staged %v (want false), C's %v (want true)", leftB, leftC)
	}
}
