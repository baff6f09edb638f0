package dataplane

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// panicOutbound is an outbound SA that panics at one stage of one packet.
type panicOutbound struct {
	sad.Outbound
	onSeal, onNextSeq uint64 // sequence number to panic on; 0: never
}

func (o *panicOutbound) NextSeq() (uint64, error) {
	seq, err := o.Outbound.NextSeq()
	if seq == o.onNextSeq {
		panic("test: NextSeq panics")
	}
	return seq, err
}

func (o *panicOutbound) SealSeq(buf []byte, start, end int, seq uint64) (int, int, error) {
	if seq == o.onSeal {
		panic("test: SealSeq panics")
	}
	return o.Outbound.SealSeq(buf, start, end, seq)
}

// The bare ESP methods the data plane calls on ESP engines (frame.go).

func (o *panicOutbound) Mode() sa.Mode { return o.Outbound.(espOutbound).Mode() }

func (o *panicOutbound) Outer() (netip.Addr, netip.Addr, uint8) {
	return o.Outbound.(espOutbound).Outer()
}

func (o *panicOutbound) SealESP(buf []byte, start, end int, sp *packet.Split, seq uint64) (int, int, error) {
	if seq == o.onSeal {
		panic("test: SealESP panics")
	}
	return o.Outbound.(espOutbound).SealESP(buf, start, end, sp, seq)
}

func (in *panicInbound) Mode() sa.Mode { return in.Inbound.(espInbound).Mode() }

func (in *panicInbound) DecryptESP(buf []byte, start, end int, src, dst netip.Addr) (int, int, uint8, uint64, error) {
	in.calls++
	if in.calls == in.onDecrypt {
		panic("test: DecryptESP panics")
	}
	return in.Inbound.(espInbound).DecryptESP(buf, start, end, src, dst)
}

// panicInbound is an inbound SA that panics at one stage of one packet.
type panicInbound struct {
	sad.Inbound
	calls      int    // Decrypt calls so far (the test sends one packet at a time)
	onDecrypt  int    // Decrypt call to panic on; 0: never
	onAccept   uint64 // sequence number to panic on in Accept; 0: never
	acceptSeen []uint64
}

func (in *panicInbound) Decrypt(buf []byte, start, end int) (int, int, uint64, error) {
	in.calls++
	if in.calls == in.onDecrypt {
		panic("test: Decrypt panics")
	}
	return in.Inbound.Decrypt(buf, start, end)
}

func (in *panicInbound) Accept(seq uint64) error {
	in.acceptSeen = append(in.acceptSeen, seq)
	if seq == in.onAccept {
		panic("test: Accept panics")
	}
	return in.Inbound.Accept(seq)
}

// wrapSAs replaces A's outbound SA and B's inbound SA of pair p with the
// given wrappers around them.
func wrapSAs(t *testing.T, p *pair, out *panicOutbound, in *panicInbound) {
	t.Helper()
	if out != nil {
		o := *p.a.dp.SAD().Load().Outbound(ref)
		out.Outbound = o.SA
		if err := p.a.dp.InstallOutbound(&sad.OutboundSA{Protocol: o.Protocol, SPI: o.SPI, Mode: o.Mode, Ref: o.Ref, Encap: o.Encap, Remote: o.Remote, SA: out}); err != nil {
			t.Fatal(err)
		}
	}
	if in != nil {
		i := p.b.dp.SAD().Load().Inbound(sa.ESP, 0x1000)
		in.Inbound = i.SA
		p.b.dp.RemoveInbound(sa.ESP, 0x1000)
		if err := p.b.dp.InstallInbound(&sad.InboundSA{Protocol: i.Protocol, SPI: i.SPI, Mode: i.Mode, Local: i.Local, Remote: i.Remote, LocalAddr: i.LocalAddr, SA: in}); err != nil {
			t.Fatal(err)
		}
	}
}

