package ike

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// The collisions of RFC 7296, Sections 2.8.1 and 2.25, simulated under
// testing/synctest: both peers in one process on the stepped harness, the
// clock virtual. Each collision starts one request on each side; the two
// requests and their two responses are delivered in every order the
// network allows (a response after its request), and in each order with
// each of the four messages lost once (retransmission recovers). At every
// step, the outbound SA each side sends on must be installed inbound on
// the other: traffic would never meet an unknown SPI.

// seqRand is a deterministic randomness source, so that the nonces, and
// with them the winner of each collision, are the same on every run.
type seqRand struct{ r *rand.ChaCha8 }

func newSeqRand(seed uint64) *seqRand {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return &seqRand{rand.NewChaCha8(s)}
}

func (r *seqRand) Read(b []byte) (int, error) { return r.r.Read(b) }

// countingHandler counts log records whose message contains a word.
type countingHandler struct {
	slog.Handler
	won, lost *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "collision won"):
		h.won.Add(1)
	case strings.Contains(r.Message, "collision lost"):
		h.lost.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

// token names one of the four crossing messages.
type token uint8

const (
	reqA  token = iota // A's request
	respA              // B's response to it
	reqB               // B's request
	respB              // A's response to it
)

func (k token) String() string { return [...]string{"reqA", "respA", "reqB", "respB"}[k] }

// interleavings returns every order of the four messages in which each
// response follows its request: 4!/(2!2!) = 6.
func interleavings() [][]token {
	var out [][]token
	var rec func(cur []token, used [4]bool)
	rec = func(cur []token, used [4]bool) {
		if len(cur) == 4 {
			out = append(out, append([]token(nil), cur...))
			return
		}
		for k := token(0); k < 4; k++ {
			if used[k] || (k == respA && !used[reqA]) || (k == respB && !used[reqB]) {
				continue
			}
			used[k] = true
			rec(append(cur, k), used)
			used[k] = false
		}
	}
	rec(nil, [4]bool{})
	return out
}

// action is what one side starts.
type action uint8

const (
	rekeyChild action = iota + 1
	deleteChild
	rekeyIKE
)

func (k action) String() string {
	return [...]string{"", "child-rekey", "child-delete", "ike-rekey"}[k]
}

// start makes nd (whose peer configuration is peer) send k's request.
func (k action) start(t *testing.T, nd *node, peer string) {
	var err error
	switch k {
	case rekeyChild:
		err = nd.m.Rekey(peer, "net")
	case deleteChild:
		err = nd.m.Terminate(peer, "net")
	case rekeyIKE:
		err = nd.m.Rekey(peer, "")
	}
	if err != nil {
		t.Fatal(err)
	}
}

// requests is how many CREATE_CHILD_SA requests k takes.
func (k action) requests() int {
	if k == deleteChild {
		return 0
	}
	return 1
}

// collision is one row of the table: what A and B start at once.
type collision struct {
	a, b action
}

func (c collision) name() string { return c.a.String() + "/" + c.b.String() }

// deletes says that one side deletes the CHILD SA: its Delete stops the
// traffic on the old SA, which the traffic check then ignores.
func (c collision) deletes() bool { return c.a == deleteChild || c.b == deleteChild }

