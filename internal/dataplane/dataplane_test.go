package dataplane

import (
	"testing"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/sa"
)

// TestRoundTrip sends packets both ways through every protocol, mode, IP
// version and encapsulation, and checks they arrive unchanged (tunnel mode)
// or with the fields transport mode may change restored.
func TestRoundTrip(t *testing.T) {
	var scs []scenario
	for _, v6 := range []bool{false, true} {
		for _, mode := range []sa.Mode{sa.Tunnel, sa.Transport} {
			scs = append(scs,
				scenario{proto: sa.ESP, mode: mode, v6: v6, encap: sad.EncapUDP},
				scenario{proto: sa.ESP, mode: mode, v6: v6, encap: sad.EncapNone},
				scenario{proto: sa.AH, mode: mode, v6: v6, encap: sad.EncapNone},
			)
		}
	}
	for _, sc := range scs {
		t.Run(sc.String(), func(t *testing.T) {
			p := newPair(t, sc)
			for i := range 20 {
				ab := udpPacket(p.a, p.b, uint16(1000+i), []byte("hello from a"))
				p.a.tun.In <- ab
				expect(t, p.b, ab)
				ba := udpPacket(p.b, p.a, uint16(2000+i), []byte("and hello from b, a little longer"))
				p.b.tun.In <- ba
				expect(t, p.a, ba)
			}
			st := p.b.dp.Stats()
			if st.Opened != 20 || st.Sealed != 20 || len(st.Drops) != 0 {
				t.Errorf("B stats: %+v", st)
			}
		})
	}
}
