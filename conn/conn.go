// Package conn holds the outer transports of the data plane behind small
// interfaces: ESP in UDP on port 4500 (RFC 3948) and raw IP sockets for ESP
// (IP protocol 50) and AH (51) without encapsulation. The Linux
// implementations read and write in batches (recvmmsg, sendmmsg), use UDP
// segmentation offload (UDP_SEGMENT) and receive coalescing (UDP_GRO) when
// the kernel has them, and mark every socket with SO_MARK so that policy
// routing can keep the daemon's own encrypted packets out of the TUN device.
//
// # Routing
//
// This package marks sockets; it does not touch routes. The daemon (the
// only place that opens OS resources) sets up the policy routing that keeps
// the data plane's own packets out of the TUN device, as wg-quick does:
//
//	ip rule add not fwmark MARK table TABLE       # also with -6
//	ip route add REMOTE_TS dev TUN table TABLE    # one per remote selector
//
// Unmarked traffic to the remote selectors (the host's applications) then
// enters the TUN device, while the data plane's sockets, marked MARK
// (DefaultMark unless configured), follow the main table: encrypted ESP/AH
// and BYPASS traffic leave through the real interface even when their
// destination lies inside a protected prefix (host-to-host transport mode).
// Tunnel mode between distinct outer and inner prefixes works with a plain
// route (ip route add REMOTE_TS dev TUN) as well.
//
// conn/conntest holds in-memory twins for tests.
package conn

import (
	"errors"
	"net/netip"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
)

// DefaultMark is the firewall mark (SO_MARK) put on the data plane's sockets
// when the configuration does not name one: 0x1b5 (437).
const DefaultMark = 0x1b5

// DefaultTable is the routing table that SetupPolicyRouting puts the routes
// into the TUN device in when the configuration does not name one.
const DefaultTable = 0x1b5

// NATTPort is the UDP port of ESP in UDP and of IKE after NAT detection.
// RFC 3948, Section 2; RFC 7296, Section 2.23.
const NATTPort = iana.PortNATT

// MaxSegments is the largest number of datagrams that a UDP Write coalesces
// into one segmentation-offload send (the kernel's UDP_MAX_SEGMENTS).
const MaxSegments = 64

// ErrClosed is returned by Read and Write once the transport is closed.
var ErrClosed = errors.New("conn: closed")

// UDP is a batched UDP socket carrying ESP in UDP and IKE on one port.
//
// Read may be called by one goroutine at a time; Write is safe for concurrent
// use (IKE sends on the same socket as the data plane).
type UDP interface {
	// Read receives at least one datagram, blocking until one arrives. The
	// payload of datagram i is bufs[i][offset:offset+sizes[i]] and its
	// sender is addrs[i]. len(sizes) and len(addrs) must be at least
	// len(bufs), and len(bufs) at most BatchSize(). Datagrams that the
	// kernel coalesced (UDP_GRO) are split again, one per element, so
	// buffers should be large (64 KiB) for coalescing to pay off.
	Read(bufs [][]byte, sizes []int, addrs []netip.AddrPort, offset int) (int, error)
	// Write sends each element of bufs as one datagram to dst. Runs of
	// equal-sized datagrams (the last may be shorter) may go to the kernel
	// as one segmentation-offload send; for that, bufs[0] needs spare
	// capacity behind it, which Write may overwrite. The source address is
	// the socket's or the routing table's; UDPConn.WriteBatchTOS sends
	// from a chosen one, UDPConn.WriteBatchTOS also with a chosen TOS or
	// traffic class, which UDPConn.ReadTOS reports at the receiver.
	Write(bufs [][]byte, dst netip.AddrPort) error
	// BatchSize returns the most datagrams Read and Write take per call.
	BatchSize() int
	// LocalAddr returns the address the socket is bound to.
	LocalAddr() netip.AddrPort
	// Close closes the socket; a blocked Read returns ErrClosed.
	Close() error
}

// Raw is a raw IP socket for one IP version and one IPsec protocol (ESP or
// AH). Its packets always include the IP header, in both directions:
//
//   - IPv4 raw sockets deliver the header on receive, and the socket is set to
//     IP_HDRINCL so that Write sends the exact header that ESP or AH produced
//     (AH's ICV covers it: RFC 4302, Section 3.3.3.1).
//   - IPv6 raw sockets deliver only the payload; the implementation puts a
//     header back in front of it from the source address, the destination
//     (IPV6_PKTINFO), the hop limit (IPV6_HOPLIMIT) and the traffic class
//     (IPV6_TCLASS), so that the payload length, next header and addresses
//     AH authenticates, and the ECN field a tunnel's decapsulator reads
//     (RFC 6040, Section 4.2), are the ones on the wire. Extension headers before ESP or AH are not reconstructed. Write
//     uses IPV6_HDRINCL (Linux 4.5 and later) to send the header as built.
//
// Read may be called by one goroutine at a time; Write is safe for concurrent use.
type Raw interface {
	// Read receives at least one packet, blocking until one arrives: IP
	// packet i is bufs[i][offset:offset+sizes[i]]. For IPv6 the kernel's
	// payload lands 40 bytes further on, so buffers need that much room
	// beyond the largest packet.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write sends each element of bufs, a complete IP packet of this
	// socket's version, to the destination in its header. The protocol in
	// the header need not be the socket's: the data plane also sends
	// BYPASS traffic in the clear this way.
	Write(bufs [][]byte) error
	// BatchSize returns the most packets Read and Write take per call.
	BatchSize() int
	// Version returns 4 or 6.
	Version() int
	// Protocol returns the IPsec protocol the socket receives.
	Protocol() sa.Protocol
	// Close closes the socket; a blocked Read returns ErrClosed.
	Close() error
}
