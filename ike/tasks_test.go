package ike

import (
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// startChildAndIKERekey establishes an IKE SA with a CHILD SA of proposal
// esp, and starts a CHILD SA rekey on A and an IKE SA rekey on B; both
// requests are in flight, A's first. It returns the CHILD SA as A sees it
// and the IKE SA's SPIi.
func startChildAndIKERekey(t *testing.T, esp string) (*stepPair, ChildSA, uint64) {
	t.Helper()
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", esp)
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	old := p.a.inst.live()[0]
	oldSPIi := p.a.m.SAs()[0].SPIi
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	if err := p.b.m.Rekey("a", ""); err != nil {
		t.Fatal(err)
	}
	return p, old, oldSPIi
}

// crossChildFollowupIKERekey starts a CHILD SA rekey with an additional
// key exchange on A and an IKE SA rekey on B, and steps the messages so
// that B answers A's CREATE_CHILD_SA before its own IKE SA rekey
// completes: A's IKE_FOLLOWUP_KE then runs on the old IKE SA. It returns
// the old IKE SA's SPIi, with A's IKE_FOLLOWUP_KE request the only
// datagram in flight.
func crossChildFollowupIKERekey(t *testing.T) (*stepPair, ChildSA, uint64) {
	t.Helper()
	p, old, oldSPIi := startChildAndIKERekey(t, "aes256gcm16-x25519-ke1_mlkem768")
	deliverMessage(t, p) // A's CHILD SA rekey: B answers with ADDITIONAL_KEY_EXCHANGE
	deliverMessage(t, p) // B's IKE SA rekey: A answers and moves to the new IKE SA
	deliverMessage(t, p) // B's answer: A sends IKE_FOLLOWUP_KE on the old IKE SA
	deliverMessage(t, p) // A's answer: B's IKE SA rekey completes
	ms := inFlight(t, p)
	if len(ms) != 1 {
		t.Fatalf("%d messages in flight, want only A's IKE_FOLLOWUP_KE (B's Delete of the old IKE SA must wait for it)", len(ms))
	}
	if m := ms[0]; m.Exchange != ikewire.IKE_FOLLOWUP_KE || m.IsResponse() || m.SPIi != oldSPIi {
		t.Fatalf("in flight: %v response=%v SPIi %016x, want A's IKE_FOLLOWUP_KE request on the old IKE SA %016x", m.Exchange, m.IsResponse(), m.SPIi, oldSPIi)
	}
	return p, old, oldSPIi
}

// inFlight returns the headers of the messages in flight, in order, a
// fragmented message (RFC 7383) once.
func inFlight(t *testing.T, p *stepPair) []ikewire.Header {
	var out []ikewire.Header
	for _, d := range p.net.queue {
		h := parse(t, d).Header
		if n := len(out); n == 0 || !sameMessage(out[n-1], h) {
			out = append(out, h)
		}
	}
	return out
}

// deliverMessage delivers the datagrams of the first message in flight,
// all its fragments.
func deliverMessage(t *testing.T, p *stepPair) {
	t.Helper()
	h := parse(t, p.net.queue[0]).Header
	for len(p.net.queue) > 0 && sameMessage(parse(t, p.net.queue[0]).Header, h) {
		p.net.deliver()
	}
}

// sameMessage reports whether two datagrams' headers are of one message
// (its fragments differ in length and next payload).
func sameMessage(a, b ikewire.Header) bool {
	return a.SPIi == b.SPIi && a.SPIr == b.SPIr && a.Exchange == b.Exchange && a.Flags == b.Flags && a.MessageID == b.MessageID
}

// checkOneRekeyedPair asserts one IKE SA, not the old one, and one CHILD
// SA pair with equal keys that replaced old, and that no side sends on an
// SA the other does not receive on.
func checkOneRekeyedPair(t *testing.T, p *stepPair, old ChildSA, oldSPIi uint64) {
	t.Helper()
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if nw := p.a.inst.live()[0]; nw.SPIIn == old.SPIIn {
		t.Fatal("the CHILD SA was not rekeyed")
	}
	checkDeleted(t, p.a.inst, old)
	sa, sb := p.a.m.SAs(), p.b.m.SAs()
	if len(sa) != 1 || len(sb) != 1 || sa[0].SPIi != sb[0].SPIi || sa[0].SPIi == oldSPIi {
		t.Fatalf("IKE SAs: %+v / %+v", sa, sb)
	}
	if len(p.a.m.bySPI) != 1 || len(p.b.m.bySPI) != 1 {
		t.Fatalf("IKE SPIs routed: %d and %d", len(p.a.m.bySPI), len(p.b.m.bySPI))
	}
}

// runChecked delivers everything in flight, checking after each datagram
// that each side's outbound SA is installed inbound on the other.
func runChecked(t *testing.T, p *stepPair) {
	t.Helper()
	for i := 0; len(p.net.queue) > 0; i++ {
		if i > 50 {
			t.Fatal("the peers do not stop talking")
		}
		p.net.deliver()
		if out := p.a.inst.outbound(7); out == 0 || !p.b.inst.inbound(out) {
			t.Fatalf("A sends on %08x, which B does not receive on", out)
		}
		if out := p.b.inst.outbound(9); out == 0 || !p.a.inst.inbound(out) {
			t.Fatalf("B sends on %08x, which A does not receive on", out)
		}
	}
}

// TestIKERekeyDeleteWaitsForChildFollowup: the initiator of an IKE SA rekey
// that answered a crossing CHILD SA rekey with IKE_FOLLOWUP_KE deletes the
// old IKE SA only after those exchanges, which run on it, complete (RFC
// 9370, Section 2.2.4; RFC 7296, Section 1.3.2): the CHILD SA rekey
// completes with one CREATE_CHILD_SA, no retry.
func TestIKERekeyDeleteWaitsForChildFollowup(t *testing.T) {
	p, old, oldSPIi := crossChildFollowupIKERekey(t)
	deliverMessage(t, p) // IKE_FOLLOWUP_KE: B installs the new CHILD SA, then deletes the old IKE SA
	ms := inFlight(t, p)
	if len(ms) != 2 {
		t.Fatalf("%d messages in flight, want B's answer and its Delete of the old IKE SA", len(ms))
	}
	if m := ms[0]; m.Exchange != ikewire.IKE_FOLLOWUP_KE || !m.IsResponse() {
		t.Fatalf("first in flight: %v, want the IKE_FOLLOWUP_KE answer", m.Exchange)
	}
	if m := ms[1]; m.Exchange != ikewire.INFORMATIONAL || m.IsResponse() || m.SPIi != oldSPIi {
		t.Fatalf("second in flight: %v on %016x, want B's Delete of the old IKE SA", m.Exchange, m.SPIi)
	}
	runChecked(t, p)
	checkOneRekeyedPair(t, p, old, oldSPIi)
	if na, nb := createChildRequests(t, p, addrA), createChildRequests(t, p, addrB); na != 1 || nb != 1 {
		t.Fatalf("CREATE_CHILD_SA requests: A %d, B %d, want 1 and 1", na, nb)
	}
}

// TestChildFollowupRestartsOnNewIKESA: when the peer deletes the old IKE
// SA while our CHILD SA rekey's IKE_FOLLOWUP_KE on it is unanswered (here:
// lost, and the peer gave up waiting for it), the rekey starts again on the
// new IKE SA at once (RFC 7296, Section 2.8: the CHILD SAs moved there),
// and the old CHILD SA carries the traffic until the new one is up.
func TestChildFollowupRestartsOnNewIKESA(t *testing.T) {
	p, old, oldSPIi := crossChildFollowupIKERekey(t)
	for len(p.net.queue) > 0 {
		p.net.drop() // A's IKE_FOLLOWUP_KE is lost
	}
	// B gives up waiting (followupTimeout) and deletes the old IKE SA;
	// A's clock stands still, so it does not retransmit first.
	p.clk.t = p.clk.t.Add(followupTimeout)
	p.b.m.tickAll()
	if len(p.net.queue) != 1 {
		t.Fatalf("%d datagrams in flight, want B's Delete of the old IKE SA", len(p.net.queue))
	}
	if m := parse(t, p.net.queue[0]); m.Exchange != ikewire.INFORMATIONAL || m.SPIi != oldSPIi {
		t.Fatalf("in flight: %v on %016x, want B's Delete of the old IKE SA", m.Exchange, m.SPIi)
	}
	deliverMessage(t, p) // A retires the old IKE SA and asks again on the new one
	var again bool
	for _, d := range p.net.queue {
		if m := parse(t, d); d.from.Addr() == addrA && m.Exchange == ikewire.CREATE_CHILD_SA && !m.IsResponse() && m.SPIi != oldSPIi {
			again = true
		}
	}
	if !again {
		t.Fatal("A did not ask for the CHILD SA rekey again on the new IKE SA")
	}
	runChecked(t, p)
	checkOneRekeyedPair(t, p, old, oldSPIi)
	// Nothing is left waiting: a minute later the state is the same.
	p.advance(2 * time.Minute)
	runChecked(t, p)
	checkOneRekeyedPair(t, p, old, oldSPIi)
}

// TestRequestOnOldIKESAGivesUp: a CHILD SA rekey in flight on the old IKE
// SA of a rekey, where nothing gets through any more (the peer's Delete of
// it lost as well as every retransmission), is given up with the old IKE
// SA when the retransmission schedule ends, and asked again on the new IKE
// SA: the CHILD SA is not left half-rekeyed (RFC 7296, Section 2.8).
func TestRequestOnOldIKESAGivesUp(t *testing.T) {
	p, old, oldSPIi := startChildAndIKERekey(t, "aes256gcm16-x25519")
	p.net.drop()    // A's CHILD SA rekey request on the old IKE SA
	p.net.deliver() // B's IKE SA rekey: A answers and moves to the new IKE SA
	p.net.deliver() // B's rekey completes; it deletes the old IKE SA
	// From now on nothing on the old IKE SA gets through.
	for waited := time.Duration(0); waited < 2*giveUpAfter(p.a.m); waited += time.Second {
		for len(p.net.queue) > 0 {
			if parse(t, p.net.queue[0]).SPIi == oldSPIi {
				p.net.drop()
			} else {
				p.net.deliver()
			}
		}
		p.advance(time.Second)
	}
	checkOneRekeyedPair(t, p, old, oldSPIi)
}

// giveUpRecorder is a task whose exchange the peer never answers in
// TestGiveUpDispatchesToTask; it records its giveUp.
type giveUpRecorder struct {
	dpdTask
	gaveUp []*ikeSA
}

func (r *giveUpRecorder) giveUp(s *session, x *ikeSA) {
	r.gaveUp = append(r.gaveUp, x)
	x.active = nil
}

// TestGiveUpDispatchesToTask: once the retransmissions of a request are
// exhausted, the exchange runner hands the request to its task's giveUp
// (RFC 7296, Section 2.4), which decides; a task that does not call the
// peer dead leaves the IKE SA up.
func TestGiveUpDispatchesToTask(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	r := &giveUpRecorder{}
	var sa *ikeSA
	p.a.m.mu.Lock()
	for a := range p.a.m.actors {
		a.s.queue(r)
		sa = a.s.sa
	}
	p.a.m.mu.Unlock()
	for waited := time.Duration(0); waited < 2*giveUpAfter(p.a.m); waited += time.Second {
		p.net.queue = nil // the peer hears nothing
		p.advance(time.Second)
	}
	p.a.m.mu.Lock()
	got := append([]*ikeSA(nil), r.gaveUp...)
	p.a.m.mu.Unlock()
	if len(got) != 1 || got[0] != sa {
		t.Fatalf("giveUp called %d times (on the IKE SA: %v), want once on it", len(got), len(got) == 1 && got[0] == sa)
	}
	if sas := p.a.m.SAs(); len(sas) != 1 || sas[0].State != StateEstablished {
		t.Fatalf("A's IKE SA after the task gave up: %+v", sas)
	}
}

// stepResponder is a responder task that completes on its second request.
type stepResponder struct {
	x     *ikeSA
	calls int
	drops int
}

func (r *stepResponder) on() *ikeSA          { return r.x }
func (r *stepResponder) deadline() time.Time { return time.Time{} }
func (r *stepResponder) giveUp(s *session)   { r.drop(s) }
func (r *stepResponder) drop(*session)       { r.drops++ }
func (r *stepResponder) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) ([]ikewire.Payload, func(), bool) {
	r.calls++
	return nil, nil, r.calls == 2
}

