// Command ikeload is an IKEv2 load generator: it opens N IKE SAs, each with
// one CHILD SA, against one responder, at most C at a time, and reports
// handshakes per second, the latency of each (first IKE_SA_INIT request to
// the CHILD SA of IKE_AUTH) as percentiles, and the failures by reason:
//
//	ikeload -target 192.0.2.2 -n 1000 -c 50 -psk 0x... [-json FILE] [-hold]
//
// Each IKE SA has its own initiator identity (-id, a fmt pattern of the
// SA's index, default c%d.ikeload) and proposes one address of -local-net
// as its TSi, so that the responder sees N distinct clients; the IKE SAs
// share -sockets UDP sockets (source ports), spread over the -local
// addresses. The generator authenticates with a pre-shared key and never
// installs the CHILD SAs it negotiates, so that the IKE exchanges are its
// whole cost. There must be no NAT between generator and responder
// (NAT-T is not supported).
//
// With -hold the established IKE SAs stay up after the report until
// SIGINT or SIGTERM (so that the responder's memory can be measured);
// then, as without -hold, they are deleted (INFORMATIONAL Delete) before
// ikeload exits. Exit status 0 if every IKE SA came up, 3 if some failed,
// 1 on an error, 2 on a usage error.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitUsage  = 2
	exitFailed = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(mainRun(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func mainRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ikeload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "the responder: ADDR or ADDR:PORT (port 500 by default)")
	locals := fs.String("local", "", "comma-separated source addresses, used round robin by the sockets (default: chosen by the kernel)")
	n := fs.Int("n", 1000, "IKE SAs to open")
	c := fs.Int("c", 50, "handshakes in flight at most")
	socks := fs.Int("sockets", 0, "UDP sockets, each with its own source port (default min(n, 256))")
	ikeProps := fs.String("ike", "aes256gcm16-prfsha256-x25519", "IKE proposals, comma-separated")
	espProps := fs.String("esp", "aes256gcm16", "ESP proposals, comma-separated")
	pskArg := fs.String("psk", "", "the pre-shared key: 0x followed by hex, or a string (default: $PSK)")
	idFmt := fs.String("id", "c%d.ikeload", "the initiators' identities: a fmt pattern of the SA's index (0 to n-1)")
	rid := fs.String("remote-id", "", "the identity the responder must prove (default: any)")
	localNet := fs.String("local-net", "10.1.0.0/16", "each CHILD SA proposes one address of it as TSi")
	remoteTS := fs.String("remote-ts", "10.2.0.0/16", "the CHILD SAs' TSr, comma-separated")
	timeout := fs.Duration("timeout", 30*time.Second, "give one IKE SA up after this long")
	retrans := fs.Duration("retransmit", 2*time.Second, "the first retransmission timeout")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file (- for standard output)")
	hold := fs.Bool("hold", false, "keep the established IKE SAs up after the report until SIGINT or SIGTERM")
	verbose := fs.Bool("v", false, "log the engine's warnings to standard error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ikeload: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	cfg := loadConfig{N: *n, Concurrency: *c, Sockets: *socks, IDFormat: *idFmt, Timeout: *timeout, Retransmit: *retrans}
	var err error
	if cfg.Target, err = parseTarget(*target); err != nil {
		return usage("%v", err)
	}
	for _, s := range splitList(*locals) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return usage("-local: %v", err)
		}
		cfg.Locals = append(cfg.Locals, a)
	}
	for _, s := range splitList(*ikeProps) {
		p, err := transform.ParseIKEProposal(s)
		if err != nil {
			return usage("-ike: %v", err)
		}
		cfg.IKE = append(cfg.IKE, p)
	}
	for _, s := range splitList(*espProps) {
		p, err := transform.ParseESPProposal(s)
		if err != nil {
			return usage("-esp: %v", err)
		}
		cfg.ESP = append(cfg.ESP, p)
	}
	secret := *pskArg
	if secret == "" {
		secret = os.Getenv("PSK")
	}
	if cfg.PSK, err = parseSecret(secret); err != nil {
		return usage("-psk: %v", err)
	}
	if *rid != "" {
		cfg.RemoteID = ike.ParseIdentity(*rid)
	}
	if cfg.LocalNet, err = netip.ParsePrefix(*localNet); err != nil {
		return usage("-local-net: %v", err)
	}
	if cfg.RemoteTS, err = traffic.ParseSet(splitList(*remoteTS)); err != nil {
		return usage("-remote-ts: %v", err)
	}
	if !strings.Contains(*idFmt, "%") {
		return usage("-id %q must contain a verb for the SA's index, such as %%d", *idFmt)
	}
	level := slog.LevelError + 1
	if *verbose {
		level = slog.LevelWarn
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	res, err := run(ctx, cfg)
	if res == nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	defer res.closeFn()
	report(stdout, res)
	for reason, e := range res.perFailure {
		fmt.Fprintf(stderr, "ikeload: %s, for example: %v\n", reason, e)
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		b = append(b, '\n')
		if *jsonOut == "-" {
			stdout.Write(b)
		} else if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(stderr, "ikeload:", err)
			return exitFail
		}
	}
	if *hold && ctx.Err() == nil {
		fmt.Fprintf(stderr, "ikeload: holding %d IKE SAs until SIGINT or SIGTERM\n", res.OK)
		<-ctx.Done()
	}
	if res.Failed > 0 || err != nil {
		return exitFailed
	}
	return exitOK
}

func report(w io.Writer, r *result) {
	fmt.Fprintf(w, "ikeload: %d IKE SAs, %d concurrent, %d sockets: %d established, %d failed in %.2f s\n",
		r.N, r.Concurrency, r.Sockets, r.OK, r.Failed, r.Seconds)
	fmt.Fprintf(w, "handshakes/s %.1f  latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f  generator CPU %.2f s\n",
		r.Rate, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.CPUSeconds)
	reasons := make([]string, 0, len(r.Failures))
	for k := range r.Failures {
		reasons = append(reasons, k)
	}
	slices.Sort(reasons)
	for _, k := range reasons {
		fmt.Fprintf(w, "failed: %s %d\n", k, r.Failures[k])
	}
}

func parseTarget(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, errors.New("-target is required")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-target: %w", err)
	}
	return netip.AddrPortFrom(a.Unmap(), 500), nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// cpuTime returns the user and system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parseSecret decodes -psk: 0x followed by hex, or the string itself.
// Errors do not quote the value.
func parseSecret(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("a pre-shared key is required")
	}
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) == 0 {
			return nil, errors.New("invalid hex after 0x")
		}
		return b, nil
	}
	return []byte(s), nil
}
