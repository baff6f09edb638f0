package ipsec

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/osnet"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/internal/policysource"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

// Host mode: a TUN device, the host's routes and nftables, raw sockets.

// rulePriority is the priority of the policy routing rule that host mode
// installs to send unmarked traffic to goipsec's routing table (before the
// main table at 32766).
const rulePriority = 10437

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

// FailClosed installs the part of cfg's policy that needs neither the
// network nor the TUN device, and returns: the nftables table "inet
// goipsec" with the firewall rules of every PROTECT and DISCARD rule that
// the configuration file names (policies, manual SAs, connection children,
// policy groups), and the policy routing rules with a prohibit route for
// every protected or discarded destination. It is ipsecd's boot mode
// (--fail-closed), run before the network comes up, so that cleartext that
// the policy covers cannot cross the network in the window before the
// daemon starts (RFC 4301, Section 4.4.1: the SPD is consulted for all
// traffic, and Section 5.1 and 5.2 discard what it does not let through).
// A daemon started later takes both over without a gap (see osnet.Hold
// and osnet.NewFilter). With an etcd policy source the cluster is not
// asked (the network is not up): the documents of its cache file, the last
// good policy, are merged as a starting daemon would; a cache that cannot
// be used is logged on log (nil: not logged) and the file alone enforced.
// It refuses while a daemon answers on cfg's control socket, whose policy
// in force it would replace. A configuration that neither protects nor
// discards anything installs nothing. It returns the number of firewall
// rules and of prohibit routes installed.
func FailClosed(cfg *config.Config, log *slog.Logger) (rules, routes int, err error) {
	if c, err := net.DialTimeout("unix", cfg.Daemon.Socket, time.Second); err == nil {
		c.Close()
		return 0, 0, fmt.Errorf("ipsec: fail-closed: a daemon answers on %s; its policy is in force", cfg.Daemon.Socket)
	}
	merged, err := policysource.Cached(cfg)
	if err != nil && log != nil {
		log.Warn("policy source cache not used; the configuration file alone is enforced until ipsecd starts", "err", err)
	}
	snap, err := policy.Compile(merged, nil, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("ipsec: fail-closed: %w", err)
	}
	if len(snap.Filter) == 0 && len(snap.Routes) == 0 {
		return 0, 0, nil
	}
	dsts := make([]netip.Prefix, len(snap.Routes))
	for i, r := range snap.Routes {
		dsts[i] = r.Dst
	}
	holdErr := osnet.Hold(conn.DefaultTable, conn.DefaultMark, rulePriority, dsts)
	f, err := osnet.NewFilter(cfg.Daemon.TUN.Name, conn.DefaultMark)
	if err != nil {
		return 0, len(dsts), fmt.Errorf("ipsec: fail-closed: %w", errors.Join(holdErr, err))
	}
	defer f.Close() // keeps the table
	if err := errors.Join(holdErr, filterAdapter{f}.Set(snap.Filter)); err != nil {
		return len(snap.Filter), len(dsts), fmt.Errorf("ipsec: fail-closed: %w", err)
	}
	return len(snap.Filter), len(dsts), nil
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
	var owned closeList
	owned = append(owned, dev.Close)
	name, _ := dev.Name()
	udp, err := conn.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), conn.NATTPort), conn.DefaultMark)
	if err != nil {
		udp, err = conn.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), conn.NATTPort), conn.DefaultMark)
	}
	if err != nil {
		return owned.fail(fmt.Errorf("ipsec: UDP port %d: %w", conn.NATTPort, err))
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
		return owned.fail(err)
	}
	owned = append(owned, ikeSock.Close)
	// The rule, routes and firewall table of an earlier run are adopted
	// as they are and hold until the daemon's first Set replaces them.
	router, err := osnet.New(name, conn.DefaultTable, conn.DefaultMark, rulePriority)
	if err != nil {
		return owned.fail(err)
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
	src, closeSource, err := openPolicySource(cfg, log)
	if err != nil {
		return owned.fail(err)
	}
	if closeSource != nil {
		owned = append(owned, closeSource)
	}
	d, err := daemon.New(cfg, daemon.Options{
		TUN: dev, UDP: udp, IKE: ikeSock, Raw: raws, Router: routerAdapter{router}, Filter: filter, Logger: log,
		Version: version, LocalAddrs: osnet.LocalAddrs,
		IKEConfig: ike.Config{LocalAddr: osnet.SourceAddr},
		Source:    src,
	})
	if err != nil {
		return owned.fail(err)
	}
	if closeSource != nil {
		s.closers = append(s.closers, closeSource) // after the daemon stopped
	}
	s.closers = append(s.closers, d.Close)
	s.d, s.tunName = d, name
	return nil
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
