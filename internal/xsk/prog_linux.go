//go:build amd64 || arm64

package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// eBPF instruction encoding (linux/bpf.h, linux/bpf_common.h): one 8-byte
// slot per instruction, two for a 64-bit immediate load.
const (
	opLdxW    = 0x61 // BPF_LDX | BPF_MEM | BPF_W
	opLdxH    = 0x69 // BPF_LDX | BPF_MEM | BPF_H
	opLdxB    = 0x71 // BPF_LDX | BPF_MEM | BPF_B
	opMov64X  = 0xbf // BPF_ALU64 | BPF_MOV | BPF_X
	opMov64K  = 0xb7 // BPF_ALU64 | BPF_MOV | BPF_K
	opMov32K  = 0xb4 // BPF_ALU | BPF_MOV | BPF_K (zero-extends)
	opAdd64K  = 0x07 // BPF_ALU64 | BPF_ADD | BPF_K
	opAnd64K  = 0x57 // BPF_ALU64 | BPF_AND | BPF_K
	opJgtX    = 0x2d // BPF_JMP | BPF_JGT | BPF_X
	opJneK    = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	opJneX    = 0x5d // BPF_JMP | BPF_JNE | BPF_X
	opLdImm64 = 0x18 // BPF_LD | BPF_IMM | BPF_DW
	opCall    = 0x85 // BPF_JMP | BPF_CALL
	opExit    = 0x95 // BPF_JMP | BPF_EXIT

	helperRedirectMap = 51 // bpf_redirect_map
	xdpPass           = 2  // XDP_PASS

	// struct xdp_md offsets.
	mdData         = 0
	mdDataEnd      = 4
	mdRxQueueIndex = 16
)

type insn struct {
	code     uint8
	dst, src uint8
	off      int16
	imm      int32
	toPass   bool // a jump to the XDP_PASS exit; off is filled in
}

func (i insn) put(b []byte) {
	b[0] = i.code
	b[1] = i.dst | i.src<<4
	binary.LittleEndian.PutUint16(b[2:], uint16(i.off))
	binary.LittleEndian.PutUint32(b[4:], uint32(i.imm))
}

