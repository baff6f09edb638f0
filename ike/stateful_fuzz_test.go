package ike

// Stateful fuzzing: each input first drives two stepped peers into a state
// of an exchange (the half-open responder, the initiator waiting for an
// answer, IKE_INTERMEDIATE, a CHILD SA or IKE SA rekey, a deletion,
// fragments half received, an established IKE SA) and then feeds one of
// them a message the fuzzer built: with that IKE SA's real SPIs, a Message
// ID around the current one, and either raw payloads or payloads encrypted
// and authenticated with the IKE SA's real keys, so the code behind
// decryption is reached. After each input the invariants are checked: no
// panic, the Manager's tables consistent, what is installed matches what
// the engine lists, and when the fuzzer had no keys the legitimate
// exchange completes and the good peer can still run another one.
//
// Input layout (fuzzInput): a header of fuzzHdrLen bytes, then the body
// (the payload chain, in the clear or to be encrypted).

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/traffic"
)

// fuzzState is how far the legitimate exchange got before the fuzzed
// message arrives.
type fuzzState uint8

const (
	fsInitSent             fuzzState = iota // A sent IKE_SA_INIT; B has not seen it
	fsInitAnswered                          // B answered IKE_SA_INIT (half-open); A has not seen it
	fsAuthSent                              // A sent IKE_AUTH; B has not seen it
	fsAuthAnswered                          // B answered IKE_AUTH (established); A has not seen it
	fsEstablished                           // both established, nothing in flight
	fsIntermediate                          // x25519-ke1_mlkem768: A sent IKE_INTERMEDIATE
	fsIntermediateAnswered                  // B answered IKE_INTERMEDIATE
	fsChildRekey                            // a CHILD SA rekey request in flight
	fsChildRekeyAnswered                    // its response in flight
	fsIKERekey                              // an IKE SA rekey request in flight
	fsIKERekeyAnswered                      // its response in flight; then the Delete of the old IKE SA
	fsIKERekeyFollowup                      // x25519-ke1_mlkem768: IKE_FOLLOWUP_KE of an IKE SA rekey in flight
	fsDeleting                              // a Delete of the IKE SA in flight
	fsFragments                             // the first of several IKE_AUTH fragments delivered
	fsCount
)

func (st fuzzState) String() string {
	return [...]string{"init-sent", "init-answered", "auth-sent", "auth-answered", "established",
		"intermediate", "intermediate-answered", "child-rekey", "child-rekey-answered",
		"ike-rekey", "ike-rekey-answered", "ike-rekey-followup", "deleting", "fragments"}[st]
}

// established reports whether the IKE SA is up on both sides in st (before
// the fuzzed message and after the held messages).
func (st fuzzState) established() bool {
	return st >= fsAuthAnswered && st != fsIntermediate && st != fsIntermediateAnswered && st != fsFragments
}

// Fuzz input header fields.
const (
	fiState     = iota // fuzzState (mod fsCount) | fiByB | fiOld
	fiEncoding         // encoding (mod encCount)
	fiIDDelta          // int8 added to the expected Message ID
	fiExchange         // exchange type
	fiFlags            // bit 0: response; bit 1: flip the I flag; fiTwo
	fiFirst            // the first payload type of the body
	fiFragNum          // SKF Fragment Number
	fiFragTotal        // SKF Total Fragments
	fuzzHdrLen

	fiByB = 0x80 // the exchange in progress was started by B, not A
	fiOld = 0x40 // address the old IKE SA of a rekey
	fiTwo = 0x04 // in fiFlags: two messages (see runStateful)
)

// encoding says how the fuzzed message is built.
type encoding uint8

const (
	encRaw       encoding = iota // header + body in the clear
	encEmpty                     // the header alone, Next Payload 0
	encTruncated                 // the header's length claims more than is sent
	encSK                        // body encrypted in an SK payload with the IKE SA's keys
	encSKF                       // body encrypted in an SKF payload (RFC 7383)
	encBadICV                    // encSK with a corrupted ICV
	encCount
)

// authentic reports whether messages of e pass the integrity check: the
// fuzzer then acts as an authenticated peer, who may end the IKE SA.
func (e encoding) authentic() bool { return e == encSK || e == encSKF }

