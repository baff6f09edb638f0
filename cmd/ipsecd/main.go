// Command ipsecd is the goipsec daemon: it reads the configuration file, opens
// the TUN device and the sockets, and runs the IPsec data plane and the
// control API until it is told to stop.
//
//	ipsecd -c FILE            run in the foreground
//	ipsecd -c FILE --check    validate the configuration and exit
//
// SIGHUP reloads the configuration; SIGINT and SIGTERM stop the daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/ctlserver"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/metrics"
	"github.com/goipsec/goipsec/internal/osnet"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// rulePriority is the priority of the policy routing rule that sends
// unmarked traffic to goipsec's table (before main at 32766).
const rulePriority = 10437

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipsecd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration `file` (required)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ipsecd -c FILE [--check]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "ipsecd", version)
		return 0
	}
	if *file == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: OK\n", *file)
		return 0
	}
	log := newLogger(cfg.Daemon.Log, stderr)
	if err := serve(cfg, log); err != nil {
		log.Error("ipsecd stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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

func serve(cfg *config.Config, log *slog.Logger) (err error) {
	dev, err := tun.Create(cfg.Daemon.TUN.Name, cfg.Daemon.TUN.MTU)
	if err != nil {
		return fmt.Errorf("ipsecd: creating TUN device %s: %w", cfg.Daemon.TUN.Name, err)
	}
	name, _ := dev.Name()
	udp, err := conn.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), conn.NATTPort), conn.DefaultMark)
	if err != nil {
		udp, err = conn.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), conn.NATTPort), conn.DefaultMark)
	}
	if err != nil {
		dev.Close()
		return fmt.Errorf("ipsecd: UDP port %d: %w", conn.NATTPort, err)
	}
	var raws []conn.Raw
	for _, v := range []int{4, 6} {
		for _, p := range []sa.Protocol{sa.ESP, sa.AH} {
			r, err := conn.ListenRaw(v, p, conn.DefaultMark)
			if err != nil {
				log.Warn("raw socket unavailable", "ip", v, "protocol", p, "err", err)
				continue
			}
			raws = append(raws, r)
		}
	}
	ikeSock, err := conn.ListenIKE(500, conn.DefaultMark)
	if err != nil {
		dev.Close()
		udp.Close()
		for _, r := range raws {
			r.Close()
		}
		return err
	}
	router, err := osnet.New(name, conn.DefaultTable, conn.DefaultMark, rulePriority)
	if err != nil {
		dev.Close()
		udp.Close()
		for _, r := range raws {
			r.Close()
		}
		return err
	}
	defer router.Close()
	// Cleartext from the network that claims a protected source never
	// reaches the data plane, so the kernel's firewall drops it (RFC 4301,
	// Section 5.2).
	var filter daemon.Filter
	if f, err := osnet.NewFilter(name); err != nil {
		log.Warn("nftables unavailable: cleartext from protected sources is not filtered", "err", err)
	} else {
		defer f.Close()
		filter = filterAdapter{f}
	}
	d, err := daemon.New(cfg, daemon.Options{
		TUN: dev, UDP: udp, IKE: ikeSock, Raw: raws, Router: routerAdapter{router}, Filter: filter, Logger: log,
		Version: version, LocalAddrs: osnet.LocalAddrs,
		IKEConfig: ike.Config{LocalAddr: osnet.SourceAddr},
	})
	if err != nil {
		return err
	}
	defer d.Close()

	// The metrics endpoint listens before anything is served, so that an
	// address in use stops the daemon at startup instead of leaving it
	// running without the metrics it was configured with.
	var msrv *metrics.Server
	if addr := cfg.Daemon.MetricsListen; addr != "" {
		if msrv, err = metrics.Listen(addr, d, log); err != nil {
			return fmt.Errorf("ipsecd: metrics endpoint (daemon.metrics.listen %s): %w", addr, err)
		}
	}
	l, err := ctlserver.Listen(cfg.Daemon.Socket)
	if err != nil {
		if msrv != nil {
			msrv.Close()
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if msrv != nil {
		log.Info("metrics endpoint listening", "addr", msrv.Addr().String(), "path", "/metrics")
		go func() {
			if err := msrv.Serve(ctx); err != nil {
				log.Error("metrics endpoint stopped", "err", err)
			}
		}()
	}
	served := make(chan error, 1)
	go func() { served <- ctlserver.Serve(ctx, l, d, log) }()
	log.Info("ipsecd running", "version", version, "config", cfg.File, "tun", name, "socket", cfg.Daemon.Socket)

	// The configuration is re-read when it changes (and on SIGHUP): a
	// changed modification time or size triggers the same reload as
	// "ipsecctl reload", which applies only a file that parses.
	changed := watchFile(ctx, cfg.File, 2*time.Second)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	for {
		select {
		case <-changed:
			if res, err := d.Reload(ctx); err != nil {
				log.Error("configuration changed; reload failed, keeping the running configuration", "err", err)
			} else {
				log.Info("configuration changed; reloaded", "changed", res.Changed)
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if res, err := d.Reload(ctx); err != nil {
					log.Error("reload failed", "err", err)
				} else {
					log.Info("reloaded", "changed", res.Changed)
				}
				continue
			}
			log.Info("stopping", "signal", sig.String())
			cancel()
			<-served
			return nil
		case err := <-served:
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("ipsecd: control socket: %w", err)
			}
			return nil
		}
	}
}

// watchFile sends on the returned channel when the file at path changes its
// modification time or size, polling every interval until ctx ends.
func watchFile(ctx context.Context, path string, interval time.Duration) <-chan struct{} {
	ch := make(chan struct{}, 1)
	stat := func() (time.Time, int64) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		mt, size := stat()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m, s := stat()
				if s < 0 || (m.Equal(mt) && s == size) {
					continue
				}
				mt, size = m, s
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}
