package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/ctlserver/ctltest"
)

// ipsecctl runs the command line against the socket and returns the exit
// code, stdout and stderr.
func ipsecctl(t *testing.T, socket string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"-s", socket}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// oneLineErr checks that stderr is exactly one line starting "ipsecctl: ".
func oneLineErr(t *testing.T, stderr string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "ipsecctl: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr %q is not one line starting \"ipsecctl: \"", stderr)
	}
}

func contains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

// TestMain stops the clock at the sample data's reference time.
func TestMain(m *testing.M) {
	now = func() time.Time { return ctltest.T0 }
	os.Exit(m.Run())
}

func TestStatus(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "status")
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	t.Logf("status:\n%s", out)
	contains(t, "status", out,
		"daemon:   ipsecd v0.1.0, pid 4242, up 3h12m7s, API v1\n",
		"config:   /etc/goipsec/ipsecd.yaml\n",
		"socket:   "+sock+"\n",
		"SAs:      1 IKE, 2 CHILD\n",
		// 1234 B / 1024 = 1.205 KiB; 3565158 B / 1024^2 = 3.3999... MiB.
		"traffic:  in 1.21 KiB (1234 packets), out 3.40 MiB (2345 packets)\n",
		"drops:    bad_icv 3, replay 1\n",
		"panics:   0 IKE, 0 data plane\n",
		"IKE SA  ID  STATE        LOCAL           REMOTE             REMOTE ID     ESTABLISHED\n",
		"site-b  #1  established  192.0.2.1:4500  198.51.100.2:4500  gw-b.example  2m ago\n",
		// 1234 B = 1.205 KiB, 5632 B = 5.5 KiB.
		"site-b/net  installed  esp    tunnel     c0ffee01  c0ffee02  1.21 KiB  5.50 KiB\n",
		"lab         installed  ah     transport  00002001  00001001  0 B       0 B\n",
	)
	code, out, _ = ipsecctl(t, sock, "status", "--json")
	var st ctlapi.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || !reflect.DeepEqual(st, f.StatusResult) {
		t.Errorf("status --json: exit %d, %v:\n%s", code, err, out)
	}
}

func TestSAs(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "sas")
	if code != 0 || errOut != "" {
		t.Fatalf("sas: exit %d, stderr %q", code, errOut)
	}
	t.Logf("sas:\n%s", out)
	contains(t, "sas", out,
		"site-b #1: established, IKEv2, initiator, SPIs 0123456789abcdef_i fedcba9876543210_r\n",
		"  local  gw-a.example @ 192.0.2.1:4500\n",
		"  remote gw-b.example @ 198.51.100.2:4500\n",
		"  proposal aes256gcm16-prfsha256-x25519, UDP encapsulation\n",
		"  established 2m ago, rekeying in 4h\n",
		"    installed 2m ago, rekeying in 58m, expires in 1h\n",
		"  site-b/net: installed, ESP tunnel in UDP, aes256gcm16, ESN\n",
		"    in      c0ffee01  1.21 KiB  10 packets  replay drops 1, ICV failures 3\n",
		"    out     c0ffee02  5.50 KiB  12 packets\n",
		"    local   10.1.0.0/16\n",
		"    remote  10.2.0.0/16,10.3.0.0/16[tcp/443]\n",
		"manual SAs:\n  lab: installed, AH transport, sha256\n",
		"    2001:db8::1 -> 2001:db8::2\n    installed 1h ago\n",
	)
	code, out, _ = ipsecctl(t, sock, "sas", "--json")
	var sas ctlapi.SAs
	if err := json.Unmarshal([]byte(out), &sas); code != 0 || err != nil || !reflect.DeepEqual(sas, f.SAsResult) {
		t.Errorf("sas --json: exit %d, %v:\n%s", code, err, out)
	}

	f.SAsResult = ctlapi.SAs{}
	if code, out, _ := ipsecctl(t, sock, "sas"); code != 0 || out != "no SAs\n" {
		t.Errorf("sas with none: exit %d, %q", code, out)
	}
}