// program returns the XDP program's instructions, the XSKMAP referred to
// by file descriptor mapFD. It redirects a frame to the socket of its
// receive queue when it is Ethernet, IPv4, protocol 50 (ESP), not a
// fragment, and (when dst is valid) addressed to dst; everything else, and
// a frame whose queue has no socket, goes to the kernel (XDP_PASS).
//
// Fragments pass because an ESP packet is authenticated whole: RFC 4303,
// Section 3.4.1 has the receiver reassemble before ESP processing, which
// the kernel's IP layer does and this program does not.
func program(mapFD int, dst netip.Addr) []byte {
	var p []insn
	ins := func(i ...insn) { p = append(p, i...) }
	ins(
		insn{code: opLdxW, dst: 2, src: 1, off: mdData},
		insn{code: opLdxW, dst: 3, src: 1, off: mdDataEnd},
		insn{code: opMov64X, dst: 4, src: 2},
		insn{code: opAdd64K, dst: 4, imm: 14 + 20}, // Ethernet and IPv4 headers
		insn{code: opJgtX, dst: 4, src: 3, toPass: true},
		// EtherType 0x0800, read little-endian.
		insn{code: opLdxH, dst: 5, src: 2, off: 12},
		insn{code: opJneK, dst: 5, imm: 0x0008, toPass: true},
		// IPv4 Protocol (RFC 791): 50 is ESP (RFC 4303, Section 2).
		insn{code: opLdxB, dst: 5, src: 2, off: 14 + 9},
		insn{code: opJneK, dst: 5, imm: 50, toPass: true},
		// More Fragments and Fragment Offset, read little-endian.
		insn{code: opLdxH, dst: 5, src: 2, off: 14 + 6},
		insn{code: opAnd64K, dst: 5, imm: 0xff3f},
		insn{code: opJneK, dst: 5, imm: 0, toPass: true},
	)
	if dst.Is4() {
		a := dst.As4()
		ins(
			insn{code: opLdxW, dst: 5, src: 2, off: 14 + 16},
			insn{code: opMov32K, dst: 6, imm: int32(binary.LittleEndian.Uint32(a[:]))},
			insn{code: opJneX, dst: 5, src: 6, toPass: true},
		)
	}
	ins(
		insn{code: opLdxW, dst: 2, src: 1, off: mdRxQueueIndex},
		insn{code: opLdImm64, dst: 1, src: unix.BPF_PSEUDO_MAP_FD, imm: int32(mapFD)},
		insn{}, // the immediate's upper half
		// The lower bits of the flags are the action when the map has no
		// socket for this queue (Linux 5.3).
		insn{code: opMov64K, dst: 3, imm: xdpPass},
		insn{code: opCall, imm: helperRedirectMap},
		insn{code: opExit},
	)
	pass := len(p)
	ins(
		insn{code: opMov64K, dst: 0, imm: xdpPass},
		insn{code: opExit},
	)
	b := make([]byte, 8*len(p))
	for i, x := range p {
		if x.toPass {
			x.off = int16(pass - i - 1)
		}
		x.put(b[8*i:])
	}
	return b
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// Mode is how an XDP program runs on an interface.
type Mode int

const (
	// Native runs the program in the driver's receive path: on a NIC
	// before any skb exists, on veth on the skb its peer sent.
	Native Mode = iota + 1
	// Generic runs it on the skb, after the driver built one.
	Generic
)

func (m Mode) String() string {
	switch m {
	case Native:
		return "native"
	case Generic:
		return "generic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Program is the redirecting XDP program with its XSKMAP, attached to one
// interface. Close detaches it; Register may be called concurrently, but
// not with Close.
type Program struct {
	mapFD, progFD, linkFD int
	mode                  Mode
}

// Options configures Attach. The zero value redirects ESP for every address
// on queue 0 and prefers native mode.
type Options struct {
	// Dst, when valid (IPv4), limits the redirect to ESP for this address.
	Dst netip.Addr
	// Queues is the number of receive queues (XSKMAP entries); 0 means 1.
	Queues int
	// Generic asks for generic mode even where native mode is possible.
	Generic bool
}

// Attach loads the program and its map and attaches them to the interface
// with index ifindex through a BPF link: native mode if the driver has it
// (and o.Generic is false), else generic. It needs CAP_BPF and
// CAP_NET_ADMIN.
func Attach(ifindex int, o Options) (*Program, error) {
	if o.Dst.IsValid() && !o.Dst.Is4() {
		return nil, errors.New("xsk: only IPv4 destinations are implemented")
	}
	queues := max(o.Queues, 1)
	mapAttr := struct {
		mapType, keySize, valueSize, maxEntries uint32
		mapFlags, innerMapFD, numaNode          uint32
		name                                    [16]byte
	}{mapType: unix.BPF_MAP_TYPE_XSKMAP, keySize: 4, valueSize: 4, maxEntries: uint32(queues)}
	copy(mapAttr.name[:], "goipsec_xsks")
	mapFD, err := bpf(unix.BPF_MAP_CREATE, unsafe.Pointer(&mapAttr), unsafe.Sizeof(mapAttr))
	if err != nil {
		return nil, fmt.Errorf("xsk: creating the XSKMAP: %w", err)
	}
	p := &Program{mapFD: mapFD, progFD: -1, linkFD: -1}
	code := program(mapFD, o.Dst)
	license := []byte("GPL\x00") // bpf_redirect_map is a GPL-only helper
	logBuf := make([]byte, 64<<10)
	// The pointers in a bpf_attr are 64-bit fields; as unsafe.Pointer (on
	// the 64-bit ports this file builds for) the garbage collector and a
	// moving stack keep them valid until the system call.
	progAttr := struct {
		progType, insnCnt          uint32
		insns, license             unsafe.Pointer
		logLevel, logSize          uint32
		logBuf                     unsafe.Pointer
		kernVersion, progFlags     uint32
		name                       [16]byte
		ifindex, expectedAttachTyp uint32
	}{
		progType: unix.BPF_PROG_TYPE_XDP, insnCnt: uint32(len(code) / 8),
		insns: unsafe.Pointer(&code[0]), license: unsafe.Pointer(&license[0]),
		logLevel: 1, logSize: uint32(len(logBuf)), logBuf: unsafe.Pointer(&logBuf[0]),
		expectedAttachTyp: unix.BPF_XDP,
	}
	copy(progAttr.name[:], "goipsec_esp")
	p.progFD, err = bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&progAttr), unsafe.Sizeof(progAttr))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("xsk: loading the XDP program: %w: %s", err, cString(logBuf))
	}
	modes := []Mode{Native, Generic}
	if o.Generic {
		modes = modes[1:]
	}
	for _, m := range modes {
		flags := uint32(unix.XDP_FLAGS_DRV_MODE)
		if m == Generic {
			flags = unix.XDP_FLAGS_SKB_MODE
		}
		linkAttr := struct {
			progFD, ifindex, attachType, flags uint32
		}{uint32(p.progFD), uint32(ifindex), unix.BPF_XDP, flags}
		p.linkFD, err = bpf(unix.BPF_LINK_CREATE, unsafe.Pointer(&linkAttr), unsafe.Sizeof(linkAttr))
		if err == nil {
			p.mode = m
			return p, nil
		}
	}
	p.Close()
	return nil, fmt.Errorf("xsk: attaching the XDP program to interface %d: %w", ifindex, err)
}

// Mode returns the mode the kernel attached the program in.
func (p *Program) Mode() Mode { return p.mode }

// Register makes s the socket that frames of receive queue queue go to.
func (p *Program) Register(queue int, s *Socket) error {
	key, value := uint32(queue), uint32(s.fd)
	attr := struct {
		mapFD, _   uint32
		key, value unsafe.Pointer
		flags      uint64
	}{mapFD: uint32(p.mapFD), key: unsafe.Pointer(&key), value: unsafe.Pointer(&value)}
	_, err := bpf(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return fmt.Errorf("xsk: registering the socket for queue %d: %w", queue, err)
	}
	return nil
}

// Close detaches the program and releases it and its map.
func (p *Program) Close() error {
	for _, fd := range []*int{&p.linkFD, &p.progFD, &p.mapFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