// sendEach sends n packets from A to B, one at a time, and reports which
// arrived: the packet lost to a panic must not take the others with it.
func sendEach(t *testing.T, p *pair, n int, lost int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		pkt := udpPacket(p.a, p.b, uint16(i), []byte("after a panic, traffic flows"))
		p.a.tun.In <- pkt
		if i == lost {
			expectNothing(t, p.b, 100*time.Millisecond)
			continue
		}
		expect(t, p.b, pkt)
	}
}

// TestDataplanePanicRecovered injects a panic at each stage of the pipeline
// through a fake SA engine (or the IKE callback) and checks that only the
// packet it happened on is lost, that the next packets still flow, and that
// Panics counts exactly one.
func TestDataplanePanicRecovered(t *testing.T) {
	sc := scenario{proto: sa.ESP, encap: sad.EncapUDP, workers: 1}
	for _, tc := range []struct {
		name string
		out  *panicOutbound
		in   *panicInbound
		at   func(p *pair) *Dataplane // the data plane that panics
	}{
		{name: "NextSeq", out: &panicOutbound{onNextSeq: 3}, at: func(p *pair) *Dataplane { return p.a.dp }},
		{name: "SealSeq", out: &panicOutbound{onSeal: 3}, at: func(p *pair) *Dataplane { return p.a.dp }},
		{name: "Decrypt", in: &panicInbound{onDecrypt: 3}, at: func(p *pair) *Dataplane { return p.b.dp }},
		{name: "Accept", in: &panicInbound{onAccept: 3}, at: func(p *pair) *Dataplane { return p.b.dp }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, sc)
			wrapSAs(t, p, tc.out, tc.in)
			sendEach(t, p, 6, 3)
			dp := tc.at(p)
			if n := dp.Panics(); n != 1 {
				t.Errorf("Panics() = %d, want 1", n)
			}
			if n := dp.Stats().Drops["malformed"]; n != 1 {
				t.Errorf("malformed drops = %d, want 1 (the packet that panicked); stats %+v", n, dp.Stats())
			}
			if tc.in != nil && tc.in.onDecrypt != 0 {
				// The packet whose opening panicked never reaches the
				// replay window.
				for _, s := range tc.in.acceptSeen {
					if s == 3 {
						t.Errorf("Accept(3) was called for the packet whose Decrypt panicked")
					}
				}
			}
		})
	}
}

// TestDataplanePanicIKECallback checks that a panic in the IKE callback,
// which runs on the UDP reader, costs that one datagram.
func TestDataplanePanicIKECallback(t *testing.T) {
	calls := make(chan int, 8)
	n := 0
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP, noSA: true, ike: func(pkt []byte, from netip.AddrPort) {
		n++
		calls <- n
		if n == 1 {
			panic("test: IKE callback panics")
		}
	}})
	ike := append([]byte{0, 0, 0, 0}, make([]byte, 28)...)
	for range 2 {
		p.b.udp.Inject(ike, netip.AddrPortFrom(p.a.outer, 4500))
	}
	for want := 1; want <= 2; want++ {
		select {
		case got := <-calls:
			if got != want {
				t.Fatalf("IKE call %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("IKE message %d not delivered after a panic", want)
		}
	}
	if n := p.b.dp.Panics(); n != 1 {
		t.Errorf("Panics() = %d, want 1", n)
	}
}

// TestDataplanePanicLoggedOncePerSite checks the rate limit of the panic
// log: one message with the stack per site, then only the count.
func TestDataplanePanicLoggedOncePerSite(t *testing.T) {
	var buf bytes.Buffer
	d, err := New(Config{TUN: tuntest.New(1500, 1, 1), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d.guard(siteWorker, func() { panic("test") })
	}
	d.guard(siteSend, func() { panic("test") })
	if n := d.Panics(); n != 4 {
		t.Errorf("Panics() = %d, want 4", n)
	}
	if n := strings.Count(buf.String(), "recovered from a panic"); n != 2 {
		t.Errorf("%d log messages, want 2 (one per site):\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "runtime/debug.Stack") {
		t.Errorf("the log message has no stack:\n%s", buf.String())
	}
}