// fuzzPair is a stepped pair in state st with the messages in flight held
// back.
type fuzzPair struct {
	*stepPair
	st   fuzzState
	byB  bool
	held []datagram
}

// held takes the queued datagrams off the network.
func (p *fuzzPair) hold() {
	p.held = append(p.held, p.net.queue...)
	p.net.queue = nil
}

// newFuzzPair drives a new pair into state st.
func newFuzzPair(t testing.TB, st fuzzState, byB bool) *fuzzPair {
	ike := "aes256gcm16-prfsha256-x25519"
	switch st {
	case fsIntermediate, fsIntermediateAnswered, fsIKERekeyFollowup:
		ike = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
	}
	pa, pb := peerPair(t, ike, "aes256gcm16")
	var tweak func(a, b *Config)
	if st == fsFragments {
		var sel []string
		for i := range 40 {
			sel = append(sel, fmt.Sprintf("10.1.%d.0/24", i))
		}
		pa.Children[0].LocalTS = traffic.MustParseSet(sel...)
		tweak = func(a, b *Config) { a.FragmentSize, b.FragmentSize = 576, 576 }
	}
	p := &fuzzPair{stepPair: newStepPair(t, pa, pb, tweak), st: st, byB: byB}
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	steps := map[fuzzState]int{fsInitSent: 0, fsInitAnswered: 1, fsAuthSent: 2, fsAuthAnswered: 3, fsIntermediate: 2, fsIntermediateAnswered: 3, fsFragments: 2}
	if n, ok := steps[st]; ok {
		for range n {
			p.net.deliverMessage(t)
		}
		if st == fsFragments {
			p.net.deliver() // the first fragment
		}
		p.hold()
		return p
	}
	p.net.run(40)
	if st == fsEstablished {
		return p
	}
	initiator, peer := p.a, "b"
	if byB {
		initiator, peer = p.b, "a"
	}
	var err error
	switch st {
	case fsChildRekey, fsChildRekeyAnswered:
		err = initiator.m.Rekey(peer, "net")
	case fsIKERekey, fsIKERekeyAnswered, fsIKERekeyFollowup:
		err = initiator.m.Rekey(peer, "")
	case fsDeleting:
		err = initiator.m.Terminate(peer, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	switch st {
	case fsChildRekeyAnswered, fsIKERekeyAnswered:
		p.net.deliver()
	case fsIKERekeyFollowup:
		p.net.deliver()
		p.net.deliver()
	}
	p.hold()
	return p
}

// fuzzTarget is the node the fuzzed message goes to and its IKE SA.
type fuzzTarget struct {
	nd, other *node
	s         *session // nil when the node has no IKE SA yet
	x         *ikeSA
	from, to  netip.AddrPort
}

func (p *fuzzPair) target(responder, old bool) fuzzTarget {
	ft := fuzzTarget{nd: p.a, other: p.b}
	if responder {
		ft.nd, ft.other = p.b, p.a
	}
	ft.nd.m.mu.Lock()
	for a := range ft.nd.m.actors {
		if !a.dead {
			ft.s = a.s
		}
	}
	ft.nd.m.mu.Unlock()
	ft.from, ft.to = netip.AddrPortFrom(ft.other.addr, 500), netip.AddrPortFrom(ft.nd.addr, 500)
	if ft.s != nil {
		ft.x = ft.s.sa
		if old && ft.s.old != nil {
			ft.x = ft.s.old
		}
		ft.from, ft.to = ft.s.remote, ft.s.local
	}
	return ft
}

// message builds the fuzzed datagram for ft from the header fields of in,
// with body as its payload chain and the Message ID moved by step.
func (ft *fuzzTarget) message(p *fuzzPair, in, body []byte, step uint32) []byte {
	var h ikewire.Header
	if ft.x != nil {
		h.SPIi, h.SPIr = ft.x.spiI, ft.x.spiR
		if !ft.x.initiator {
			h.Flags |= ikewire.FlagInitiator
		}
	} else {
		// No IKE SA on this node yet: quote the other side's SPIi.
		other := p.target(ft.nd == p.a, false)
		if other.x != nil {
			h.SPIi, h.SPIr = other.x.spiI, other.x.spiR
		}
		h.Flags |= ikewire.FlagInitiator
	}
	resp := in[fiFlags]&1 != 0
	if resp {
		h.Flags |= ikewire.FlagResponse
	}
	if in[fiFlags]&2 != 0 {
		h.Flags ^= ikewire.FlagInitiator
	}
	var id uint32
	if ft.x != nil {
		id = ft.x.peerID
		if resp {
			id = ft.x.nextID
			if ft.x.active != nil {
				id = ft.x.active.id
			}
		}
	}
	h.MessageID = id + uint32(int32(int8(in[fiIDDelta]))) + step
	h.Exchange = ikewire.ExchangeType(in[fiExchange])
	enc := encoding(in[fiEncoding] % byte(encCount))
	if (enc.authentic() || enc == encBadICV) && (ft.x == nil || ft.x.keys == nil) {
		enc = encRaw
	}
	switch enc {
	case encEmpty:
		return rawMessage(h, ikewire.PayloadNone, nil, 0)
	case encTruncated:
		return rawMessage(h, ikewire.PayloadType(in[fiFirst]), body, 1+int(in[fiFragNum]))
	case encSK, encBadICV:
		b := sealRaw(h, ikewire.PayloadType(in[fiFirst]), body, openerOf(ft.x), nil)
		if enc == encBadICV {
			b[len(b)-1] ^= 1
		}
		return b
	case encSKF:
		return sealRaw(h, ikewire.PayloadType(in[fiFirst]), body, openerOf(ft.x), &ikewire.SKF{Number: uint16(in[fiFragNum]), Total: uint16(in[fiFragTotal])})
	}
	return rawMessage(h, ikewire.PayloadType(in[fiFirst]), body, 0)
}

// putHeader writes h with Next Payload next and Length n into b.
func putHeader(b []byte, h ikewire.Header, next ikewire.PayloadType, n int) {
	binary.BigEndian.PutUint64(b[0:], h.SPIi)
	binary.BigEndian.PutUint64(b[8:], h.SPIr)
	b[16] = byte(next)
	b[17] = 0x20
	b[18] = byte(h.Exchange)
	b[19] = byte(h.Flags)
	binary.BigEndian.PutUint32(b[20:], h.MessageID)
	binary.BigEndian.PutUint32(b[24:], uint32(n))
}

// rawMessage returns h with body as its payload chain, in the clear; the
// Length field claims extra bytes more than there are.
func rawMessage(h ikewire.Header, next ikewire.PayloadType, body []byte, extra int) []byte {
	b := make([]byte, ikewire.HeaderLen+len(body))
	putHeader(b, h, next, len(b)+extra)
	copy(b[ikewire.HeaderLen:], body)
	return b
}

// sealRaw returns h with one SK payload (or SKF, if f is not nil) whose
// plaintext is the chain pt starting with type next, protected with c (the
// receiver's opener, whose keys are the sender's). Unlike ikewire.SealSK
// it takes any bytes as the inner chain, so the fuzzer reaches the
// decrypted payload parser and everything behind it.
func sealRaw(h ikewire.Header, next ikewire.PayloadType, pt []byte, c ikewire.SKCipher, f *ikewire.SKF) []byte {
	bs := c.BlockSize()
	padLen := (bs - (len(pt)+1)%bs) % bs
	bodyLen := c.IVLen() + len(pt) + padLen + 1 + c.ICVLen()
	extra, typ := 0, ikewire.PayloadSK
	if f != nil {
		extra, typ = 4, ikewire.PayloadSKF
	}
	ivOff := ikewire.HeaderLen + 4 + extra
	b := make([]byte, ivOff+bodyLen)
	putHeader(b, h, typ, len(b))
	b[ikewire.HeaderLen] = byte(next)
	binary.BigEndian.PutUint16(b[ikewire.HeaderLen+2:], uint16(4+extra+bodyLen))
	if f != nil {
		binary.BigEndian.PutUint16(b[ikewire.HeaderLen+4:], f.Number)
		binary.BigEndian.PutUint16(b[ikewire.HeaderLen+6:], f.Total)
	}
	b[ivOff] = 1 // an IV; its value does not matter here
	copy(b[ivOff+c.IVLen():], pt)
	b[ivOff+c.IVLen()+len(pt)+padLen] = byte(padLen)
	c.Seal(b, ivOff)
	return b
}

// runStateful is one fuzz iteration: drive a pair into the state in[0]
// names, send the fuzzed message to the responder (or the initiator) of
// the original IKE SA, finish the legitimate exchange and check the
// invariants.
func runStateful(t *testing.T, in []byte, responder bool) {
	if len(in) < fuzzHdrLen || len(in) > 4096 {
		return
	}
	// A hang is a finding too: the fuzzer keeps an input that crashes
	// the worker, and this watchdog does.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			panic(fmt.Sprintf("stateful fuzz input runs for more than 20 s: %x", in))
		}
	}()
	st := fuzzState(in[fiState]&0x3f) % fsCount
	p := newFuzzPair(t, st, in[fiState]&fiByB != 0)
	ft := p.target(responder, in[fiState]&fiOld != 0)
	enc := encoding(in[fiEncoding] % byte(encCount))
	// With fiTwo, the body holds two payload chains: the first is
	// body[1:1+body[0]], the second the rest, sent next with the following
	// Message ID, so the fuzzer reaches the states its first message made.
	body := in[fuzzHdrLen:]
	var second []byte
	if in[fiFlags]&fiTwo != 0 && len(body) > 0 {
		n := min(int(body[0]), len(body)-1)
		body, second = body[1:1+n], body[1+n:]
	}
	before := len(p.net.sent)
	ft.nd.m.HandlePacket(ft.message(p, in, body, 0), ft.from, ft.to)
	if second != nil {
		ft = p.target(responder, in[fiState]&fiOld != 0)
		ft.nd.m.HandlePacket(ft.message(p, in, second, 1), ft.from, ft.to)
	}
	replies := slices.Clone(p.net.queue)
	p.net.queue = nil
	checkInvariants(t, p)

	// What the target answered goes to the address the fuzzed message came
	// from, the good peer's; then the held legitimate messages arrive.
	p.net.queue = append(replies, p.held...)
	p.net.run(200)
	p.net.queue = nil
	checkInvariants(t, p)

	strict := !enc.authentic() && ikewire.ExchangeType(in[fiExchange]) != ikewire.IKE_SA_INIT
	if st == fsInitSent || st == fsInitAnswered {
		// Before IKE_SA_INIT completes nothing is authenticated: a
		// message quoting the initiator's SPIi may take the exchange over
		// (RFC 7296, Section 2.6 leaves this to the cookie).
		strict = strict && len(p.net.sent) == before+len(replies)
	}
	if strict {
		checkLive(t, p)
	}
	// Let the timers run: retransmissions, timeouts and the cleanup they
	// trigger must keep the tables consistent too.
	for range 4 {
		p.advance(40 * time.Second)
		p.net.run(50)
		p.net.queue = nil
	}
	checkInvariants(t, p)
}

