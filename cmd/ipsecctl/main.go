// Command ipsecctl controls a running ipsecd through its control API:
//
//	ipsecctl [-s SOCKET] status    [--json]   daemon, IKE SAs, CHILD SAs, counters
//	ipsecctl [-s SOCKET] sas       [--json]   SAs with SPIs, algorithms, bytes, packets
//	ipsecctl [-s SOCKET] policies  [--json]   the SPD in evaluation order, with hits
//	ipsecctl [-s SOCKET] up CONN[/CHILD]      initiate
//	ipsecctl [-s SOCKET] down CONN[/CHILD]    delete
//	ipsecctl [-s SOCKET] rekey CONN[/CHILD]   rekey
//	ipsecctl [-s SOCKET] reload    [--json]   re-read the config file, apply the difference
//	ipsecctl [-s SOCKET] explain SRC DST [PROTO [DPORT]] [--json]
//	ipsecctl [-s SOCKET] peers     [--json]   on-demand peers and their state
//	ipsecctl [-s SOCKET] events    [--json]   follow the daemon's events
//	ipsecctl completion bash|zsh|fish         print a shell completion script
//	ipsecctl [-s SOCKET] version              ipsecctl's and the daemon's versions
//
// --json prints the control API's JSON (documented in package ctlapi). Exit
// codes: 0 success, 1 the operation failed (one line on stderr), 2 usage
// error. ipsecctl is a thin client: it imports only ctlapi, ctlapi/client
// and internal/buildinfo.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ctlapi/client"
	"github.com/goipsec/goipsec/internal/buildinfo"
)

// now is the clock for "2m ago"; tests stop it.
var now = time.Now

// Exit codes, as INTERFACES.md promises.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// Time limits of a call. Actions may wait for an IKE exchange.
const (
	queryTimeout  = 30 * time.Second
	actionTimeout = 3 * time.Minute
	// version prints ipsecctl's own version also when no daemon answers.
	versionTimeout = 5 * time.Second
)

const usage = `usage: ipsecctl [-s SOCKET] COMMAND [ARGS] [--json]

commands:
  status                           daemon, IKE SAs, CHILD SAs, counters
  sas                              IKE and CHILD SAs: SPIs, algorithms, bytes, packets
  policies                         the SPD in evaluation order, with hit counters
  up CONN[/CHILD]                  initiate a connection or one child
  down CONN[/CHILD]                delete a connection, one child or a manual SA
  rekey CONN[/CHILD]               rekey a connection's IKE SA or one child
  reload                           re-read the config file and apply the difference
  explain SRC DST [PROTO [DPORT]]  which SPD rule a packet would hit, and why
                                   (PROTO: tcp, udp, icmp, icmpv6, sctp, ... or a
                                   number; for icmp DPORT is TYPE[/CODE])
  peers                            the on-demand peers of policy groups and of
                                   connections for many hosts, with their state
  events                           follow the daemon's events until interrupted
  completion bash|zsh|fish         print a shell completion script
  version                          ipsecctl's version and, if it answers, the daemon's

options:
  -s, --socket PATH   the daemon's control socket (default ` + client.DefaultSocket + `)
  --json              print the control API's JSON (status, sas, policies,
                      reload, explain, peers, events)
  --version           print ipsecctl's version and exit
  -h, --help          print this help and exit

exit codes: 0 success, 1 the operation failed, 2 usage error
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is ipsecctl with its arguments (without the program name) and output
// streams; it returns the exit code. SIGINT and SIGTERM end `events`.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdout, stderr)
}

// usageError is a mistake in the command line: exit code 2 and the usage.
type usageError string

func (e usageError) Error() string { return string(e) }

func usagef(format string, args ...any) error { return usageError(fmt.Sprintf(format, args...)) }

// options are the parsed command line.
type options struct {
	socket  string
	json    bool
	help    bool
	version bool
	args    []string // the command and its arguments
}

// parse reads flags anywhere on the line, so that both `ipsecctl -s X
// status --json` and `ipsecctl status --json -s X` work; "--" ends flags.
func parse(args []string) (options, error) {
	o := options{socket: client.DefaultSocket}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.args = append(o.args, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.args = append(o.args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "s", "socket":
			if !hasValue {
				if i+1 >= len(args) {
					return o, usagef("%s needs a socket path", a)
				}
				i++
				value = args[i]
			}
			if value == "" {
				return o, usagef("%s needs a socket path", a)
			}
			o.socket = value
		case "json", "version", "h", "help":
			if hasValue {
				return o, usagef("%s takes no value", name)
			}
			switch name {
			case "json":
				o.json = true
			case "version":
				o.version = true
			default:
				o.help = true
			}
		default:
			return o, usagef("unknown flag %s", a)
		}
	}
	return o, nil
}

