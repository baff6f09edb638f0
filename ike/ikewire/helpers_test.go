package ikewire

import (
	"archive/tar"
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

// shared returns the path of a file in the shared third-party test data.
func shared(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(testenv.SharedTestdata(t), rel)
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// openikedCorpus returns up to limit files (all if limit <= 0) of the
// openiked OSS-Fuzz corpus, in archive order.
func openikedCorpus(t testing.TB, limit int) [][]byte {
	t.Helper()
	f, err := os.Open(shared(t, "corpus/ike-openiked-corpus.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out [][]byte
	for limit <= 0 || len(out) < limit {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

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
	readJSON(t, shared(t, "corpus/libreswan-bad-ikev2.json"), &doc)
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
// (RFC 3948, Section 2.2), with the marker stripped. Frames it cannot
// decode (truncated, IP fragments, other protocols) are skipped.
func pcapIKE(t testing.TB, path string) []ikeFrame {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []ikeFrame
	for i, fr := range pcapFrames(b) {
		udp, ok := udpPayload(fr.link, fr.data)
		if !ok {
			continue
		}
		sport, dport := int(binary.BigEndian.Uint16(udp[0:2])), int(binary.BigEndian.Uint16(udp[2:4]))
		p := udp[8:]
		switch {
		case sport == 500 || dport == 500:
			out = append(out, ikeFrame{i + 1, 500, p})
		case sport == 4500 || dport == 4500:
			if len(p) >= 4 && binary.BigEndian.Uint32(p) == 0 {
				out = append(out, ikeFrame{i + 1, 4500, p[4:]})
			}
		}
	}
	return out
}

type frame struct {
	link uint32
	data []byte
}

// pcapFrames splits a pcap (24-byte global header, 16-byte record headers,
// either byte order) or pcapng (SHB, IDB, EPB blocks) capture into frames.
func pcapFrames(b []byte) []frame {
	if len(b) < 24 {
		return nil
	}
	var out []frame
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d, 0xd4c3b2a1, 0x4d3cb2a1:
		var bo binary.ByteOrder = binary.LittleEndian
		if m := binary.LittleEndian.Uint32(b); m == 0xd4c3b2a1 || m == 0x4d3cb2a1 {
			bo = binary.BigEndian
		}
		link := bo.Uint32(b[20:24]) & 0xffff
		for off := 24; off+16 <= len(b); {
			n := int(bo.Uint32(b[off+8:]))
			off += 16
			if n > len(b)-off {
				n = len(b) - off
			}
			out = append(out, frame{link, b[off : off+n]})
			off += n
		}
	case 0x0a0d0d0a:
		var bo binary.ByteOrder = binary.LittleEndian
		var links []uint32
		for off := 0; off+12 <= len(b); {
			if binary.LittleEndian.Uint32(b[off:]) == 0x0a0d0d0a {
				if binary.LittleEndian.Uint32(b[off+8:]) == 0x1a2b3c4d {
					bo = binary.LittleEndian
				} else {
					bo = binary.BigEndian
				}
			}
			typ, blen := bo.Uint32(b[off:]), int(bo.Uint32(b[off+4:]))
			if blen < 12 || blen > len(b)-off {
				break
			}
			blk := b[off : off+blen]
			switch typ {
			case 1: // Interface Description Block
				links = append(links, uint32(bo.Uint16(blk[8:])))
			case 6: // Enhanced Packet Block
				if blen >= 32 {
					ifc, capLen := int(bo.Uint32(blk[8:])), int(bo.Uint32(blk[20:]))
					if ifc < len(links) && capLen <= blen-32 {
						out = append(out, frame{links[ifc], blk[28 : 28+capLen]})
					}
				}
			}
			off += blen
		}
	}
	return out
}

// udpPayload returns the UDP header and payload of a frame of the given
// link type, for unfragmented IPv4 and IPv6 packets.
func udpPayload(link uint32, d []byte) ([]byte, bool) {
	switch link {
	case 0: // BSD NULL/loopback: 4-byte address family in host order.
		if len(d) < 4 {
			return nil, false
		}
		d = d[4:]
	case 1: // Ethernet
		if len(d) < 14 {
			return nil, false
		}
		et := binary.BigEndian.Uint16(d[12:])
		d = d[14:]
		if et == 0x8100 && len(d) >= 4 {
			d = d[4:]
		}
	case 113: // Linux cooked capture (SLL)
		if len(d) < 16 {
			return nil, false
		}
		d = d[16:]
	case 276: // SLL2
		if len(d) < 20 {
			return nil, false
		}
		d = d[20:]
	case 12, 14, 101: // raw IP
	default:
		return nil, false
	}
	if len(d) < 1 {
		return nil, false
	}
	var udp []byte
	switch d[0] >> 4 {
	case 4:
		if len(d) < 20 {
			return nil, false
		}
		ihl := int(d[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(d[2:]))
		frag := binary.BigEndian.Uint16(d[6:]) & 0x3fff
		if d[9] != 17 || frag != 0 || ihl < 20 || total < ihl || total > len(d) {
			return nil, false
		}
		udp = d[ihl:total]
	case 6:
		if len(d) < 40 || d[6] != 17 {
			return nil, false
		}
		pl := int(binary.BigEndian.Uint16(d[4:]))
		if 40+pl > len(d) {
			return nil, false
		}
		udp = d[40 : 40+pl]
	default:
		return nil, false
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