// checkInvariants checks what must hold whatever the input was.
func checkInvariants(t *testing.T, p *fuzzPair) {
	t.Helper()
	for _, nd := range []*node{p.a, p.b} {
		if n := nd.m.Panics(); n != 0 {
			t.Fatalf("node %v: %d panics recovered", nd.addr, n)
		}
		checkTables(t, nd.m)
		checkInstalled(t, nd)
		// The actor's goroutine asks every session for its next deadline
		// (step mode does not): it must not fail in any state.
		for a := range nd.m.actors {
			a.s.deadline()
		}
	}
}

// checkInstalled checks that the CHILD SAs the Installer holds are those
// the IKE SAs list: nothing half-built is installed, nothing failed stays.
func checkInstalled(t *testing.T, nd *node) {
	t.Helper()
	listed := map[uint32]bool{}
	for _, ike := range nd.m.SAs() {
		for _, c := range ike.Children {
			listed[c.SPIIn] = true
		}
	}
	live := nd.inst.live()
	for _, c := range live {
		if !listed[c.SPIIn] {
			t.Fatalf("node %v: CHILD SA %08x installed but no IKE SA lists it", nd.addr, c.SPIIn)
		}
	}
	if len(live) != len(listed) {
		t.Fatalf("node %v: %d CHILD SAs installed, %d listed", nd.addr, len(live), len(listed))
	}
}

