package dataplane

import (
	"testing"

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
