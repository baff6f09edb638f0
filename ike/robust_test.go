package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/traffic"
)

// sessionOf returns the session of the live IKE SA of nd with peer, or nil.
func sessionOf(nd *node, peer string) *session {
	nd.m.mu.Lock()
	defer nd.m.mu.Unlock()
	for a := range nd.m.actors {
		if !a.dead && a.s.peerName() == peer {
			return a.s
		}
	}
	return nil
}

// bareHeader returns a 28-byte IKE message with no payloads (Next Payload
// 0) and the given header fields.
func bareHeader(spiI, spiR uint64, exch ikewire.ExchangeType, flags ikewire.Flags, id uint32) []byte {
	b := make([]byte, ikewire.HeaderLen)
	binary.BigEndian.PutUint64(b[0:], spiI)
	binary.BigEndian.PutUint64(b[8:], spiR)
	b[17] = 0x20 // version 2.0
	b[18] = byte(exch)
	b[19] = byte(flags)
	binary.BigEndian.PutUint32(b[20:], id)
	binary.BigEndian.PutUint32(b[24:], ikewire.HeaderLen)
	return b
}

// reseal opens a protected datagram d that sender sent to receiver,
// lets edit change its inner payloads, and seals it again with sender's
// keys under the same header.
func reseal(t testing.TB, d datagram, sender, receiver *ikeSA, edit func([]ikewire.Payload) []ikewire.Payload) []byte {
	t.Helper()
	m := parse(t, d)
	pl, err := ikewire.OpenSK(m, openerOf(receiver))
	if err != nil {
		t.Fatal(err)
	}
	out := &ikewire.Message{Header: m.Header}
	b, err := ikewire.SealSK(out, edit(pl), sealerOf(sender), bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRecvRequestEmptyRetransmitNoPanic sends the 28-byte message of issue
// 7 (no payloads, the Message ID of the last exchange) to both peers of a
// live IKE SA: it used to index an empty payload list in the retransmit
// branch and kill the process. Now it is dropped, without an answer, and
// the IKE SA keeps working.
func TestRecvRequestEmptyRetransmitNoPanic(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	sa, sb := p.a.m.SAs()[0], p.b.m.SAs()[0]
	fromA, toB := netip.AddrPortFrom(addrA, 500), netip.AddrPortFrom(addrB, 500)
	for _, exch := range []ikewire.ExchangeType{ikewire.IKE_SA_INIT, ikewire.IKE_AUTH, ikewire.INFORMATIONAL, ikewire.CREATE_CHILD_SA} {
		for id := uint32(0); id < 4; id++ {
			// To the responder, as the initiator's request, and to the
			// initiator, as the responder's request and response.
			p.b.m.HandlePacket(bareHeader(sb.SPIi, sb.SPIr, exch, ikewire.FlagInitiator, id), fromA, toB)
			p.a.m.HandlePacket(bareHeader(sa.SPIi, sa.SPIr, exch, 0, id), toB, fromA)
			p.a.m.HandlePacket(bareHeader(sa.SPIi, sa.SPIr, exch, ikewire.FlagResponse, id), toB, fromA)
		}
	}
	if len(p.net.queue) != 0 {
		t.Fatalf("%d answers to messages without payloads", len(p.net.queue))
	}
	for _, nd := range []*node{p.a, p.b} {
		if n := nd.m.Panics(); n != 0 {
			t.Fatalf("%d panics", n)
		}
		if sas := nd.m.SAs(); len(sas) != 1 || sas[0].State != StateEstablished {
			t.Fatalf("SAs %+v", sas)
		}
	}
	if err := p.b.m.Rekey("a", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

// TestRetransmitResponseOnlyToOriginalSource checks the response cache
// against reflection (RFC 7296, Section 2.1): a retransmitted request is
// answered from the cache only when it comes from the address and port of
// the original request, the IKE SA's peer; from anywhere else it gets
// nothing and is counted.
func TestRetransmitResponseOnlyToOriginalSource(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	initReq := p.net.deliver()
	initResp := p.net.deliver()
	authReq := p.net.deliver()
	authResp := p.net.deliver()
	// An IKE_SA_INIT request from another source is another IKE SA's
	// (RFC 7296, Section 2.1: the responder tells them apart by SPIi and
	// address); the IKE_AUTH request is refused from anywhere but A's
	// address and port.
	victim := netip.AddrPortFrom(addrC, 500)
	p.b.m.HandlePacket(authReq.pkt, victim, authReq.to)
	p.b.m.HandlePacket(authReq.pkt, netip.AddrPortFrom(addrA, 1500), authReq.to)
	if len(p.net.queue) != 0 {
		t.Fatalf("%d cached responses sent to a forged source", len(p.net.queue))
	}
	if got := p.b.m.RefusedRetransmits(); got != 2 {
		t.Errorf("RefusedRetransmits %d, want 2", got)
	}
	// An IKE_SA_INIT request quoting the SPIr of the live IKE SA and
	// Message ID 0 is not the original request either.
	m := parse(t, initReq)
	m.SPIr, m.Raw = parse(t, initResp).SPIr, nil
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p.b.m.HandlePacket(b, initReq.from, initReq.to)
	if len(p.net.queue) != 0 {
		t.Fatal("an IKE_SA_INIT request quoting SPIr got an answer")
	}
	// The true peer's retransmission still gets the response, byte for
	// byte.
	p.b.m.HandlePacket(authReq.pkt, authReq.from, authReq.to)
	if len(p.net.queue) != 1 || !bytes.Equal(p.net.queue[0].pkt, authResp.pkt) || p.net.queue[0].to != authReq.from {
		t.Fatal("the peer's retransmitted IKE_AUTH got no cached response")
	}
	p.net.queue = nil
}

// TestRetransmitResponseNeedsIntegrity quotes the SPIs and Message ID of
// the last request from the peer's own address but with an SK payload that
// fails the integrity check, and with no payloads: neither gets the cached
// response (RFC 7296, Section 2.1). A retransmission that differs in its
// bytes but passes the integrity check (a fresh IV) does.
func TestRetransmitResponseNeedsIntegrity(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	sa, sb := sessionOf(p.a, "b").sa, sessionOf(p.b, "a").sa
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	req := p.net.deliver()
	resp := p.net.drop()
	forged := bytes.Clone(req.pkt)
	forged[len(forged)-1] ^= 0x80
	p.b.m.HandlePacket(forged, req.from, req.to)
	m := parse(t, req)
	p.b.m.HandlePacket(bareHeader(m.SPIi, m.SPIr, m.Exchange, m.Flags, m.MessageID), req.from, req.to)
	if len(p.net.queue) != 0 {
		t.Fatal("a forged retransmission got the cached response")
	}
	if got := p.b.m.RefusedRetransmits(); got != 2 {
		t.Errorf("RefusedRetransmits %d, want 2", got)
	}
	again := reseal(t, req, sa, sb, func(pl []ikewire.Payload) []ikewire.Payload { return pl })
	if bytes.Equal(again, req.pkt) {
		t.Fatal("reseal produced the same bytes")
	}
	p.b.m.HandlePacket(again, req.from, req.to)
	if len(p.net.queue) != 1 || !bytes.Equal(p.net.queue[0].pkt, resp.pkt) {
		t.Fatal("an authentic retransmission got no cached response")
	}
	p.net.run(10)
	if n, _ := p.b.inst.counts(); n != 2 {
		t.Fatalf("B installed %d CHILD SAs, want 2 (a retransmission installs nothing)", n)
	}
}

// TestNonceShorterThanHalfPRFKeyRefused sends nonces of 16 bytes with
// PRF-HMAC-SHA2-512, whose half key size is 32 bytes (RFC 7296, Section
// 2.10): IKE_SA_INIT is refused with INVALID_SYNTAX and keeps no state,
// and so is a CREATE_CHILD_SA request; a 32-byte nonce is accepted.
func TestNonceShorterThanHalfPRFKeyRefused(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha512-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	d := p.net.drop()
	m := parse(t, d)
	find[*ikewire.Nonce](m.Payloads).Data = make([]byte, 16)
	m.Raw = nil
	short, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p.b.m.HandlePacket(short, d.from, d.to)
	if len(p.net.queue) != 1 || findNotify(parse(t, p.net.queue[0]).Payloads, ikewire.NotifyInvalidSyntax) == nil {
		t.Fatal("a 16-byte nonce with PRF-HMAC-SHA2-512 was not refused with INVALID_SYNTAX")
	}
	if len(p.b.m.actors) != 0 || p.b.m.halfOpen != 0 {
		t.Fatal("state kept after a refused IKE_SA_INIT")
	}
	p.net.queue = nil
	// The real request completes.
	p.b.m.HandlePacket(d.pkt, d.from, d.to)
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)

	sa, sb := sessionOf(p.a, "b").sa, sessionOf(p.b, "a").sa
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	req := p.net.drop()
	b := reseal(t, req, sa, sb, func(pl []ikewire.Payload) []ikewire.Payload {
		find[*ikewire.Nonce](pl).Data = make([]byte, 16)
		return pl
	})
	p.b.m.HandlePacket(b, req.from, req.to)
	if len(p.net.queue) != 1 {
		t.Fatal("no answer to CREATE_CHILD_SA")
	}
	pl, err := ikewire.OpenSK(parse(t, p.net.queue[0]), openerOf(sa))
	if err != nil {
		t.Fatal(err)
	}
	if findNotify(pl, ikewire.NotifyInvalidSyntax) == nil {
		t.Fatalf("CREATE_CHILD_SA with a short nonce answered %v", pl)
	}
	if n, _ := p.b.inst.counts(); n != 1 {
		t.Fatal("B installed a CHILD SA for a short nonce")
	}
	if err := checkNonce(make([]byte, 32), sb.suite.prf); err != nil {
		t.Fatal(err)
	}
	if err := checkNonce(make([]byte, 31), sb.suite.prf); err == nil {
		t.Fatal("31 bytes accepted for PRF-HMAC-SHA2-512")
	}
}

// panicInstaller panics when asked to install CHILD SA child.
type panicInstaller struct {
	*fakeInstaller
	child string
}

func (p panicInstaller) InstallSA(c ChildSA) error {
	if c.Child == p.child {
		panic("test: installer panics")
	}
	return p.fakeInstaller.InstallSA(c)
}

// TestActorPanicEndsOnlyItsIKESA makes B's Installer panic while B installs
// a CHILD SA with A: B recovers, counts the panic, deletes A's CHILD SAs
// from the Installer, frees their SPIs, forgets the IKE SA and reports it
// down with ErrInternal; its IKE SA with C is untouched and keeps working.
func TestActorPanicEndsOnlyItsIKESA(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	boom := pa.Children[0]
	boom.Name, boom.LocalTS, boom.RemoteTS = "boom", traffic.MustParseSet("10.3.0.0/16"), traffic.MustParseSet("10.4.0.0/16")
	pa.Children = append(pa.Children, boom)
	boomB := pb.Children[0]
	boomB.Name, boomB.LocalTS, boomB.RemoteTS = "boom", traffic.MustParseSet("10.4.0.0/16"), traffic.MustParseSet("10.3.0.0/16")
	pb.Children = append(pb.Children, boomB)
	p := newStepPair(t, pa, pb, nil)
	pc := pa
	pc.LocalAddrs = host(addrC)
	pbc := pb
	pbc.Name, pbc.RemoteAddrs = "c", host(addrC)
	if err := p.b.m.SetPeers([]Peer{pb, pbc}); err != nil {
		t.Fatal(err)
	}
	c := newStepNode(t, p.net, addrC, Config{Now: p.clk.Now, Logger: testLogger(t)})
	if err := c.m.SetPeers([]Peer{pc}); err != nil {
		t.Fatal(err)
	}
	p.b.m.inst = panicInstaller{p.b.inst, "boom"}
	p.establish(t)
	if err := c.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	if n := len(p.b.inst.live()); n != 2 {
		t.Fatalf("B has %d CHILD SAs, want 2", n)
	}
	crashed := sessionOf(p.b, "a")
	p.b.events()
	if err := p.a.m.Initiate("b", "boom", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // CREATE_CHILD_SA: B's Installer panics
	p.net.queue = nil
	if n := p.b.m.Panics(); n != 1 {
		t.Fatalf("Panics %d, want 1", n)
	}
	live := p.b.inst.live()
	if len(live) != 1 || live[0].Peer != "c" {
		t.Fatalf("B's live CHILD SAs %+v, want C's alone", live)
	}
	var down bool
	for _, e := range p.b.events() {
		if e.Kind == EventIKEDown && e.Peer == "a" && errors.Is(e.Err, ErrInternal) {
			down = true
		}
	}
	if !down {
		t.Error("no ike_down event with ErrInternal")
	}
	sas := p.b.m.SAs()
	if len(sas) != 1 || sas[0].Peer != "c" || sas[0].State != StateEstablished {
		t.Fatalf("B's SAs %+v", sas)
	}
	checkTables(t, p.b.m)
	for _, owner := range p.b.m.childSPIs {
		if owner == crashed {
			t.Fatal("the crashed IKE SA's CHILD SPIs are still allocated")
		}
	}
	// The IKE SA with C still works.
	if err := c.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, c.inst, panicFree(p.b.inst, "c"), 1)
	if n := p.b.m.Panics(); n != 1 {
		t.Fatalf("Panics %d after the rekey with C", n)
	}
}

// panicFree returns an installer view holding f's SAs with peer.
func panicFree(f *fakeInstaller, peer string) *fakeInstaller {
	out := &fakeInstaller{}
	for _, c := range f.live() {
		if c.Peer == peer {
			out.installed = append(out.installed, c)
		}
	}
	return out
}

// checkTables checks that the Manager's tables agree with its actors: every
// routed SPI and every allocated SPI belongs to a live IKE SA, and the
// half-open count is right.
func checkTables(t testing.TB, m *Manager) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	sessions := map[*session]bool{}
	half := 0
	for a := range m.actors {
		if a.dead {
			t.Errorf("dead actor still in the table (state %v)", a.s.state)
		}
		sessions[a.s] = true
		if a.halfOpen {
			half++
		}
	}
	for spi, a := range m.bySPI {
		if _, ok := m.actors[a]; !ok {
			t.Errorf("IKE SPI %016x routed to a forgotten session", spi)
		}
	}
	for k, a := range m.byInit {
		if _, ok := m.actors[a]; !ok {
			t.Errorf("IKE_SA_INIT key %016x routed to a forgotten session", k.spiI)
		}
	}
	for spi, s := range m.childSPIs {
		if !sessions[s] {
			t.Errorf("CHILD SPI %08x held by a forgotten session", spi)
		}
	}
	for spi, s := range m.ikeSPIs {
		if !sessions[s] {
			t.Errorf("IKE SPI %016x reserved by a forgotten session", spi)
		}
	}
	if half != m.halfOpen {
		t.Errorf("half-open count %d, actors say %d", m.halfOpen, half)
	}
}

// panicOnceInstaller panics on its first InstallSA.
type panicOnceInstaller struct {
	*fakeInstaller
	done atomic.Bool
}

func (p *panicOnceInstaller) InstallSA(c ChildSA) error {
	if !p.done.Swap(true) {
		panic("test: installer panics")
	}
	return p.fakeInstaller.InstallSA(c)
}

// TestActorPanicLiveGoroutine runs the managers with their own goroutines:
// B's Installer panics in IKE_AUTH. B's actor goroutine recovers, ends
// that IKE SA alone and exits; the process and the Manager go on, and the
// next IKE SA with A is established.
func TestActorPanicLiveGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		n := &chanNet{nodes: map[netip.Addr]*Manager{}}
		b, ib := newLive(t, n, addrB, pb)
		b.inst = &panicOnceInstaller{fakeInstaller: ib}
		a, ia := newLive(t, n, addrA, pa)
		if err := a.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := b.Panics(); got != 1 {
			t.Fatalf("Panics %d, want 1", got)
		}
		b.mu.Lock()
		actors := len(b.actors)
		b.mu.Unlock()
		if actors != 0 || len(b.SAs()) != 0 {
			t.Fatalf("B still has %d actors after the panic", actors)
		}
		if !slices.ContainsFunc(drain(b), func(e Event) bool { return e.Kind == EventIKEDown && errors.Is(e.Err, ErrInternal) }) {
			t.Error("no ike_down event with ErrInternal")
		}
		// A gives up on the IKE SA B forgot, then starts another.
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if err := a.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		checkKeys(t, ia, ib, 1)
		a.Close()
		b.Close()
	})
}

