package esp

import (
	"bytes"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// TestBareESP checks the framing contract: SealESP produces exactly the ESP
// part of what Seal produces for the same packet and sequence number (no IP
// header written in tunnel mode, the packet's own header moved in front of
// ESP in transport mode), and DecryptESP opens it without any header, given
// the outer addresses, returning the payload and its next header. Tunnel and
// transport, IPv4 and IPv6, with ESN and TFC padding.
func TestBareESP(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		pkt  []byte
		v6   bool // outer family
	}{
		{"tunnel4", Config{Mode: sa.Tunnel, Local: v4a, Remote: v4b}, innerPacket(false, 100), false},
		{"tunnel6-esn-tfc", Config{Mode: sa.Tunnel, Local: v6a, Remote: v6b, ESN: true, TFCPadTo: 300}, innerPacket(true, 100), true},
		{"tunnel6-in-4", Config{Mode: sa.Tunnel, Local: v4a, Remote: v4b}, innerPacket(true, 100), false},
		{"transport4", Config{Mode: sa.Transport}, ipv4Packet(v4a, v4b, 1, nil, icmpEcho(8, 50)), false},
		{"transport6-esn", Config{Mode: sa.Transport, ESN: true}, ipv6Packet(v6a, v6b, 58, nil, icmpEcho(128, 50)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o1, in := newPair(t, "aes128gcm16", tc.c)
			o2, _ := newPair(t, "aes128gcm16", tc.c)
			whole := seal(t, o1, tc.pkt)

			buf, s, e := place(tc.pkt)
			var sp packet.Split
			if err := packet.SplitTransport(buf[s:e], &sp); err != nil {
				t.Fatal(err)
			}
			seq, _ := o2.NextSeq()
			es, ee, err := o2.SealESP(buf, s, e, &sp, seq)
			if err != nil {
				t.Fatal(err)
			}
			bare := bytes.Clone(buf[:cap(buf)][es:ee])
			hdr := len(whole) - len(bare)
			if !bytes.Equal(whole[hdr:], bare) {
				t.Fatalf("bare ESP differs from the ESP part of Seal's packet")
			}
			if tc.c.Mode == sa.Transport && !bytes.Equal(buf[es-sp.HdrLen : es][sp.NextHdrOff:sp.NextHdrOff+1], []byte{protoESP}) {
				t.Fatal("transport mode: the header in front of ESP does not name ESP")
			}

			src, dst := v4a, v4b
			if tc.v6 {
				src, dst = v6a, v6b
			}
			rb := bytes.Clone(bare)
			ps, pe, nh, seq2, err := in.DecryptESP(rb, 0, len(rb), src, dst)
			if err != nil || seq2 != seq {
				t.Fatalf("DecryptESP: seq %d, %v", seq2, err)
			}
			want := tc.pkt
			if tc.c.Mode == sa.Transport {
				want = tc.pkt[sp.HdrLen:]
				if nh != tc.pkt[sp.NextHdrOff] {
					t.Fatalf("next header %d, want %d", nh, tc.pkt[sp.NextHdrOff])
				}
			} else if nh != protoIPv4 && nh != protoIPv6 {
				t.Fatalf("tunnel next header %d", nh)
			}
			if !bytes.Equal(rb[ps:pe], want) {
				t.Fatalf("payload differs:\n got %x\nwant %x", rb[ps:pe], want)
			}
			if err := in.Accept(seq2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOuter checks that Outer reports the tunnel's addresses and nothing in
// transport mode, where the packet keeps its own header.
func TestOuter(t *testing.T) {
	o, _ := newPair(t, "aes128gcm16", Config{Mode: sa.Tunnel, Local: v6a, Remote: v6b, TTL: 9})
	if l, r, ttl := o.Outer(); l != v6a || r != v6b || ttl != 9 || o.Mode() != sa.Tunnel {
		t.Errorf("tunnel Outer = %v %v %d", l, r, ttl)
	}
	o, _ = newPair(t, "aes128gcm16", Config{Mode: sa.Transport, Local: v4a, Remote: v4b})
	if l, r, _ := o.Outer(); l.IsValid() || r.IsValid() || o.Mode() != sa.Transport {
		t.Errorf("transport Outer = %v %v", l, r)
	}
}
