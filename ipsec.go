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
	"sync"

	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/ctlserver"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/metrics"
)

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

// A closeList holds the Close functions of what a start opened, in order,
// until the daemon owns them.
type closeList []func() error

// fail closes them in reverse order, ignoring their errors, and returns err.
func (c closeList) fail(err error) error {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
	return err
}
