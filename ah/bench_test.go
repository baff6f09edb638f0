package ah

import (
	"strconv"
	"testing"
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
