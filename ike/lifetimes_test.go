package ike

import (
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/goipsec/goipsec/sa"
)

// TestRandTimeJitterBounded: the rekey times of many IKE and CHILD SAs
// configured alike spread over the whole rand_time window, never beyond
// it, roughly uniformly (ten buckets each within a third of the mean). It
// is also the regression test of the jitter that overflowed 64 bits and
// stayed below 4.3 s whatever the window.
func TestRandTimeJitterBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewManager(Config{Logger: testLogger(t)}, &fakeInstaller{}, stepTransport{})
		defer m.Close()
		const n = 5000
		check := func(what string, rekey, window time.Duration, at func(s *session, now time.Time) time.Time) {
			t.Helper()
			var buckets [10]int
			var lo, hi time.Duration = window, 0
			for range n {
				now := time.Now()
				s := newSession(m, now)
				j := now.Add(rekey).Sub(at(s, now))
				if j < 0 || j >= window {
					t.Fatalf("%s: jitter %v outside [0, %v)", what, j, window)
				}
				lo, hi = min(lo, j), max(hi, j)
				buckets[int(j*10/window)]++
			}
			for i, b := range buckets {
				if b < n/10*2/3 || b > n/10*4/3 {
					t.Errorf("%s: bucket %d has %d of %d: %v", what, i, b, n, buckets)
				}
			}
			if lo > window/100 || hi < window*99/100 {
				t.Errorf("%s: jitter spans only [%v, %v] of %v", what, lo, hi, window)
			}
			t.Logf("%s: jitter in [%v, %v], buckets %v", what, lo, hi, buckets)
		}
		peer := &Peer{Name: "p", RekeyTime: 4 * time.Hour, RandTime: 20 * time.Minute}
		check("ike rand_time 20m", 4*time.Hour, 20*time.Minute, func(s *session, now time.Time) time.Time {
			s.peer = peer
			s.scheduleIKERekey()
			if want := now.Add(4*time.Hour + 24*time.Minute); !s.expireAt.Equal(want) {
				t.Fatalf("IKE hard lifetime %v, want %v (rekey_time + over_time)", s.expireAt.Sub(now), want.Sub(now))
			}
			return s.rekeyAt
		})
		cfg := &ChildConfig{Name: "c", RekeyTime: time.Hour}
		check("child default rand_time", time.Hour, 6*time.Minute, func(s *session, now time.Time) time.Time {
			ch := &child{cfg: cfg}
			var c ChildSA
			s.scheduleChild(ch, &c, now)
			if c.Limits.Hard.Time != 66*time.Minute || !ch.expireAt.Equal(now.Add(66*time.Minute)) {
				t.Fatalf("child hard lifetime %v", c.Limits.Hard.Time)
			}
			return ch.rekeyAt
		})
		// No jitter when rand_time is off.
		s := newSession(m, time.Now())
		s.peer = &Peer{Name: "p", RekeyTime: time.Hour, RandTime: -1, OverTime: -1}
		s.scheduleIKERekey()
		if !s.rekeyAt.Equal(time.Now().Add(time.Hour)) || !s.expireAt.IsZero() {
			t.Errorf("without rand_time and over_time: rekey at %v, expire at %v", s.rekeyAt, s.expireAt)
		}
	})
}

// TestRandTimeNotBelowRekeyTime: SetPeers refuses a rand_time that could
// schedule a rekey at once.
func TestRandTimeNotBelowRekeyTime(t *testing.T) {
	m := NewManager(Config{Logger: testLogger(t)}, &fakeInstaller{}, stepTransport{})
	defer m.Close()
	pa, _ := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.RekeyTime, pa.RandTime = time.Hour, time.Hour
	if err := m.SetPeers([]Peer{pa}); err == nil {
		t.Error("IKE RandTime = RekeyTime accepted")
	}
	pa, _ = peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.Children[0].RekeyTime, pa.Children[0].RandTime = time.Minute, 2*time.Minute
	if err := m.SetPeers([]Peer{pa}); err == nil {
		t.Error("child RandTime > RekeyTime accepted")
	}
}

// TestOverTimeHardExpiry: an IKE SA whose rekey gets no answer is deleted
// at rekey_time + over_time, before the retransmissions give up, with
// ErrExpired; one that was rekeyed lives on.
func TestOverTimeHardExpiry(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.RekeyTime, pa.RandTime, pa.OverTime = time.Hour, -1, time.Minute
	pb.RekeyTime = -1
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	p.a.events()
	// The first rekey goes through: the hard lifetime moves with it.
	p.advance(time.Hour)
	p.net.run(10)
	if !hasEvent(p.a.events(), EventIKERekeyed) {
		t.Fatal("no IKE rekey at rekey_time")
	}
	p.advance(time.Minute + time.Second)
	if len(p.a.m.SAs()) != 1 {
		t.Fatal("the rekeyed IKE SA expired")
	}
	// The second one is lost, and so are the retransmissions.
	p.advance(time.Hour - time.Minute - time.Second)
	for range 10 {
		p.net.queue = nil
		p.advance(10 * time.Second)
	}
	if n := len(p.a.m.SAs()); n != 0 {
		t.Fatalf("A still has %d IKE SAs after rekey_time + over_time", n)
	}
	evs := p.a.events()
	if len(evs) == 0 || evs[len(evs)-1].Kind != EventIKEDown || !errors.Is(evs[len(evs)-1].Err, ErrExpired) {
		t.Fatalf("events %v", evs)
	}
	if len(p.a.inst.live()) != 0 {
		t.Fatal("CHILD SAs outlive their IKE SA")
	}
}

