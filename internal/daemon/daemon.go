// Package daemon wires goipsec together: it compiles the configuration into
// policy (internal/policy), drives the data plane (internal/dataplane) with
// the result, installs statically keyed SAs, keeps the routes into the TUN
// device in step, and answers the control API (internal/ctlserver.Backend).
// It is the one place where the engines meet; it opens no OS resources
// itself: cmd/ipsecd hands it the TUN device, sockets and router.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/tun"
)

// ErrNoChanges is returned by Reconfig when the new configuration asks for
// exactly what is running.
var ErrNoChanges = errors.New("daemon: no changes")

// Router installs the routes that bring traffic to the TUN device.
type Router interface {
	Set(routes []policy.Route) error
}

// Filter installs the host firewall rules that drop cleartext packets where
// a PROTECT or DISCARD policy applies (policy.FilterRule): inbound, outbound
// and forwarded packets that do not pass through the TUN device (the input,
// output and forward chains of osnet.Filter).
type Filter interface {
	Set(rules []policy.FilterRule) error
}

// IKESocket carries IKE on port 500 and says, for each datagram, which local
// address it reached (conn.IKEConn).
type IKESocket interface {
	ReadFrom(b []byte) (n int, from, to netip.AddrPort, err error)
	WriteTo(b []byte, from, to netip.AddrPort) error
	Close() error
}

// Options are the resources and hooks the daemon runs with. TUN is required;
// the rest may be nil.
type Options struct {
	TUN tun.Device
	// UDP is the NAT-T socket (port 4500): ESP in UDP and IKE after the
	// move to port 4500. IKE is the port 500 socket; without it the daemon
	// runs no IKE.
	UDP    conn.UDP
	IKE    IKESocket
	Raw    []conn.Raw
	Router Router
	// Filter, if not nil, gets the firewall rules of every configuration
	// applied; without it the host firewall does not stop cleartext that
	// a PROTECT or DISCARD rule covers, in either direction.
	Filter  Filter
	Logger  *slog.Logger
	Version string
	// LocalAddrs returns the host's addresses (for route source addresses).
	LocalAddrs func() []netip.Addr
	// Load re-reads the configuration file for Reload; nil means config.Load.
	Load func(path string) (*config.Config, error)
	Now  func() time.Time
	// IKEConfig is the base configuration of the IKE engine (timers,
	// randomness); its Logger and Now default to the daemon's.
	IKEConfig ike.Config
	// Source, if not nil, supplies shared policy merged with every
	// configuration the daemon applies (policy_sources); the daemon
	// follows it from New to Close.
	Source PolicySource
}

// Daemon is a running goipsec instance. Its methods are safe for concurrent use.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	dp      *dataplane.Dataplane
	started time.Time

	mu     sync.Mutex
	cfg    *config.Config
	snap   *policy.Snapshot
	pol    atomic.Pointer[policy.Snapshot] // snap, for the engine's PAD hook
	manual map[string]*installed           // by manual SA name
	seq    *seqStore                       // send counters of manual SAs (daemon.state_dir, read at start)
	// routes and filter install Router and Filter state, retrying in the
	// background what a reload could not install.
	routes, filter *retrier

	events *broker
	stats  *stats // for Metrics

	ike       *ike.Manager // nil without Options.IKE
	installer *installer
	// stopSource ends the Run of Options.Source; sourceDone is closed
	// when it returned.
	stopSource context.CancelFunc
	sourceDone chan struct{}
	// traps holds the children ("conn/child") whose trap a dpd_action or
	// close_action trap re-installed (ike.EventChildTrap): their next
	// acquire starts IKE whatever their start_action, until they are up
	// again. Guarded by mu.
	traps map[string]bool
	// od is the per-peer state of the policy groups (ondemand.go),
	// guarded by mu.
	od onDemand
	// closed is closed by Close (once): it ends watchEvents.
	closed    chan struct{}
	closeOnce sync.Once
}

// installed is a manual SA pair in the data plane.
type installed struct {
	def       policy.Manual
	in        *sad.InboundSA
	out       *sad.OutboundSA
	installed time.Time
	// counter persists the outbound send counter; nil if it could not be
	// kept (allowed only for suites that need no unique nonce).
	counter *reservingOutbound
}

