package testenv

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestReadCaptureTestdata reads every capture of the test data. The
// frame counts are those of pcap/keys.json; the IP packet counts were
// listed with tshark 4.0.17 (-Y "ip or ipv6"): every frame is IP except
// the 8 ARP frames of isakmp4500.pcap.
func TestReadCaptureTestdata(t *testing.T) {
	dir := Testdata(t)
	var keys struct {
		Captures map[string]struct {
			FrameCount int `json:"frame_count"`
			ESPFrames  []struct {
				Frame int `json:"frame"`
			} `json:"esp_frames"`
		} `json:"captures"`
	}
	ReadJSON(t, filepath.Join(dir, "pcap", "keys.json"), &keys)
	if len(keys.Captures) < 10 {
		t.Fatalf("keys.json lists %d captures", len(keys.Captures))
	}
	for name, c := range keys.Captures {
		pkts := ReadCapture(t, filepath.Join(dir, "pcap", name))
		want := c.FrameCount
		if name == "isakmp4500.pcap" {
			want -= 8
		}
		if len(pkts) != want {
			t.Errorf("%s: %d IP packets, want %d", name, len(pkts), want)
		}
		byFrame := map[int][]byte{}
		for i, p := range pkts {
			if p.Frame < 1 || p.Frame > c.FrameCount || i > 0 && p.Frame <= pkts[i-1].Frame {
				t.Errorf("%s: frame number %d out of order or range", name, p.Frame)
			}
			byFrame[p.Frame] = p.IP
		}
		// The ESP frames are IPv4, protocol 50 or UDP (RFC 3948).
		for _, f := range c.ESPFrames {
			ip := byFrame[f.Frame]
			if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 50 && ip[9] != 17 {
				t.Errorf("%s frame %d: not IPv4 ESP: % x", name, f.Frame, ip[:min(len(ip), 20)])
			}
		}
		if got := ReadPcap(t, filepath.Join(dir, "pcap", name)); len(got) != len(pkts) {
			t.Errorf("%s: ReadPcap returns %d packets, ReadCapture %d", name, len(got), len(pkts))
		}
	}
	// The malformed captures are well-formed files around bad packets.
	files, err := filepath.Glob(filepath.Join(dir, "corpus", "tcpdump-malformed", "*.pcap*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no malformed captures: %v", err)
	}
	for _, f := range files {
		if len(ReadCapture(t, f)) == 0 {
			t.Errorf("%s: no IP packet", filepath.Base(f))
		}
	}
}

