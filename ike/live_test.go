package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// chanNet is the in-memory twin of the daemon's UDP sockets for managers
// that run their own goroutines: Send hands the datagram to the receiving
// manager on a new goroutine, as a socket reader would.
type chanNet struct {
	mu    sync.Mutex
	nodes map[netip.Addr]*Manager
	// cut, when set, drops every datagram (a dead peer or a broken path).
	cut  atomic.Bool
	sent atomic.Int64
}

type chanTransport struct{ n *chanNet }

func (tr chanTransport) Send(pkt []byte, from, to netip.AddrPort) error {
	tr.n.sent.Add(1)
	if tr.n.cut.Load() {
		return nil
	}
	tr.n.mu.Lock()
	m := tr.n.nodes[to.Addr()]
	tr.n.mu.Unlock()
	if m == nil {
		return errors.New("chanNet: no route")
	}
	b := bytes.Clone(pkt)
	go m.HandlePacket(b, from, to)
	return nil
}

func newLive(t *testing.T, n *chanNet, addr netip.Addr, peers ...Peer) (*Manager, *fakeInstaller) {
	inst := &fakeInstaller{}
	m := NewManager(Config{Logger: testLogger(t)}, inst, chanTransport{n})
	n.mu.Lock()
	n.nodes[addr] = m
	n.mu.Unlock()
	if err := m.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	return m, inst
}

func drain(m *Manager) []Event {
	var out []Event
	for {
		select {
		case e, ok := <-m.Events():
			if !ok {
				return out
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestLive runs two managers with their own goroutines and timers under
// testing/synctest: start action, both rekeys, DPD on a cut path, and
// shutdown.
func TestLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16-x25519")
		pa.Children[0].StartAction = StartStart
		pa.DPDDelay = 30 * time.Second
		n := &chanNet{nodes: map[netip.Addr]*Manager{}}
		b, ib := newLive(t, n, addrB, pb)
		a, ia := newLive(t, n, addrA, pa)
		synctest.Wait()
		checkKeys(t, ia, ib, 1)
		if !hasEvent(drain(a), EventChildUp) || !hasEvent(drain(b), EventChildUp) {
			t.Fatal("no child_up")
		}

		if err := a.Rekey("b", ""); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := b.Rekey("a", "net"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		checkKeys(t, ia, ib, 1)
		sa, sb := a.SAs(), b.SAs()
		if len(sa) != 1 || len(sb) != 1 || sa[0].SPIi != sb[0].SPIi || len(sa[0].Children) != 1 {
			t.Fatalf("after rekeys: %+v / %+v", sa, sb)
		}

		// Quiet for a while: DPD checks pass.
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if len(a.SAs()) != 1 {
			t.Fatal("IKE SA lost while the peer is alive")
		}

		// The path breaks: A's DPD gives up after the retransmissions.
		n.cut.Store(true)
		time.Sleep(30*time.Second + 170*time.Second)
		synctest.Wait()
		if len(a.SAs()) != 0 || len(ia.live()) != 0 {
			t.Fatalf("A still has %d IKE SAs and %d CHILD SAs", len(a.SAs()), len(ia.live()))
		}
		evs := drain(a)
		if len(evs) == 0 || evs[len(evs)-1].Kind != EventIKEDown || !errors.Is(evs[len(evs)-1].Err, ErrPeerDead) {
			t.Fatalf("events %v", evs)
		}
		a.Close()
		b.Close()
		if len(ib.live()) != 0 {
			t.Fatal("B's CHILD SAs survive Close")
		}
		if err := a.Initiate("b", "net", nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Initiate after Close: %v", err)
		}
	})
}

// TestLiveAcquireOnce checks that many acquires for one policy start one
// negotiation.
func TestLiveAcquireOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		n := &chanNet{nodes: map[netip.Addr]*Manager{}}
		b, ib := newLive(t, n, addrB, pb)
		a, ia := newLive(t, n, addrA, pa)
		trig := &Trigger{Src: mustAddr("10.1.0.1"), Dst: mustAddr("10.2.0.1"), Proto: 1}
		for range 20 {
			if err := a.Initiate("b", "net", trig); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		for range 20 {
			if err := a.Initiate("b", "net", trig); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		checkKeys(t, ia, ib, 1)
		if n, _ := ia.counts(); n != 1 {
			t.Fatalf("%d CHILD SAs installed for one policy", n)
		}
		a.Close()
		b.Close()
	})
}
