package conn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// IKEConn is a UDP socket for IKE on port 500 (RFC 7296, Section 2): one
// socket for IPv4 and IPv6 that reports the local address each datagram was
// sent to and sends from a chosen local address, so that responses leave from
// the address the request reached. Safe for concurrent use.
type IKEConn struct {
	c  *net.UDPConn
	pc *ipv6.PacketConn
}

// ListenIKE opens the IKE socket on port (500) of every address, IPv4 and
// IPv6, with firewall mark mark (0: none).
func ListenIKE(port uint16, mark uint32) (*IKEConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if mark != 0 {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); e != nil {
					serr = fmt.Errorf("SO_MARK: %w", e)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", fmt.Sprintf("[::]:%d", port))
	if err != nil {
		return nil, fmt.Errorf("conn: IKE socket on port %d: %w", port, err)
	}
	c := pc.(*net.UDPConn)
	p6 := ipv6.NewPacketConn(c)
	if err := p6.SetControlMessage(ipv6.FlagDst, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("conn: IKE socket: IPV6_RECVPKTINFO: %w", err)
	}
	return &IKEConn{c: c, pc: p6}, nil
}

// ReadFrom reads one datagram into b and returns its length, its sender and
// the local address and port it was sent to. IPv4 addresses are returned as
// IPv4, not IPv4-mapped IPv6.
func (k *IKEConn) ReadFrom(b []byte) (n int, from, to netip.AddrPort, err error) {
	n, cm, src, err := k.pc.ReadFrom(b)
	if err != nil {
		return 0, from, to, mapClosed(err)
	}
	if ua, ok := src.(*net.UDPAddr); ok {
		from = unmapPort(ua.AddrPort())
	}
	local := k.c.LocalAddr().(*net.UDPAddr).AddrPort()
	if cm != nil && cm.Dst != nil {
		if a, ok := netip.AddrFromSlice(cm.Dst); ok {
			local = netip.AddrPortFrom(a, local.Port())
		}
	}
	return n, from, unmapPort(local), nil
}

// WriteTo sends b to to, from the local address of from when it is valid
// and specified. The control message is built by hand (pktinfo): the
// x/net/ipv6 one leaves an IPv4-mapped source out, so IKE to an IPv4 peer
// left from the address the routing table prefers, not the IKE SA's.
func (k *IKEConn) WriteTo(b []byte, from, to netip.AddrPort) error {
	var oob []byte
	if src := from.Addr(); src.IsValid() && !src.IsUnspecified() {
		oob = pktinfo(src, true)
	}
	dst := to.Addr()
	if dst.Is4() {
		dst = netip.AddrFrom16(dst.As16())
	}
	_, _, err := k.c.WriteMsgUDPAddrPort(b, oob, netip.AddrPortFrom(dst, to.Port()))
	return err
}

// Close closes the socket.
func (k *IKEConn) Close() error { return k.c.Close() }

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