// command is one subcommand.
type command struct {
	minArgs, maxArgs int
	json             bool // accepts --json
	timeout          time.Duration
	run              func(ctx context.Context, c *client.Client, o options, out io.Writer) error
}

var commands = map[string]command{
	"status":   {0, 0, true, queryTimeout, cmdStatus},
	"sas":      {0, 0, true, queryTimeout, cmdSAs},
	"policies": {0, 0, true, queryTimeout, cmdPolicies},
	"up":       {1, 1, false, actionTimeout, cmdUp},
	"down":     {1, 1, false, actionTimeout, cmdDown},
	"rekey":    {1, 1, false, actionTimeout, cmdRekey},
	"reload":   {0, 0, true, actionTimeout, cmdReload},
	"explain":  {2, 4, true, queryTimeout, cmdExplain},
	"events":   {0, 0, true, 0, cmdEvents},
	"peers":    {0, 0, true, queryTimeout, cmdPeers},
	"version":  {0, 0, false, versionTimeout, cmdVersion},
}

// runContext is run with a context that ends `events`.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args)
	if err == nil {
		switch {
		case o.help || (len(o.args) > 0 && o.args[0] == "help"):
			fmt.Fprint(stdout, usage)
			return exitOK
		case o.version:
			fmt.Fprintln(stdout, versionLine())
			return exitOK
		case len(o.args) == 0:
			err = usagef("no command")
		}
	}
	var cmd command
	if err == nil {
		err = check(o, &cmd)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ipsecctl: %v\n\n%s", err, usage)
		return exitUsage
	}

	c := client.New(o.socket)
	defer c.Close()
	if cmd.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmd.timeout)
		defer cancel()
	}
	err = cmd.run(ctx, c, o, stdout)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "ipsecctl: %v\n\n%s", err, usage)
		return exitUsage
	}
	fmt.Fprintf(stderr, "ipsecctl: %s\n", oneLine(describe(o, err)))
	return exitFail
}

// check finds the command and checks its arguments.
func check(o options, cmd *command) error {
	name, args := o.args[0], o.args[1:]
	c, ok := commands[name]
	if !ok {
		return usagef("unknown command %q", name)
	}
	switch {
	case len(args) < c.minArgs || len(args) > c.maxArgs:
		want := map[string]string{
			"up": "CONN[/CHILD]", "down": "CONN[/CHILD]", "rekey": "CONN[/CHILD]",
			"explain":    "SRC DST [PROTO [DPORT]]",
			"completion": "bash|zsh|fish",
		}[name]
		if want == "" {
			return usagef("%s takes no arguments", name)
		}
		return usagef("usage: ipsecctl %s %s", name, want)
	case o.json && !c.json:
		return usagef("%s has no --json output", name)
	}
	*cmd = c
	return nil
}

// describe turns an error into the one-line reason ipsecctl prints.
func describe(o options, err error) string {
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		hint := "is ipsecd running? -s sets the socket"
		if errors.Is(ue.Err, fs.ErrPermission) {
			hint = "the socket is mode 0600: run ipsecctl as the daemon's user"
		}
		return fmt.Sprintf("cannot reach ipsecd at %s: %v (%s)", ue.Socket, ue.Err, hint)
	}
	what := o.args[0]
	if len(o.args) > 1 && o.args[0] != "explain" {
		what += " " + o.args[1]
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return what + ": no answer from ipsecd in time"
	case errors.Is(err, client.ErrStreamEnded):
		return "events: ipsecd ended the stream (it is stopping)"
	}
	return what + ": " + err.Error()
}

// oneLine keeps the reason on one line, whatever the daemon sent.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// versionLine is ipsecctl's version: the module version, the VCS revision
// and the Go version it was built with, and the control API it speaks.
func versionLine() string {
	return fmt.Sprintf("ipsecctl %s (control API %s)", buildinfo.Read(), ctlapi.Version)
}

// cmdVersion prints ipsecctl's version, then the daemon's as its status
// reports it. A daemon that does not answer is reported on the second line
// and is no failure: the first line is what was asked.
func cmdVersion(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	fmt.Fprintln(out, versionLine())
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(out, "ipsecd   not answering: %s\n", oneLine(describe(o, err)))
		return nil
	}
	_, err = fmt.Fprintf(out, "ipsecd   %s (pid %d, control API %s)\n", st.Version, st.PID, st.API)
	return err
}

