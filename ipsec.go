// Package ipsec embeds goipsec in a Go program: a Server runs the same
// policy agent, IKEv2 engine and ESP data plane as the ipsecd daemon, from a
// configuration file or a parsed config.Config.
//
// A Server runs in one of two modes:
//
//   - Host mode (Server.Netstack nil) is what ipsecd does: it needs root (or
//     CAP_NET_ADMIN and CAP_NET_RAW) and opens a TUN device, routes and
//     policy routing rules into it, an nftables table, raw ESP and AH
//     sockets, and the IKE and NAT-T sockets on UDP ports 500 and 4500.
//     Every program on the host then reaches the protected networks through
//     the kernel; Dial and Listen are the kernel's. Host mode fails closed:
//     the rule, the prohibit routes and the nftables table (see package
//     internal/osnet) enforce the policy while the Server starts, reloads
//     or is gone, and Close keeps them unless daemon.on_stop is clear;
//     Cleanup removes them.
//   - Netstack mode (Server.Netstack set) needs no privileges and changes
//     nothing on the host: the inner packets live in a userspace TCP/IP
//     stack (gVisor, through golang.zx2c4.com/wireguard/tun/netstack), ESP
//     travels in UDP only (RFC 3948), and IKE and NAT-T use the UDP ports
//     the Netstack names. Only the Server's own Dial, Listen and
//     ListenPacket reach the protected networks.
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
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/ctlserver"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/metrics"
	"github.com/goipsec/goipsec/internal/osnet"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

// rulePriority is the priority of the policy routing rule that host mode
// installs to send unmarked traffic to goipsec's routing table (before the
// main table at 32766).
const rulePriority = 10437

// ControlSocketMode says whether a Server serves the control API (package
// ctlapi, the one ipsecctl speaks) on the unix socket named by the
// configuration's daemon.socket.
type ControlSocketMode int

// Control socket modes.
const (
	// ControlSocketDefault serves the control API in host mode and not in
	// netstack mode.
	ControlSocketDefault ControlSocketMode = iota
	// ControlSocketOn serves it in either mode.
	ControlSocketOn
	// ControlSocketOff never serves it.
	ControlSocketOff
)

// Server is one goipsec instance. Set its fields, then call Start; the
// fields must not change afterwards. The zero value of every field means its
// default, as with crypto/tls.Config. A Server's methods are safe for
// concurrent use once Start has returned.
type Server struct {
	// Config is the configuration to run. If nil, ConfigFile is loaded
	// with config.Load. Reload always reads Config.File (or ConfigFile)
	// again, so a Config built in memory with an empty File cannot be
	// reloaded.
	Config *config.Config
	// ConfigFile is the path of the configuration file, used when Config
	// is nil. One of the two is required.
	ConfigFile string
	// Netstack, if not nil, selects netstack mode (no privileges, a
	// userspace TCP/IP stack, ESP in UDP only); nil selects host mode.
	Netstack *Netstack
	// Logger receives the Server's logs; nil means slog.Default(). Key
	// material is never logged. NewLogger makes one that follows
	// daemon.log (format, a level per subsystem, reloads).
	Logger *slog.Logger
	// ControlSocket says whether to serve the control API on
	// daemon.socket; the zero value serves it in host mode only.
	ControlSocket ControlSocketMode
	// Version is the version reported by Status; empty means "dev".
	Version string

	mu      sync.Mutex
	state   int // stateNew, stateRunning, stateClosed
	d       *daemon.Daemon
	tnet    *netstack.Net
	tunName string
	cfg     *config.Config
	closers []func() error // run in reverse order by Close
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // why the control API stopped, set before done closes
}

const (
	stateNew = iota
	stateRunning
	stateClosed
)

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

