package dataplane

import (
	"testing"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/sa"
)

// BenchmarkFraming times the per-packet work of the data plane's stages on
// one packet, without the goroutines and channels between them: "out" is
// the outbound classification (SPD, SAD, sequence number), sealing and the
// framing for the socket; "roundtrip" adds, at the peer, the inbound
// classification, opening and the sequential checks (replay window,
// selectors). Inbound per packet is roundtrip less out. 1400-byte packets,
// AES-256-GCM (HMAC-SHA-256 for AH).
func BenchmarkFraming(b *testing.B) {
	for _, sc := range []scenario{
		{proto: sa.ESP, encap: sad.EncapUDP},
		{proto: sa.ESP, encap: sad.EncapUDP, mode: sa.Transport},
		{proto: sa.ESP, encap: sad.EncapNone},
		{proto: sa.ESP, encap: sad.EncapNone, mode: sa.Transport},
		{proto: sa.AH, encap: sad.EncapNone},
	} {
		for _, round := range []bool{false, true} {
			name := sc.String() + "/out"
			if round {
				name = sc.String() + "/roundtrip"
			}
			b.Run(name, func(b *testing.B) { benchFraming(b, sc, round) })
		}
	}
}

func benchFraming(b *testing.B, sc scenario, round bool) {
	p := newPair(b, sc)
	a, z := p.a.dp, p.b.dp
	pkt := udpPacket(p.a, p.b, 1, make([]byte, 1400-28))
	ob := newPool(1, 1, outboundBufSize(1500)).newBatch()
	ib := newPool(1, 1, inboundBufSize).newBatch()
	oe, ie := ob.elems[0], ib.elems[0]
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		copy(oe.buf[headroom:], pkt)
		oe.start, oe.end, ob.n = headroom, headroom+len(pkt), 1
		a.classifyOutboundFrom(ob, 0)
		a.seal(oe)
		wire, _, ok := a.outerRoute(oe)
		if !ok || oe.drop != sa.DropNone {
			b.Fatalf("outbound drop %v", oe.drop)
		}
		if !round {
			continue
		}
		n := copy(ie.buf[headroom:], wire)
		ib.sizes[0] = n
		if sc.encap == sad.EncapUDP {
			ib.addrs[0] = p.a.udp.LocalAddr()
			z.classifyUDP(ib, 1, 0)
		} else {
			z.classifyRaw(ib, 1, 0)
		}
		ib.n = 1
		z.open(ie)
		out, opened := ib.out[:0], uint64(0)
		z.checkInbound(ib, 0, &out, &opened)
		if opened != 1 {
			b.Fatalf("inbound drop %v", ie.drop)
		}
		ie.seq, ie.drop = 0, sa.DropNone
	}
}
