package dataplane

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// TestBypassDiscard checks that BYPASS traffic leaves in the clear through the
// raw socket and DISCARD traffic is dropped and counted.
func TestBypassDiscard(t *testing.T) {
	dns := netip.MustParsePrefix("10.2.0.53/32")
	bad := netip.MustParsePrefix("10.2.0.66/32")
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP, extraSPD: []spd.Rule{
		{Name: "dns", Remote: set(dns), Action: spd.Bypass},
		{Name: "bad", Remote: set(bad), Action: spd.Discard},
	}})
	sniff := p.nw.Raw(dns.Addr(), 0, 8, 16)
	clear := tuntest.UDP(netip.AddrPortFrom(p.a.inner, 5353), netip.AddrPortFrom(dns.Addr(), 53), []byte("query"))
	p.a.tun.In <- clear
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := sniff.Read(bufs, sizes, 0); err != nil || n != 1 {
			t.Errorf("sniffer read: %d, %v", n, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("bypassed packet not sent in the clear")
	}
	if got := bufs[0][:sizes[0]]; !bytes.Equal(got, clear) {
		t.Errorf("bypassed packet changed:\n got %x\nwant %x", got, clear)
	}
	p.a.tun.In <- tuntest.UDP(netip.AddrPortFrom(p.a.inner, 1), netip.AddrPortFrom(bad.Addr(), 2), []byte("x"))
	// A protected packet after it proves the discard was processed.
	ok := udpPacket(p.a, p.b, 7, []byte("ok"))
	p.a.tun.In <- ok
	expect(t, p.b, ok)
	st := p.a.dp.Stats()
	if st.Bypassed != 1 || st.Drops["policy"] != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// TestSpoofedInnerSource checks the inbound selector check of RFC 4301,
// Section 5.2: a packet that decrypts fine but whose inner source is outside
// the SA's remote selectors is dropped with sa.DropSelector.
func TestSpoofedInnerSource(t *testing.T) {
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP})
	// A's SPD also protects traffic from 10.9.0.0/16, with the same SA:
	// B never agreed to receive that source.
	spoofNet := netip.MustParsePrefix("10.9.0.0/16")
	snap, err := spd.Compile([]spd.Rule{{Name: "spoof", Local: set(spoofNet), Remote: set(p.b.prefix), Action: spd.Protect, Ref: ref}}, spd.Bypass)
	if err != nil {
		t.Fatal(err)
	}
	p.a.dp.SetSPD(snap)
	spoof := tuntest.UDP(netip.MustParseAddrPort("10.9.0.1:1"), netip.AddrPortFrom(p.b.inner, 2), []byte("spoof"))
	p.a.tun.In <- spoof
	expectNothing(t, p.b, 200*time.Millisecond)
	st := p.b.dp.Stats()
	if st.Drops["selector"] != 1 || st.Opened != 0 {
		t.Errorf("B stats: %+v", st)
	}
	in := p.b.dp.SAD().Load().Inbound(sa.ESP, 0x1000)
	if in.Stats.Drops[sa.DropSelector].Load() != 1 {
		t.Error("per-SA selector drop not counted")
	}
}

// TestAcquireAndStage checks that a PROTECT packet without an SA is staged,
// one Acquire is sent per policy, and the staged packets go out once the SA
// is installed.
func TestAcquireAndStage(t *testing.T) {
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP, noSA: true})
	var sent [][]byte
	for i := range 3 {
		pkt := udpPacket(p.a, p.b, uint16(100+i), []byte("early"))
		sent = append(sent, pkt)
		p.a.tun.In <- pkt
	}
	select {
	case ev := <-p.a.dp.Events():
		if ev.Kind != EventAcquire || ev.Ref != ref || ev.Packet.Dst != p.b.inner || ev.Packet.DstPort != 9 {
			t.Fatalf("event %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no acquire")
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case ev := <-p.a.dp.Events():
		t.Fatalf("second event %v", ev)
	default:
	}
	p.installSAs(t, p.b, p.a, 0x2000, 0x1000)
	p.installSAs(t, p.a, p.b, 0x1000, 0x2000)
	for _, pkt := range sent {
		expect(t, p.b, pkt)
	}
}