// New starts the data plane with the configuration cfg applied.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.TUN == nil {
		return nil, errors.New("daemon: no TUN device")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Load == nil {
		opts.Load = config.Load
	}
	if opts.LocalAddrs == nil {
		opts.LocalAddrs = func() []netip.Addr { return nil }
	}
	// Each part logs with its subsystem, whose level daemon.log sets
	// (LogHandler).
	d := &Daemon{opts: opts, log: subsystemLog(opts.Logger, "daemon"), started: opts.Now(), manual: make(map[string]*installed), events: newBroker(), stats: &stats{}, closed: make(chan struct{})}
	d.seq = &seqStore{dir: cfg.Daemon.StateDir}
	policyLog := subsystemLog(opts.Logger, "policy")
	d.routes, d.filter = newRetrier("routes", policyLog), newRetrier("firewall rules", policyLog)
	dcfg := dataplane.Config{TUN: opts.TUN, UDP: opts.UDP, Raw: opts.Raw, Logger: subsystemLog(opts.Logger, "dataplane"), Now: opts.Now}
	if opts.IKE != nil {
		dcfg.IKE = d.handleNATT
	}
	dp, err := dataplane.New(dcfg)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.dp = dp
	if opts.IKE != nil {
		icfg := opts.IKEConfig
		if icfg.Logger == nil {
			icfg.Logger = subsystemLog(opts.Logger, "ike")
		}
		if icfg.Now == nil {
			icfg.Now = opts.Now
		}
		// daemon.ike, read at start only (the engine's Config is fixed
		// once in use).
		t := cfg.Daemon.IKE
		icfg.RetransmitTimeout = cmp.Or(icfg.RetransmitTimeout, t.RetransmitTimeout)
		icfg.RetransmitTries = cmp.Or(icfg.RetransmitTries, t.RetransmitTries)
		icfg.HalfOpenTimeout = cmp.Or(icfg.HalfOpenTimeout, t.HalfOpenTimeout)
		icfg.CookieThreshold = cmp.Or(icfg.CookieThreshold, t.CookieThreshold)
		icfg.MaxHalfOpen = cmp.Or(icfg.MaxHalfOpen, t.MaxHalfOpen)
		icfg.MaxHalfOpenPerSource = cmp.Or(icfg.MaxHalfOpenPerSource, t.MaxHalfOpenPerSource)
		icfg.CookieSecretLifetime = cmp.Or(icfg.CookieSecretLifetime, t.CookieLifetime)
		icfg.AuthorizeTS = d.authorizeTS
		d.installer = &installer{d: d, children: make(map[uint32]*ikeChild)}
		d.ike = ike.NewManager(icfg, d.installer, ikeTransport{d})
	}
	if err := d.configure(cfg, d.apply); err != nil && !errors.Is(err, ErrNoChanges) {
		// At start a failure is fatal, not retried.
		d.routes.close()
		d.filter.close()
		if d.ike != nil {
			d.ike.Close()
		}
		dp.Close()
		return nil, err
	}
	dp.Start()
	go d.watchEvents()
	if opts.Source != nil {
		ctx, cancel := context.WithCancel(context.Background())
		d.stopSource, d.sourceDone = cancel, make(chan struct{})
		go d.runSource(ctx)
	}
	if d.ike != nil {
		go d.readIKE()
		go d.watchIKE()
	}
	return d, nil
}

// Close stops the data plane and closes its devices and sockets.
func (d *Daemon) Close() error {
	d.stopOnDemand()
	if d.stopSource != nil {
		d.stopSource()
		<-d.sourceDone
	}
	if d.ike != nil {
		d.ike.Close()
		d.opts.IKE.Close()
	}
	d.routes.close()
	d.filter.close()
	err := d.dp.Close()
	d.closeOnce.Do(func() { close(d.closed) })
	d.releaseCounters()
	d.events.close()
	return err
}

// Reconfig applies cfg: the SPD is swapped whole, manual SAs that changed are
// replaced, unchanged ones keep running (replay windows and counters intact),
// and routes follow. It returns ErrNoChanges when nothing changed.
func (d *Daemon) Reconfig(cfg *config.Config) error { return d.apply(cfg) }

