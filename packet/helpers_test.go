package packet

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

// refChecksum is a plain RFC 1071 checksum, 16 bits at a time, as a reference
// for the 64-bit implementation.
func refChecksum(b []byte, initial uint32) uint16 {
	s := initial>>16 + initial&0xffff
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = s&0xffff + s>>16
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// innerPacket is a decrypted inner packet from the test data with the
// facts its source states in a summary line.
type innerPacket struct {
	name     string
	pkt      []byte
	src, dst string
	proto    uint8
	icmpType int // -1 if none
	length   int
}

// loadInnerPackets reads the decrypted inner IPv4 packets of
// esp/scapy-linux-reference.json (Linux xfrm) and pcap/keys.json (tcpdump
// captures), with their summaries such as
// "IPv4 10.200.0.1 -> 10.100.0.1 ICMP type 8 id 351 seq 1, 84 bytes".
func loadInnerPackets(t *testing.T) []innerPacket {
	td := testenv.Testdata(t)
	var out []innerPacket
	add := func(name, hexPkt, summary string) {
		pkt, err := hex.DecodeString(hexPkt)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f := strings.Fields(strings.NewReplacer(",", " ").Replace(summary))
		if len(f) < 4 || f[0] != "IPv4" || f[2] != "->" {
			t.Fatalf("%s: unexpected summary %q", name, summary)
		}
		p := innerPacket{name: name, pkt: pkt, src: f[1], dst: f[3], icmpType: -1}
		for i := 4; i < len(f); i++ {
			switch {
			case f[i] == "ICMP" && i+2 < len(f) && f[i+1] == "type":
				p.proto = 1
				p.icmpType, _ = strconv.Atoi(f[i+2])
			case f[i] == "proto" && i+1 < len(f):
				n, _ := strconv.Atoi(f[i+1])
				p.proto = uint8(n)
			case f[i] == "bytes" && i > 0:
				p.length, _ = strconv.Atoi(f[i-1])
			}
		}
		out = append(out, p)
	}
	var ref struct {
		Packets []struct {
			Title     string
			Decrypted struct {
				InnerPacketHex     string `json:"inner_packet_hex"`
				InnerPacketSummary string `json:"inner_packet_summary"`
			}
		}
	}
	testenv.ReadJSON(t, filepath.Join(td, "esp", "scapy-linux-reference.json"), &ref)
	for _, p := range ref.Packets {
		add(p.Title, p.Decrypted.InnerPacketHex, p.Decrypted.InnerPacketSummary)
	}
	var keys struct {
		Captures map[string]struct {
			ESPFrames []struct {
				Frame          int
				InnerSummary   string `json:"inner_summary"`
				InnerPacketHex string `json:"inner_packet_hex"`
			} `json:"esp_frames"`
		}
	}
	testenv.ReadJSON(t, filepath.Join(td, "pcap", "keys.json"), &keys)
	for name, c := range keys.Captures {
		for _, f := range c.ESPFrames {
			if f.InnerPacketHex != "" {
				add(name+" frame "+strconv.Itoa(f.Frame), f.InnerPacketHex, f.InnerSummary)
			}
		}
	}
	if len(out) < 11 {
		t.Fatalf("only %d inner packets", len(out))
	}
	return out
}

// fuzzSeed reads one []byte seed of the checked-in fuzz corpus, written by
// testdata/gen_fuzz_seeds.py.
func fuzzSeed(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzDecode", name))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: bad corpus file", name)
	}
	lit := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}
