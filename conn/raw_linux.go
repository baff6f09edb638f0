package conn

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/goipsec/goipsec/sa"
	"golang.org/x/sys/unix"
)

// RawConn is the Linux conn.Raw: a raw IP socket for ESP or AH, batched with
// recvmmsg and sendmmsg. Concurrent Writes each have their own send state
// and go to the kernel in parallel.
type RawConn struct {
	f       *os.File
	rc      syscall.RawConn
	version int
	proto   sa.Protocol
	hdrincl bool // IPv6: IPV6_HDRINCL accepted

	rmu sync.Mutex
	rm  *mmsg
	ws  *freeList[*mmsg] // send states: concurrent Writes run in parallel
}

// RawBatchSize is the batch size of RawConn.
const RawBatchSize = 64

// ListenRaw opens a raw socket of IP version 4 or 6 for protocol proto (ESP
// or AH) with firewall mark mark (0: none). It needs CAP_NET_RAW.
func ListenRaw(version int, proto sa.Protocol, mark uint32) (*RawConn, error) {
	family := unix.AF_INET
	if version == 6 {
		family = unix.AF_INET6
	} else if version != 4 {
		return nil, fmt.Errorf("conn: IP version %d", version)
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("conn: raw socket (IPv%d, protocol %d): %w", version, proto, err)
	}
	fail := func(what string, err error) (*RawConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("conn: raw socket (IPv%d, protocol %d): %s: %w", version, proto, what, err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fail("SO_MARK", err)
		}
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 7<<20) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 7<<20)
	}
	r := &RawConn{version: version, proto: proto, rm: newMmsg(RawBatchSize),
		ws: newFreeList(maxWriters(), func() *mmsg { return newMmsg(RawBatchSize) })}
	if version == 4 {
		// Send the header ESP or AH built: AH authenticates it (RFC 4302,
		// Section 3.3.3.1), and BYPASS packets keep theirs.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return fail("IP_HDRINCL", err)
		}
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return fail("IPV6_RECVPKTINFO", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1); err != nil {
			return fail("IPV6_RECVHOPLIMIT", err)
		}
		// The traffic class carries the outer ECN field, which a
		// tunnel's decapsulator combines into the inner header (RFC
		// 6040, Section 4.2).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1); err != nil {
			return fail("IPV6_RECVTCLASS", err)
		}
		// IPV6_HDRINCL (Linux 4.5): without it the kernel builds the
		// header itself from the destination and its own choice of
		// source, which for AH must then match the one we authenticated.
		r.hdrincl = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1) == nil
	}
	r.f = os.NewFile(uintptr(fd), fmt.Sprintf("raw%d-%d", version, proto))
	rc, err := r.f.SyscallConn()
	if err != nil {
		r.f.Close()
		return nil, fmt.Errorf("conn: %w", err)
	}
	r.rc = rc
	return r, nil
}

// BatchSize implements Raw.
func (r *RawConn) BatchSize() int { return RawBatchSize }

// Version implements Raw.
func (r *RawConn) Version() int { return r.version }

// Protocol implements Raw.
func (r *RawConn) Protocol() sa.Protocol { return r.proto }

// Close implements Raw.
func (r *RawConn) Close() error { return r.f.Close() }

// Read implements Raw. For IPv6 the payload is read 40 bytes into
// bufs[i][offset:] and a header rebuilt in front of it from the source
// address, IPV6_PKTINFO (destination), IPV6_HOPLIMIT and IPV6_TCLASS (the
// DSCP and ECN bits); the flow label, which AH does not authenticate (RFC
// 4302, Section 3.3.3.1.2), is zero.
func (r *RawConn) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	m := r.rm
	m.n = min(len(bufs), len(m.hdrs))
	skip := 0
	if r.version == 6 {
		skip = 40
	}
	for i := range m.n {
		m.prepRecv(i, bufs[i][offset+skip:])
	}
	m.errno, m.done = 0, 0
	if err := r.rc.Read(m.recvFn); err != nil {
		return 0, mapClosed(err)
	}
	if m.errno != 0 {
		return 0, fmt.Errorf("conn: recvmmsg: %w", m.errno)
	}
	for i := range m.done {
		h := &m.hdrs[i]
		n := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			n = 0
		}
		if r.version == 4 || n == 0 {
			sizes[i] = n
			continue
		}
		var dst [16]byte
		hop, tclass := uint8(64), uint32(0)
		ctl := m.cmsgs[i][:h.Hdr.Controllen]
		for {
			level, typ, data, rest, ok := nextCmsg(ctl)
			if !ok {
				break
			}
			if level == unix.IPPROTO_IPV6 {
				switch {
				case typ == unix.IPV6_PKTINFO && len(data) >= 16:
					copy(dst[:], data[:16])
				case typ == unix.IPV6_HOPLIMIT && len(data) >= 4:
					hop = data[0] // a host-order int; little-endian on every Linux port we build for
				case typ == unix.IPV6_TCLASS && len(data) >= 4:
					tclass = uint32(data[0]) // likewise
				}
			}
			ctl = rest
		}
		if n > 0xffff {
			sizes[i] = 0
			continue
		}
		src := sockaddrAddr(&m.names[i]).Addr().As16()
		hd := bufs[i][offset : offset+40]
		binary.BigEndian.PutUint32(hd[0:], 6<<28|tclass<<20)
		binary.BigEndian.PutUint16(hd[4:], uint16(n))
		hd[6] = uint8(r.proto)
		hd[7] = hop
		copy(hd[8:24], src[:])
		copy(hd[24:40], dst[:])
		sizes[i] = 40 + n
	}
	return m.done, nil
}

// Write implements Raw. Writes from different goroutines run in parallel
// (up to one per core); the packets of one Write leave in order.
func (r *RawConn) Write(bufs [][]byte) error {
	m := r.ws.get()
	defer r.ws.put(m)
	for len(bufs) > 0 {
		n := min(len(bufs), len(m.hdrs))
		if err := r.write(m, bufs[:n]); err != nil {
			return err
		}
		bufs = bufs[n:]
	}
	return nil
}

func (r *RawConn) write(m *mmsg, bufs [][]byte) error {
	m.n = 0
	for _, b := range bufs {
		var dst netip.Addr
		switch {
		case r.version == 4 && len(b) >= 20 && b[0]>>4 == 4:
			dst = netip.AddrFrom4([4]byte(b[16:20]))
		case r.version == 6 && len(b) >= 40 && b[0]>>4 == 6:
			dst = netip.AddrFrom16([16]byte(b[24:40]))
			if !r.hdrincl {
				b = b[40:] // the kernel writes the header
			}
		default:
			continue // not a packet of this version: nothing to send
		}
		m.prepSend(m.n, b, netip.Addr{}, netip.AddrPortFrom(dst, 0), r.version == 6, 0, 0)
		m.n++
	}
	if m.n == 0 {
		return nil
	}
	m.errno, m.done = 0, 0
	if err := r.rc.Write(m.sendFn); err != nil {
		return mapClosed(err)
	}
	if m.errno != 0 {
		return fmt.Errorf("conn: sendmmsg (raw IPv%d): %w", r.version, m.errno)
	}
	return nil
}

var _ Raw = (*RawConn)(nil)