func (d *Daemon) apply(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Compiled against the snapshot in force, so that every rule that
	// stays keeps its Ref and its SAs (policy.Compile).
	snap, err := policy.Compile(cfg, d.opts.LocalAddrs(), d.snap)
	if err != nil {
		return err
	}
	// The per-peer rules of the groups (fallbacks to the clear, protected
	// clear-or-private peers) stay, as long as their peer stays in the
	// same group.
	if snap, err = snap.WithExceptions(d.exceptionsLocked(snap)); err != nil {
		return err
	}
	changed := d.snap == nil || !sameRules(d.snap, snap) || !sameRoutes(d.snap, snap)
	if d.cfg != nil && fmt.Sprint(d.cfg.Groups) != fmt.Sprint(cfg.Groups) {
		changed = true // the fallback timers, which no rule shows
	}
	if d.cfg == nil || d.cfg.Daemon.Log != cfg.Daemon.Log {
		setLogLevels(d.opts.Logger, cfg.Daemon.Log)
		changed = true
	}
	keep := make(map[string]bool)
	for _, m := range snap.Manual {
		if cur, ok := d.manual[m.Name]; ok && cur.def.Equal(m) {
			keep[m.Name] = true
		}
	}
	for name, cur := range d.manual {
		if !keep[name] {
			d.dp.RemoveOutbound(cur.out.Ref, cur.out.Protocol, cur.out.SPI)
			d.dp.RemoveInbound(cur.in.Protocol, cur.in.SPI)
			cur.release()
			delete(d.manual, name)
			d.log.Info("manual SA removed", "name", name)
			changed = true
		}
	}
	var errs []error
	for _, m := range snap.Manual {
		if keep[m.Name] {
			continue
		}
		inst, err := d.buildManual(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := d.dp.InstallInbound(inst.in); err != nil {
			inst.release()
			errs = append(errs, fmt.Errorf("daemon: manual SA %s: %w", m.Name, err))
			continue
		}
		if err := d.dp.InstallOutbound(inst.out); err != nil {
			d.dp.RemoveInbound(inst.in.Protocol, inst.in.SPI)
			inst.release()
			errs = append(errs, fmt.Errorf("daemon: manual SA %s: %w", m.Name, err))
			continue
		}
		d.manual[m.Name] = inst
		d.log.Info("manual SA installed", "name", m.Name, "protocol", m.Protocol, "mode", m.Mode,
			"spi_in", fmt.Sprintf("%08x", m.SPIIn), "spi_out", fmt.Sprintf("%08x", m.SPIOut), "algorithm", m.Suite.Name)
		changed = true
	}
	d.pol.Store(snap)
	if d.ike != nil {
		if err := d.ike.SetPeers(snap.Peers); err != nil {
			errs = append(errs, err)
		}
		if !sameConnections(d.cfg, cfg) {
			changed = true
		}
	} else if len(cfg.Connections) > 0 && d.cfg == nil {
		d.log.Warn("connections configured but IKE is not running (no IKE socket)")
	}
	errs = append(errs, d.enforceLocked(snap)...)
	d.cfg, d.snap = cfg, snap
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !changed {
		return ErrNoChanges
	}
	return nil
}

// enforceLocked puts snap in force in the data plane, the routes and the
// host firewall, where it differs from the snapshot in force (d.snap). Routes and firewall rules that fail are retried in the background
// (retry.go) until they succeed or a newer snapshot replaces them; the
// rest is in force meanwhile.
func (d *Daemon) enforceLocked(snap *policy.Snapshot) []error {
	var errs []error
	if d.snap != nil && sameRules(d.snap, snap) {
		// Keep the running SPD and its hit counters.
		snap.SPD = d.snap.SPD
	} else {
		d.dp.SetSPD(snap.SPD)
	}
	if r := d.opts.Router; r != nil && (d.snap == nil || !sameRoutes(d.snap, snap)) {
		if err := d.routes.set(func() error { return r.Set(snap.Routes) }); err != nil {
			errs = append(errs, &pendingError{"routes", err})
		}
	}
	if f := d.opts.Filter; f != nil && (d.snap == nil || !sameFilter(d.snap, snap)) {
		if err := d.filter.set(func() error { return f.Set(snap.Filter) }); err != nil {
			errs = append(errs, &pendingError{"firewall rules", err})
		}
	}
	return errs
}

func sameRules(a, b *policy.Snapshot) bool {
	if len(a.Rules) != len(b.Rules) {
		return false
	}
	for i := range a.Rules {
		x, y := a.Rules[i], b.Rules[i]
		if x.Name != y.Name || x.Action != y.Action || x.Ref != y.Ref || x.PerPeer != y.PerPeer || !equalSet(x.Local, y.Local) || !equalSet(x.Remote, y.Remote) {
			return false
		}
	}
	return true
}

func equalSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameRoutes(a, b *policy.Snapshot) bool { return equalSet(a.Routes, b.Routes) }

func sameFilter(a, b *policy.Snapshot) bool {
	if len(a.Filter) != len(b.Filter) {
		return false
	}
	for i := range a.Filter {
		x, y := a.Filter[i], b.Filter[i]
		if x.Action != y.Action || !equalSet(x.Remote, y.Remote) || !equalSet(x.Local, y.Local) {
			return false
		}
	}
	return true
}

// buildManual creates the packet engines of a manual SA pair.
func (d *Daemon) buildManual(m policy.Manual) (*installed, error) {
	p := pairSpec{Protocol: m.Protocol, Mode: m.Mode, Suite: m.Suite, KeyIn: m.KeyIn.Bytes(), KeyOut: m.KeyOut.Bytes(),
		SPIIn: m.SPIIn, SPIOut: m.SPIOut, ESN: m.ESN, Local: m.LocalAddr, Remote: m.RemoteAddr,
		LocalTS: m.LocalTS, RemoteTS: m.RemoteTS, ReplayWindow: m.ReplayWindow, Limits: m.Limits, Ref: m.Ref}
	if m.UDPEncap {
		p.RemoteEncapPort = d.nattPort()
	}
	// The send counter resumes past anything sent under these keys
	// before a restart or reinstall (seqstate.go).
	path := d.seq.counterPath(m.Protocol, m.SPIOut, m.KeyOut.Bytes())
	next, serr := d.seq.load(path)
	if serr == nil && next > 0 {
		p.StartSeq = next - 1
	}
	in, out, err := d.newPair(p)
	if err != nil {
		return nil, fmt.Errorf("daemon: manual SA %s: %w", m.Name, err)
	}
	inst := &installed{def: m, installed: d.opts.Now(), in: in, out: out}
	if serr == nil {
		inst.counter, serr = newReservingOutbound(out.SA, d.seq, path, p.StartSeq, m.ESN, d.log)
	}
	switch {
	case serr == nil:
		out.SA = inst.counter
	case needsUniqueNonce(m.Suite):
		return nil, fmt.Errorf("daemon: manual SA %s: refused: %s takes its nonces from the sequence number, "+
			"which would start again at 1 under the same key after every restart, but the send counter cannot be saved "+
			"(make daemon.state_dir writable): %w", m.Name, m.Suite.Name, serr)
	default:
		d.log.Warn("manual SA: send counter not saved; it starts at 1 after a restart, and the peer drops packets as replays until its own SA is reinstalled",
			"name", m.Name, "err", serr)
	}
	return inst, nil
}

// release saves the send counter of a manual SA that is going away.
func (i *installed) release() {
	if i.counter != nil {
		i.counter.release()
	}
}

// releaseCounters saves the send counters of the manual SAs after the data
// plane stopped.
func (d *Daemon) releaseCounters() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, inst := range d.manual {
		inst.release()
	}
}