// check asserts the RFC's outcome once the network is quiet; lossless
// says that no message was lost.
func (c collision) check(t *testing.T, p *stepPair, r *crossRun, lossless bool) {
	t.Helper()
	if c.deletes() {
		if la, lb := p.a.inst.live(), p.b.inst.live(); len(la)+len(lb) != 0 {
			t.Fatalf("CHILD SAs left: %d on A, %d on B", len(la), len(lb))
		}
		for _, nd := range []*node{p.a, p.b} {
			if sas := nd.m.SAs(); len(sas) != 1 || len(sas[0].Children) != 0 {
				t.Fatalf("the engine lists %+v", sas)
			}
		}
	} else if c.a == rekeyChild || c.b == rekeyChild {
		checkRekeyed(t, p, r)
	} else {
		// Only the IKE SA was rekeyed: the CHILD SA goes on.
		checkKeys(t, p.a.inst, p.b.inst, 1)
		if p.a.inst.live()[0].SPIIn != r.old[0].SPIIn {
			t.Fatal("the CHILD SA changed with the IKE SA rekey")
		}
	}
	if c.a == rekeyIKE || c.b == rekeyIKE {
		sa, sb := p.a.m.SAs(), p.b.m.SAs()
		if len(sa) != 1 || len(sb) != 1 || sa[0].SPIi != sb[0].SPIi || sa[0].SPIr != sb[0].SPIr || sa[0].SPIi == r.ike.SPIi {
			t.Fatalf("IKE SAs after the rekey: %+v / %+v", sa, sb)
		}
		if len(p.a.m.bySPI) != 1 || len(p.b.m.bySPI) != 1 {
			t.Fatalf("IKE SPIs routed: %d and %d", len(p.a.m.bySPI), len(p.b.m.bySPI))
		}
	}
	ga, gb := checkRequests(t, p, lossless, c.a.requests(), c.b.requests())
	// A CHILD SA rekey with IKE_FOLLOWUP_KE that reaches the peer once
	// the peer's IKE SA rekey completed is refused on the old IKE SA,
	// which goes away, and asked again on the new one at once (RFC 9370,
	// Section 2.2.4; RFC 7296, Section 2.25); nothing else is retried.
	retried := ga > c.a.requests() || gb > c.b.requests()
	if lossless && retried {
		if !r.followupKE || (c.a == rekeyIKE) == (c.b == rekeyIKE) || retriedOnOld(t, p, r.ike.SPIi) {
			t.Fatalf("CREATE_CHILD_SA requests: A %d, B %d, want %d and %d (a retry after TEMPORARY_FAILURE?)", ga, gb, c.a.requests(), c.b.requests())
		}
		r.retriedOnNew = true
	}
}

// retriedOnOld reports whether a node sent more than one CREATE_CHILD_SA
// request on the IKE SA with SPIi old.
func retriedOnOld(t *testing.T, p *stepPair, old uint64) bool {
	for _, from := range []netip.Addr{addrA, addrB} {
		seen := map[uint32]bool{}
		for _, d := range p.net.sent {
			m := parse(t, d)
			if d.from.Addr() == from && !m.IsResponse() && m.Exchange == ikewire.CREATE_CHILD_SA && m.SPIi == old {
				seen[m.MessageID] = true
			}
		}
		if len(seen) > 1 {
			return true
		}
	}
	return false
}

// collisionTable lists the collisions of RFC 7296, Sections 2.8.1, 2.8.2
// and 2.25: simultaneous CHILD SA rekey, rekey against delete (both ways),
// delete against delete, a CHILD SA rekey against an IKE SA rekey (both
// ways), and simultaneous IKE SA rekey.
func collisionTable() []collision {
	return []collision{
		{rekeyChild, rekeyChild},
		{rekeyChild, deleteChild},
		{deleteChild, rekeyChild},
		{deleteChild, deleteChild},
		{rekeyChild, rekeyIKE},
		{rekeyIKE, rekeyChild},
		{rekeyIKE, rekeyIKE},
	}
}

// crossRun is one run of a collision in one order.
type crossRun struct {
	p          *stepPair
	c          collision
	hdr        [4]ikewire.Header // the requests' headers (reqA, reqB)
	old        [2]ChildSA        // the CHILD SA before, as A and B see it
	ike        IKESA             // A's IKE SA before
	won, lost  atomic.Int32
	checkSteps int
	// followupKE says that the CHILD SAs use an additional key exchange
	// (RFC 9370); retriedOnNew that a CHILD SA rekey was asked again on
	// the new IKE SA.
	followupKE, retriedOnNew bool
	// dropAt is the datagram that settle loses (1 for the first it
	// delivers), 0 for none; delivered counts them.
	dropAt, delivered int
}

