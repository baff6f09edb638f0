package dataplane

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// unwrappingOutbound adds nothing to its engine but says so with Unwrap, as
// the daemon's manual SAs (which reserve their sequence numbers on disk) do.
type unwrappingOutbound struct {
	sad.Outbound
	nextSeqs int
}

func (u *unwrappingOutbound) NextSeq() (uint64, error) {
	u.nextSeqs++
	return u.Outbound.NextSeq()
}

func (u *unwrappingOutbound) Unwrap() sad.Outbound { return u.Outbound }

// TestFramingWrappedEngine checks that an outbound engine behind a wrapper
// with Unwrap still seals bare ESP for ESP in UDP (which needs it) and raw
// ESP, with the wrapper's NextSeq used, in both modes and families.
func TestFramingWrappedEngine(t *testing.T) {
	for _, sc := range []scenario{
		{proto: sa.ESP, encap: sad.EncapUDP},
		{proto: sa.ESP, encap: sad.EncapUDP, mode: sa.Transport, v6: true},
		{proto: sa.ESP, encap: sad.EncapNone, v6: true},
		{proto: sa.ESP, encap: sad.EncapNone, mode: sa.Transport},
	} {
		t.Run(sc.String(), func(t *testing.T) {
			p := newPair(t, sc)
			o := *p.a.dp.SAD().Load().Outbound(ref)
			w := &unwrappingOutbound{Outbound: o.SA}
			if err := p.a.dp.InstallOutbound(&sad.OutboundSA{Protocol: o.Protocol, SPI: o.SPI, Mode: o.Mode, Ref: o.Ref, Encap: o.Encap, Remote: o.Remote, SA: w}); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				pkt := udpPacket(p.a, p.b, uint16(i+1), []byte("framed by the data plane"))
				p.a.tun.In <- pkt
				expect(t, p.b, pkt)
			}
			if w.nextSeqs != 3 {
				t.Errorf("wrapper's NextSeq called %d times, want 3", w.nextSeqs)
			}
		})
	}
}

// wholeRefusingOutbound hides an engine's whole-packet SealSeq behind
// Unwrap: the data plane must reach the engine's SealAH through it.
type wholeRefusingOutbound struct{ sad.Outbound }

func (w wholeRefusingOutbound) SealSeq([]byte, int, int, uint64) (int, int, error) {
	return 0, 0, errors.New("whole-packet SealSeq called")
}

func (w wholeRefusingOutbound) Unwrap() sad.Outbound { return w.Outbound }

// wholeRefusingInbound is an AH engine whose whole-packet Decrypt fails.
type wholeRefusingInbound struct{ *ah.Inbound }

func (w wholeRefusingInbound) Decrypt([]byte, int, int) (int, int, uint64, error) {
	return 0, 0, 0, errors.New("whole-packet Decrypt called")
}

// TestFramingAH checks that the data plane frames AH itself (frame.go): with
// the engines' whole-packet SealSeq and Decrypt made to fail, AH packets
// still go through, so they were sealed by SealAH behind the header the data
// plane wrote or split and verified by DecryptAH with its split, in both
// modes and families.
func TestFramingAH(t *testing.T) {
	for _, sc := range []scenario{
		{proto: sa.AH, encap: sad.EncapNone},
		{proto: sa.AH, encap: sad.EncapNone, v6: true},
		{proto: sa.AH, encap: sad.EncapNone, mode: sa.Transport},
		{proto: sa.AH, encap: sad.EncapNone, mode: sa.Transport, v6: true},
	} {
		t.Run(sc.String(), func(t *testing.T) {
			p := newPair(t, sc)
			o := *p.a.dp.SAD().Load().Outbound(ref)
			if err := p.a.dp.InstallOutbound(&sad.OutboundSA{Protocol: o.Protocol, SPI: o.SPI, Mode: o.Mode, Ref: o.Ref,
				Encap: o.Encap, Remote: o.Remote, SA: wholeRefusingOutbound{o.SA}}); err != nil {
				t.Fatal(err)
			}
			in := p.b.dp.RemoveInbound(sa.AH, o.SPI)
			if in == nil {
				t.Fatalf("B has no inbound SA %08x", o.SPI)
			}
			if err := p.b.dp.InstallInbound(&sad.InboundSA{Protocol: in.Protocol, SPI: in.SPI, Mode: in.Mode,
				Local: in.Local, Remote: in.Remote, LocalAddr: in.LocalAddr,
				SA: wholeRefusingInbound{in.SA.(*ah.Inbound)}}); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				pkt := udpPacket(p.a, p.b, uint16(i+1), []byte("AH framed by the data plane"))
				p.a.tun.In <- pkt
				expect(t, p.b, pkt)
			}
		})
	}
}

// TestInboundDuplicates sends every packet of an SA twice at once to the
// receiver, with two workers checking the replay window without a lock:
// AH and raw ESP as consecutive copies in one raw-socket batch, and ESP
// both in UDP and raw, so that the sequential stages of two sockets accept
// the same numbers at the same time. Exactly one copy of each is delivered
// and the other counted as a replay (RFC 4303, Section 3.4.3; RFC 4302,
// Section 3.4.3).
func TestInboundDuplicates(t *testing.T) {
	const n = 200
	for _, sc := range []scenario{
		{proto: sa.AH, encap: sad.EncapNone},
		{proto: sa.AH, encap: sad.EncapNone, mode: sa.Transport, v6: true},
		{proto: sa.ESP, encap: sad.EncapNone},
		{proto: sa.ESP, encap: sad.EncapUDP},
	} {
		t.Run(sc.String(), func(t *testing.T) {
			p := newPair(t, sc)
			// The copies come from elsewhere on the network, sealed with
			// A's outbound SA (which sends nothing else).
			raw, src := injector(p, sc.proto, sc.v6)
			udp := p.nw.UDP(netip.AddrPortFrom(src, 4500), 64, 4096)
			o := p.a.dp.SAD().Load().Outbound(ref).SA
			for i := range n {
				sealed := sealWith(t, o, udpPacket(p.a, p.b, uint16(i+1), []byte("sent twice")))
				var err error
				if sc.encap == sad.EncapUDP {
					// ESP in UDP: the bare ESP packet behind the outer
					// header, and the whole IP packet raw.
					var sp packet.Split
					if err := packet.SplitTransport(sealed, &sp); err != nil {
						t.Fatal(err)
					}
					if err := udp.Write([][]byte{sealed[sp.HdrLen:]}, netip.AddrPortFrom(p.b.outer, 4500)); err != nil {
						t.Fatal(err)
					}
					err = raw.Write([][]byte{sealed})
				} else {
					err = raw.Write([][]byte{sealed, sealed})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			for range n {
				select {
				case <-p.b.tun.Out:
				case <-time.After(5 * time.Second):
					t.Fatalf("fewer than %d packets delivered; stats %+v", n, p.b.dp.Stats())
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for p.b.dp.Stats().Drops["replay"] < n && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			st := p.b.dp.Stats()
			if st.Drops["replay"] != n || st.Opened != n {
				t.Fatalf("%d opened, %d replay drops, want %d each; stats %+v", st.Opened, st.Drops["replay"], n, st)
			}
			expectNothing(t, p.b, 50*time.Millisecond)
		})
	}
}