// watchEvents forwards data plane events to the log and to subscribers.
// Acquires for connection children wait for IKE (issue 4); manual SAs never
// acquire because they are installed with their policy.
func (d *Daemon) watchEvents() {
	for {
		var ev dataplane.Event
		select {
		case ev = <-d.dp.Events():
		case <-d.closed: // the data plane never closes Events
			return
		}
		switch ev.Kind {
		case dataplane.EventAcquire:
			d.stats.acquires.Add(1)
			d.log.Info("acquire", "rule", ev.Rule, "packet", fmt.Sprint(ev.Packet))
			d.acquire(ev)
			d.events.publish(ctlapi.Event{Type: ctlapi.EventAcquire, Time: d.opts.Now(), Fields: map[string]string{
				"policy": ev.Rule, "src": ev.Packet.Src.String(), "dst": ev.Packet.Dst.String()}})
		case dataplane.EventExpire:
			d.log.Info("SA limit reached", "event", ev.SA.String())
			if d.ike != nil && d.installer.owns(ev.SA.Protocol, ev.SA.SPI) {
				d.ike.HandleExpire(ev.SA)
			}
			d.events.publish(ctlapi.Event{Type: ctlapi.EventExpire, Time: d.opts.Now(), Fields: map[string]string{
				"name": d.nameOfSPI(ev.SA.Protocol, ev.SA.SPI), "spi": fmt.Sprintf("%08x", ev.SA.SPI),
				"direction": ev.SA.Direction.String(), "hard": fmt.Sprint(ev.SA.Hard), "kind": ev.SA.Kind.String()}})
		}
	}
}

// pid is os.Getpid, a variable for tests.
var pid = os.Getpid

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// nattPort is the UDP encapsulation port: IKEConfig.NATTPort, or 4500 (RFC
// 3948) when that is zero. Manual SAs with UDP encapsulation send to this
// port of the peer, and IKE messages sent from it go over Options.UDP.
func (d *Daemon) nattPort() uint16 {
	if p := d.opts.IKEConfig.NATTPort; p != 0 {
		return p
	}
	return esp.NATTPort
}

// Dataplane returns the data plane, for tests and the facade.
func (d *Daemon) Dataplane() *dataplane.Dataplane { return d.dp }
