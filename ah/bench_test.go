package ah

import (
	"strconv"
	"testing"

	"github.com/goipsec/goipsec/internal/benchtest"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/replay"
	"github.com/goipsec/goipsec/sa"
)

// benchSizes are inner packet lengths: a small packet and one that fills a
// 1500-byte MTU once AH and the outer header are added.
var benchSizes = []int{64, 1400}

// BenchmarkSeal measures tunnel-mode IPv4 Seal per suite and packet size.
func BenchmarkSeal(b *testing.B) {
	for _, s := range suites(b) {
		for _, n := range benchSizes {
			b.Run(s.Name+"/"+strconv.Itoa(n), func(b *testing.B) {
				v := variants[0]
				c := v.config(integ(b, s), false)
				c.StartSeq = 0
				o, _ := pair(b, c)
				p := ipv4Pkt(in4S, in4D, 17, nil, payload(n-20))
				buf, st, e := place(p, 0)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					// Tunnel mode leaves the inner packet as it is.
					if _, _, err := o.Seal(buf, st, e); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpen measures tunnel-mode IPv4 Open (Decrypt and Accept) per
// suite and packet size. Packets are sealed in batches of 1024 with the
// timer stopped; Open does not change a tunnel-mode packet's bytes outside
// the ICV field, which it rewrites with the same value.
func BenchmarkOpen(b *testing.B) {
	const batch = 1024
	for _, s := range suites(b) {
		for _, n := range benchSizes {
			b.Run(s.Name+"/"+strconv.Itoa(n), func(b *testing.B) {
				v := variants[0]
				o, in := pair(b, v.config(integ(b, s), true))
				p := ipv4Pkt(in4S, in4D, 17, nil, payload(n-20))
				type sealed struct {
					buf    []byte
					ns, ne int
				}
				pkts := make([]sealed, batch)
				for i := range pkts {
					buf, _, _ := place(p, 0)
					pkts[i].buf = buf
				}
				fill := func() {
					for i := range pkts {
						copy(pkts[i].buf[headroom:], p)
						ns, ne, err := o.Seal(pkts[i].buf, headroom, headroom+len(p))
						if err != nil {
							b.Fatal(err)
						}
						pkts[i].ns, pkts[i].ne = ns, ne
					}
				}
				fill()
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i == batch {
						b.StopTimer()
						fill()
						i = 0
						b.StartTimer()
					}
					q := &pkts[i]
					if _, _, err := in.Open(q.buf, q.ns, q.ne); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkFramingOldNew compares, interleaved in batches of 8 packets so
// that a loaded machine disturbs both alike, the per-packet work of AH
// before and after the data plane took over its framing (issue 9), with
// HMAC-SHA2-256-128 on IPv4 packets of 64 and 1400 bytes, and reports each
// as a metric, the median of the per-packet times:
//
//   - tunnel/out: old oldSealSeq (its own parse and outer header); new
//     packet.PutTunnelHeader (with room for AH) and SealAH;
//   - tunnel/in: old oldDecrypt (which parses the packet again) and Accept;
//     new DecryptAH with the data plane's split and Accept;
//   - transport/out: old oldSealSeq; new SealAH with the data plane's split;
//   - transport/in: old oldDecrypt and Accept; new DecryptAH, the header
//     moved back (as frame.go does) and Accept.
//
// The parse that the data plane makes anyway (packet.Decode outbound,
// packet.SplitTransport of a received packet) is outside both, as in
// package esp's BenchmarkFramingOldNew.
func BenchmarkFramingOldNew(b *testing.B) {
	const ring, batch = 256, 8
	s := suites(b)[1] // sha256
	type bcase struct {
		name string
		v    variant
		out  bool
		size int
	}
	var cases []bcase
	for _, size := range benchSizes {
		for _, tc := range []bcase{
			{"tunnel/out", variants[0], true, size},
			{"tunnel/in", variants[0], false, size},
			{"transport/out", variants[4], true, size},
			{"transport/in", variants[4], false, size},
		} {
			cases = append(cases, tc)
		}
	}
	for _, tc := range cases {
		b.Run(tc.name+"/"+strconv.Itoa(tc.size), func(b *testing.B) {
			i := integ(b, s)
			c := tc.v.config(i, false)
			c.ReplayWindow = 2 * ring
			o1, in1 := pair(b, c)
			o2, in2 := pair(b, c)
			src, dst := addrA, addrB
			if tc.v.mode == sa.Tunnel {
				src, dst = in4S, in4D
			}
			pkt := ipv4Pkt(src, dst, 17, nil, payload(tc.size-20))
			var sp packet.Split
			if err := packet.SplitTransport(pkt, &sp); err != nil {
				b.Fatal(err)
			}
			buf1, st, e := place(pkt, 64) // room for a received packet
			buf2, _, _ := place(pkt, 64)
			var sealed [ring][]byte
			for k := range sealed {
				sealed[k] = seal(b, o1, pkt)
			}
			var rsp packet.Split // the split of a received packet
			if err := packet.SplitTransport(sealed[0], &rsp); err != nil {
				b.Fatal(err)
			}
			var seq1, seq2 uint64
			oldFn := func(k int) error {
				if tc.out {
					copy(buf1[st:e], pkt)
					seq1++
					_, _, err := o1.oldSealSeq(buf1, st, e, seq1)
					return err
				}
				copy(buf1[st:], sealed[k])
				_, _, seq, err := in1.oldDecrypt(buf1, st, st+len(sealed[k]))
				if err != nil {
					return err
				}
				return in1.Accept(seq)
			}
			newFn := func(k int) error {
				if tc.out {
					copy(buf2[st:e], pkt)
					seq2++
					sp2 := sp
					start := st
					if tc.v.mode == sa.Tunnel {
						local, remote, ttl := o2.Outer()
						start = packet.PutTunnelHeader(buf2, st, e, o2.AHLen(), local, remote, 51, ttl, uint16(seq2), &sp2)
					}
					_, _, err := o2.SealAH(buf2, start, e, &sp2, seq2)
					return err
				}
				copy(buf2[st:], sealed[k])
				end := st + len(sealed[k])
				ps, pe, nh, seq, err := in2.DecryptAH(buf2, st, end, &rsp)
				if err != nil {
					return err
				}
				if tc.v.mode == sa.Transport {
					ns := packet.MoveHeader(buf2, st, &rsp, ps, nh)
					if err := packet.SetLength(buf2[ns:pe], pe-ns); err != nil {
						return err
					}
				}
				return in2.Accept(seq)
			}
			reset := func() {
				in1.window, _ = replay.New(2*ring, false)
				in2.window, _ = replay.New(2*ring, false)
			}
			if tc.out {
				reset = nil
			}
			benchtest.OldNew(b, batch, ring, reset, oldFn, newFn)
		})
	}
}
