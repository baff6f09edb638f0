package dataplane

import (
	"errors"
	"testing"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/internal/sad"
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