func TestPolicies(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "policies")
	if code != 0 || errOut != "" {
		t.Fatalf("policies: exit %d, stderr %q", code, errOut)
	}
	t.Logf("policies:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("policies: %d lines, want a header and 3 rules:\n%s", len(lines), out)
	}
	// The columns line up: each rule's action starts under ACTION.
	col := strings.Index(lines[0], "ACTION")
	for i, action := range []string{"bypass", "protect", "discard"} {
		if got := strings.Index(lines[i+1], action); got != col {
			t.Errorf("rule %d: %q at column %d, want %d:\n%s", i+1, action, got, col, out)
		}
	}
	contains(t, "policies", out,
		"1  dns         both  bypass   any          10.2.0.53/32[udp/53]              -           12\n",
		"2  site-b/net  out   protect  10.1.0.0/16  10.2.0.0/16,10.3.0.0/16[tcp/443]  site-b/net  1234\n",
	)
	code, out, _ = ipsecctl(t, sock, "policies", "--json")
	var p ctlapi.Policies
	if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil || !reflect.DeepEqual(p, f.PoliciesResult) {
		t.Errorf("policies --json: exit %d, %v:\n%s", code, err, out)
	}
}

func TestActions(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	for _, tt := range []struct{ cmd, name, out, call string }{
		{"up", "site-b/net", "initiated site-b/net\n", "initiate site-b/net"},
		{"down", "lab", "terminated lab\n", "terminate lab"},
		{"rekey", "site-b", "rekeyed site-b\n", "rekey site-b"},
	} {
		code, out, errOut := ipsecctl(t, sock, tt.cmd, tt.name)
		if code != 0 || out != tt.out || errOut != "" {
			t.Errorf("%s %s: exit %d, %q, %q", tt.cmd, tt.name, code, out, errOut)
		}
		if calls := f.Calls(); calls[len(calls)-1] != tt.call {
			t.Errorf("%s %s: backend got %q, want %q", tt.cmd, tt.name, calls[len(calls)-1], tt.call)
		}
	}
}

func TestFailures(t *testing.T) {
	f := ctltest.NewFake()
	f.Errors["initiate"] = ctlapi.Errorf(ctlapi.ErrNotFound, "daemon: no connection %q", "nope")
	f.Errors["rekey"] = ctlapi.ErrNotImplemented
	f.Errors["reload"] = fmt.Errorf("config: ipsecd.yaml:3: connections.x.version: must be 2\nand more: %w", ctlapi.ErrBadRequest)
	f.Errors["policies"] = ctltest.ErrBoom
	sock := ctltest.Serve(t, f)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "nope"}, `ipsecctl: up nope: daemon: no connection "nope"` + "\n"},
		{[]string{"rekey", "site-b/net"}, "ipsecctl: rekey site-b/net: ctlserver: rekey: not implemented by this ipsecd\n"},
		{[]string{"reload"}, "ipsecctl: reload: config: ipsecd.yaml:3: connections.x.version: must be 2 and more: bad request\n"},
		{[]string{"policies", "--json"}, "ipsecctl: policies: fake: boom\n"},
	} {
		code, out, errOut := ipsecctl(t, sock, tt.args...)
		if code != 1 || out != "" || errOut != tt.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 1, %q", tt.args, code, out, errOut, tt.want)
		}
		oneLineErr(t, errOut)
	}
}

func TestUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ipsecd.sock")
	code, out, errOut := ipsecctl(t, sock, "status")
	want := "ipsecctl: cannot reach ipsecd at " + sock + ": connect: no such file or directory (is ipsecd running? -s sets the socket)\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("status with no daemon: exit %d, %q, %q; want 1, %q", code, out, errOut, want)
	}
}

