package ah

import (
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/goipsec/goipsec/sa"
)

// malformedSeeds returns the IP packets of tcpdump's AH crash capture.
func malformedSeeds(t testing.TB) [][]byte {
	t.Helper()
	return testenv.ReadPcap(t, testenv.TestdataFile(t, "corpus/tcpdump-malformed/heapoverflow-ip_demux_print.pcap"))
}

// FuzzOpen feeds arbitrary bytes to Open on SAs of every mode and family.
// Seeds: valid packets of every variant (so that mutations reach the ICV
// check and, through the ICV-valid seeds, the decapsulation), the AH packet
// of CVE-2016-7974 and the files in testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	s := suites(f)[1]
	i := integ(f, s)
	var ins []*Inbound
	for _, v := range variants {
		for _, esn := range []bool{false, true} {
			o, in := pair(f, v.config(i, esn))
			ins = append(ins, in)
			f.Add(seal(f, o, v.pkt()))
		}
	}
	for _, p := range malformedSeeds(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		buf := make([]byte, len(data)+16)
		for _, in := range ins {
			copy(buf[8:], data)
			ns, ne, seq, err := in.Decrypt(buf, 8, 8+len(data))
			if err == nil {
				if ns < 8 || ne > 8+len(data) || ns > ne {
					t.Fatalf("Decrypt returned [%d:%d] for input [8:%d]", ns, ne, 8+len(data))
				}
				if seq == 0 {
					t.Fatal("Decrypt succeeded with seq 0")
				}
			}
		}
	})
}

// FuzzSeal seals arbitrary bytes in every mode and family; whatever Seal
// accepts must open to the same bytes, except that an IPv4 header that went
// through transport mode comes back with a correct checksum, whatever it had
// before (testdata/fuzz/FuzzSeal/06c7fc03db22e32c).
func FuzzSeal(f *testing.F) {
	i := integ(f, suites(f)[1])
	type sapair struct {
		o  *Outbound
		in *Inbound
	}
	var pairs []sapair
	for _, v := range variants {
		o, in := pair(f, v.config(i, true))
		pairs = append(pairs, sapair{o, in})
		f.Add(v.pkt())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range pairs {
			buf, s, e := place(data, 0)
			ns, ne, err := p.o.Seal(buf, s, e)
			if err != nil {
				continue
			}
			os, oe, err := p.in.Open(buf, ns, ne)
			if err != nil {
				t.Fatalf("sealed packet does not open: %v", err)
			}
			got := buf[os:oe]
			want := data
			if p.o.mode == sa.Transport && data[0]>>4 == 4 {
				ihl := int(data[0]&15) * 4
				if csum(got[:ihl]) != 0 {
					t.Fatalf("IPv4 checksum wrong after the round trip: % x", got[:ihl])
				}
				want = append([]byte(nil), data...)
				want[10], want[11] = got[10], got[11]
			}
			if string(got) != string(want) {
				t.Fatalf("round trip:\n got % x\nwant % x", got, want)
			}
		}
	})
}
