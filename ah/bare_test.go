package ah

import (
	"bytes"
	"errors"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// TestSealAHSplit checks the framing contract for AH: with the split that
// packet.Decode made of the packet (the data plane's one parse) and, in
// tunnel mode, the outer header that packet.PutTunnelHeader wrote, SealAH
// produces byte for byte what the whole-packet Seal produces for the same
// packet and sequence number; DecryptAH, given the split of the received
// packet (packet.SplitTransport, as the data plane makes it), returns what
// follows AH and AH's next header, and with the header put back in front
// (transport mode) the packet sealed. Every variant, with and without ESN.
func TestSealAHSplit(t *testing.T) {
	i := integ(t, suites(t)[1])
	for _, v := range variants {
		for _, esn := range []bool{false, true} {
			name := v.name
			if esn {
				name += "/esn"
			}
			t.Run(name, func(t *testing.T) {
				c := v.config(i, esn)
				o1, in := pair(t, c)
				o2, _ := pair(t, c)
				p := v.pkt()
				whole := seal(t, o1, p)

				buf, s, e := place(p, 0)
				var info packet.Info
				if err := packet.Decode(buf[s:e], &info); err != nil {
					t.Fatal(err)
				}
				sp := info.Split
				seq, _ := o2.NextSeq()
				if v.mode == sa.Tunnel {
					local, remote, ttl := o2.Outer()
					if s = packet.PutTunnelHeader(buf, s, e, o2.AHLen(), local, remote, 51, ttl, uint16(seq), &sp); s < 0 {
						t.Fatal("no room for the outer header")
					}
				}
				ns, ne, err := o2.SealAH(buf, s, e, &sp, seq)
				if err != nil {
					t.Fatalf("SealAH: %v", err)
				}
				if !bytes.Equal(buf[ns:ne], whole) {
					t.Fatalf("SealAH differs from Seal:\n got % x\nwant % x", buf[ns:ne], whole)
				}

				rb := bytes.Clone(whole)
				var rsp packet.Split
				if err := packet.SplitTransport(rb, &rsp); err != nil {
					t.Fatal(err)
				}
				ps, pe, nh, seq2, err := in.DecryptAH(rb, 0, len(rb), &rsp)
				if err != nil || seq2 != seq {
					t.Fatalf("DecryptAH: seq %d, %v", seq2, err)
				}
				got := rb[ps:pe]
				if v.mode == sa.Transport {
					if nh != p[info.Split.NextHdrOff] {
						t.Fatalf("next header %d, want %d", nh, p[info.Split.NextHdrOff])
					}
					ns := packet.MoveHeader(rb, 0, &rsp, ps, nh)
					if err := packet.SetLength(rb[ns:pe], pe-ns); err != nil {
						t.Fatal(err)
					}
					got = rb[ns:pe]
				} else if nh != innerProto(p[0]>>4 == 6) {
					t.Fatalf("tunnel next header %d", nh)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("opened packet differs:\n got % x\nwant % x", got, p)
				}
				if err := in.Accept(seq2); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestSplitMismatch gives SealAH and DecryptAH splits that do not describe
// their packet, as a data plane bug would: each is refused with a drop
// reason (DropMalformed, or DropTruncated for a packet shorter than the split
// says), nothing panics, and the replay window does not move.
func TestSplitMismatch(t *testing.T) {
	i := integ(t, suites(t)[1])
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			o, in := pair(t, v.config(i, false))
			p := v.pkt()
			var good packet.Split
			if err := packet.SplitTransport(p, &good); err != nil {
				t.Fatal(err)
			}
			sealed := seal(t, o, p)
			var rgood packet.Split
			if err := packet.SplitTransport(sealed, &rgood); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []func(*packet.Split){
				func(sp *packet.Split) { sp.HdrLen += 8 },
				func(sp *packet.Split) { sp.HdrLen -= 4 },
				func(sp *packet.Split) { sp.HdrLen = 0 },
				func(sp *packet.Split) { sp.NextHdrOff = sp.HdrLen },
				func(sp *packet.Split) { sp.Version ^= 4 ^ 6 },
				func(sp *packet.Split) { sp.Version = 0 },
				func(sp *packet.Split) { sp.TotalLen++ },
				func(sp *packet.Split) { sp.TotalLen = sp.HdrLen },
				func(sp *packet.Split) { sp.Fragment = true },
			} {
				sp := good
				bad(&sp)
				buf, s, e := place(p, 0)
				if v.mode == sa.Transport {
					if _, _, err := o.SealAH(buf, s, e, &sp, 1); !errors.Is(err, sa.DropMalformed) && !errors.Is(err, sa.DropUnsupported) {
						t.Errorf("SealAH with split %+v: %v", sp, err)
					}
				}
				rsp := rgood
				bad(&rsp)
				rb := bytes.Clone(sealed)
				_, _, _, seq, err := in.DecryptAH(rb, 0, len(rb), &rsp)
				if err == nil || seq != 0 {
					t.Errorf("DecryptAH with split %+v: seq %d, %v", rsp, seq, err)
				}
			}
			if top := in.window.Top(); top != 0 {
				t.Fatalf("the window moved to %d", top)
			}
			// The right split still opens the packet.
			rsp := rgood
			if _, _, _, seq, err := in.DecryptAH(sealed, 0, len(sealed), &rsp); err != nil || seq != 1 {
				t.Fatalf("DecryptAH with the right split: seq %d, %v", seq, err)
			}
		})
	}
}

// FuzzDecryptAH opens arbitrary bytes with arbitrary splits: nothing
// panics, and a packet reported authentic comes back within its input.
func FuzzDecryptAH(f *testing.F) {
	i := integ(f, suites(f)[1])
	var ins []*Inbound
	for _, v := range variants {
		o, in := pair(f, v.config(i, true))
		ins = append(ins, in)
		sealed := seal(f, o, v.pkt())
		var sp packet.Split
		if err := packet.SplitTransport(sealed, &sp); err != nil {
			f.Fatal(err)
		}
		f.Add(sealed, uint8(sp.Version), uint16(sp.HdrLen), uint16(sp.NextHdrOff), uint16(sp.TotalLen), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, ver uint8, hdrLen, nhOff, total uint16, frag bool) {
		sp := packet.Split{Version: ver, HdrLen: int(hdrLen), NextHdrOff: int(nhOff), TotalLen: int(total), Fragment: frag}
		buf := make([]byte, len(data)+16)
		for _, in := range ins {
			copy(buf[8:], data)
			ps, pe, _, seq, err := in.DecryptAH(buf, 8, 8+len(data), &sp)
			if err == nil && (ps < 8 || pe > 8+len(data) || ps > pe || seq == 0) {
				t.Fatalf("DecryptAH returned [%d:%d] seq %d for input [8:%d]", ps, pe, seq, 8+len(data))
			}
		}
	})
}