// match reports whether d is message k of the crossing.
func (r *crossRun) match(t *testing.T, d datagram, k token) bool {
	m := parse(t, d)
	req := r.hdr[reqA]
	from := addrA
	if k == reqB || k == respB {
		req = r.hdr[reqB]
	}
	if k == respA || k == reqB {
		from = addrB
	}
	return d.from.Addr() == from && m.IsResponse() == (k == respA || k == respB) &&
		m.SPIi == req.SPIi && m.Exchange == req.Exchange && m.MessageID == req.MessageID
}

// take removes message k from the network, if it is in flight.
func (r *crossRun) take(t *testing.T, k token) (datagram, bool) {
	n := r.p.net
	for i, d := range n.queue {
		if r.match(t, d, k) {
			n.queue = append(n.queue[:i], n.queue[i+1:]...)
			return d, true
		}
	}
	return datagram{}, false
}

// checkTraffic asserts that each side's active outbound SA of the child
// is installed inbound on the other side.
func (r *crossRun) checkTraffic(t *testing.T, when string) {
	t.Helper()
	r.checkSteps++
	p := r.p
	if out := p.a.inst.outbound(7); out != 0 && !p.b.inst.inbound(out) && !(r.c.deletes() && out == r.old[0].SPIOut) {
		t.Fatalf("%s: A sends on SPI %08x, which B does not receive on", when, out)
	}
	if out := p.b.inst.outbound(9); out != 0 && !p.a.inst.inbound(out) && !(r.c.deletes() && out == r.old[1].SPIOut) {
		t.Fatalf("%s: B sends on SPI %08x, which A does not receive on", when, out)
	}
}

// settle delivers everything in flight and runs the timers, in one-second
// virtual steps, for up to limit, checking traffic at every step.
func (r *crossRun) settle(t *testing.T, limit time.Duration) {
	t.Helper()
	p := r.p
	for waited := time.Duration(0); waited <= limit; waited += time.Second {
		for i := 0; len(p.net.queue) > 0; i++ {
			if i > 200 {
				t.Fatal("the peers do not stop talking")
			}
			if r.delivered++; r.delivered == r.dropAt {
				p.net.drop()
				continue
			}
			d := p.net.deliver()
			r.checkTraffic(t, fmt.Sprintf("after %s from %v", parse(t, d).Exchange, d.from.Addr()))
		}
		time.Sleep(time.Second)
		p.clk.t = time.Now()
		p.a.m.tickAll()
		p.b.m.tickAll()
		r.checkTraffic(t, "after a tick")
	}
}

// createChildRequests counts the distinct CREATE_CHILD_SA requests a node
// sent (retransmissions count once).
func createChildRequests(t *testing.T, p *stepPair, from netip.Addr) int {
	seen := map[[2]uint64]bool{}
	for _, d := range p.net.sent {
		m := parse(t, d)
		if d.from.Addr() == from && !m.IsResponse() && m.Exchange == ikewire.CREATE_CHILD_SA {
			seen[[2]uint64{m.SPIi, uint64(m.MessageID)}] = true
		}
	}
	return len(seen)
}