// Cleanup removes what host mode leaves in place after it stops or dies:
// the policy routing rules, the routes of goipsec's routing table and the
// nftables table, in the calling thread's network namespace. Protected
// destinations then follow the main routing table again, in the clear. It
// refuses while a daemon answers on the control socket of cfg (nil: the
// default socket), whose policy it would remove. What is not there is not
// an error.
func Cleanup(cfg *config.Config) error {
	socket := config.DefaultSocket
	if cfg != nil {
		socket = cfg.Daemon.Socket
	}
	if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("ipsec: cleanup: a daemon answers on %s; stop it first", socket)
	}
	if err := errors.Join(osnet.Cleanup(conn.DefaultTable, rulePriority), osnet.DeleteFilter()); err != nil {
		return fmt.Errorf("ipsec: cleanup: %w", err)
	}
	return nil
}

// errNotStarted is returned by methods called before Start or after Close.
var errNotStarted = errors.New("ipsec: server not running")

// Start opens the devices and sockets of the Server's mode, applies the
// configuration, starts IKE (connections with start_action start initiate
// now; trap waits for traffic) and, if enabled, the control API and the
// metrics endpoint (daemon.metrics.listen). ctx bounds only the start: the
// Server runs until Close. On error everything opened is closed again and
// the Server may not be started again.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return errors.New("ipsec: server already started")
	}
	s.state = stateClosed // until it runs
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ipsec: start: %w", err)
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	version := s.Version
	if version == "" {
		version = "dev"
	}
	cfg := s.Config
	file := s.ConfigFile
	if cfg == nil {
		if file == "" {
			return errors.New("ipsec: no Config and no ConfigFile")
		}
		c, err := config.Load(file)
		if err != nil {
			return err
		}
		cfg = c
	}
	var err error
	if s.Netstack != nil {
		err = s.startNetstack(cfg, log, version)
	} else {
		err = s.startHost(cfg, log, version)
	}
	if err != nil {
		s.runClosers()
		return err
	}
	s.cfg = cfg

	// The metrics endpoint listens before anything is served, so that an
	// address in use stops the start instead of leaving the Server running
	// without the metrics it was configured with.
	var msrv *metrics.Server
	if addr := cfg.Daemon.MetricsListen; addr != "" {
		if msrv, err = metrics.Listen(addr, s.d, log); err != nil {
			s.runClosers()
			return fmt.Errorf("ipsec: metrics endpoint (daemon.metrics.listen %s): %w", addr, err)
		}
		s.closers = append(s.closers, msrv.Close)
	}
	serveCtl := s.ControlSocket == ControlSocketOn || (s.ControlSocket == ControlSocketDefault && s.Netstack == nil)
	var l net.Listener
	if serveCtl {
		if l, err = ctlserver.Listen(cfg.Daemon.Socket); err != nil {
			s.runClosers()
			return err
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	var wg sync.WaitGroup
	if msrv != nil {
		log.Info("metrics endpoint listening", "addr", msrv.Addr().String(), "path", "/metrics")
		wg.Go(func() {
			if err := msrv.Serve(sctx); err != nil {
				log.Error("metrics endpoint stopped", "err", err)
			}
		})
	}
	if l != nil {
		go func() {
			err := ctlserver.Serve(sctx, l, s.d, log.With("subsystem", "ctl"))
			if err != nil && !errors.Is(err, context.Canceled) {
				s.err = fmt.Errorf("ipsec: control socket: %w", err)
			}
			wg.Wait()
			close(s.done)
		}()
	} else {
		go func() {
			<-sctx.Done()
			wg.Wait()
			close(s.done)
		}()
	}
	s.state = stateRunning
	return nil
}

// startHost opens what ipsecd opens: the TUN device, the NAT-T socket on
// port 4500, raw ESP and AH sockets, the IKE socket on port 500, the router
// and the nftables filter, then the daemon.
func (s *Server) startHost(cfg *config.Config, log *slog.Logger, version string) error {
	dev, err := tun.Create(cfg.Daemon.TUN.Name, cfg.Daemon.TUN.MTU)
	if err != nil {
		return fmt.Errorf("ipsec: creating TUN device %s: %w", cfg.Daemon.TUN.Name, err)
	}
	// Until the daemon owns them, the devices and sockets are closed here
	// on failure.
	var owned []func() error
	fail := func(err error) error {
		for i := len(owned) - 1; i >= 0; i-- {
			owned[i]()
		}
		return err
	}
	owned = append(owned, dev.Close)
	name, _ := dev.Name()
	udp, err := conn.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), conn.NATTPort), conn.DefaultMark)
	if err != nil {
		udp, err = conn.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), conn.NATTPort), conn.DefaultMark)
	}
	if err != nil {
		return fail(fmt.Errorf("ipsec: UDP port %d: %w", conn.NATTPort, err))
	}
	owned = append(owned, udp.Close)
	var raws []conn.Raw
	for _, v := range []int{4, 6} {
		for _, p := range []sa.Protocol{sa.ESP, sa.AH} {
			r, err := conn.ListenRaw(v, p, conn.DefaultMark)
			if err != nil {
				log.Warn("raw socket unavailable", "ip", v, "protocol", p, "err", err)
				continue
			}
			raws = append(raws, r)
			owned = append(owned, r.Close)
		}
	}
	ikeSock, err := conn.ListenIKE(iana.PortIKE, conn.DefaultMark)
	if err != nil {
		return fail(err)
	}
	owned = append(owned, ikeSock.Close)
	// The rule, routes and firewall table of an earlier run are adopted
	// as they are and hold until the daemon's first Set replaces them.
	router, err := osnet.New(name, conn.DefaultTable, conn.DefaultMark, rulePriority)
	if err != nil {
		return fail(err)
	}
	clearOnStop := cfg.Daemon.OnStop == config.OnStopClear
	if clearOnStop {
		s.closers = append(s.closers, router.Clear)
	} else {
		s.closers = append(s.closers, router.Close)
	}
	// Cleartext that a PROTECT or DISCARD policy covers never crosses the
	// network: the kernel's firewall drops it, inbound (RFC 4301, Section
	// 5.2) and outbound outside the TUN device (Section 5.1).
	var filter daemon.Filter
	if f, err := osnet.NewFilter(name, conn.DefaultMark); err != nil {
		log.Warn("nftables unavailable: cleartext is not filtered in either direction, and a stopped or crashed daemon leaves only the prohibit routes in force", "err", err)
	} else {
		if clearOnStop {
			s.closers = append(s.closers, f.Clear)
		} else {
			s.closers = append(s.closers, f.Close)
		}
		filter = filterAdapter{f}
	}
	d, err := daemon.New(cfg, daemon.Options{
		TUN: dev, UDP: udp, IKE: ikeSock, Raw: raws, Router: routerAdapter{router}, Filter: filter, Logger: log,
		Version: version, LocalAddrs: osnet.LocalAddrs,
		IKEConfig: ike.Config{LocalAddr: osnet.SourceAddr},
	})
	if err != nil {
		return fail(err)
	}
	s.closers = append(s.closers, d.Close)
	s.d, s.tunName = d, name
	return nil
}

