// Command ipsecd is the goipsec daemon: it reads the configuration file, opens
// the TUN device and the sockets, and runs the IPsec data plane and the
// control API until it is told to stop.
//
//	ipsecd -c FILE            run in the foreground
//	ipsecd -c FILE --check    validate the configuration and exit
//	ipsecd -c FILE --fail-closed install the policy's nftables table and
//	                          prohibit routes, and exit (at boot, before the network)
//	ipsecd [-c FILE] --cleanup remove the policy a stopped daemon left in force
//	ipsecd --version          print the module version and VCS revision
//
// SIGHUP reloads the configuration; SIGINT and SIGTERM stop the daemon.
//
// Under systemd (Type=notify, see packaging/goipsec.service) ipsecd sends
// READY=1 once the configuration is applied and its policies are enforced,
// RELOADING=1 and READY=1 around each reload, STOPPING=1 when it stops, and
// WATCHDOG=1 at half of WatchdogSec= while its data plane and IKE manager
// answer.
//
// ipsecd fails closed: once it has loaded a PROTECT or DISCARD policy, the
// routing rule, the prohibit routes of its routing table and its nftables
// table keep protected traffic from leaving in the clear while it starts,
// reloads, stops or after it crashed. A stop keeps them (daemon.on_stop:
// keep, the default) and a restarted daemon takes them over; on_stop: clear
// removes them on stop, and --cleanup removes what a stopped daemon left.
// At boot, --fail-closed (packaging/goipsec-early.service, before the
// network comes up) installs the table and the prohibit routes from the
// configuration file before any daemon runs; the daemon takes them over.
//
// ipsecd runs the garbage collector with a target of 50% (GOGC=50) unless
// the environment sets GOGC: see gcPercent. When it goes quiet after a
// burst of work (many IKE SAs coming up) it returns the heap's free pages
// to the operating system: see trimWhenQuiet.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/goipsec/goipsec"
	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/buildinfo"
	"github.com/goipsec/goipsec/internal/sdnotify"
)