// TestChildLifeTimeHardExpiry: a CHILD SA that is not rekeyed (rekeying
// off) is deleted with the peer at its life_time, which the Installer also
// got as the hard time limit.
func TestChildLifeTimeHardExpiry(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.Children[0].RekeyTime, pa.Children[0].LifeTime = -1, 30*time.Minute
	pb.Children[0].RekeyTime = -1
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if l := p.a.inst.live()[0].Limits.Hard.Time; l != 30*time.Minute {
		t.Fatalf("hard time limit %v", l)
	}
	p.advance(30*time.Minute - time.Second)
	if len(p.a.inst.live()) != 1 {
		t.Fatal("deleted before life_time")
	}
	p.advance(time.Second)
	p.net.run(10)
	if len(p.a.inst.live()) != 0 || len(p.b.inst.live()) != 0 {
		t.Fatalf("after life_time: %d and %d CHILD SAs", len(p.a.inst.live()), len(p.b.inst.live()))
	}
	if !hasEvent(p.b.events(), EventChildDown) {
		t.Fatal("B saw no child_down")
	}
}

// TestByteLimitsTriggerRekey: rekey_bytes, life_bytes, rekey_packets and
// life_packets reach the Installer as soft and hard limits; the data
// plane's meter crossing the soft byte limit rekeys the CHILD SA through
// HandleExpire, and crossing a hard limit of the new one deletes it.
func TestByteLimitsTriggerRekey(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	ch := &pa.Children[0]
	ch.RekeyBytes, ch.LifeBytes, ch.RekeyPackets, ch.LifePackets = 1000, 2000, 10, 20
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	c := p.a.inst.live()[0]
	want := sa.Limits{Soft: sa.Lifetime{Bytes: 1000, Packets: 10}, Hard: sa.Lifetime{Bytes: 2000, Packets: 20, Time: 66 * time.Minute}}
	if c.Limits != want {
		t.Fatalf("limits %+v, want %+v", c.Limits, want)
	}
	var fired []sa.Event
	meter := func(c ChildSA) *sa.Meter {
		return sa.NewMeter(sa.Event{Protocol: c.Protocol, SPI: c.SPIOut, Direction: sa.Outbound}, c.Limits, p.clk.Now(), func(e sa.Event) { fired = append(fired, e) })
	}
	mt := meter(c)
	mt.Add(600)
	mt.Add(600) // 1200 bytes: the soft byte limit
	if len(fired) != 1 || fired[0].Hard || fired[0].Kind != sa.LimitBytes {
		t.Fatalf("meter events %v", fired)
	}
	p.a.events()
	p.a.m.HandleExpire(fired[0])
	p.net.run(10)
	if !hasEvent(p.a.events(), EventChildRekeyed) {
		t.Fatal("no rekey after the soft byte limit")
	}
	checkKeys(t, p.a.inst, p.b.inst, 1)
	// The hard packet limit of the new SA deletes it.
	fired = nil
	mt = meter(p.a.inst.live()[0])
	for range 20 {
		mt.Add(1)
	}
	var hard *sa.Event
	for i := range fired {
		if fired[i].Hard {
			hard = &fired[i]
		}
	}
	if hard == nil || hard.Kind != sa.LimitPackets {
		t.Fatalf("meter events %v", fired)
	}
	p.a.m.HandleExpire(*hard)
	p.net.run(10)
	if len(p.a.inst.live()) != 0 || len(p.b.inst.live()) != 0 {
		t.Fatalf("after the hard limit: %d and %d CHILD SAs", len(p.a.inst.live()), len(p.b.inst.live()))
	}
}

// liveDPD runs two live managers under synctest with A's DPD (and the
// given tweak of A's peer), brings the tunnel up, and cuts the path.
func liveDPD(t *testing.T, tweak func(pa *Peer)) (a, b *Manager, ia, ib *fakeInstaller, n *chanNet) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.Children[0].StartAction = StartStart
	pa.DPDDelay = 30 * time.Second
	tweak(&pa)
	n = &chanNet{nodes: map[netip.Addr]*Manager{}}
	b, ib = newLive(t, n, addrB, pb)
	a, ia = newLive(t, n, addrA, pa)
	synctest.Wait()
	checkKeys(t, ia, ib, 1)
	drain(a)
	drain(b)
	return a, b, ia, ib, n
}

// deadAfter is when A declares B dead after the path is cut: the DPD
// delay, then the retransmission schedule (4 s, growing by 1.8, 5
// retransmissions: about 165 s).
const deadAfter = 30*time.Second + 170*time.Second

