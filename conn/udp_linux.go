package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// UDPConn is the Linux conn.UDP: one socket, batched with recvmmsg and
// sendmmsg, with UDP segmentation offload (UDP_SEGMENT, Linux 4.18) on send
// and receive coalescing (UDP_GRO, Linux 5.0) when the kernel has them.
type UDPConn struct {
	c      *net.UDPConn
	rc     syscall.RawConn
	local  netip.AddrPort
	v6sock bool
	batch  int

	gro bool
	tos bool       // IP_RECVTOS or IPV6_RECVTCLASS in use
	rmu sync.Mutex // Read is single-goroutine by contract; this guards misuse
	rm  *mmsg

	ws  *freeList[*udpWriter] // send states: concurrent Writes run in parallel
	gso atomic.Bool           // UDP_SEGMENT in use
}

// udpWriter is the state of one UDPConn.Write.
type udpWriter struct {
	m       *mmsg
	scratch [][]byte // coalescing buffers, one per message of a Write
}

// UDPBatchSize is the batch size of UDPConn.
const UDPBatchSize = 128

// maxGSOBytes is the most payload one UDP_SEGMENT send carries: an IP
// datagram is at most 65535 bytes, less the IPv6 and UDP headers.
const maxGSOBytes = 65535 - 40 - 8

// ListenUDP opens a UDP socket bound to addr with firewall mark mark (0: no
// mark). An unspecified or zero addr binds to all addresses of both IP
// versions (an IPv6 socket that also accepts IPv4); an IPv4 addr gives an
// IPv4-only socket. Setting a mark needs CAP_NET_ADMIN.
func ListenUDP(addr netip.AddrPort, mark uint32) (*UDPConn, error) {
	network := "udp6"
	bind := addr
	if addr.Addr().Is4() {
		network = "udp4"
	} else if !addr.Addr().IsValid() || addr.Addr().IsUnspecified() {
		network = "udp"
		bind = netip.AddrPortFrom(netip.IPv6Unspecified(), addr.Port())
	}
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			if mark != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
				if serr != nil {
					serr = fmt.Errorf("SO_MARK: %w", serr)
					return
				}
			}
			// Big buffers absorb bursts; FORCE works as root, the plain
			// option is the fallback.
			for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], 7<<20) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], 7<<20)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, bind.String())
	if err != nil {
		return nil, fmt.Errorf("conn: listen udp %v: %w", addr, err)
	}
	c := pc.(*net.UDPConn)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("conn: %w", err)
	}
	u := &UDPConn{
		c: c, rc: rc, batch: UDPBatchSize,
		local:  c.LocalAddr().(*net.UDPAddr).AddrPort(),
		v6sock: network != "udp4",
		rm:     newMmsg(UDPBatchSize),
		ws:     newFreeList(maxWriters(), func() *udpWriter { return &udpWriter{m: newMmsg(UDPBatchSize)} }),
	}
	u.local = netip.AddrPortFrom(u.local.Addr().Unmap(), u.local.Port())
	rc.Control(func(fd uintptr) {
		// UDP_SEGMENT is supported if the kernel knows the option.
		if _, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT); err == nil {
			u.gso.Store(true)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil {
			u.gro = true
		}
		// The TOS byte of each datagram, for the ECN field a tunnel's
		// decapsulator reads (RFC 6040, Section 4.2). On a dual-stack
		// socket IPv4 datagrams report IP_TOS, IPv6 ones IPV6_TCLASS, so
		// both are asked for.
		u.tos = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) == nil
		if u.v6sock {
			u.tos = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1) == nil
		}
	})
	return u, nil
}

// Offloads reports whether segmentation offload (send) and receive
// coalescing are in use.
func (u *UDPConn) Offloads() (gso, gro bool) {
	return u.gso.Load(), u.gro
}

// BatchSize implements UDP.
func (u *UDPConn) BatchSize() int { return u.batch }

// LocalAddr implements UDP.
func (u *UDPConn) LocalAddr() netip.AddrPort { return u.local }

// Close implements UDP.
func (u *UDPConn) Close() error { return u.c.Close() }

func mapClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Read implements UDP. With UDP_GRO it reads at most len(bufs)/64 (at least
// one) datagrams into the last elements of bufs, each possibly a coalesced
// run of up to 64 segments, and splits them into the elements from the
// first on, as wireguard-go's StdNetBind does. Segments that do not fit are
// lost (the dataplane uses 128 buffers of 64 KiB, so none are).
func (u *UDPConn) Read(bufs [][]byte, sizes []int, addrs []netip.AddrPort, offset int) (int, error) {
	return u.ReadTOS(bufs, sizes, addrs, nil, offset)
}

// ReadTOS is Read that also reports in tos[i] the TOS (IPv4) or traffic
// class (IPv6) byte, DSCP and ECN, of datagram i's IP header, from IP_TOS or
// IPV6_TCLASS; 0 (Not-ECT) when the kernel gave none. The segments of a
// coalesced datagram share its value: GRO merges only packets of one TOS
// or traffic class (Linux inet_gro_receive and ipv6_gro_receive flush the
// flow when it differs), and a segmentation-offload send has one. tos may
// be nil; else len(tos) must be at least len(bufs).
func (u *UDPConn) ReadTOS(bufs [][]byte, sizes []int, addrs []netip.AddrPort, tos []uint8, offset int) (int, error) {
	u.rmu.Lock()
	defer u.rmu.Unlock()
	m := u.rm
	if len(bufs) > len(m.hdrs) {
		bufs = bufs[:len(m.hdrs)]
	}
	first := 0
	if u.gro {
		first = len(bufs) - max(1, len(bufs)/64)
	}
	m.n = len(bufs) - first
	for i := range m.n {
		m.prepRecv(i, bufs[first+i][offset:])
	}
	m.errno, m.done = 0, 0
	if err := u.rc.Read(m.recvFn); err != nil {
		return 0, mapClosed(err)
	}
	if m.errno != 0 {
		return 0, fmt.Errorf("conn: recvmmsg: %w", m.errno)
	}
	if !u.gro {
		for i := range m.done {
			sizes[i] = int(m.hdrs[i].Len)
			addrs[i] = sockaddrAddr(&m.names[i])
			if m.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				sizes[i] = 0
			}
			if tos != nil {
				_, tos[i] = m.recvCmsgs(i)
			}
		}
		return m.done, nil
	}
	out := 0
	for i := range m.done {
		h := &m.hdrs[i]
		src := bufs[first+i][offset:]
		n := int(h.Len)
		from := sockaddrAddr(&m.names[i])
		if n == 0 || h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			// An empty or truncated datagram is passed on with size 0,
			// so that the data plane counts it as truncated.
			if out < len(bufs) {
				sizes[out], addrs[out] = 0, from
				if tos != nil {
					tos[out] = 0
				}
				out++
			}
			continue
		}
		seg, t := m.recvCmsgs(i)
		if seg <= 0 {
			seg = n
		}
		for off := 0; off < n && out < len(bufs); off += seg {
			end := min(off+seg, n)
			sizes[out] = copy(bufs[out][offset:], src[off:end])
			addrs[out] = from
			if tos != nil {
				tos[out] = t
			}
			out++
		}
	}
	return out, nil
}

// Write implements UDP. Runs of datagrams of one size (the last of a run may
// be shorter), up to 64 of them and 65,487 bytes, are copied into one buffer
// and sent as a single UDP_SEGMENT message; the kernel (or the NIC) cuts
// them again. If the kernel refuses segmentation offload, Write turns it off
// and sends datagram by datagram from then on. Writes from different
// goroutines run in parallel (up to one per core); the datagrams of one Write
// leave in order. The routing table chooses the source address; see
// WriteBatchTOS.
func (u *UDPConn) Write(bufs [][]byte, dst netip.AddrPort) error {
	return u.WriteBatchTOS(bufs, netip.Addr{}, 0, dst)
}

// WriteBatchTOS is Write from the local address src with the TOS (IPv4)
// or traffic class (IPv6) byte tos. Every message, segmentation-offload
// sends included, carries IP_PKTINFO or IPV6_PKTINFO (as WriteFrom's does),
// so that on a socket bound to every address, like the NAT-T socket on
// port 4500, ESP in UDP leaves from the SA's address rather than the one
// the routing table prefers: the peer expects the SA's packets between the
// endpoints IKE negotiated them for, and may take another source for a NAT
// mapping change (RFC 3948, Section 2.1; RFC 7296, Section 2.23). A zero,
// unspecified or multicast src, or one of the other IP version than dst,
// leaves the choice to the routing table as Write does. A nonzero tos
// (DSCP and ECN) goes into each message as IP_TOS or IPV6_TCLASS (putTOS)
// next to UDP_SEGMENT and PKTINFO, so a segmentation-offload run keeps one
// value and batching is unchanged; a tunnel-mode SA's ESP in UDP takes its
// inner header's (RFC 6040, Section 4.1, normal mode; RFC 4301, Section
// 5.1.2.1). 0 sends no control message: the socket's TOS, 0. It allocates
// nothing once warm.
func (u *UDPConn) WriteBatchTOS(bufs [][]byte, src netip.Addr, tos uint8, dst netip.AddrPort) error {
	if len(bufs) == 0 {
		return nil
	}
	src = sendSource(src, dst.Addr())
	w := u.ws.get()
	defer u.ws.put(w)
	for len(bufs) > 0 {
		n := min(len(bufs), len(w.m.hdrs))
		err := u.write(w, bufs[:n], src, tos, dst)
		if err != nil {
			return err
		}
		bufs = bufs[n:]
	}
	return nil
}