// startNetstack opens the userspace stack and the two UDP sockets, then the
// daemon.
func (s *Server) startNetstack(cfg *config.Config, log *slog.Logger, version string) error {
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
	var owned []func() error
	fail := func(err error) error {
		for i := len(owned) - 1; i >= 0; i-- {
			owned[i]()
		}
		return err
	}
	owned = append(owned, dev.Close)
	udp, err := conn.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), nattPort), 0)
	if err != nil {
		udp, err = conn.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), nattPort), 0)
	}
	if err != nil {
		return fail(fmt.Errorf("ipsec: NAT-T port %d: %w", nattPort, err))
	}
	owned = append(owned, udp.Close)
	ikeSock, err := conn.ListenIKE(ikePort, 0)
	if err != nil {
		return fail(err)
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
		return fail(err)
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

func (s *Server) runClosers() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// Close stops the control API and the metrics endpoint, tears down IKE and
// the data plane, and closes every device and socket the Server opened. In
// host mode the policy stays in force by default, as a kernel IPsec policy
// outlives the IKE daemon: the routing rule, the prohibit routes and the
// firewall table stay (the routes into the TUN device go with it), so
// protected traffic is dropped, never sent in the clear, until a Server
// starts again or Cleanup runs; with daemon.on_stop clear, Close removes
// them. SAs are not deleted with the peer first (as with ipsecd, the peer's
// liveness checks or lifetimes end them). Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateRunning {
		s.state = stateClosed
		return nil
	}
	s.state = stateClosed
	s.cancel()
	<-s.done
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Done returns a channel that is closed when the Server stops: after Close,
// or when the control API fails on its own (then Err says why). It is nil
// before Start.
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Err returns why the control API stopped, once Done is closed, or nil.
func (s *Server) Err() error {
	select {
	case <-s.Done():
		return s.err
	default:
		return nil
	}
}