func TestUsageErrors(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	for _, tt := range []struct {
		args []string
		want string // the first line of stderr
	}{
		{nil, "ipsecctl: no command"},
		{[]string{"frobnicate"}, `ipsecctl: unknown command "frobnicate"`},
		{[]string{"up"}, "ipsecctl: usage: ipsecctl up CONN[/CHILD]"},
		{[]string{"down", "a", "b"}, "ipsecctl: usage: ipsecctl down CONN[/CHILD]"},
		{[]string{"status", "extra"}, "ipsecctl: status takes no arguments"},
		{[]string{"up", "x", "--json"}, "ipsecctl: up has no --json output"},
		{[]string{"up", "a b"}, `ipsecctl: ctlapi: name "a b" contains a space or control character`},
		{[]string{"rekey", "a/b/c"}, `ipsecctl: ctlapi: name "a/b/c" has more than one slash`},
		{[]string{"--bogus", "status"}, "ipsecctl: unknown flag --bogus"},
		{[]string{"status", "--json=yes"}, "ipsecctl: json takes no value"},
		{[]string{"status", "-s"}, "ipsecctl: -s needs a socket path"},
		{[]string{"explain", "10.0.0.1"}, "ipsecctl: usage: ipsecctl explain SRC DST [PROTO [DPORT]]"},
		{[]string{"explain", "10.0.0.1", "10.0.0.2", "tcp", "22", "x"}, "ipsecctl: usage: ipsecctl explain SRC DST [PROTO [DPORT]]"},
		{[]string{"explain", "10.0.0.x", "10.0.0.2"}, `ipsecctl: explain: SRC "10.0.0.x" is not an IP address`},
		{[]string{"explain", "10.0.0.1", "2001:db8::1"}, "ipsecctl: explain: SRC and DST are of different address families"},
		{[]string{"explain", "10.0.0.1", "10.0.0.2", "bogus"}, `ipsecctl: explain: PROTO "bogus" is not a protocol name or a number from 0 to 255`},
		{[]string{"explain", "10.0.0.1", "10.0.0.2", "256"}, `ipsecctl: explain: PROTO "256" is not a protocol name or a number from 0 to 255`},
		{[]string{"explain", "10.0.0.1", "10.0.0.2", "tcp", "65536"}, `ipsecctl: explain: DPORT "65536" is not a port number from 0 to 65535`},
		{[]string{"explain", "10.0.0.1", "10.0.0.2", "any", "53"}, "ipsecctl: explain: DPORT needs a PROTO other than any"},
		{[]string{"explain", "10.0.0.1", "10.0.0.2", "icmp", "8/x"}, `ipsecctl: explain: ICMP code "x" is not a number from 0 to 255`},
	} {
		before := len(f.Calls())
		code, out, errOut := ipsecctl(t, sock, tt.args...)
		first, rest, _ := strings.Cut(errOut, "\n")
		if code != 2 || out != "" || first != tt.want || !strings.Contains(rest, "usage: ipsecctl [-s SOCKET] COMMAND") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q with the usage", tt.args, code, out, errOut, tt.want)
		}
		if after := len(f.Calls()); after != before {
			t.Errorf("%q: a usage error reached the daemon: %q", tt.args, f.Calls()[before:])
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"status", "--help"}} {
		stdout.Reset()
		stderr.Reset()
		if code := run(args, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "usage: ipsecctl") || stderr.Len() != 0 {
			t.Errorf("%q: exit %d, %q, %q", args, code, stdout.String(), stderr.String())
		}
	}
	stdout.Reset()
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "ipsecctl ") ||
		!strings.HasSuffix(stdout.String(), " (control API v1)\n") {
		t.Errorf("--version: exit %d, %q", code, stdout.String())
	}
}