func main() {
	setGCPercent(os.Getenv)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// gcPercent is ipsecd's garbage collection target (GOGC) unless the
// environment sets one. A responder that holds many IKE SAs keeps about
// 11 KiB of live heap for each with its CHILD SA; Go's default of 100 lets
// the heap grow to twice that before a collection, which put ipsecd's
// memory per IKE SA above strongSwan charon's at 10,000 IKE SAs (24.5
// against 21.2 KiB). 50 lets it grow by half: 18.2 KiB per IKE SA there,
// at no measurable cost in handshakes per CPU-second (docs/performance.md,
// "IKE at scale"). GOGC=100 in the environment restores Go's default,
// GOGC=off disables the collector, and GOMEMLIMIT adds a soft limit, as
// for any Go program.
const gcPercent = 50

// setGCPercent sets the garbage collection target to gcPercent unless
// getenv("GOGC") is set, and returns the target in force.
func setGCPercent(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1) // read the runtime's value, from GOGC
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(gcPercent)
	return gcPercent
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipsecd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration `file` (required)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	cleanup := fs.Bool("cleanup", false, "remove the routing rule, routes and nftables table that a stopped or crashed daemon left in force, and exit (-c names the control socket to check; default names without it)")
	failClosed := fs.Bool("fail-closed", false, "validate the configuration, install the nftables table and the prohibit routes of its PROTECT and DISCARD policies (no network or TUN device needed), and exit; for boot, before the network is up; ipsecd takes them over when it starts")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ipsecd -c FILE [--check | --fail-closed]\n       ipsecd [-c FILE] --cleanup\n       ipsecd --version\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Fail closed: once a PROTECT or DISCARD policy is loaded, the policy routing
rule, the prohibit routes of routing table 0x1b5 and the nftables table
"inet goipsec" keep protected traffic from leaving in the clear, also while
no ipsecd runs. A stop (SIGTERM, SIGINT) keeps them unless the configuration
says daemon.on_stop: clear; a restarted ipsecd takes them over. --cleanup
removes them (protected traffic then follows the main routing table again).
At boot, before the network is up, --fail-closed installs the table and the
prohibit routes from FILE and exits (goipsec-early.service); a configuration
that cannot be read installs nothing and exits 1.

Memory: ipsecd runs with GOGC=50 unless the environment sets GOGC (the
heap grows by half of what is live between collections; Go's default is
100). GOMEMLIMIT sets a soft memory limit, as for any Go program. When
it goes quiet after a burst of work, ipsecd returns the heap's free
memory to the operating system (not with GOGC=off).
`)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "ipsecd", buildinfo.Read())
		return 0
	}
	if fs.NArg() != 0 || *file == "" && !*cleanup || exclusive(*cleanup, *check, *failClosed) > 1 {
		fs.Usage()
		return 2
	}
	if *cleanup {
		var cfg *config.Config
		if *file != "" {
			c, err := config.Load(*file)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			cfg = c
		}
		if err := ipsec.Cleanup(cfg); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
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
	if *failClosed {
		rules, routes, err := ipsec.FailClosed(cfg, ipsec.NewLogger(stderr, cfg.Daemon.Log))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: fail closed: %d firewall rules, %d prohibit routes\n", *file, rules, routes)
		return 0
	}
	log := ipsec.NewLogger(stderr, cfg.Daemon.Log)
	if err := serve(cfg, log); err != nil {
		log.Error("ipsecd stopped", "err", err)
		return 1
	}
	return 0
}

// exclusive counts the modes set among modes, which exclude each other.
func exclusive(modes ...bool) int {
	n := 0
	for _, m := range modes {
		if m {
			n++
		}
	}
	return n
}

// serve runs the daemon through the embeddable facade (package ipsec, host
// mode), so that ipsecd and programs that embed goipsec share one code path,
// and handles reloads, signals and the service manager's watchdog until it
// is told to stop.
func serve(cfg *config.Config, log *slog.Logger) error {
	version := buildinfo.Read().String()
	sd := notifier{n: sdnotify.New(), log: log}
	watchdog, err := sdnotify.WatchdogInterval()
	if err != nil {
		log.Warn("systemd watchdog off", "err", err)
	}
	srv := &ipsec.Server{Config: cfg, Logger: log, Version: version}
	if err := srv.Start(context.Background()); err != nil {
		return err
	}
	defer srv.Close()
	defer sd.send(sdnotify.Stopping) // before Close: the stop has begun
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log.Info("ipsecd running", "version", version, "config", cfg.File, "tun", srv.TUNName(), "socket", cfg.Daemon.Socket)
	// Start returns once the daemon applied the configuration: the
	// routing rule, the routes and prohibit routes and the nftables table
	// of its policies are in place, so systemd may start what depends on
	// protected traffic.
	sd.send(sdnotify.Ready + "\n" + sdnotify.Status("running; policies enforced"))

	// The configuration is re-read when it changes (and on SIGHUP): a
	// changed modification time or size triggers the same reload as
	// "ipsecctl reload", which applies only a file that parses.
	changed := watchFile(ctx, cfg.File, 2*time.Second)
	go trimWhenQuiet(ctx)
	reload := func(what string) {
		if st, err := sdnotify.Reloading(); err == nil {
			sd.send(st)
		} else {
			log.Warn("not telling systemd about the reload", "err", err)
		}
		if res, err := srv.Reload(ctx); err != nil {
			log.Error(what+"; reload failed, keeping the running configuration", "err", err)
			sd.send(sdnotify.Ready + "\n" + sdnotify.Status("running; the last reload failed, the previous configuration is in force"))
		} else {
			log.Info(what+"; reloaded", "changed", res.Changed)
			sd.send(sdnotify.Ready + "\n" + sdnotify.Status("running; policies enforced"))
		}
	}

	// WATCHDOG=1 goes out only while the daemon answers a status query,
	// which reads the data plane's counters and the IKE manager's SAs
	// under their locks: a wedged daemon stops the pings and systemd
	// restarts it (WatchdogSec=, Restart=on-failure).
	var tick <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog)
		defer t.Stop()
		tick = t.C
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	for {
		select {
		case <-changed:
			reload("configuration changed")
		case <-tick:
			if err := alive(ctx, srv.Status, watchdog); err != nil {
				log.Error("daemon not answering; no watchdog ping", "err", err)
				continue
			}
			sd.send(sdnotify.Watchdog)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload("SIGHUP")
				continue
			}
			log.Info("stopping", "signal", sig.String())
			return nil
		case <-srv.Done():
			return srv.Err()
		}
	}
}

// alive calls status (the Server's Status) and returns nil if it answered
// within timeout. A query stuck on a lock is left behind: the watchdog then
// ends the process.
func alive(ctx context.Context, status func(context.Context) (ctlapi.Status, error), timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := status(ctx)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("ipsecd: no status within %v", timeout)
	}
}

// notifier sends states to systemd and logs a failure instead of stopping
// the daemon for it.
type notifier struct {
	n   *sdnotify.Notifier
	log *slog.Logger
}

func (s notifier) send(state string) {
	if err := s.n.Notify(state); err != nil {
		s.log.Warn("cannot notify systemd", "err", err)
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
