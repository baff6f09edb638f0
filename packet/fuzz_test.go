package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/goipsec/goipsec/iana"
)

// FuzzDecode checks that Decode and FixTransportChecksum never panic, that
// what Decode reports lies within the packet, and that a fixed checksum
// verifies with the reference implementation. The seed corpus is in
// testdata/fuzz/FuzzDecode (written by testdata/gen_fuzz_seeds.py).
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var info Info
		err := Decode(b, &info)
		if err != nil {
			fixed := bytes.Clone(b)
			if FixTransportChecksum(fixed) == nil {
				t.Fatalf("Decode failed (%v) but FixTransportChecksum succeeded", err)
			}
			if !bytes.Equal(fixed, b) {
				t.Fatal("FixTransportChecksum changed a packet it rejected")
			}
			return
		}
		if info.Version != 4 && info.Version != 6 {
			t.Fatalf("version %d", info.Version)
		}
		if info.Src.Is4() != (info.Version == 4) || info.Dst.Is4() != (info.Version == 4) {
			t.Fatalf("address families %v %v for version %d", info.Src, info.Dst, info.Version)
		}
		if info.TotalLen > len(b) || info.L4Offset > info.TotalLen || info.L4Offset < IPv4MinHeaderLen {
			t.Fatalf("offsets %d/%d of %d bytes", info.L4Offset, info.TotalLen, len(b))
		}
		if (info.HasPorts || info.HasICMP) && info.L4Offset+4 > info.TotalLen {
			t.Fatal("ports past the end")
		}
		if info.HasPorts && info.HasICMP {
			t.Fatal("both ports and ICMP")
		}
		if info.FirstFragment && !info.IsFragment {
			t.Fatal("FirstFragment without IsFragment")
		}
		if info.HasPorts && binary.BigEndian.Uint16(b[info.L4Offset:]) != info.SrcPort {
			t.Fatal("SrcPort")
		}

		// FixTransportChecksum must leave a checksum that verifies.
		pkt := bytes.Clone(b)
		if err := FixTransportChecksum(pkt); err != nil {
			return
		}
		if !bytes.Equal(pkt[:info.L4Offset], b[:info.L4Offset]) || !bytes.Equal(pkt[info.TotalLen:], b[info.TotalLen:]) {
			t.Fatal("FixTransportChecksum changed bytes outside the upper-layer header")
		}
		l4 := pkt[info.L4Offset:info.TotalLen]
		switch {
		case info.Proto == iana.ProtoUDP:
			l4 = l4[:binary.BigEndian.Uint16(l4[4:])]
			if info.Version == 4 && l4[6] == 0 && l4[7] == 0 {
				return
			}
		case info.Proto == iana.ProtoTCP, info.Proto == iana.ProtoICMPv6 && info.Version == 6:
		default:
			if !bytes.Equal(pkt, b) {
				t.Fatal("FixTransportChecksum changed another protocol")
			}
			return
		}
		var ph []byte
		if info.Version == 4 {
			s, d := info.Src.As4(), info.Dst.As4()
			ph = append(append(ph, s[:]...), d[:]...)
			ph = append(ph, 0, info.Proto, byte(len(l4)>>8), byte(len(l4)))
		} else {
			s, d := info.Src.As16(), info.Dst.As16()
			ph = append(append(ph, s[:]...), d[:]...)
			ph = append(ph, byte(len(l4)>>24), byte(len(l4)>>16), byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, info.Proto)
		}
		if c := refChecksum(append(ph, l4...), 0); c != 0 {
			t.Fatalf("fixed checksum does not verify: %#04x", c)
		}
	})
}

// FuzzTransportSplit checks that TransportSplit never panics and agrees with
// Decode: the split lies within the IP header chain Decode walked, and the
// next header byte lies before it.
func FuzzTransportSplit(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		hl, nho, err := TransportSplit(b)
		var info Info
		derr := Decode(b, &info)
		if err != nil {
			if hl != 0 || nho != 0 {
				t.Fatal("offsets with an error")
			}
			if derr == nil && !(info.IsFragment && !info.FirstFragment) {
				t.Fatalf("TransportSplit failed (%v) where Decode succeeded", err)
			}
			return
		}
		if nho >= hl || hl > len(b) {
			t.Fatalf("split %d, next header at %d, of %d bytes", hl, nho, len(b))
		}
		switch b[0] >> 4 {
		case 4:
			if nho != 9 || hl != IPv4(b).HeaderLen() {
				t.Fatalf("IPv4 split %d/%d", hl, nho)
			}
		case 6:
			if nho != 6 && (nho < IPv6HeaderLen || nho%8 != 0) {
				t.Fatalf("IPv6 next header offset %d", nho)
			}
			if hl < IPv6HeaderLen || hl%8 != 0 || hl > IPv6HeaderLen+int(IPv6(b).PayloadLength()) {
				t.Fatalf("IPv6 split %d", hl)
			}
		default:
			t.Fatal("split of a non-IP packet")
		}
		if derr == nil && !info.IsFragment && hl > info.L4Offset {
			t.Fatalf("split %d after the upper layer at %d", hl, info.L4Offset)
		}
		// Decode finds the same split in its own pass.
		var sp Split
		if SplitTransport(b, &sp) != nil || sp.HdrLen != hl || sp.NextHdrOff != nho {
			t.Fatalf("SplitTransport %+v, TransportSplit %d/%d", sp, hl, nho)
		}
		if derr == nil && !(info.IsFragment && !info.FirstFragment) && info.Split != sp {
			t.Fatalf("Decode's split %+v, SplitTransport's %+v", info.Split, sp)
		}
	})
}