func TestSocketFlagForms(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	for _, args := range [][]string{
		{"-s", sock, "reload"},
		{"--socket", sock, "reload"},
		{"--socket=" + sock, "reload"},
		{"reload", "-s", sock},
		{"-s=" + sock, "--", "reload"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || stdout.String() != "reloaded: added connection site-c\n" {
			t.Errorf("%q: exit %d, %q, %q", args, code, stdout.String(), stderr.String())
		}
	}
}

func TestReload(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	code, out, _ := ipsecctl(t, sock, "reload", "--json")
	var r ctlapi.ReloadResult
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || r != f.ReloadResult {
		t.Errorf("reload --json: exit %d, %v: %s", code, err, out)
	}
	f.ReloadResult = ctlapi.ReloadResult{}
	if code, out, _ := ipsecctl(t, sock, "reload"); code != 0 || out != "no changes\n" {
		t.Errorf("reload with no changes: exit %d, %q", code, out)
	}
	f.ReloadResult = ctlapi.ReloadResult{Changed: true}
	if code, out, _ := ipsecctl(t, sock, "reload"); code != 0 || out != "reloaded\n" {
		t.Errorf("reload without summary: exit %d, %q", code, out)
	}
}

func TestExplain(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "explain", "10.1.0.5", "10.2.0.9", "tcp", "22")
	if code != 0 || errOut != "" {
		t.Fatalf("explain: exit %d, %q", code, errOut)
	}
	t.Logf("explain:\n%s", out)
	contains(t, "explain", out,
		"packet: 10.1.0.5 -> 10.2.0.9 tcp dport 22 (out)\n",
		"1  dns         no match  dst 10.2.0.9 not in remote_ts 10.2.0.53/32[udp/53]\n",
		"2  site-b/net  match     src in local_ts",
		"verdict: protect by rule 2 (site-b/net) with SA site-b/net; SA site-b/net is installed\n",
	)
	code, out, _ = ipsecctl(t, sock, "explain", "10.1.0.5", "10.2.0.9", "--json")
	var res ctlapi.ExplainResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !reflect.DeepEqual(res, f.ExplainResult) {
		t.Errorf("explain --json: exit %d, %v:\n%s", code, err, out)
	}

	// What the backend receives for each form of the arguments.
	ipsecctl(t, sock, "explain", "2001:db8::1", "2001:db8::2", "ipv6-icmp", "128/0")
	ipsecctl(t, sock, "explain", "10.0.0.1", "10.0.0.2", "icmp", "3/4")
	ipsecctl(t, sock, "explain", "10.0.0.1", "10.0.0.2", "udp", "53")
	ipsecctl(t, sock, "explain", "10.0.0.1", "10.0.0.2", "132")
	a := netip.MustParseAddr
	want := []ctlapi.ExplainRequest{
		{Src: a("10.1.0.5"), Dst: a("10.2.0.9"), Proto: 6, DPort: 22, Direction: "out"},
		{Src: a("10.1.0.5"), Dst: a("10.2.0.9"), Direction: "out"},
		// ICMP type and code travel as type<<8|code (RFC 7296, Section 3.13.1).
		{Src: a("2001:db8::1"), Dst: a("2001:db8::2"), Proto: 58, DPort: 128 << 8, Direction: "out"},
		{Src: a("10.0.0.1"), Dst: a("10.0.0.2"), Proto: 1, DPort: 3<<8 | 4, Direction: "out"},
		{Src: a("10.0.0.1"), Dst: a("10.0.0.2"), Proto: 17, DPort: 53, Direction: "out"},
		{Src: a("10.0.0.1"), Dst: a("10.0.0.2"), Proto: 132, Direction: "out"},
	}
	if got := f.Explains(); !reflect.DeepEqual(got, want) {
		t.Errorf("explain requests:\n got %+v\nwant %+v", got, want)
	}

	f.ExplainResult = ctlapi.ExplainResult{Action: ctlapi.ActionDiscard, Reason: "RFC 4301 default"}
	_, out, _ = ipsecctl(t, sock, "explain", "10.9.0.1", "10.9.0.2")
	contains(t, "explain with no match", out, "packet: 10.9.0.1 -> 10.9.0.2 any (out)\n", "verdict: discard: no rule matched; RFC 4301 default\n")
}

// syncBuffer is a bytes.Buffer that a test may read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// events runs `ipsecctl events` until the fake has a subscriber, publishes
// evs, and returns the output after stop (which ends the command).
func events(t *testing.T, f *ctltest.Fake, sock string, stop func(context.CancelFunc), args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, append([]string{"-s", sock, "events"}, args...), &stdout, &stderr) }()
	f.WaitSubscribers(t, 1)
	f.Publish(ctlapi.Event{Type: ctlapi.EventChildUp, Time: ctltest.T0,
		Fields: map[string]string{"name": "site-b/net", "spi_in": "c0ffee01", "reason": "peer asked"}})
	f.Publish(ctlapi.Event{Type: ctlapi.EventReload, Time: ctltest.T0.Add(1500 * time.Millisecond)})
	// Wait for both lines, then stop.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(stdout.String(), "\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop(cancel)
	select {
	case code := <-done:
		return code, stdout.String(), stderr.String()
	case <-time.After(10 * time.Second):
		t.Fatal("events did not stop")
	}
	return 0, "", ""
}

func TestEvents(t *testing.T) {
	f := ctltest.NewFake()
	sock := ctltest.Serve(t, f)

	code, out, errOut := events(t, f, sock, func(cancel context.CancelFunc) { cancel() })
	want := "2026-03-14T15:09:26.000Z child_up name=site-b/net reason=\"peer asked\" spi_in=c0ffee01\n" +
		"2026-03-14T15:09:27.500Z reload\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("events: exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
	f.WaitSubscribers(t, 0)

	// --json prints the stream's lines, which parse back into events; the
	// daemon ending the stream is a failure.
	code, out, errOut = events(t, f, sock, func(context.CancelFunc) { f.End() }, "--json")
	if code != 1 || errOut != "ipsecctl: events: ipsecd ended the stream (it is stopping)\n" {
		t.Errorf("events ended by the daemon: exit %d, %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("events --json: %q", out)
	}
	var ev ctlapi.Event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Type != ctlapi.EventChildUp || ev.Fields["spi_in"] != "c0ffee01" || !ev.Time.Equal(ctltest.T0) {
		t.Errorf("events --json line %q: %+v, %v", lines[0], ev, err)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 10 * time.Second: "10s", 2 * time.Minute: "2m", 4 * time.Hour: "4h",
		time.Hour + 5*time.Second: "1h0m5s", 3*time.Hour + 12*time.Minute + 7*time.Second + 900*time.Millisecond: "3h12m7s",
		-90 * time.Second: "1m30s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1536: "1.50 KiB", 1 << 20: "1.00 MiB",
		5 << 30: "5.00 GiB", 1 << 40: "1.00 TiB", 1<<64 - 1: "16.00 EiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root connects to a socket whatever its mode")
	}
	sock := ctltest.Serve(t, ctltest.NewFake())
	if err := os.Chmod(sock, 0); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := ipsecctl(t, sock, "status")
	want := "ipsecctl: cannot reach ipsecd at " + sock + ": connect: permission denied (the socket is mode 0600: run ipsecctl as the daemon's user)\n"
	if code != 1 || errOut != want {
		t.Errorf("exit %d, %q; want 1, %q", code, errOut, want)
	}
}

