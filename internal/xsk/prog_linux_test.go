//go:build amd64 || arm64

package xsk

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestProgramJumps: every conditional jump of the XDP program lands on its
// XDP_PASS exit, the map's file descriptor is in the one 64-bit immediate
// load, and the address filter compares the destination in the byte order
// the program loads it. Runs without root.
func TestProgramJumps(t *testing.T) {
	for _, dst := range []netip.Addr{{}, netip.MustParseAddr("192.0.2.7")} {
		b := program(7, dst)
		n := len(b) / 8
		at := func(i int) (code, regs uint8, off int16, imm int32) {
			s := b[8*i:]
			return s[0], s[1], int16(binary.LittleEndian.Uint16(s[2:])), int32(binary.LittleEndian.Uint32(s[4:]))
		}
		if c, _, _, imm := at(n - 2); c != opMov64K || imm != xdpPass {
			t.Fatalf("dst %v: the program does not end in r0 = XDP_PASS; exit", dst)
		}
		jumps, maps, cmp := 0, 0, false
		for i := 0; i < n; i++ {
			c, regs, off, imm := at(i)
			switch c {
			case opJgtX, opJneK, opJneX:
				jumps++
				if i+1+int(off) != n-2 {
					t.Errorf("dst %v: jump at %d lands on %d, not on the XDP_PASS exit at %d", dst, i, i+1+int(off), n-2)
				}
			case opLdImm64:
				maps++
				if regs>>4 != 1 || imm != 7 {
					t.Errorf("dst %v: map load at %d: src %d, fd %d", dst, i, regs>>4, imm)
				}
				i++ // the immediate's upper half
			case opMov32K:
				a := dst.As4()
				cmp = uint32(imm) == binary.LittleEndian.Uint32(a[:])
			}
		}
		wantJumps := 4
		if dst.IsValid() {
			wantJumps = 5
		}
		if jumps != wantJumps || maps != 1 || cmp != dst.IsValid() {
			t.Errorf("dst %v: %d jumps to XDP_PASS, %d map loads, address compared %v; want %d, 1, %v", dst, jumps, maps, cmp, wantJumps, dst.IsValid())
		}
	}
}
