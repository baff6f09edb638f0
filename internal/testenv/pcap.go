package testenv

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
)

// CapturedPacket is the IP packet carried by one frame of a capture.
type CapturedPacket struct {
	Frame int    // 1-based number of the frame in the capture
	IP    []byte // the IPv4 or IPv6 packet, link-layer header removed
}

// ReadPcap returns the IPv4 and IPv6 packets of the capture at path, in
// order; see ReadCapture.
func ReadPcap(t testing.TB, path string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range ReadCapture(t, path) {
		out = append(out, p.IP)
	}
	return out
}

// ReadCapture returns the IPv4 and IPv6 packets of the capture at path with
// their frame numbers. It reads classic pcap files (24-byte global header,
// 16-byte record headers, either byte order, micro- or nanosecond) and
// pcapng files (Section Header, Interface Description and Enhanced Packet
// blocks), and knows the link types BSD loopback (0), Ethernet (1, with one
// 802.1Q tag at most), raw IP (12, 14, 101), Linux cooked (113) and Linux
// cooked v2 (276). Frames of other link types or that carry something other
// than IP (ARP, say) are skipped; each packet is a copy that runs to the end
// of the captured frame, Ethernet padding included. The test fails if the
// file cannot be read, is neither format, or has a record that runs past its
// end.
func ReadCapture(t testing.TB, path string) []CapturedPacket {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	frames, msg := captureFrames(b)
	if msg != "" {
		t.Fatalf("%s: %s", path, msg)
	}
	var out []CapturedPacket
	for i, f := range frames {
		if ip := linkPayload(f.link, f.data); ip != nil {
			out = append(out, CapturedPacket{Frame: i + 1, IP: bytes.Clone(ip)})
		}
	}
	return out
}

// frame is one captured link-layer frame.
type frame struct {
	link uint32
	data []byte
}

// captureFrames splits a pcap or pcapng file into its frames, or says what
// is wrong with it.
func captureFrames(b []byte) ([]frame, string) {
	if len(b) < 24 {
		return nil, "too short for a capture"
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	case 0x0a0d0d0a:
		return pcapngFrames(b)
	default:
		return nil, "neither pcap nor pcapng (magic " + hex.EncodeToString(b[:4]) + ")"
	}
	link := bo.Uint32(b[20:]) & 0xffff // the upper bits carry FCS information
	var out []frame
	for off := 24; off < len(b); {
		if len(b)-off < 16 {
			return nil, "record header cut short"
		}
		n := int(bo.Uint32(b[off+8:])) // captured length
		off += 16
		if n > len(b)-off {
			return nil, "frame " + strconv.Itoa(len(out)+1) + " runs past the end of the file"
		}
		out = append(out, frame{link, b[off : off+n]})
		off += n
	}
	return out, ""
}

// pcapngFrames returns the frames of the Enhanced Packet Blocks of a pcapng
// file; other blocks are skipped.
func pcapngFrames(b []byte) ([]frame, string) {
	var bo binary.ByteOrder = binary.LittleEndian
	var links []uint32 // link type by interface, per section
	var out []frame
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return nil, "block header cut short"
		}
		if binary.LittleEndian.Uint32(b[off:]) == 0x0a0d0d0a { // Section Header Block
			switch binary.LittleEndian.Uint32(b[off+8:]) {
			case 0x1a2b3c4d:
				bo = binary.LittleEndian
			case 0x4d3c2b1a:
				bo = binary.BigEndian
			default:
				return nil, "bad byte-order magic"
			}
			links = links[:0]
		}
		typ, n := bo.Uint32(b[off:]), int(bo.Uint32(b[off+4:]))
		if n < 12 || n%4 != 0 || n > len(b)-off {
			return nil, "block of length " + strconv.Itoa(n) + " at offset " + strconv.Itoa(off)
		}
		blk := b[off : off+n]
		switch typ {
		case 1: // Interface Description Block
			if n < 20 {
				return nil, "short interface description"
			}
			links = append(links, uint32(bo.Uint16(blk[8:])))
		case 6: // Enhanced Packet Block
			if n < 32 {
				return nil, "short packet block"
			}
			ifc, capLen := int(bo.Uint32(blk[8:])), int(bo.Uint32(blk[20:]))
			if ifc >= len(links) || capLen > n-32 {
				return nil, "packet block with an unknown interface or too long a frame"
			}
			out = append(out, frame{links[ifc], blk[28 : 28+capLen]})
		}
		off += n
	}
	return out, ""
}

// linkPayload returns the IPv4 or IPv6 packet in a frame of the given link
// type, or nil.
func linkPayload(link uint32, f []byte) []byte {
	var ip []byte
	switch link {
	case 0: // BSD loopback: a 4-byte address family in host order
		if len(f) >= 4 {
			ip = f[4:]
		}
	case 1: // Ethernet
		et := 12 // offset of the EtherType
		if len(f) >= 18 && binary.BigEndian.Uint16(f[12:]) == 0x8100 {
			et = 16 // after an 802.1Q tag
		}
		if len(f) >= et+2 && isIPEtherType(binary.BigEndian.Uint16(f[et:])) {
			ip = f[et+2:]
		}
	case 12, 14, 101: // raw IP
		ip = f
	case 113: // Linux cooked: protocol type at offset 14
		if len(f) >= 16 && isIPEtherType(binary.BigEndian.Uint16(f[14:])) {
			ip = f[16:]
		}
	case 276: // Linux cooked v2: protocol type at offset 0
		if len(f) >= 20 && isIPEtherType(binary.BigEndian.Uint16(f)) {
			ip = f[20:]
		}
	}
	if len(ip) == 0 || ip[0]>>4 != 4 && ip[0]>>4 != 6 {
		return nil
	}
	return ip
}

func isIPEtherType(et uint16) bool { return et == 0x0800 || et == 0x86dd }