// runCrossing runs collision c with the messages in order ord, losing
// message ord[lose] once unless lose is -1; from 4 on, lose is one of the
// datagrams that follow the crossing ones (an IKE_FOLLOWUP_KE, a Delete,
// an answer), the (lose-3)th, if there is one.
func runCrossing(t *testing.T, c collision, props proposals, ord []token, lose int, seed uint64) *crossRun {
	r := &crossRun{c: c, followupKE: strings.Contains(props.esp, "ke1_")}
	if lose >= len(ord) {
		r.dropAt = lose - len(ord) + 1
	}
	synctest.Test(t, func(t *testing.T) {
		pa, pb := peerPair(t, props.ike, props.esp)
		if props.ikeB != "" {
			// The two sides prefer different proposals: each one's
			// rekey takes the responder's preference (RFC 7296, Section
			// 2.7), so one uses IKE_FOLLOWUP_KE and the other not.
			pa.Proposals = mustIKE(t, props.ike, props.ikeB)
			pb.Proposals = mustIKE(t, props.ikeB, props.ike)
		}
		p := newStepPair(t, pa, pb, func(a, b *Config) {
			a.Rand, b.Rand = newSeqRand(2*seed), newSeqRand(2*seed+1)
			a.Logger = slog.New(countingHandler{a.Logger.Handler(), &r.won, &r.lost})
			b.Logger = slog.New(countingHandler{b.Logger.Handler(), &r.won, &r.lost})
		})
		r.p = p
		p.clk.t = time.Now()
		p.establish2(t) // with IKE_INTERMEDIATE when the IKE SA has an additional key exchange
		r.old = [2]ChildSA{p.a.inst.live()[0], p.b.inst.live()[0]}
		r.ike = p.a.m.SAs()[0]
		p.net.sent = nil
		c.a.start(t, p.a, "b")
		c.b.start(t, p.b, "a")
		if len(p.net.queue) != 2 {
			t.Fatalf("%d requests in flight, want 2", len(p.net.queue))
		}
		r.hdr[reqA] = parse(t, p.net.queue[0]).Header
		r.hdr[reqB] = parse(t, p.net.queue[1]).Header
		for i, k := range ord {
			d, ok := r.take(t, k)
			if !ok {
				continue // its request was lost
			}
			if i == lose {
				continue
			}
			p.net.nodes[d.to.Addr()].HandlePacket(d.pkt, d.from, d.to)
			r.checkTraffic(t, "after "+k.String())
		}
		// Retransmissions (4 s, 7.2 s, ...) and the 60 s fallbacks; a
		// request after the crossing ones that gets no answer (its
		// answer lost, the IKE SA gone at the peer) is retransmitted
		// until the schedule gives up, which takes longer.
		limit := 2 * staleTimeout
		if r.dropAt > 0 {
			limit = 2*staleTimeout + giveUpAfter(p.a.m)
		}
		r.settle(t, limit)
		if r.dropAt > r.delivered {
			r.dropAt = 0 // there was no such datagram: a lossless run
		}
		c.check(t, p, r, lose < 0 || (r.dropAt == 0 && lose >= len(ord)))
	})
	return r
}

// giveUpAfter returns how long m retransmits a request before it gives up.
func giveUpAfter(m *Manager) time.Duration {
	var d time.Duration
	for n := 0; n <= m.cfg.RetransmitTries; n++ {
		d += time.Duration(float64(m.cfg.RetransmitTimeout) * math.Pow(m.cfg.RetransmitBase, float64(n)))
	}
	return d
}

// checkRekeyed asserts one CHILD SA pair, new, with equal keys, the old
// one deleted on both sides.
func checkRekeyed(t *testing.T, p *stepPair, r *crossRun) {
	t.Helper()
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if nw := p.a.inst.live()[0]; nw.SPIIn == r.old[0].SPIIn || nw.SPIOut == r.old[0].SPIOut {
		t.Fatal("the CHILD SA was not rekeyed")
	}
	checkDeleted(t, p.a.inst, r.old[0])
	checkDeleted(t, p.b.inst, r.old[1])
	for _, nd := range []*node{p.a, p.b} {
		sas := nd.m.SAs()
		if len(sas) != 1 || len(sas[0].Children) != 1 {
			t.Fatalf("the engine lists %+v", sas)
		}
		if nd.inst.outbound(sas[0].Children[0].Ref) != sas[0].Children[0].SPIOut {
			t.Fatal("the surviving SA does not carry the outbound traffic")
		}
	}
}

func checkDeleted(t *testing.T, f *fakeInstaller, c ChildSA) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.deleted {
		if d.SPIIn == c.SPIIn {
			return
		}
	}
	t.Fatalf("the old SA %08x was not deleted", c.SPIIn)
}

