package ikewire

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

// testdata returns the path of a file of the third-party test data
// (testdata/ at the module root).
func testdata(t testing.TB, rel string) string {
	t.Helper()
	return testenv.TestdataFile(t, rel)
}

// openikedCorpus returns up to limit files (all if limit <= 0) of the
// openiked OSS-Fuzz corpus, in archive order.
func openikedCorpus(t testing.TB, limit int) [][]byte { return testenv.OpenikedCorpus(t, limit) }

// libreswanPacket is one entry of corpus/libreswan-bad-ikev2.json.
type libreswanPacket struct {
	ID  string `json:"id"`
	Hex string `json:"hex"`
	Len int    `json:"len"`
}

func libreswanPackets(t testing.TB) (ikev2, ikev1 []libreswanPacket) {
	t.Helper()
	var doc struct {
		IKEv2 []libreswanPacket `json:"ikev2_packets"`
		IKEv1 []libreswanPacket `json:"ikev1_cve_packets"`
	}
	testenv.ReadJSON(t, testdata(t, "corpus/libreswan-bad-ikev2.json"), &doc)
	return doc.IKEv2, doc.IKEv1
}

// ikeFrame is the IKE message carried by one captured frame.
type ikeFrame struct {
	Frame int // 1-based frame number in the capture
	Port  int // UDP port that identified it (500 or 4500)
	Msg   []byte
}

// pcapIKE returns the IKE messages in a pcap or pcapng capture: UDP port 500
// payloads, and UDP port 4500 payloads that start with the non-ESP marker
// (RFC 3948, Section 2.2), with the marker stripped. Packets it cannot
// decode (truncated, IP fragments, other protocols) are skipped.
func pcapIKE(t testing.TB, path string) []ikeFrame {
	t.Helper()
	var out []ikeFrame
	for _, p := range testenv.ReadCapture(t, path) {
		udp, ok := udpPayload(p.IP)
		if !ok {
			continue
		}
		sport, dport := int(binary.BigEndian.Uint16(udp[0:2])), int(binary.BigEndian.Uint16(udp[2:4]))
		m := udp[8:]
		switch {
		case sport == 500 || dport == 500:
			out = append(out, ikeFrame{p.Frame, 500, m})
		case sport == 4500 || dport == 4500:
			if len(m) >= 4 && binary.BigEndian.Uint32(m) == 0 {
				out = append(out, ikeFrame{p.Frame, 4500, m[4:]})
			}
		}
	}
	return out
}

// udpPayload returns the UDP header and payload of an unfragmented IPv4 or
// IPv6 packet whose (first) next header is UDP.
func udpPayload(ip []byte) ([]byte, bool) {
	var udp []byte
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < 20 {
			return nil, false
		}
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		frag := binary.BigEndian.Uint16(ip[6:]) & 0x3fff
		if ip[9] != 17 || frag != 0 || ihl < 20 || total < ihl || total > len(ip) {
			return nil, false
		}
		udp = ip[ihl:total]
	case 6:
		if len(ip) < 40 || ip[6] != 17 {
			return nil, false
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+pl > len(ip) {
			return nil, false
		}
		udp = ip[40 : 40+pl]
	}
	if len(udp) < 8 {
		return nil, false
	}
	ul := int(binary.BigEndian.Uint16(udp[4:]))
	if ul < 8 || ul > len(udp) {
		return nil, false
	}
	return udp[:ul], true
}

// capturesIn lists the capture files in dir whose names match prefix.
func capturesIn(t testing.TB, dir, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, prefix) && (strings.HasSuffix(n, ".pcap") || strings.HasSuffix(n, ".pcapng")) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}
