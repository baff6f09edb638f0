package conn

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsgSpace is the room for the control messages we send or expect: a
// UDP_GRO or UDP_SEGMENT integer, IPV6_PKTINFO, IPV6_HOPLIMIT and
// IPV6_TCLASS or IP_TOS (40, 24 and 24 bytes on 64-bit Linux). A UDP send
// carries at most UDP_SEGMENT (24), IPV6_PKTINFO or IP_PKTINFO (40 or 32)
// and IPV6_TCLASS or IP_TOS (24): TestSendCmsgSpace checks that they fit.
const cmsgSpace = 128

// mmsg is the state of one batched recvmmsg or sendmmsg: message headers,
// their iovecs, address and control buffers, all allocated once. It is used
// by one goroutine at a time.
type mmsg struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	cmsgs [][cmsgSpace]byte
	n     int // messages prepared
	errno syscall.Errno
	done  int // messages completed
	// recvFn and sendFn are bound once so that passing them to
	// syscall.RawConn allocates nothing.
	recvFn, sendFn func(fd uintptr) bool
}

func newMmsg(n int) *mmsg {
	m := &mmsg{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		cmsgs: make([][cmsgSpace]byte, n),
	}
	m.recvFn = m.recv
	m.sendFn = m.send
	return m
}

// prepRecv points message i at b, with room for an address and control
// messages.
func (m *mmsg) prepRecv(i int, b []byte) {
	m.iovs[i].Base = unsafe.SliceData(b)
	m.iovs[i].SetLen(len(b))
	h := &m.hdrs[i].Hdr
	h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	h.Namelen = unix.SizeofSockaddrInet6
	h.Iov = &m.iovs[i]
	h.SetIovlen(1)
	h.Control = &m.cmsgs[i][0]
	h.SetControllen(cmsgSpace)
	h.Flags = 0
	m.hdrs[i].Len = 0
}

// prepSend points message i at b, to the address dst (port 0 for raw
// sockets), with an optional UDP_SEGMENT size and an optional source
// address src (IP_PKTINFO or IPV6_PKTINFO; the zero Addr: none, the routing
// table chooses) and an optional TOS or traffic class (putTOS; 0: none, the
// socket's, which is 0).
func (m *mmsg) prepSend(i int, b []byte, src netip.Addr, dst netip.AddrPort, v6sock bool, gso int, tos uint8) {
	m.iovs[i].Base = unsafe.SliceData(b)
	m.iovs[i].SetLen(len(b))
	h := &m.hdrs[i].Hdr
	h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	h.Namelen = putSockaddr(&m.names[i], dst, v6sock)
	h.Iov = &m.iovs[i]
	h.SetIovlen(1)
	h.Control = nil
	h.SetControllen(0)
	c := m.cmsgs[i][:]
	l := 0
	if gso > 0 {
		l = putCmsgInt(c, unix.SOL_UDP, unix.UDP_SEGMENT, uint16(gso))
	}
	if src.IsValid() {
		l += putPktinfo(c[l:], src, v6sock)
	}
	if tos != 0 {
		l += putTOS(c[l:], tos, v6sock && !dst.Addr().Unmap().Is4())
	}
	if l > 0 {
		h.Control = &c[0]
		h.SetControllen(l)
	}
	h.Flags = 0
}

func (m *mmsg) recv(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.n), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	m.errno, m.done = e, int(r)
	return true
}

func (m *mmsg) send(fd uintptr) bool {
	for m.done < m.n {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[m.done])), uintptr(m.n-m.done), 0, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			// The message at m.done failed (EMSGSIZE, a route error, ...):
			// remember the error, skip it and send the rest.
			m.errno = e
			m.done++
			continue
		}
		m.done += int(r)
	}
	return true
}

// putSockaddr writes dst into sa for a socket of the given family and
// returns the address length. On an IPv6 socket IPv4 destinations are
// written IPv4-mapped.
func putSockaddr(sa *unix.RawSockaddrInet6, dst netip.AddrPort, v6sock bool) uint32 {
	if !v6sock {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], dst.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.Addr().As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], dst.Port())
	return unix.SizeofSockaddrInet6
}

// sockaddrAddr reads the address in sa (as written by the kernel).
func sockaddrAddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// putCmsgInt writes one control message carrying a value of the size of v
// (uint16 for UDP_SEGMENT) and returns its space.
func putCmsgInt(b []byte, level, typ int32, v uint16) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = v
	return unix.CmsgSpace(2)
}