func checkRequests(t *testing.T, p *stepPair, lossless bool, a, b int) (ga, gb int) {
	t.Helper()
	ga, gb = createChildRequests(t, p, addrA), createChildRequests(t, p, addrB)
	if lossless && (ga < a || gb < b || ga > a+1 || gb > b+1) {
		t.Fatalf("CREATE_CHILD_SA requests: A %d, B %d, want %d and %d (a retry after TEMPORARY_FAILURE?)", ga, gb, a, b)
	}
	// With a message lost, a rekey may be refused with TEMPORARY_FAILURE
	// until the peer's retransmitted Delete arrives (RFC 7296, Section
	// 2.25.1), or asked again on the new IKE SA; the retries are bounded.
	if ga > a+3 || gb > b+3 {
		t.Fatalf("CREATE_CHILD_SA requests: A %d, B %d, want at most %d and %d", ga, gb, a+3, b+3)
	}
	return ga, gb
}

// TestRekeyCollisions runs every collision of the table in every order of
// its four crossing messages, each order once without loss and once with
// each message lost, and asserts the outcome RFC 7296, Sections 2.8.1 and
// 2.25 prescribe: one CHILD SA pair per child with the same keys on both
// sides and the old one deleted (or none left when one side deleted it),
// no retry after TEMPORARY_FAILURE, and at every step no traffic towards
// an SPI the receiver does not have.
func TestRekeyCollisions(t *testing.T) {
	orders := interleavings()
	if len(orders) != 6 {
		t.Fatalf("%d interleavings, want 6", len(orders))
	}
	// The CHILD SAs use PFS, and in a second pass an additional key
	// exchange (RFC 9370, Section 2.2.4), so that the rekeys go through
	// IKE_FOLLOWUP_KE exchanges after the crossing CREATE_CHILD_SAs; in
	// a third pass the IKE SA has one too, so that its rekeys do as well;
	// in a fourth, A's IKE SA rekey has one and B's none (the responder's
	// preference decides).
	passes := []proposals{
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519", ""},
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519-ke1_mlkem768", ""},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem768", ""},
		// A simultaneous IKE SA rekey where only one of the two uses
		// IKE_FOLLOWUP_KE.
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-prfsha256-x25519-ke1_mlkem768"},
	}
	runs, laterRuns, steps, rows := 0, 0, 0, 0
	for _, props := range passes {
		for _, c := range collisionTable() {
			rows++
			runCollision(t, c, props, orders, &runs, &laterRuns, &steps)
		}
	}
	t.Logf("%d runs: %d rows (collision x proposals) x %d interleavings x 2 seeds x (1 lossless + 4 with one crossing message lost + 1 per datagram that follows, lost: %d in all); %d traffic checks", runs, rows, len(orders), laterRuns, steps)
}

// proposals are the IKE SA's and the CHILD SA's proposals of a pass of
// TestRekeyCollisions.
type proposals struct {
	ike, esp string
	ikeB     string // when set, A prefers ike and B ikeB
}

