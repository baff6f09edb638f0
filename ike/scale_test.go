package ike

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
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

// checkIndexes checks that the Manager's indexes by peer, identity, remote
// host and CHILD SA SPI and its SPI reservations hold exactly its live IKE
// SAs, as a walk over them finds them.
func checkIndexes(t *testing.T, m *Manager, wantSAs int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.actors) != wantSAs {
		t.Fatalf("%d actors, want %d", len(m.actors), wantSAs)
	}
	n := 0
	for k, set := range m.byIdent {
		for _, a := range set {
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
	// byRemote and byChild agree with a walk over the IKE SAs.
	wantRemote, wantChild := map[remoteKey]int{}, map[childKey]int{}
	for a := range m.actors {
		info := a.info.Load()
		if info == nil || a.dead {
			continue
		}
		wantRemote[remoteKey{info.Peer, info.Remote.Addr().Unmap()}]++
		for _, k := range childKeysOf(nil, info) {
			wantChild[k]++
		}
	}
	for k, l := range m.byRemote {
		for _, a := range l {
			if info := a.info.Load(); info.Peer != k.peer || info.Remote.Addr().Unmap() != k.remote {
				t.Errorf("actor of %s at %v under %v", info.Peer, info.Remote, k)
			}
		}
		if len(l) != wantRemote[k] {
			t.Errorf("byRemote[%v] holds %d actors, a walk finds %d", k, len(l), wantRemote[k])
		}
	}
	for k, l := range m.byChild {
		if len(l) != wantChild[k] {
			t.Errorf("byChild[%v] holds %d actors, a walk finds %d", k, len(l), wantChild[k])
		}
	}
	if len(m.byRemote) != len(wantRemote) || len(m.byChild) != len(wantChild) {
		t.Errorf("byRemote has %d keys and byChild %d, a walk finds %d and %d", len(m.byRemote), len(m.byChild), len(wantRemote), len(wantChild))
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

// gateNet is chanNet with a gate per sender: a node whose gate is closed
// sends nothing (a client that vanished without a Delete).
type gateNet struct {
	chanNet
	closed sync.Map // netip.Addr -> true
}

type gateTransport struct {
	n    *gateNet
	addr netip.Addr
}

func (tr gateTransport) Send(pkt []byte, from, to netip.AddrPort) error {
	if _, gone := tr.n.closed.Load(tr.addr); gone {
		return nil
	}
	return chanTransport{&tr.n.chanNet}.Send(pkt, from, to)
}

// responderFootprint establishes k IKE SAs, each with one CHILD SA, from
// k clients at a responder, makes the clients vanish (no Delete), and
// returns the responder's heap bytes, stack bytes and goroutines per idle
// established IKE SA. It runs in real time, not in a synctest bubble,
// whose stopped timers keep what they reference until time moves.
func responderFootprint(t *testing.T, k int) (heap, stack, goroutines float64) {
	resp, client := manyClients(t)
	resp.RemoteAddrs = []netip.Prefix{netip.MustParsePrefix("198.51.0.0/16")}
	n := &gateNet{chanNet: chanNet{nodes: map[netip.Addr]*Manager{}}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := NewManager(Config{Logger: quiet, CookieThreshold: -1, MaxHalfOpenPerSource: -1}, nopInstaller{}, gateTransport{n, addrB})
	n.nodes[addrB] = b
	if err := b.SetPeers([]Peer{resp}); err != nil {
		t.Fatal(err)
	}
	before := footprint()
	const batch = 100
	for lo := 0; lo < k; lo += batch {
		var cs []*Manager
		var addrs []netip.Addr
		for i := lo; i < min(lo+batch, k); i++ {
			_, p := client(i % 250)
			addr := netip.AddrFrom4([4]byte{198, 51, byte(1 + i/250), byte(1 + i%250)})
			p.LocalAddrs = host(addr)
			p.LocalID = ParseIdentity(fmt.Sprintf("c%d.example", i))
			c := NewManager(Config{Logger: quiet}, nopInstaller{}, gateTransport{n, addr})
			n.mu.Lock()
			n.nodes[addr] = c
			n.mu.Unlock()
			if err := c.SetPeers([]Peer{p}); err != nil {
				t.Fatal(err)
			}
			if err := c.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			cs, addrs = append(cs, c), append(addrs, addr)
		}
		waitEstablished(t, b, min(lo+batch, k))
		for i, c := range cs {
			n.closed.Store(addrs[i], true)
			c.Close()
			n.mu.Lock()
			delete(n.nodes, addrs[i])
			n.mu.Unlock()
		}
	}
	if got := established(b); got != k {
		t.Fatalf("responder has %d IKE SAs, want %d", got, k)
	}
	drain(b) // so that the events do not count
	after := footprint()
	if f := os.Getenv("IKE_FOOTPRINT_PROFILE"); f != "" {
		// go tool pprof -sample_index=inuse_space FILE: where the heap of
		// the idle IKE SAs goes.
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		pprof.WriteHeapProfile(w)
		w.Close()
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(k) }
	heap, stack, goroutines = per(after.heap, before.heap), per(after.stack, before.stack), per(after.goroutines, before.goroutines)
	b.Close()
	return heap, stack, goroutines
}

// waitEstablished waits until m has want established IKE SAs.
func waitEstablished(t *testing.T, m *Manager, want int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); established(m) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d IKE SAs established, want %d", established(m), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type usage struct{ heap, stack, goroutines uint64 }

func footprint() usage {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{ms.HeapAlloc, ms.StackInuse, uint64(runtime.NumGoroutine())}
}

type nopInstaller struct{}

func (nopInstaller) InstallSA(ChildSA) error        { return nil }
func (nopInstaller) ActivateOutbound(ChildSA) error { return nil }
func (nopInstaller) DeleteSA(ChildSA) error         { return nil }

// TestResponderFootprint states what an idle established IKE SA (with one
// CHILD SA, PSK, x25519) costs a responder: heap, goroutine stacks and
// goroutines. IKE_FOOTPRINT_SAS sets the number of IKE SAs (default 200).
func TestResponderFootprint(t *testing.T) {
	k := 200
	if s := os.Getenv("IKE_FOOTPRINT_SAS"); s != "" {
		var err error
		if k, err = strconv.Atoi(s); err != nil || k <= 0 {
			t.Fatalf("IKE_FOOTPRINT_SAS=%q", s)
		}
	}
	heap, stack, g := responderFootprint(t, k)
	t.Logf("%d idle IKE SAs: %.0f heap bytes, %.0f stack bytes, %.2f goroutines per IKE SA", k, heap, stack, g)
	// An idle actor runs no goroutine (it had one, with a 64-slot
	// channel of about 11 KiB). It keeps about 5,000 bytes of heap (at
	// 1,000 IKE SAs: 4,956), no SK cipher, no handshake state, SK_p or
	// nonces, and its last response at the datagram's length
	// (docs/performance.md, "IKE at scale"); the bound leaves room for
	// the garbage collector's accounting, not for another buffer.
	if g >= 0.1 {
		t.Errorf("%.2f goroutines per idle IKE SA, want none", g)
	}
	if heap > 6<<10 {
		t.Errorf("%.0f heap bytes per idle IKE SA, want at most 6 KiB", heap)
	}
}
