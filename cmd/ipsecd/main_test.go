package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/buildinfo"
)

// TestCleanupFlag checks the command line of --cleanup: it needs no -c,
// does not combine with --check, and the help explains what it removes.
// Its effect is tested in internal/e2e (TestCleanStopKeepsPolicy).
func TestCleanupFlag(t *testing.T) {
	for _, args := range [][]string{{}, {"--cleanup", "--check"}, {"--cleanup", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("ipsecd %q: exit %d, want 2 (usage)\n%s", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	run([]string{"--help"}, &out, &errb)
	for _, want := range []string{"--cleanup", "-cleanup", "daemon.on_stop: clear", "prohibit routes", "inet goipsec"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("ipsecd --help does not mention %q:\n%s", want, errb.String())
		}
	}
	// A configuration that does not load is reported before anything is
	// removed.
	errb.Reset()
	if code := run([]string{"-c", "/nonexistent/ipsecd.yaml", "--cleanup"}, &out, &errb); code != 1 || errb.Len() == 0 {
		t.Errorf("ipsecd -c missing --cleanup: exit %d, stderr %q; want 1 and an error", code, errb.String())
	}
}

// TestVersionFlagPrintsRevision checks ipsecd --version: the module
// version, the VCS revision (or "rev unknown") and the Go version, with
// no configuration needed.
func TestVersionFlagPrintsRevision(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("ipsecd --version: exit %d, stderr %q", code, errb.String())
	}
	want := "ipsecd " + buildinfo.Read().String() + "\n"
	if out.String() != want || !strings.Contains(want, " (rev ") || !strings.Contains(want, " go1.") {
		t.Errorf("ipsecd --version = %q, want %q with a revision and the Go version", out.String(), want)
	}
}

// TestWatchdogSkipsPingWhenDaemonDoesNotAnswer checks the liveness check
// behind WATCHDOG=1: a status that answers is alive, one that fails or
// hangs (a wedged lock in the data plane or the IKE manager) is not, so
// the ping is skipped and systemd's WatchdogSec= restarts the daemon.
func TestWatchdogSkipsPingWhenDaemonDoesNotAnswer(t *testing.T) {
	ctx := context.Background()
	ok := func(context.Context) (ctlapi.Status, error) { return ctlapi.Status{}, nil }
	if err := alive(ctx, ok, time.Second); err != nil {
		t.Errorf("answering daemon: %v", err)
	}
	failing := func(context.Context) (ctlapi.Status, error) {
		return ctlapi.Status{}, errors.New("ipsec: server not running")
	}
	if err := alive(ctx, failing, time.Second); err == nil {
		t.Error("failing status: alive")
	}
	block := make(chan struct{})
	defer close(block)
	stuck := func(context.Context) (ctlapi.Status, error) { <-block; return ctlapi.Status{}, nil }
	if err := alive(ctx, stuck, 50*time.Millisecond); err == nil || !strings.HasPrefix(err.Error(), "ipsecd: ") {
		t.Errorf("stuck status: %v, want an ipsecd: error", err)
	}
}

// TestExampleConfigChecks checks that the example configuration that make
// install and the .deb install passes --check as shipped (no connection)
// and with its commented connection and secret enabled.
func TestExampleConfigChecks(t *testing.T) {
	const example = "../../packaging/goipsec.yaml"
	var out, errb bytes.Buffer
	if code := run([]string{"-c", example, "--check"}, &out, &errb); code != 0 {
		t.Fatalf("ipsecd -c %s --check: exit %d\n%s", example, code, errb.String())
	}
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	// Uncomment the example: "# " before top-level keys, "#   " before
	// nested ones; the explanatory comments ("#     # ...") stay comments.
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "# connections:"), strings.HasPrefix(l, "# secrets:"):
			l = strings.TrimPrefix(l, "# ")
		case strings.HasPrefix(l, "#   "):
			l = strings.TrimPrefix(l, "#")
		}
		lines = append(lines, l)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "goipsec.yaml")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site-b.psk"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"-c", conf, "--check"}, &out, &errb); code != 0 || !strings.Contains(strings.Join(lines, "\n"), "\nconnections:\n   site-b:") {
		t.Errorf("the example with its connection enabled: exit %d\n%s\n%s", code, errb.String(), strings.Join(lines, "\n"))
	}
}

// TestGCPercentDefault: ipsecd sets GOGC=50 (issue 9: memory per IKE SA at
// 10,000 IKE SAs) unless the environment sets GOGC, which then wins.
func TestGCPercentDefault(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	if got := setGCPercent(func(string) string { return "" }); got != gcPercent {
		t.Fatalf("without GOGC: target %d, want %d", got, gcPercent)
	}
	if now := debug.SetGCPercent(100); now != gcPercent {
		t.Fatalf("without GOGC: the runtime's target is %d, want %d", now, gcPercent)
	}
	if got := setGCPercent(func(k string) string { return map[string]string{"GOGC": "100"}[k] }); got != 100 {
		t.Fatalf("with GOGC=100 in the environment: target %d, want 100 (left alone)", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("with GOGC set: the runtime's target changed to %d", now)
	}
}

// TestFailClosedFlag checks the command line of --fail-closed: it needs
// -c, excludes --check and --cleanup, a configuration that does not load
// exits 1 before anything is installed, one with no PROTECT or DISCARD
// policy installs nothing and exits 0, and the help names the boot unit.
// Its effect is tested in internal/e2e (TestBootFailClosedNoCleartext).
func TestFailClosedFlag(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"--fail-closed"}, {"-c", "x.yaml", "--fail-closed", "--check"},
		{"-c", "x.yaml", "--fail-closed", "--cleanup"}, {"-c", "x.yaml", "--fail-closed", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("ipsecd %q: exit %d, want 2 (usage)\n%s", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	run([]string{"--help"}, &out, &errb)
	for _, want := range []string{"--fail-closed", "-fail-closed", "goipsec-early.service", "installs nothing and exits 1"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("ipsecd --help does not mention %q:\n%s", want, errb.String())
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("daemon:\n  on_stop: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(dir, "missing.yaml"), bad} {
		out.Reset()
		errb.Reset()
		if code := run([]string{"-c", file, "--fail-closed"}, &out, &errb); code != 1 || errb.Len() == 0 || out.Len() != 0 {
			t.Errorf("ipsecd -c %s --fail-closed: exit %d, stdout %q, stderr %q; want 1, an error and nothing installed", filepath.Base(file), code, out.String(), errb.String())
		}
	}
	// Nothing to enforce: no nftables or netlink call, so no root needed.
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("daemon:\n  socket: "+filepath.Join(dir, "s.sock")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"-c", empty, "--fail-closed"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "0 firewall rules, 0 prohibit routes") {
		t.Errorf("ipsecd --fail-closed without policies: exit %d, stdout %q, stderr %q; want 0 and nothing installed", code, out.String(), errb.String())
	}
}
