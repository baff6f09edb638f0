package ipsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/osnet"
	"github.com/goipsec/goipsec/sa"
)

// Netstack mode: a userspace TCP/IP stack, no privileges, ESP in UDP on
// the ports the program chooses.

// Netstack configures netstack mode. Addresses is required; the zero value
// of every other field means its default.
type Netstack struct {
	// Addresses are this host's inner addresses: the addresses of the
	// userspace stack, which must lie in the local traffic selectors of
	// the configuration (for example 10.1.0.1 for local_ts 10.1.0.0/16).
	// Dial uses them as source addresses and Listen accepts on them.
	Addresses []netip.Addr
	// MTU is the userspace stack's MTU; zero means daemon.tun.mtu of the
	// configuration (1400 by default).
	MTU int
	// IKEPort is the local UDP port of IKE and NATTPort the local UDP port
	// of NAT-T, which carries ESP in UDP and IKE after the move from the
	// IKE port (RFC 3948; RFC 7296, Section 2.23). Zero means 500 and 4500;
	// a process without privileges can only bind ports above 1023 (unless
	// net.ipv4.ip_unprivileged_port_start says otherwise), so set both.
	// Both sockets listen on every local address.
	IKEPort, NATTPort uint16
	// PeerIKEPort and PeerNATTPort are the peers' IKE and NAT-T ports;
	// zero means the same as IKEPort and NATTPort. They apply to every
	// peer: datagrams sent to port IKEPort (NATTPort) of a peer go to its
	// PeerIKEPort (PeerNATTPort), and datagrams from a peer's PeerIKEPort
	// (PeerNATTPort) are seen as coming from IKEPort (NATTPort), so two
	// instances on one address with different ports can talk. A peer that
	// sends from another port is seen as behind a NAT (RFC 7296, Section
	// 2.23), which netstack mode handles like any NAT.
	PeerIKEPort, PeerNATTPort uint16
}

// startNetstack opens the userspace stack and the two UDP sockets, then the
// daemon.
func (s *Server) startNetstack(cfg *config.Config, log *slog.Logger, version string) error {
	if cfg.PolicySources.Etcd != nil {
		return errors.New("ipsec: policy_sources.etcd is not supported in netstack mode yet; use host mode (ipsecd)")
	}
	ns := s.Netstack
	if len(ns.Addresses) == 0 {
		return errors.New("ipsec: Netstack.Addresses is empty: the userspace stack needs this host's inner addresses")
	}
	ikePort, nattPort := ns.IKEPort, ns.NATTPort
	if ikePort == 0 {
		ikePort = iana.PortIKE
	}
	if nattPort == 0 {
		nattPort = conn.NATTPort
	}
	if ikePort == nattPort {
		return fmt.Errorf("ipsec: Netstack.IKEPort and NATTPort are both %d", ikePort)
	}
	mtu := ns.MTU
	if mtu == 0 {
		mtu = cfg.Daemon.TUN.MTU
	}
	if mtu == 0 {
		mtu = config.DefaultTUNMTU
	}
	dev, tnet, err := netstack.CreateNetTUN(ns.Addresses, nil, mtu)
	if err != nil {
		return fmt.Errorf("ipsec: userspace network stack: %w", err)
	}
	var owned closeList
	owned = append(owned, dev.Close)
	udp, err := conn.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), nattPort), 0)
	if err != nil {
		udp, err = conn.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), nattPort), 0)
	}
	if err != nil {
		return owned.fail(fmt.Errorf("ipsec: NAT-T port %d: %w", nattPort, err))
	}
	owned = append(owned, udp.Close)
	ikeSock, err := conn.ListenIKE(ikePort, 0)
	if err != nil {
		return owned.fail(err)
	}
	owned = append(owned, ikeSock.Close)
	load := func(path string) (*config.Config, error) {
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		return netstackConfig(c), nil
	}
	d, err := daemon.New(netstackConfig(cfg), daemon.Options{
		TUN:     dev,
		UDP:     &mappedUDP{UDP: udp, m: portMap{local: nattPort, peer: ns.PeerNATTPort}},
		IKE:     &mappedIKE{IKESocket: ikeSock, m: portMap{local: ikePort, peer: ns.PeerIKEPort}},
		Logger:  log,
		Version: version,
		Load:    load,
		IKEConfig: ike.Config{Port: ikePort, NATTPort: nattPort,
			LocalAddr: osnet.SourceAddr},
	})
	if err != nil {
		return owned.fail(err)
	}
	s.closers = append(s.closers, d.Close)
	s.d, s.tnet = d, tnet
	name, _ := dev.Name()
	log.Info("netstack running", "addresses", fmt.Sprint(ns.Addresses), "mtu", mtu, "ike_port", ikePort, "natt_port", nattPort)
	s.tunName = name
	return nil
}

// netstackConfig returns a copy of c with UDP encapsulation forced on every
// connection and manual SA: netstack mode has no raw sockets, so ESP can
// only travel in UDP (RFC 3948); IKE then moves to the NAT-T port after
// IKE_SA_INIT (RFC 7296, Section 2.23).
func netstackConfig(c *config.Config) *config.Config {
	out := *c
	out.Connections = slices.Clone(c.Connections)
	for i := range out.Connections {
		out.Connections[i].Encap = true
	}
	out.ManualSAs = slices.Clone(c.ManualSAs)
	for i := range out.ManualSAs {
		if out.ManualSAs[i].Protocol == sa.ESP {
			out.ManualSAs[i].UDPEncap = true
		}
	}
	return &out
}