// runCollision runs one row of TestRekeyCollisions in every order, with
// and without loss.
func runCollision(t *testing.T, c collision, props proposals, orders [][]token, runs, laterRuns, steps *int) {
	name := c.name() + "/" + props.ike + "/" + props.esp
	if props.ikeB != "" {
		name = c.name() + "/mixed/" + props.esp
	}
	t.Run(name, func(t *testing.T) {
		var won, lost int32
		retried := 0
		for oi, ord := range orders {
			// Two seeds per run, so both sides win collisions.
			for seed := uint64(0); seed < 2; seed++ {
				later := 0 // datagrams after the crossing ones, without loss
				for lose := -1; lose < len(ord)+later; lose++ {
					name := fmt.Sprint(ord)
					switch {
					case lose >= len(ord):
						name += fmt.Sprintf("/lose-later%d", lose-len(ord)+1)
					case lose >= 0:
						name += "/lose-" + ord[lose].String()
					}
					// Losing a later datagram uses the lossless run's seed,
					// so that the same datagrams follow.
					rs := uint64(oi*16) + seed
					if lose >= 0 && lose < len(ord) {
						rs += uint64(lose+1) * 2
					}
					ok := t.Run(fmt.Sprintf("%s/seed%d", name, seed), func(t *testing.T) {
						r := runCrossing(t, c, props, ord, lose, rs)
						won += r.won.Load()
						lost += r.lost.Load()
						if r.retriedOnNew {
							retried++
						}
						if lose < 0 {
							later = r.delivered
						}
						*steps += r.checkSteps
					})
					*runs++
					if lose >= len(ord) {
						*laterRuns++
					}
					if !ok {
						return
					}
				}
			}
		}
		// Both outcomes of the nonce comparison are covered. (The
		// winner logs nothing when the loser's Delete of its
		// redundant SA arrives before the winner's own rekey
		// completes.)
		if c.a == c.b && c.a != deleteChild && (won == 0 || lost == 0) {
			t.Errorf("collisions won %d, lost %d: want both outcomes covered", won, lost)
		}
		t.Logf("collisions resolved by the nonces: %d won, %d lost; %d lossless runs asked a CHILD SA rekey again on the new IKE SA", won, lost, retried)
	})
}

// TestRekeyMakeBeforeBreak rekeys the CHILD SA from either side, with no
// loss and with each of the four messages (request, response, Delete of
// the old SA, its answer) lost once, and checks at every step that the SA
// each side sends on is installed inbound on the other (RFC 7296, Section
// 2.8): a packet sent at any moment of the rekey finds its SA.
func TestRekeyMakeBeforeBreak(t *testing.T) {
	for _, from := range []string{"a", "b"} {
		for lose := -1; lose < 4; lose++ {
			t.Run(fmt.Sprintf("%s/lose%d", from, lose), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
					p := newStepPair(t, pa, pb, nil)
					p.clk.t = time.Now()
					p.establish(t)
					r := &crossRun{p: p}
					r.old = [2]ChildSA{p.a.inst.live()[0], p.b.inst.live()[0]}
					nd, peer := p.a, "b"
					if from == "b" {
						nd, peer = p.b, "a"
					}
					if err := nd.m.Rekey(peer, "net"); err != nil {
						t.Fatal(err)
					}
					for i := 0; len(p.net.queue) > 0; i++ {
						if i == lose {
							p.net.drop()
							continue
						}
						p.net.deliver()
						r.checkTraffic(t, fmt.Sprintf("after message %d", i))
						if p.a.inst.outbound(7) == 0 || p.b.inst.outbound(9) == 0 {
							t.Fatalf("after message %d: a side has no outbound SA", i)
						}
					}
					r.settle(t, 2*staleTimeout)
					checkRekeyed(t, p, r)
				})
			})
		}
	}
}

// TestRekeyResponderActivatesAfterGrace: the responder of a CHILD SA rekey
// keeps sending on the old SA until the initiator's next request shows
// that it installed the new one; without any (its Delete lost), it
// switches after outboundGrace.
func TestRekeyResponderActivatesAfterGrace(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	old := p.b.inst.outbound(9)
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // request: B installs the new inbound SA
	p.net.deliver() // response: A installs and sends on the new SA
	p.net.drop()    // A's Delete of the old SA is lost
	if got := p.b.inst.outbound(9); got != old {
		t.Fatalf("B sends on %08x before the initiator confirmed, want the old %08x", got, old)
	}
	p.clk.t = p.clk.t.Add(outboundGrace - time.Second)
	p.b.m.tickAll()
	if got := p.b.inst.outbound(9); got != old {
		t.Fatal("B switched before outboundGrace")
	}
	p.clk.t = p.clk.t.Add(time.Second)
	p.b.m.tickAll()
	if got := p.b.inst.outbound(9); got == old || !p.a.inst.inbound(got) {
		t.Fatalf("B sends on %08x after outboundGrace, want the new SA A receives on", got)
	}
}