// TestGarbage interleaves 100,000 hostile datagrams with good traffic: every
// good packet must arrive, the garbage must be counted by reason, and
// nothing may panic.
func TestGarbage(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP, batch: 64})
	attacker := p.nw.UDP(netip.MustParseAddrPort("203.0.113.9:4500"), 64, 64)
	_ = attacker

	// Capture real ESP packets from A to B to replay and corrupt.
	var captured [][]byte
	capture := p.nw.UDP(netip.MustParseAddrPort("203.0.113.10:4500"), 8, 256)
	out := p.a.dp.SAD().Load().Outbound(ref)
	capSA := sad.OutboundSA{Protocol: out.Protocol, SPI: out.SPI, Ref: out.Ref, Encap: out.Encap, Remote: capture.LocalAddr(), SA: out.SA}
	// Use a copy of the outbound SA aimed at the capture endpoint, so
	// the sequence numbers continue from the real one.
	if err := p.a.dp.InstallOutbound(&capSA); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, addrs := make([][]byte, 8), make([]int, 8), make([]netip.AddrPort, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 4096)
	}
	for i := range 50 {
		p.a.tun.In <- udpPacket(p.a, p.b, uint16(i), []byte("captured"))
		n, err := capture.Read(bufs[:1], sizes, addrs, 0)
		if err != nil || n != 1 {
			t.Fatal(n, err)
		}
		captured = append(captured, append([]byte(nil), bufs[0][:sizes[0]]...))
	}
	// Deliver half of them so that the rest are fresh and the first half
	// are replays.
	for _, c := range captured[:25] {
		p.b.udp.Inject(c, netip.AddrPortFrom(p.a.outer, 4500))
	}
	for range 25 {
		<-p.b.tun.Out
	}
	if err := p.a.dp.InstallOutbound(out); err != nil {
		t.Fatal(err)
	}

	var delivered atomic.Int64
	p.b.tun.OnWrite = nil
	const good = 2000
	const garbage = 100000
	stop := make(chan struct{})
	go func() {
		for range p.b.tun.Out {
			if delivered.Add(1) == good {
				close(stop)
			}
		}
	}()
	r := mrand.New(mrand.NewPCG(1, 2))
	go func() {
		for i := range good {
			p.a.tun.In <- udpPacket(p.a, p.b, uint16(i), []byte("good traffic"))
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	counts := map[string]int{}
	junk := make([]byte, 4096)
	for i := range garbage {
		var g []byte
		switch i % 6 {
		case 0: // random bytes
			g = junk[:1+r.IntN(1500)]
			rand.Read(g)
			counts["random"]++
		case 1: // truncated ESP
			c := captured[25+r.IntN(25)]
			g = c[:r.IntN(len(c))]
			counts["truncated"]++
		case 2: // unknown SPI
			g = append(junk[:0], captured[25]...)
			binary.BigEndian.PutUint32(g, 0xdead0000|uint32(r.IntN(0xffff)))
			counts["unknown_spi"]++
		case 3: // bad ICV: flip a bit after the header
			g = append(junk[:0], captured[25+r.IntN(25)]...)
			g[8+r.IntN(len(g)-8)] ^= 1 << r.IntN(8)
			counts["bad_icv"]++
		case 4: // replay
			g = captured[r.IntN(25)]
			counts["replay"]++
		case 5: // IKE-looking and keepalives
			if r.IntN(2) == 0 {
				g = []byte{0xff}
			} else {
				g = append(junk[:0], 0, 0, 0, 0, 1, 2, 3)
			}
			counts["other"]++
		}
		p.b.udp.Inject(g, netip.AddrPortFrom(p.a.outer, 4500))
	}
	select {
	case <-stop:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d of %d good packets delivered; stats %+v", delivered.Load(), good, p.b.dp.Stats())
	}
	st := p.b.dp.Stats()
	t.Logf("sent %v; stats %+v", counts, st)
	// Corrupted copies of old packets may fail the replay pre-check before
	// the ICV check (RFC 4303, Section 3.4.3 orders them so), so the two
	// reasons are counted together.
	if got, sent := st.Drops["replay"]+st.Drops["bad_icv"], uint64(counts["replay"]+counts["bad_icv"]); got < sent*9/10 {
		t.Errorf("replays and bad ICVs: %d counted, about %d sent", got, sent)
	}
	if st.Drops["unknown_spi"] < uint64(counts["unknown_spi"]) {
		t.Errorf("unknown SPIs: %d counted, %d sent", st.Drops["unknown_spi"], counts["unknown_spi"])
	}
	var total uint64
	for _, n := range st.Drops {
		total += n
	}
	if total+st.Keepalives+st.IKE < garbage {
		t.Errorf("only %d of %d garbage datagrams accounted for", total+st.Keepalives+st.IKE, garbage)
	}
}