// TestRetransmitFragmentedRequestOnlyFirstFragment retransmits the
// fragments of an IKE_AUTH request (RFC 7383, Section 2.6.1): only the
// first fragment, from the peer's address and port, brings the cached
// response back; the others, or the first from elsewhere, bring nothing.
func TestRetransmitFragmentedRequestOnlyFirstFragment(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	var sel []string
	for i := range 60 {
		sel = append(sel, "10.1."+itoa(i)+".0/24")
	}
	pa.Children[0].LocalTS = traffic.MustParseSet(sel...)
	p := newStepPair(t, pa, pb, func(a, b *Config) { a.FragmentSize, b.FragmentSize = 576, 576 })
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver()
	p.net.deliver()
	frags := slices.Clone(p.net.queue)
	if len(frags) < 2 {
		t.Fatalf("IKE_AUTH in %d datagrams, want fragments", len(frags))
	}
	p.net.run(len(frags))
	resp := slices.Clone(p.net.queue)
	p.net.queue = nil
	for _, f := range frags[1:] {
		p.b.m.HandlePacket(f.pkt, f.from, f.to)
	}
	p.b.m.HandlePacket(frags[0].pkt, netip.AddrPortFrom(addrC, 500), frags[0].to)
	if len(p.net.queue) != 0 {
		t.Fatalf("%d datagrams sent for fragments other than the first or from another address", len(p.net.queue))
	}
	p.b.m.HandlePacket(frags[0].pkt, frags[0].from, frags[0].to)
	if len(p.net.queue) != len(resp) || !bytes.Equal(p.net.queue[0].pkt, resp[0].pkt) {
		t.Fatalf("the first fragment brought %d datagrams, want the %d of the cached response", len(p.net.queue), len(resp))
	}
	p.net.queue = resp
	p.net.run(len(resp))
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

// panicAllInstaller panics on every call.
type panicAllInstaller struct{}

func (panicAllInstaller) InstallSA(ChildSA) error { panic("test: installer panics") }
func (panicAllInstaller) DeleteSA(ChildSA) error  { panic("test: installer panics again") }
func (panicAllInstaller) ActivateOutbound(ChildSA) error {
	panic("test: installer panics on activation")
}

// TestActorPanicCleanupSurvivesSecondPanic makes the Installer panic in
// InstallSA and again in the DeleteSA calls of the cleanup: the panic is
// counted once, the IKE SA is forgotten with its SPIs, and the Manager
// keeps serving.
func TestActorPanicCleanupSurvivesSecondPanic(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.b.m.inst = panicAllInstaller{}
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	if got := p.b.m.Panics(); got != 1 {
		t.Fatalf("Panics %d, want 1", got)
	}
	checkTables(t, p.b.m)
	if len(p.b.m.SAs()) != 0 || len(p.b.m.childSPIs) != 0 || len(p.b.m.bySPI) != 0 {
		t.Fatal("state left after the crash")
	}
	p.b.m.inst = p.b.inst
	for range 40 {
		// A retransmits IKE_AUTH to an IKE SA B forgot, then gives up.
		p.advance(10 * time.Second)
		p.net.run(20)
	}
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
}
