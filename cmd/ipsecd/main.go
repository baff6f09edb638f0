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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/goipsec/goipsec"
	"github.com/goipsec/goipsec/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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

// serve runs the daemon through the embeddable facade (package ipsec, host
// mode), so that ipsecd and programs that embed goipsec share one code path,
// and handles reloads and signals until it is told to stop.
func serve(cfg *config.Config, log *slog.Logger) error {
	srv := &ipsec.Server{Config: cfg, Logger: log, Version: version}
	if err := srv.Start(context.Background()); err != nil {
		return err
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log.Info("ipsecd running", "version", version, "config", cfg.File, "tun", srv.TUNName(), "socket", cfg.Daemon.Socket)

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
			if res, err := srv.Reload(ctx); err != nil {
				log.Error("configuration changed; reload failed, keeping the running configuration", "err", err)
			} else {
				log.Info("configuration changed; reloaded", "changed", res.Changed)
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if res, err := srv.Reload(ctx); err != nil {
					log.Error("reload failed", "err", err)
				} else {
					log.Info("reloaded", "changed", res.Changed)
				}
				continue
			}
			log.Info("stopping", "signal", sig.String())
			return nil
		case <-srv.Done():
			return srv.Err()
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
