package tuntest

import (
	"net/netip"
	"testing"
)

// TestChecksum uses the example of RFC 1071, Section 3: the bytes
// 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (folded).
func TestChecksum(t *testing.T) {
	if got := fold(checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0)); got != 0xddf2 {
		t.Fatalf("sum %#x, want 0xddf2", got)
	}
}

// TestUDPChecksumVerifies checks that a receiver's verification (the sum over
// pseudo-header and datagram, checksum included, is all ones: RFC 768) holds.
func TestUDPChecksumVerifies(t *testing.T) {
	for _, pair := range [][2]string{{"10.0.0.1:5", "10.0.0.2:7"}, {"[2001:db8::1]:5", "[2001:db8::2]:7"}} {
		src, dst := netip.MustParseAddrPort(pair[0]), netip.MustParseAddrPort(pair[1])
		p := UDP(src, dst, []byte("odd-length payload!"))
		hl, s := 20, uint32(0)
		if src.Addr().Is6() {
			hl = 40
			s = checksum(p[8:40], 0)
		} else {
			s = checksum(p[12:20], 0)
		}
		s += 17 + uint32(len(p)-hl)
		if got := fold(checksum(p[hl:], s)); got != 0xffff {
			t.Errorf("%v: checksum does not verify (%#x)", src, got)
		}
	}
}

func TestDeviceBatches(t *testing.T) {
	d := New(1500, 4, 16)
	for i := range 6 {
		d.In <- []byte{byte(i)}
	}
	bufs := [][]byte{make([]byte, 20), make([]byte, 20), make([]byte, 20), make([]byte, 20)}
	sizes := make([]int, 4)
	if n, err := d.Read(bufs, sizes, 10); err != nil || n != 4 || sizes[3] != 1 || bufs[3][10] != 3 {
		t.Fatalf("first read: %d %v %v", n, err, sizes)
	}
	if n, _ := d.Read(bufs, sizes, 10); n != 2 {
		t.Fatalf("second read: %d", n)
	}
	d.Close()
	if _, err := d.Read(bufs, sizes, 10); err == nil {
		t.Fatal("read after close")
	}
}