// sendSource returns src if the kernel can send from it to dst, else the
// zero Addr (no control message).
func sendSource(src, dst netip.Addr) netip.Addr {
	src = src.Unmap()
	if !src.IsValid() || src.IsUnspecified() || src.IsMulticast() || src.Is4() != dst.Unmap().Is4() {
		return netip.Addr{}
	}
	return src
}

func (u *UDPConn) write(w *udpWriter, bufs [][]byte, src netip.Addr, tos uint8, dst netip.AddrPort) error {
	gso := u.gso.Load()
	errno, err := u.send(w, bufs, src, tos, dst, gso)
	if err != nil || errno == 0 {
		return err
	}
	if gso && (errno == unix.EIO || errno == unix.EINVAL || errno == unix.ENOPROTOOPT) {
		// The route's device may not segment (for example, its checksum
		// offload is off): resend without; datagrams that went out twice
		// are dropped by the peer's replay window. Offload goes off for
		// good only if that helped: IPV6_PKTINFO with a source that is no
		// longer local fails with EINVAL either way.
		if errno, err = u.send(w, bufs, src, tos, dst, false); err != nil {
			return err
		}
		if errno == 0 {
			u.gso.Store(false)
			return nil
		}
	}
	if src.IsValid() {
		return fmt.Errorf("conn: sendmmsg to %v from %v: %w", dst, src, errno)
	}
	return fmt.Errorf("conn: sendmmsg to %v: %w", dst, errno)
}

// send sends bufs in one batch, coalesced with UDP_SEGMENT if gso, and
// returns the error of the last message that failed (0: none) or the
// socket's error.
func (u *UDPConn) send(w *udpWriter, bufs [][]byte, src netip.Addr, tos uint8, dst netip.AddrPort, gso bool) (syscall.Errno, error) {
	m := w.m
	m.n = 0
	if gso {
		for i := 0; i < len(bufs); {
			seg := len(bufs[i])
			j, total := i+1, seg
			for j < len(bufs) && j-i < MaxSegments && len(bufs[j]) <= seg && total+len(bufs[j]) <= maxGSOBytes {
				total += len(bufs[j])
				j++
				if len(bufs[j-1]) < seg {
					break // a shorter datagram ends the run
				}
			}
			if j-i == 1 {
				m.prepSend(m.n, bufs[i], src, dst, u.v6sock, 0, tos)
			} else {
				for len(w.scratch) <= m.n {
					w.scratch = append(w.scratch, make([]byte, maxGSOBytes))
				}
				sb := w.scratch[m.n][:0]
				for _, b := range bufs[i:j] {
					sb = append(sb, b...)
				}
				m.prepSend(m.n, sb, src, dst, u.v6sock, seg, tos)
			}
			m.n++
			i = j
		}
	} else {
		for i, b := range bufs {
			m.prepSend(i, b, src, dst, u.v6sock, 0, tos)
		}
		m.n = len(bufs)
	}
	m.errno, m.done = 0, 0
	if err := u.rc.Write(m.sendFn); err != nil {
		return 0, mapClosed(err)
	}
	return m.errno, nil
}

// WriteFrom sends b as one datagram to dst from the local address of from
// when it is valid and specified (IP_PKTINFO or IPV6_PKTINFO), so that a
// socket bound to every address, like the NAT-T socket on port 4500,
// sends IKE from the address the IKE SA uses rather than the one the
// routing table prefers (RFC 7296, Section 2.11: the peer matches
// responses and the NAT detection hashes of Section 2.23 against the
// endpoints). The port of from is not used: it is the socket's. Safe for
// concurrent use with Write.
func (u *UDPConn) WriteFrom(b []byte, from, dst netip.AddrPort) error {
	var oob []byte
	if src := from.Addr(); src.IsValid() && !src.IsUnspecified() {
		oob = pktinfo(src, u.v6sock)
	}
	to := dst
	if u.v6sock && to.Addr().Is4() {
		to = netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())
	}
	if _, _, err := u.c.WriteMsgUDPAddrPort(b, oob, to); err != nil {
		return fmt.Errorf("conn: sendmsg to %v from %v: %w", dst, from.Addr(), mapClosed(err))
	}
	return nil
}

// pktinfo returns the control message that makes the kernel send from src
// (putPktinfo), or nil. golang.org/x/net/ipv6 leaves an IPv4-mapped source
// out of its control message, hence the hand-built one.
func pktinfo(src netip.Addr, v6sock bool) []byte {
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	if n := putPktinfo(b, src, v6sock); n > 0 {
		return b[:n]
	}
	return nil
}

var _ UDP = (*UDPConn)(nil)