// cutUntilDead cuts the path until A declared B dead and removed the
// CHILD SAs, and returns A's events.
func cutUntilDead(t *testing.T, a *Manager, ia *fakeInstaller, n *chanNet) []Event {
	t.Helper()
	n.cut.Store(true)
	time.Sleep(deadAfter)
	synctest.Wait()
	if len(a.SAs()) != 0 || len(ia.live()) != 0 {
		t.Fatalf("A still has %d IKE SAs, %d CHILD SAs", len(a.SAs()), len(ia.live()))
	}
	return drain(a)
}

// TestDPDActionClear: with dpd_action clear the CHILD SAs go and nothing
// is re-initiated.
func TestDPDActionClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, ia, _, n := liveDPD(t, func(pa *Peer) { pa.DPDAction = ActionClear })
		defer b.Close()
		defer a.Close()
		evs := cutUntilDead(t, a, ia, n)
		if hasEvent(evs, EventChildTrap) {
			t.Fatal("child_trap with dpd_action clear")
		}
		sent := n.sent.Load()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n.sent.Load() != sent || len(a.SAs()) != 0 {
			t.Fatal("A re-initiated with dpd_action clear")
		}
	})
}

// TestDPDActionTrap: with dpd_action trap the owner is told to re-install
// the trap of each CHILD SA that was up; nothing is re-initiated by the
// engine.
func TestDPDActionTrap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, ia, _, n := liveDPD(t, func(pa *Peer) { pa.DPDAction = ActionTrap })
		defer b.Close()
		defer a.Close()
		evs := cutUntilDead(t, a, ia, n)
		var trap *Event
		for i := range evs {
			if evs[i].Kind == EventChildTrap {
				trap = &evs[i]
			}
		}
		if trap == nil || trap.Peer != "b" || trap.Child != "net" {
			t.Fatalf("events %v", evs)
		}
	})
}

// TestDPDActionStart: with dpd_action start the engine re-initiates at
// once; when the path comes back the tunnel is up again, and B's stale
// IKE SA is replaced by INITIAL_CONTACT.
func TestDPDActionStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, ia, ib, n := liveDPD(t, func(pa *Peer) { pa.DPDAction = ActionStart })
		defer b.Close()
		defer a.Close()
		n.cut.Store(true)
		time.Sleep(deadAfter)
		synctest.Wait()
		evs := drain(a)
		if !hasEvent(evs, EventIKEDown) {
			t.Fatalf("A did not declare B dead: %v", evs)
		}
		n.cut.Store(false)
		time.Sleep(time.Minute)
		synctest.Wait()
		if len(a.SAs()) != 1 || len(b.SAs()) != 1 {
			t.Fatalf("after the path came back: %d and %d IKE SAs", len(a.SAs()), len(b.SAs()))
		}
		checkKeys(t, ia, ib, 1)
	})
}

// TestDPDTimeout: dpd_timeout declares the peer dead that long after an
// unanswered liveness check, before the retransmission schedule ends.
func TestDPDTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, _, _, n := liveDPD(t, func(pa *Peer) { pa.DPDTimeout = 10 * time.Second })
		defer b.Close()
		defer a.Close()
		n.cut.Store(true)
		start := time.Now()
		time.Sleep(30*time.Second + 9*time.Second)
		synctest.Wait()
		if len(a.SAs()) != 1 {
			t.Fatal("dead before dpd_timeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if len(a.SAs()) != 0 {
			t.Fatal("alive after dpd_delay + dpd_timeout")
		}
		evs := drain(a)
		if len(evs) == 0 || !errors.Is(evs[len(evs)-1].Err, ErrPeerDead) {
			t.Fatalf("events %v", evs)
		}
		t.Logf("declared dead %v after the cut", time.Since(start))
	})
}

// TestCloseActions: when the peer deletes the IKE SA, close_action start
// brings the tunnel up again at once, close_action trap reports
// EventChildTrap, close_action clear does neither.
func TestCloseActions(t *testing.T) {
	for _, act := range []Action{ActionClear, ActionTrap, ActionStart} {
		synctest.Test(t, func(t *testing.T) {
			a, b, ia, ib, _ := liveDPD(t, func(pa *Peer) { pa.CloseAction = act })
			defer b.Close()
			defer a.Close()
			if err := b.Terminate("a", ""); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			evs := drain(a)
			if !hasEvent(evs, EventIKEDown) {
				t.Fatalf("action %d: A saw no ike_down: %v", act, evs)
			}
			if got := hasEvent(evs, EventChildTrap); got != (act == ActionTrap) {
				t.Errorf("action %d: child_trap %v", act, got)
			}
			up := 0
			if act == ActionStart {
				up = 1
			}
			if len(a.SAs()) != up || len(b.SAs()) != up {
				t.Fatalf("action %d: %d and %d IKE SAs", act, len(a.SAs()), len(b.SAs()))
			}
			checkKeys(t, ia, ib, up)
		})
	}
}