// putTOS writes into b the control message that sets the TOS (IPv4) or
// traffic class (IPv6) byte, DSCP and ECN, of one datagram and returns its
// space: IPV6_TCLASS when v6 (an IPv6 destination), else IP_TOS, which is
// also what an IPv6 socket takes for an IPv4-mapped destination: Linux
// sends that datagram through the IPv4 path (udp_sendmsg, ip_cmsg_send),
// which reads SOL_IP messages and skips IPV6_TCLASS
// (TestWriteTOS/dual-stack checks it). Both are ints; UDP leaves the ECN
// bits as given (Linux masks them out of IP_TOS for TCP sockets only).
func putTOS(b []byte, tos uint8, v6 bool) int {
	level, typ := int32(unix.IPPROTO_IP), int32(unix.IP_TOS)
	if v6 {
		level, typ = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = int32(tos)
	return unix.CmsgSpace(4)
}

// cmsgTOS returns the TOS or traffic class a received control message
// carries, if it is IP_TOS (one byte) or IPV6_TCLASS (an int).
func cmsgTOS(level, typ int32, data []byte) (uint8, bool) {
	switch {
	case level == unix.IPPROTO_IP && typ == unix.IP_TOS && len(data) >= 1:
		return data[0], true
	case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_TCLASS && len(data) >= 4:
		return uint8(*(*int32)(unsafe.Pointer(&data[0]))), true
	}
	return 0, false
}

// putPktinfo writes into b the control message that makes the kernel send
// from src and returns its space (0: none written): IPV6_PKTINFO on an IPv6
// socket, with src IPv4-mapped when the datagram goes to an IPv4 peer
// (Linux takes it as IP_PKTINFO then), and IP_PKTINFO on an IPv4 socket.
// The rest of the message (interface index 0) is zeroed.
func putPktinfo(b []byte, src netip.Addr, v6sock bool) int {
	if v6sock {
		n := unix.CmsgSpace(unix.SizeofInet6Pktinfo)
		clear(b[:n])
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		(*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)])).Addr = src.As16()
		return n
	}
	if !src.Is4() && !src.Is4In6() {
		return 0
	}
	n := unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	clear(b[:n])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	(*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)])).Spec_dst = src.Unmap().As4()
	return n
}

// nextCmsg returns the first control message in b and the rest of b; ok is
// false when b holds no well-formed message.
func nextCmsg(b []byte) (level, typ int32, data, rest []byte, ok bool) {
	if len(b) < unix.CmsgLen(0) {
		return 0, 0, nil, nil, false
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	l := int(h.Len)
	if l < unix.CmsgLen(0) || l > len(b) {
		return 0, 0, nil, nil, false
	}
	data = b[unix.CmsgLen(0):l]
	if s := unix.CmsgSpace(l - unix.CmsgLen(0)); s < len(b) {
		rest = b[s:]
	}
	return h.Level, h.Type, data, rest, true
}

// freeList is a bounded free list of per-call send states, so that Writes
// from several goroutines (the data plane's send lanes, IKE) go to the
// kernel in parallel instead of queueing on one mutex. States are made on
// first use, up to max; then get waits for one to be put back. Steady state
// allocates nothing.
type freeList[T any] struct {
	free chan T
	mu   sync.Mutex
	made int
	mk   func() T
}

// maxWriters is how many Writes of one socket run at once: one per core.
func maxWriters() int { return max(2, runtime.GOMAXPROCS(0)) }

func newFreeList[T any](max int, mk func() T) *freeList[T] {
	return &freeList[T]{free: make(chan T, max), mk: mk}
}

func (f *freeList[T]) get() T {
	select {
	case x := <-f.free:
		return x
	default:
	}
	f.mu.Lock()
	if f.made < cap(f.free) {
		f.made++
		f.mu.Unlock()
		return f.mk()
	}
	f.mu.Unlock()
	return <-f.free
}

func (f *freeList[T]) put(x T) {
	f.free <- x // never blocks: at most cap(f.free) states exist
}

// recvCmsgs reads the control messages of received message i: the UDP_GRO
// segment size (0: none) and the TOS or traffic class (0: none).
func (m *mmsg) recvCmsgs(i int) (seg int, tos uint8) {
	ctl := m.cmsgs[i][:m.hdrs[i].Hdr.Controllen]
	for {
		level, typ, data, rest, ok := nextCmsg(ctl)
		if !ok {
			return seg, tos
		}
		if level == unix.SOL_UDP && typ == unix.UDP_GRO && len(data) >= 2 {
			seg = int(*(*uint16)(unsafe.Pointer(&data[0])))
		} else if t, ok := cmsgTOS(level, typ, data); ok {
			tos = t
		}
		ctl = rest
	}
}