// printJSON prints v as indented JSON.
func printJSON(out io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

func cmdStatus(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(out, st)
	}
	sas, err := c.SAs(ctx)
	if err != nil {
		return err
	}
	printStatus(out, st, sas, o.socket, now())
	return nil
}

func cmdSAs(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	sas, err := c.SAs(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(out, sas)
	}
	printSAs(out, sas, now())
	return nil
}

func cmdPolicies(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	p, err := c.Policies(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(out, p)
	}
	printPolicies(out, p)
	return nil
}

func cmdPeers(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	p, err := c.Peers(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(out, p)
	}
	printPeers(out, p, now())
	return nil
}

func cmdUp(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	return action(ctx, o, out, c.Initiate, "initiated")
}

func cmdDown(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	return action(ctx, o, out, c.Terminate, "terminated")
}

func cmdRekey(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	return action(ctx, o, out, c.Rekey, "rekeyed")
}

func action(ctx context.Context, o options, out io.Writer, call func(context.Context, string) error, done string) error {
	name := o.args[1]
	if _, _, err := ctlapi.SplitName(name); err != nil {
		return usageError(err.Error())
	}
	if err := call(ctx, name); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "%s %s\n", done, name)
	return err
}

func cmdReload(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	res, err := c.Reload(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(out, res)
	}
	switch {
	case !res.Changed:
		_, err = fmt.Fprintln(out, "no changes")
	case res.Summary != "":
		_, err = fmt.Fprintf(out, "reloaded: %s\n", res.Summary)
	default:
		_, err = fmt.Fprintln(out, "reloaded")
	}
	return err
}

func cmdExplain(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	req, err := parseExplain(o.args[1:])
	if err != nil {
		return err
	}
	res, err := c.Explain(ctx, req)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(out, res)
	}
	printExplain(out, res)
	return nil
}

// protocols are the names explain accepts for PROTO, with their IANA numbers.
var protocols = map[string]uint8{
	"any": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "udp": 17, "ipv6": 41,
	"gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
	"udplite": 136,
}

// protoName is the inverse of protocols, for output.
func protoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 58:
		return "icmpv6"
	}
	for name, n := range protocols {
		if n == p && name != "any" {
			return name
		}
	}
	return strconv.Itoa(int(p))
}

// parseExplain reads SRC DST [PROTO [DPORT]].
func parseExplain(args []string) (ctlapi.ExplainRequest, error) {
	var req ctlapi.ExplainRequest
	var err error
	if req.Src, err = netip.ParseAddr(args[0]); err != nil {
		return req, usagef("explain: SRC %q is not an IP address", args[0])
	}
	if req.Dst, err = netip.ParseAddr(args[1]); err != nil {
		return req, usagef("explain: DST %q is not an IP address", args[1])
	}
	if req.Src.Unmap().Is4() != req.Dst.Unmap().Is4() {
		return req, usagef("explain: SRC and DST are of different address families")
	}
	if len(args) > 2 {
		p, ok := protocols[strings.ToLower(args[2])]
		if !ok {
			n, err := strconv.ParseUint(args[2], 10, 8)
			if err != nil {
				return req, usagef("explain: PROTO %q is not a protocol name or a number from 0 to 255", args[2])
			}
			p = uint8(n)
		}
		req.Proto = p
	}
	if len(args) > 3 {
		port, err := parsePort(req.Proto, args[3])
		if err != nil {
			return req, err
		}
		req.DPort = port
	}
	return req, nil
}

// parsePort reads DPORT; for ICMP it is TYPE[/CODE], encoded as IKEv2
// traffic selectors carry it (RFC 7296, Section 3.13.1).
func parsePort(proto uint8, s string) (uint16, error) {
	switch proto {
	case 0:
		return 0, usagef("explain: DPORT needs a PROTO other than any")
	case 1, 58:
		t, c, hasCode := strings.Cut(s, "/")
		typ, err := strconv.ParseUint(t, 10, 8)
		if err != nil {
			return 0, usagef("explain: ICMP type %q is not a number from 0 to 255", t)
		}
		var code uint64
		if hasCode {
			if code, err = strconv.ParseUint(c, 10, 8); err != nil {
				return 0, usagef("explain: ICMP code %q is not a number from 0 to 255", c)
			}
		}
		return uint16(typ)<<8 | uint16(code), nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, usagef("explain: DPORT %q is not a port number from 0 to 65535", s)
	}
	return uint16(n), nil
}

func cmdEvents(ctx context.Context, c *client.Client, o options, out io.Writer) error {
	err := c.Events(ctx, func(ev ctlapi.Event) error {
		if o.json {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "%s\n", b)
			return err
		}
		return printEvent(out, ev)
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: the normal way to stop
	}
	return err
}