// TUNName returns the name of the TUN device in host mode (the userspace
// stack's name in netstack mode).
func (s *Server) TUNName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tunName
}

func (s *Server) daemon() (*daemon.Daemon, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateRunning {
		return nil, errNotStarted
	}
	return s.d, nil
}

// Status reports the Server's version, uptime, SA counts and data plane
// counters, as "ipsecctl status" shows them.
func (s *Server) Status(ctx context.Context) (ctlapi.Status, error) {
	d, err := s.daemon()
	if err != nil {
		return ctlapi.Status{}, err
	}
	return d.Status(ctx)
}

// SAs lists the IKE SAs and CHILD SAs (negotiated and manual), as
// "ipsecctl sas" shows them.
func (s *Server) SAs(ctx context.Context) (ctlapi.SAs, error) {
	d, err := s.daemon()
	if err != nil {
		return ctlapi.SAs{}, err
	}
	return d.SAs(ctx)
}

// Initiate starts the connection or child name ("conn" or "conn/child"),
// as "ipsecctl initiate" does; it returns once the negotiation has started.
func (s *Server) Initiate(ctx context.Context, name string) error {
	d, err := s.daemon()
	if err != nil {
		return err
	}
	return d.Initiate(ctx, name)
}

// Terminate deletes the IKE SA or CHILD SAs of name, as "ipsecctl
// terminate" does.
func (s *Server) Terminate(ctx context.Context, name string) error {
	d, err := s.daemon()
	if err != nil {
		return err
	}
	return d.Terminate(ctx, name)
}

// Reload reads the configuration file again and applies it; the result says
// whether anything changed. In netstack mode UDP encapsulation stays forced.
func (s *Server) Reload(ctx context.Context) (ctlapi.ReloadResult, error) {
	d, err := s.daemon()
	if err != nil {
		return ctlapi.ReloadResult{}, err
	}
	return d.Reload(ctx)
}

// Subscribe returns the Server's events (SAs up and down, acquires,
// expiries) until cancel is called or the Server closes.
func (s *Server) Subscribe(ctx context.Context) (events <-chan ctlapi.Event, cancel func()) {
	d, err := s.daemon()
	if err != nil {
		ch := make(chan ctlapi.Event)
		close(ch)
		return ch, func() {}
	}
	return d.Subscribe(ctx)
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

// routerAdapter gives the daemon the routes it asks for.
type routerAdapter struct{ r *osnet.Router }

func (a routerAdapter) Set(routes []policy.Route) error {
	out := make([]osnet.Route, len(routes))
	for i, r := range routes {
		out[i] = osnet.Route{Dst: r.Dst, Src: r.Src}
	}
	return a.r.Set(out)
}

// filterAdapter gives the host firewall the rules the daemon asks for.
type filterAdapter struct{ f *osnet.Filter }

func (a filterAdapter) Set(rules []policy.FilterRule) error {
	out := make([]osnet.FilterRule, len(rules))
	for i, r := range rules {
		act := osnet.FilterDrop
		if r.Action == policy.FilterAccept {
			act = osnet.FilterAccept
		}
		out[i] = osnet.FilterRule{Action: act, Remote: r.Remote, Local: r.Local}
	}
	return a.f.Set(out)
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
