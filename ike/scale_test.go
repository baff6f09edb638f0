package ike

import (
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
)

// manyClients returns the responder's peer for clients c<i>.example on
// 198.51.100.0/24, and client i's peer for the responder at addrB.
func manyClients(t testing.TB) (resp Peer, client func(i int) (netip.Addr, Peer)) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.RemoteAddrs = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	pb.RemoteID = ParseIdentity("*.example")
	return pb, func(i int) (netip.Addr, Peer) {
		addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		p := pa
		p.LocalAddrs = host(addr)
		p.LocalID = ParseIdentity(fmt.Sprintf("c%d.example", i))
		return addr, p
	}
}

// checkIndexes checks that the Manager's indexes by peer and identity and
// its SPI reservations hold exactly its live IKE SAs.
func checkIndexes(t *testing.T, m *Manager, wantSAs int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.actors) != wantSAs {
		t.Fatalf("%d actors, want %d", len(m.actors), wantSAs)
	}
	n := 0
	for k, set := range m.byIdent {
		for a := range set {
			n++
			if info := a.info.Load(); identKeyOf(info) != k || a.dead {
				t.Errorf("actor of %s/%s under %v", info.Peer, info.RemoteID, k)
			}
		}
	}
	p := 0
	for _, set := range m.byPeer {
		p += len(set)
	}
	if n != wantSAs || p != wantSAs {
		t.Errorf("byIdent holds %d actors and byPeer %d, want %d", n, p, wantSAs)
	}
	reserved := 0
	for s, r := range m.reserved {
		for _, spi := range r.child {
			if m.childSPIs[spi] != s {
				t.Errorf("CHILD SA SPI %08x reserved by another session", spi)
			}
		}
		reserved += len(r.child) + len(r.ike)
	}
	if reserved != len(m.childSPIs)+len(m.ikeSPIs) {
		t.Errorf("%d reserved SPIs listed, %d in the tables", reserved, len(m.childSPIs)+len(m.ikeSPIs))
	}
	if wantSAs == 0 && (len(m.reserved) != 0 || len(m.childSPIs) != 0 || len(m.ikeSPIs) != 0 || len(m.bySPI) != 0) {
		t.Errorf("left behind: %d reservations, %d CHILD SPIs, %d IKE SPIs, %d routes", len(m.reserved), len(m.childSPIs), len(m.ikeSPIs), len(m.bySPI))
	}
}

// TestManagerIndexesManyClients: a responder with one configuration for
// many clients indexes each IKE SA by its client's identity; a client
// that comes back with INITIAL_CONTACT replaces its own IKE SA and no
// other (RFC 7296, Section 2.4); when every client deletes its IKE SA,
// the indexes and SPI reservations are empty again (Manager.forget frees
// them without a walk over every SPI).
func TestManagerIndexesManyClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 12
		resp, client := manyClients(t)
		n := &chanNet{nodes: map[netip.Addr]*Manager{}}
		b, ib := newLive(t, n, addrB, resp)
		clients := make([]*Manager, k)
		for i := range k {
			addr, p := client(i)
			clients[i], _ = newLive(t, n, addr, p)
			if err := clients[i].Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := established(b); got != k {
			t.Fatalf("B has %d IKE SAs, want %d", got, k)
		}
		checkIndexes(t, b, k)
		if len(b.byIdent) != k {
			t.Fatalf("%d identities indexed, want %d", len(b.byIdent), k)
		}
		old := b.SAs()

		// Client 3 reboots: its state is gone, no Delete was sent; it
		// comes back with INITIAL_CONTACT.
		lost := clients[3]
		addr, p := client(3)
		clients[3], _ = newLive(t, n, addr, p) // takes over the address
		if err := clients[3].Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		now := b.SAs()
		if len(now) != k || len(ib.live()) != k {
			t.Fatalf("B has %d IKE SAs and %d CHILD SAs, want %d", len(now), len(ib.live()), k)
		}
		kept := map[uint64]bool{}
		for _, s := range old {
			kept[s.SPIr] = true
		}
		replaced := 0
		for _, s := range now {
			if !kept[s.SPIr] {
				replaced++
				if s.RemoteID.String() != "c3.example" {
					t.Errorf("new IKE SA of %s", s.RemoteID)
				}
			}
		}
		if replaced != 1 {
			t.Fatalf("%d IKE SAs replaced, want 1", replaced)
		}
		checkIndexes(t, b, k)

		for _, c := range clients {
			c.Close()
		}
		lost.Close() // its Delete names an IKE SA B no longer has
		synctest.Wait()
		checkIndexes(t, b, 0)
		if len(ib.live()) != 0 {
			t.Fatalf("%d CHILD SAs left", len(ib.live()))
		}
		b.Close()
	})
}