// TestSAsShowsEveryKE checks that "ipsecctl sas" shows every key exchange
// of a hybrid CHILD SA (RFC 9370), and the single KE of an older daemon.
func TestSAsShowsEveryKE(t *testing.T) {
	f := ctltest.NewFake()
	f.SAsResult.ChildSAs[0].KE = "x25519"
	f.SAsResult.ChildSAs[0].KEs = []string{"x25519", "mlkem768"}
	sock := ctltest.Serve(t, f)
	code, out, _ := ipsecctl(t, sock, "sas")
	if code != 0 {
		t.Fatalf("sas: exit %d", code)
	}
	contains(t, "sas", out, "  site-b/net: installed, ESP tunnel in UDP, aes256gcm16, ESN, KE x25519+mlkem768\n")
	f.SAsResult.ChildSAs[0].KEs = nil
	_, out, _ = ipsecctl(t, sock, "sas")
	contains(t, "sas", out, "  site-b/net: installed, ESP tunnel in UDP, aes256gcm16, ESN, KE x25519\n")
}

// TestVersionCommandShowsDaemonVersion checks `ipsecctl version`: its own
// version line (module version, revision, Go version), then the daemon's
// from the status API, and without a daemon still its own, exit 0.
func TestVersionCommandShowsDaemonVersion(t *testing.T) {
	f := ctltest.NewFake()
	f.StatusResult.Version = "v0.1.0 (rev 0123456789ab) go1.26.8"
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "version")
	if code != 0 || errOut != "" {
		t.Fatalf("version: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || lines[0] != versionLine() || !strings.Contains(lines[0], " (rev ") || !strings.Contains(lines[0], " go1.") {
		t.Errorf("version: first line %q, want %q", lines[0], versionLine())
	}
	if want := fmt.Sprintf("ipsecd   v0.1.0 (rev 0123456789ab) go1.26.8 (pid %d, control API v1)", f.StatusResult.PID); len(lines) != 2 || lines[1] != want {
		t.Errorf("version:\n%s\nwant second line %q", out, want)
	}

	code, out, errOut = ipsecctl(t, filepath.Join(t.TempDir(), "none.sock"), "version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, versionLine()+"\nipsecd   not answering: cannot reach ipsecd at ") {
		t.Errorf("version without daemon: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if code, _, _ := ipsecctl(t, sock, "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// TestStatusShowsPolicySource: `ipsecctl status` shows a shared policy
// source's state: connected or not, the revision and documents in force,
// the counters and the last error on one line.
func TestStatusShowsPolicySource(t *testing.T) {
	f := ctltest.NewFake()
	f.StatusResult.PolicySources = []ctlapi.PolicySource{{
		Kind: "etcd", Endpoints: []string{"http://10.0.0.11:2379"}, Prefix: "/goipsec/policy/",
		Revision: 42, Documents: []string{"/goipsec/policy/10-base"}, Updates: 3, Refused: 1,
		LastError: "etcd:/goipsec/policy/20-x:2: policies[0].action: bad\netcd:/goipsec/policy/20-x:3: policies[1]: bad",
	}}
	sock := ctltest.Serve(t, f)
	code, out, errOut := ipsecctl(t, sock, "status")
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"policy source:  etcd /goipsec/policy/ (http://10.0.0.11:2379), not connected\n",
		"revision 42, applied -, 1 documents (/goipsec/policy/10-base); 3 updates, 1 refused\n",
		"policies[0].action: bad; etcd:/goipsec/policy/20-x:3",
	} {
		contains(t, "status", out, want)
	}
}