// TestReadCaptureLinkTypes builds captures by hand, following the pcap
// and pcapng formats (draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng) and
// the link-layer header types of the tcpdump.org list.
func TestReadCaptureLinkTypes(t *testing.T) {
	ip4 := append([]byte{0x45}, make([]byte, 19)...)
	ip6 := append([]byte{0x60}, make([]byte, 39)...)
	eth := func(et uint16, p []byte) []byte {
		f := make([]byte, 12, 14+len(p))
		return append(binary.BigEndian.AppendUint16(f, et), p...)
	}
	vlan := func(p []byte) []byte {
		f := make([]byte, 12, 18+len(p))
		f = binary.BigEndian.AppendUint16(f, 0x8100)
		f = binary.BigEndian.AppendUint16(f, 7)
		return append(binary.BigEndian.AppendUint16(f, 0x86dd), p...)
	}
	sll := func(et uint16, p []byte) []byte {
		f := make([]byte, 14, 16+len(p))
		return append(binary.BigEndian.AppendUint16(f, et), p...)
	}
	sll2 := func(p []byte) []byte {
		f := binary.BigEndian.AppendUint16(nil, 0x0800)
		return append(append(f, make([]byte, 18)...), p...)
	}
	pcap := func(bo binary.AppendByteOrder, link uint32, frames ...[]byte) []byte {
		b := bo.AppendUint32(nil, 0xa1b2c3d4)
		b = bo.AppendUint16(b, 2)
		b = bo.AppendUint16(b, 4)
		b = append(b, make([]byte, 8)...)
		b = bo.AppendUint32(b, 65535)
		b = bo.AppendUint32(b, link)
		for _, f := range frames {
			b = append(b, make([]byte, 8)...)
			b = bo.AppendUint32(b, uint32(len(f)))
			b = bo.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
		return b
	}
	pcapng := func(bo binary.AppendByteOrder, link uint16, frames ...[]byte) []byte {
		block := func(b []byte, typ uint32, body []byte) []byte {
			for len(body)%4 != 0 {
				body = append(body, 0)
			}
			n := uint32(12 + len(body))
			b = bo.AppendUint32(b, typ)
			b = bo.AppendUint32(b, n)
			b = append(b, body...)
			return bo.AppendUint32(b, n)
		}
		shb := bo.AppendUint32(nil, 0x1a2b3c4d)
		shb = bo.AppendUint16(shb, 1)
		shb = bo.AppendUint16(shb, 0)
		shb = append(shb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		b := block(nil, 0x0a0d0d0a, shb)
		idb := bo.AppendUint16(nil, link)
		idb = append(idb, 0, 0, 0, 0, 0, 0)
		b = block(b, 1, idb)
		for _, f := range frames {
			epb := bo.AppendUint32(nil, 0)
			epb = append(epb, make([]byte, 8)...)
			epb = bo.AppendUint32(epb, uint32(len(f)))
			epb = bo.AppendUint32(epb, uint32(len(f)))
			b = block(b, 6, append(epb, f...))
		}
		return b
	}
	arp := eth(0x0806, make([]byte, 28))
	for _, tc := range []struct {
		name   string
		file   []byte
		frames []int
		want   [][]byte
	}{
		{"ethernet-le", pcap(binary.LittleEndian, 1, eth(0x0800, ip4), arp, vlan(ip6)), []int{1, 3}, [][]byte{ip4, ip6}},
		{"ethernet-fcs-bits", pcap(binary.LittleEndian, 1|0x10000000, eth(0x86dd, ip6)), []int{1}, [][]byte{ip6}},
		{"cooked-be", pcap(binary.BigEndian, 113, sll(0x0806, ip4), sll(0x86dd, ip6)), []int{2}, [][]byte{ip6}},
		{"cooked2", pcap(binary.LittleEndian, 276, sll2(ip4)), []int{1}, [][]byte{ip4}},
		{"raw", pcap(binary.BigEndian, 101, ip6, []byte{0x10}, ip4), []int{1, 3}, [][]byte{ip6, ip4}},
		{"loopback", pcap(binary.LittleEndian, 0, append([]byte{2, 0, 0, 0}, ip4...)), []int{1}, [][]byte{ip4}},
		{"pcapng-le", pcapng(binary.LittleEndian, 1, arp, eth(0x0800, ip4)), []int{2}, [][]byte{ip4}},
		{"pcapng-be-raw", pcapng(binary.BigEndian, 101, ip6, ip4), []int{1, 2}, [][]byte{ip6, ip4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c")
			if err := os.WriteFile(path, tc.file, 0o600); err != nil {
				t.Fatal(err)
			}
			got := ReadCapture(t, path)
			if len(got) != len(tc.want) {
				t.Fatalf("%d packets, want %d", len(got), len(tc.want))
			}
			for i, p := range got {
				if p.Frame != tc.frames[i] || !bytes.Equal(p.IP, tc.want[i]) {
					t.Errorf("packet %d: frame %d % x, want frame %d % x", i, p.Frame, p.IP, tc.frames[i], tc.want[i])
				}
			}
		})
	}
}

// TestCaptureFramesErrors checks that broken files are refused, not read
// past their end.
func TestCaptureFramesErrors(t *testing.T) {
	good := append(binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4), make([]byte, 20)...)
	rec := binary.LittleEndian.AppendUint32(make([]byte, 8), 100) // caplen 100
	rec = binary.LittleEndian.AppendUint32(rec, 100)
	for name, b := range map[string][]byte{
		"short":      good[:10],
		"magic":      append([]byte{1, 2, 3, 4}, good[4:]...),
		"record-cut": append(bytes.Clone(good), rec[:10]...),
		"frame-cut":  append(append(bytes.Clone(good), rec...), make([]byte, 99)...),
		"pcapng-cut": {0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"pcapng-bom": {0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if _, msg := captureFrames(b); msg == "" {
			t.Errorf("%s: accepted", name)
		}
	}
}