// TestResponderTaskHeld: respond hands the IKE_FOLLOWUP_KE requests on its
// IKE SA to the responder task the task manager holds, until it says it
// is done; one on another IKE SA, or with none held, gets
// STATE_NOT_FOUND (RFC 9370, Section 2.2.4).
func TestResponderTaskHeld(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	p.b.m.mu.Lock()
	defer p.b.m.mu.Unlock()
	if len(p.b.m.actors) != 1 {
		t.Fatalf("B has %d IKE SAs, want 1", len(p.b.m.actors))
	}
	for a := range p.b.m.actors {
		s := a.s
		r := &stepResponder{x: s.sa}
		s.responder = r
		m := &ikewire.Message{Header: ikewire.Header{Exchange: ikewire.IKE_FOLLOWUP_KE}}
		stateNotFound := func(pl []ikewire.Payload) bool {
			n := findNotify(pl, ikewire.NotifyStateNotFound)
			return n != nil && len(pl) == 1
		}
		if pl, _ := s.respond(&ikeSA{}, m, nil, s.remote, s.local); !stateNotFound(pl) || r.calls != 0 {
			t.Fatalf("on another IKE SA: %v, %d calls", pl, r.calls)
		}
		s.respond(s.sa, m, nil, s.remote, s.local)
		if r.calls != 1 || s.responder != r {
			t.Fatalf("after the first request: %d calls, held %v", r.calls, s.responder == r)
		}
		s.respond(s.sa, m, nil, s.remote, s.local)
		if r.calls != 2 || s.responder != nil || r.drops != 0 {
			t.Fatalf("after the last request: %d calls, held %v, %d drops", r.calls, s.responder != nil, r.drops)
		}
		if pl, _ := s.respond(s.sa, m, nil, s.remote, s.local); !stateNotFound(pl) || r.calls != 2 {
			t.Fatalf("with none held: %v, %d calls", pl, r.calls)
		}
	}
}