// checkLive checks that the legitimate exchange completed despite an
// unauthenticated message and that the good peers can run another one.
func checkLive(t *testing.T, p *fuzzPair) {
	t.Helper()
	if p.st == fsDeleting {
		if len(p.a.m.SAs()) != 0 || len(p.b.m.SAs()) != 0 {
			t.Fatalf("IKE SA not deleted: %+v / %+v", p.a.m.SAs(), p.b.m.SAs())
		}
		return
	}
	for _, nd := range []*node{p.a, p.b} {
		sas := nd.m.SAs()
		if len(sas) != 1 || sas[0].State != StateEstablished {
			t.Fatalf("node %v (%v): SAs %+v, want one established", nd.addr, p.st, sas)
		}
	}
	checkKeys(t, p.a.inst, p.b.inst, 1)
	// A CHILD SA rekey started by B, then a DPD by A.
	if err := p.b.m.Rekey("a", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	s := sessionOf(p.a, "b")
	s.queue(&dpdTask{})
	p.a.m.tickAll()
	if len(p.net.queue) != 1 {
		t.Fatalf("no DPD request: %d datagrams", len(p.net.queue))
	}
	p.net.run(4)
	if s.sa.active != nil || s.state != StateEstablished {
		t.Fatal("DPD not answered")
	}
}

// statefulSeeds returns inputs built from the messages of real exchanges:
// for each state and side, the held messages that would have arrived next
// (their header fields and decrypted payload chains) and an empty
// INFORMATIONAL request and response (a DPD), each in every encoding, with
// the previous, current and next Message IDs for the main ones.
func statefulSeeds(f *testing.F, responder bool) [][]byte {
	type proto struct {
		exch  ikewire.ExchangeType
		flags byte
		first ikewire.PayloadType
		chain []byte
	}
	var out [][]byte
	for st := range fsCount {
		for _, byB := range []bool{false, true} {
			if byB && st < fsChildRekey {
				continue
			}
			p := newFuzzPair(f, st, byB)
			sel := byte(st)
			if byB {
				sel |= fiByB
			}
			ft := p.target(responder, false)
			protos := []proto{{ikewire.INFORMATIONAL, 0, 0, nil}, {ikewire.INFORMATIONAL, 1, 0, nil}}
			for _, d := range p.held {
				if d.to.Addr() != ft.nd.addr {
					continue
				}
				m, err := ikewire.Parse(d.pkt)
				if err != nil {
					continue
				}
				pr := proto{exch: m.Exchange, first: m.NextPayload, chain: d.pkt[ikewire.HeaderLen:]}
				if m.IsResponse() {
					pr.flags = 1
				}
				if ft.x != nil && ft.x.keys != nil && len(m.Payloads) > 0 {
					if _, ok := m.Payloads[len(m.Payloads)-1].(*ikewire.SK); ok {
						pl, err := ikewire.OpenSK(m, openerOf(ft.x))
						if err != nil {
							continue
						}
						b, err := (&ikewire.Message{Header: m.Header, Payloads: pl}).Marshal()
						if err != nil {
							continue
						}
						pr.first, pr.chain = ikewire.PayloadType(b[16]), b[ikewire.HeaderLen:]
					}
				}
				protos = append(protos, pr)
			}
			for _, pr := range protos {
				for e := range encCount {
					deltas := []byte{0}
					if e == encRaw || e == encEmpty || e == encSK {
						deltas = []byte{0xff, 0, 1} // previous, current, next
					}
					for _, d := range deltas {
						hdr := []byte{sel, byte(e), d, byte(pr.exch), pr.flags, byte(pr.first), 1, 1}
						out = append(out, append(hdr, pr.chain...))
					}
					if e == encSK && len(pr.chain) <= 255 {
						// The same chain twice, with the current and
						// the next Message ID.
						hdr := []byte{sel, byte(e), 0, byte(pr.exch), pr.flags | fiTwo, byte(pr.first), 1, 1, byte(len(pr.chain))}
						out = append(out, slices.Concat(hdr, pr.chain, pr.chain))
					}
				}
			}
		}
	}
	return out
}

// FuzzStatefulResponder fuzzes the responder of the original IKE SA (B) in
// every state of fuzzState.
func FuzzStatefulResponder(f *testing.F) {
	for _, s := range statefulSeeds(f, true) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) { runStateful(t, in, true) })
}

// FuzzStatefulInitiator fuzzes the initiator of the original IKE SA (A) in
// every state of fuzzState.
func FuzzStatefulInitiator(f *testing.F) {
	for _, s := range statefulSeeds(f, false) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) { runStateful(t, in, false) })
}