// Dial connects to address on the named network through the tunnel. In
// host mode it is net.Dialer's DialContext (the routes into the TUN device
// carry the traffic). In netstack mode network is "tcp", "tcp4", "tcp6",
// "udp", "udp4" or "udp6", and address is an IP literal and port
// ("10.2.0.1:8080", "[fd00::1]:53"): the userspace stack has no resolver.
func (s *Server) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	tnet, err := s.stack()
	if err != nil {
		return nil, err
	}
	if tnet == nil {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	ap, err := parseAddrPort(network, address, false)
	if err != nil {
		return nil, err
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := tnet.DialContextTCPAddrPort(ctx, ap)
		if err != nil {
			return nil, fmt.Errorf("ipsec: dial %s %s: %w", network, address, err)
		}
		return c, nil
	case "udp", "udp4", "udp6":
		c, err := tnet.DialUDPAddrPort(netip.AddrPort{}, ap)
		if err != nil {
			return nil, fmt.Errorf("ipsec: dial %s %s: %w", network, address, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("ipsec: dial: network %q is not implemented in netstack mode (tcp and udp are)", network)
}

// Listen listens for TCP connections on address ("10.2.0.1:8080", or
// ":8080" for every inner address). In host mode it is net.Listen; in
// netstack mode it listens on the userspace stack, so only peers through
// the tunnel reach it, and network is "tcp", "tcp4" or "tcp6".
func (s *Server) Listen(network, address string) (net.Listener, error) {
	tnet, err := s.stack()
	if err != nil {
		return nil, err
	}
	if tnet == nil {
		return net.Listen(network, address)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("ipsec: listen: network %q is not implemented in netstack mode (tcp is; ListenPacket does udp)", network)
	}
	ap, err := parseAddrPort(network, address, true)
	if err != nil {
		return nil, err
	}
	l, err := tnet.ListenTCPAddrPort(ap)
	if err != nil {
		return nil, fmt.Errorf("ipsec: listen %s %s: %w", network, address, err)
	}
	return l, nil
}

// ListenPacket listens for UDP datagrams on address, like Listen: in host
// mode it is net.ListenPacket; in netstack mode network is "udp", "udp4" or
// "udp6" and the socket lives in the userspace stack.
func (s *Server) ListenPacket(network, address string) (net.PacketConn, error) {
	tnet, err := s.stack()
	if err != nil {
		return nil, err
	}
	if tnet == nil {
		return net.ListenPacket(network, address)
	}
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("ipsec: listen packet: network %q is not implemented in netstack mode (udp is)", network)
	}
	ap, err := parseAddrPort(network, address, true)
	if err != nil {
		return nil, err
	}
	c, err := tnet.ListenUDPAddrPort(ap)
	if err != nil {
		return nil, fmt.Errorf("ipsec: listen packet %s %s: %w", network, address, err)
	}
	return c, nil
}

// stack returns the userspace stack, nil in host mode.
func (s *Server) stack() (*netstack.Net, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateRunning {
		return nil, errNotStarted
	}
	return s.tnet, nil
}

// parseAddrPort parses an IP literal and port; an empty host is allowed
// (meaning any address) when listening.
func parseAddrPort(network, address string, listen bool) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ipsec: %s address %q: %w", network, address, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ipsec: %s address %q: bad port", network, address)
	}
	if host == "" && listen {
		return netip.AddrPortFrom(netip.Addr{}, uint16(p)), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ipsec: %s address %q: host names are not implemented in netstack mode; give an IP address", network, address)
	}
	ip = ip.Unmap()
	if (network == "tcp4" || network == "udp4") && !ip.Is4() || (network == "tcp6" || network == "udp6") && !ip.Is6() {
		return netip.AddrPort{}, fmt.Errorf("ipsec: %s address %q: wrong address family", network, address)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// portMap translates the peers' ports (Netstack.PeerIKEPort and
// PeerNATTPort) to this host's, so that the IKE engine, which assumes that
// both ends use the same ports (RFC 7296, Section 2.23 moves both to 4500),
// can talk to a peer on other ports. With peer zero or equal to local it
// changes nothing.
type portMap struct{ local, peer uint16 }

// out maps a destination the engine chose to the one on the wire.
func (m portMap) out(ap netip.AddrPort) netip.AddrPort {
	if m.peer != 0 && ap.Port() == m.local {
		return netip.AddrPortFrom(ap.Addr(), m.peer)
	}
	return ap
}

// in maps a sender on the wire to the one the engine expects.
func (m portMap) in(ap netip.AddrPort) netip.AddrPort {
	if m.peer != 0 && ap.Port() == m.peer {
		return netip.AddrPortFrom(ap.Addr(), m.local)
	}
	return ap
}

// mappedUDP is the NAT-T socket with the peers' port translated. Its Read
// and Write allocate nothing.
type mappedUDP struct {
	conn.UDP
	m portMap
}

func (u *mappedUDP) Read(bufs [][]byte, sizes []int, addrs []netip.AddrPort, offset int) (int, error) {
	n, err := u.UDP.Read(bufs, sizes, addrs, offset)
	for i := 0; i < n; i++ {
		addrs[i] = u.m.in(addrs[i])
	}
	return n, err
}

func (u *mappedUDP) Write(bufs [][]byte, dst netip.AddrPort) error {
	return u.UDP.Write(bufs, u.m.out(dst))
}

// mappedIKE is the IKE socket with the peers' port translated.
type mappedIKE struct {
	daemon.IKESocket
	m portMap
}

func (k *mappedIKE) ReadFrom(b []byte) (n int, from, to netip.AddrPort, err error) {
	n, from, to, err = k.IKESocket.ReadFrom(b)
	return n, k.m.in(from), to, err
}

func (k *mappedIKE) WriteTo(b []byte, from, to netip.AddrPort) error {
	return k.IKESocket.WriteTo(b, from, k.m.out(to))
}
