package e2e

// Tests of goipsec as a system service: the systemd notifications of
// ipsecd, make install, and the .deb of make dist installed into a
// throwaway root, started through its unit's ExecStart in a namespace and
// removed again.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testenv"
)

// serviceConf is a configuration with one trapped tunnel, so that a
// running daemon enforces a PROTECT policy (rules, prohibit routes,
// nftables table). root prefixes the socket and state paths.
func serviceConf(root, extra string) string {
	return fmt.Sprintf(`daemon:
  socket: %[1]s/run/goipsec/ipsecd.sock
  state_dir: %[1]s/var/lib/goipsec
  tun: {name: ipsec0, mtu: 1400}
  log: {level: debug}
%[2]sconnections:
  svc:
    local_addrs: [192.0.2.1]
    remote_addrs: [192.0.2.2]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: {auth: psk, id: a.svc.example}
    remote: {auth: psk, id: b.svc.example}
    children:
      net:
        mode: tunnel
        local_ts: [10.1.0.0/16]
        remote_ts: [10.2.0.0/16]
        esp_proposals: [aes256gcm16]
        start_action: trap
secrets:
  ike:
    - {ids: [a.svc.example, b.svc.example], secret: "0123456789abcdef0123456789abcdef"}
`, root, extra)
}

// notifySocket plays systemd's side of sd_notify(3): a unix datagram
// socket; next returns the next message that starts with prefix, skipping
// others (watchdog pings come at any time).
type notifySocket struct {
	path string
	c    *net.UnixConn
	seen []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{path: path, c: c}
}

func (s *notifySocket) next(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		s.c.SetReadDeadline(deadline)
		n, err := s.c.Read(buf)
		if err != nil {
			t.Fatalf("no %q from ipsecd within %v (received %q): %v", prefix, timeout, s.seen, err)
		}
		msg := string(buf[:n])
		s.seen = append(s.seen, msg)
		if strings.HasPrefix(msg, prefix) {
			return msg
		}
	}
}

// startService starts argv in ns with the environment systemd gives a
// Type=notify service, and stops it by its PID when the test ends.
func startService(t *testing.T, ns *nstest.NS, env []string, argv ...string) (*exec.Cmd, *bytes.Buffer, <-chan error) {
	t.Helper()
	cmd := ns.Cmd(context.Background(), argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ipsecd output:\n%s", out)
		}
	})
	return cmd, out, done
}

func waitExit(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ipsecd exited: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ipsecd did not stop within 20s of SIGTERM")
	}
}

// TestServiceNotifyReadyWatchdogReloadStopping runs ipsecd as systemd runs
// a Type=notify service with WatchdogSec=: READY=1 comes once the policy is
// enforced, WATCHDOG=1 at half the interval, RELOADING=1 (with
// MONOTONIC_USEC) then READY=1 around a SIGHUP reload, STOPPING=1 on
// SIGTERM.
func TestServiceNotifyReadyWatchdogReloadStopping(t *testing.T) {
	requireBins(t)
	ns := nstest.New(t, "sdnotify")
	ns.AddLoopbackAddr("192.0.2.1")
	dir := t.TempDir()
	conf := filepath.Join(dir, "goipsec.yaml")
	if err := os.WriteFile(conf, []byte(serviceConf(dir, "  on_stop: clear\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	sd := newNotifySocket(t)
	// WATCHDOG_USEC=1s: a ping every 500ms.
	cmd, _, done := startService(t, ns, []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=1000000"}, ipsecd(), "-c", conf)

	ready := sd.next(t, "READY=1", 30*time.Second)
	if o := policyIn(t, ns); !o.inForce() {
		t.Errorf("at READY=1: %s; want the policy in force", o)
	}
	if !strings.Contains(ready, "STATUS=") {
		t.Errorf("READY=1 without a STATUS=: %q", ready)
	}
	t0 := time.Now()
	sd.next(t, "WATCHDOG=1", 10*time.Second)
	sd.next(t, "WATCHDOG=1", 10*time.Second)
	t.Logf("two watchdog pings %v after READY=1 (WATCHDOG_USEC=1000000)", time.Since(t0).Round(time.Millisecond))

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rel := sd.next(t, "RELOADING=1", 10*time.Second)
	if !strings.Contains(rel, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", rel)
	}
	sd.next(t, "READY=1", 10*time.Second)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sd.next(t, "STOPPING=1", 10*time.Second)
	waitExit(t, done)
}

// runIn runs a command in dir with a time limit and returns its output.
func runIn(t *testing.T, dir string, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitKeys parses a systemd unit file into its [Section]Key entries, each
// with its values in order (a key may repeat).
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a key=value line in a section: %q", path, line)
			}
			keys[section+strings.TrimSpace(k)] = append(keys[section+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// checkUnitKeys fails t for every key of want that keys (of the unit at
// path) does not have exactly once with the value wanted.
func checkUnitKeys(t *testing.T, path string, keys map[string][]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := keys[k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s: %s = %q, want %q", path, k, got, v)
		}
	}
}

// TestUnitFileSandboxing checks the keys of packaging/goipsec.service that
// the daemon relies on (Type=notify, the watchdog, the reload) and its
// sandbox, and has systemd-analyze verify it.
func TestUnitFileSandboxing(t *testing.T) {
	root := testenv.RepoRoot(t)
	unit := filepath.Join(root, "packaging", "goipsec.service")
	keys := unitKeys(t, unit)
	checkUnitKeys(t, unit, keys, map[string]string{
		"[Service]Type":                    "notify",
		"[Service]ExecStart":               "/usr/sbin/ipsecd -c /etc/goipsec/goipsec.yaml",
		"[Service]ExecReload":              "/bin/kill -HUP $MAINPID",
		"[Service]WatchdogSec":             "30s",
		"[Service]Restart":                 "on-failure",
		"[Service]CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
		"[Service]AmbientCapabilities":     "CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
		"[Service]NoNewPrivileges":         "yes",
		"[Service]ProtectSystem":           "strict",
		"[Service]ProtectHome":             "yes",
		"[Service]PrivateTmp":              "yes",
		"[Service]StateDirectory":          "goipsec",
		"[Service]RuntimeDirectory":        "goipsec",
		"[Service]ReadWritePaths":          "/var/lib/goipsec /run/goipsec",
		"[Service]RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"[Service]DeviceAllow":             "/dev/net/tun rw",
		"[Install]WantedBy":                "multi-user.target",
	})
	// The state and runtime directories are the configuration's defaults
	// (config.DefaultStateDir, config.DefaultSocket).
	ex, err := os.ReadFile(filepath.Join(root, "packaging", "goipsec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"socket: /run/goipsec/ipsecd.sock", "state_dir: /var/lib/goipsec"} {
		if !strings.Contains(string(ex), want) {
			t.Errorf("packaging/goipsec.yaml lacks %q", want)
		}
	}

	verifyUnits(t, root, "goipsec.service", "goipsec-early.service")
}

// verifyUnits has systemd-analyze verify the named units of packaging/
// together. It wants the ExecStart binaries to exist: it checks copies
// whose paths point at a built ipsecd.
func verifyUnits(t *testing.T, root string, names ...string) {
	t.Helper()
	testenv.RequireRoot(t)
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	var paths []string
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(root, "packaging", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/sbin/", binDir+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(names, " "), err, out)
	}
}

// TestUnitFileEarly checks packaging/goipsec-early.service, which closes the
// boot window: ipsecd --fail-closed, once, before network-pre.target and
// without the default dependencies (which would order it after
// sysinit.target and basic.target, too late), after the local file systems
// that hold the binary and the configuration; and goipsec.service, which
// wants it, starts after it and enables it (Also=). The ordering itself
// cannot be booted in a test: TestBootFailClosedNoCleartext shows what the
// unit's command does.
func TestUnitFileEarly(t *testing.T) {
	root := testenv.RepoRoot(t)
	unit := filepath.Join(root, "packaging", "goipsec-early.service")
	keys := unitKeys(t, unit)
	checkUnitKeys(t, unit, keys, map[string]string{
		"[Unit]DefaultDependencies":      "no",
		"[Unit]Wants":                    "network-pre.target",
		"[Unit]Before":                   "network-pre.target shutdown.target",
		"[Unit]After":                    "local-fs.target",
		"[Unit]Conflicts":                "shutdown.target",
		"[Service]Type":                  "oneshot",
		"[Service]RemainAfterExit":       "yes",
		"[Service]ExecStart":             "/usr/sbin/ipsecd -c /etc/goipsec/goipsec.yaml --fail-closed",
		"[Service]CapabilityBoundingSet": "CAP_NET_ADMIN",
		"[Service]NoNewPrivileges":       "yes",
		"[Install]WantedBy":              "sysinit.target",
	})
	if keys["[Service]ExecStop"] != nil {
		t.Errorf("%s: ExecStop = %q; stopping it must not remove the policy", unit, keys["[Service]ExecStop"])
	}
	mainUnit := filepath.Join(root, "packaging", "goipsec.service")
	checkUnitKeys(t, mainUnit, unitKeys(t, mainUnit), map[string]string{
		"[Unit]Wants":   "network-online.target goipsec-early.service",
		"[Unit]After":   "network-online.target goipsec-early.service",
		"[Install]Also": "goipsec-early.service",
	})
	verifyUnits(t, root, "goipsec.service", "goipsec-early.service")
}

// TestMakeInstallDestdir runs make install into a staging directory: the
// binaries in PREFIX/sbin, the example configuration (mode 0600) only when
// there is none, the unit pointing at PREFIX/sbin.
func TestMakeInstallDestdir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the commands")
	}
	make := testenv.RequireCommand(t, "make")
	root := testenv.RepoRoot(t)
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "dest")
	gobin := goCommand()
	args := []string{"install", "DESTDIR=" + dest, "BIN=" + filepath.Join(tmp, "bin"), "GO=" + gobin}
	runIn(t, root, 5*time.Minute, nil, make, args...)
	for path, mode := range map[string]fs.FileMode{
		"usr/local/sbin/ipsecd":                    0o755,
		"usr/local/sbin/ipsecctl":                  0o755,
		"etc/goipsec":                              fs.ModeDir | 0o700,
		"etc/goipsec/goipsec.yaml":                 0o600,
		"etc/systemd/system/goipsec.service":       0o644,
		"etc/systemd/system/goipsec-early.service": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != mode {
			t.Errorf("%s: mode %v, want %v", path, got, mode)
		}
	}
	keys := unitKeys(t, filepath.Join(dest, "etc/systemd/system/goipsec.service"))
	if got := keys["[Service]ExecStart"]; !slices.Equal(got, []string{"/usr/local/sbin/ipsecd -c /etc/goipsec/goipsec.yaml"}) {
		t.Errorf("installed unit: ExecStart = %q", got)
	}
	early := unitKeys(t, filepath.Join(dest, "etc/systemd/system/goipsec-early.service"))
	if got := early["[Service]ExecStart"]; !slices.Equal(got, []string{"/usr/local/sbin/ipsecd -c /etc/goipsec/goipsec.yaml --fail-closed"}) {
		t.Errorf("installed early unit: ExecStart = %q", got)
	}
	// A second install keeps the administrator's configuration.
	conf := filepath.Join(dest, "etc/goipsec/goipsec.yaml")
	if err := os.WriteFile(conf, []byte("# edited\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runIn(t, root, 5*time.Minute, nil, make, args...)
	if b, _ := os.ReadFile(conf); string(b) != "# edited\n" {
		t.Errorf("make install replaced an existing configuration: %q", b)
	}
}

// TestDebInstallStartRemove builds the .deb with make dist, installs it
// with dpkg into a throwaway root, runs the installed goipsec-early.service's
// ExecStart (ipsecd --fail-closed, with only that unit's capabilities),
// starts the daemon through the installed unit's ExecStart (with only the unit's capabilities) in a namespace,
// checks --version, ipsecctl status and version, stops it, then removes
// the package (its prerm removes the policy the stopped daemon kept in
// force) and purges it.
func TestDebInstallStartRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package")
	}
	requireBins(t)
	testenv.RequireCommand(t, "dpkg")
	make := testenv.RequireCommand(t, "make")
	setpriv := testenv.RequireCommand(t, "setpriv")
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		t.Skipf("make dist builds amd64 and arm64 only, not %s", arch)
	}
	src := testenv.RepoRoot(t)
	tmp := t.TempDir()
	gobin := goCommand()
	t0 := time.Now()
	runIn(t, src, 5*time.Minute, nil, make, "dist", "DIST="+filepath.Join(tmp, "dist"), "DISTARCHES="+arch, "GO="+gobin)
	debs, _ := filepath.Glob(filepath.Join(tmp, "dist", "goipsec_*_"+arch+".deb"))
	if len(debs) != 1 {
		t.Fatalf("make dist made %q, want one .deb for %s", debs, arch)
	}
	t.Logf("make dist DISTARCHES=%s: %v", arch, time.Since(t0).Round(time.Second))

	// The throwaway root: an empty dpkg database. The maintainer scripts
	// run outside it with DPKG_ROOT set (--force-script-chrootless), in
	// the namespace, so that prerm's cleanup acts on the namespace.
	root := filepath.Join(tmp, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ns := nstest.New(t, "deb")
	ns.AddLoopbackAddr("192.0.2.1")
	dpkg := func(args ...string) {
		t.Helper()
		all := append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)
		if out, err := ns.Run("dpkg", all...); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(all, " "), err, out)
		}
	}
	dpkg("-i", debs[0])
	for path, mode := range map[string]fs.FileMode{
		"usr/sbin/ipsecd":                              0o755,
		"usr/sbin/ipsecctl":                            0o755,
		"usr/lib/systemd/system/goipsec.service":       0o644,
		"usr/lib/systemd/system/goipsec-early.service": 0o644,
		"etc/goipsec":                                  fs.ModeDir | 0o700,
		"etc/goipsec/goipsec.yaml":                     0o600,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != mode {
			t.Errorf("%s: mode %v, want %v", path, got, mode)
		}
	}
	conffiles, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/info/goipsec.conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/goipsec/goipsec.yaml" {
		t.Errorf("conffiles %q, want /etc/goipsec/goipsec.yaml", conffiles)
	}

	// --version names the revision the package was built from.
	ipsecd := filepath.Join(root, "usr/sbin/ipsecd")
	rev := strings.TrimSpace(runIn(t, src, time.Minute, nil, "git", "rev-parse", "HEAD"))
	if out := runIn(t, src, time.Minute, nil, ipsecd, "--version"); !strings.HasPrefix(out, "ipsecd ") || !strings.Contains(out, "(rev "+rev[:12]) {
		t.Errorf("ipsecd --version = %q, want the revision %s", out, rev[:12])
	} else {
		t.Logf("installed ipsecd --version: %s", strings.TrimSpace(out))
	}

	// The administrator's configuration, with paths inside the root.
	conf := filepath.Join(root, "etc/goipsec/goipsec.yaml")
	if err := os.WriteFile(conf, []byte(serviceConf(root, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	// What systemd makes for RuntimeDirectory= and StateDirectory=.
	for _, d := range []string{"run/goipsec", "var/lib/goipsec"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	unit := unitKeys(t, filepath.Join(root, "usr/lib/systemd/system/goipsec.service"))
	inRoot := func(line string) []string {
		f := strings.Fields(line)
		for i, a := range f {
			if strings.HasPrefix(a, "/") {
				f[i] = filepath.Join(root, a)
			}
		}
		return f
	}
	for _, pre := range unit["[Service]ExecStartPre"] {
		argv := inRoot(pre)
		runIn(t, src, time.Minute, nil, argv[0], argv[1:]...)
	}
	if len(unit["[Service]ExecStart"]) != 1 {
		t.Fatalf("unit ExecStart = %q", unit["[Service]ExecStart"])
	}
	// Only the unit's capabilities, as systemd grants them.
	withCaps := func(unit map[string][]string) []string {
		var caps []string
		for _, c := range strings.Fields(unit["[Service]CapabilityBoundingSet"][0]) {
			caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		capset := "-all," + strings.Join(caps, ",")
		return append([]string{setpriv, "--bounding-set=" + capset, "--inh-caps=" + capset, "--ambient-caps=" + capset, "--no-new-privs"},
			inRoot(unit["[Service]ExecStart"][0])...)
	}
	// The boot: the installed goipsec-early.service's command, with its
	// capabilities only, puts the policy in force before the daemon runs.
	early := unitKeys(t, filepath.Join(root, "usr/lib/systemd/system/goipsec-early.service"))
	earlyArgv := withCaps(early)
	if out, err := ns.Run(earlyArgv[0], earlyArgv[1:]...); err != nil {
		t.Fatalf("goipsec-early.service ExecStart: %v\n%s", err, out)
	}
	if o := policyIn(t, ns); !o.inForce() {
		t.Errorf("after goipsec-early.service's ipsecd --fail-closed: %s; want the policy in force", o)
	}
	argv := withCaps(unit)
	sd := newNotifySocket(t)
	cmd, _, done := startService(t, ns, []string{"NOTIFY_SOCKET=" + sd.path}, argv...)
	sd.next(t, "READY=1", 30*time.Second)
	if o := policyIn(t, ns); !o.inForce() {
		t.Errorf("installed daemon ready: %s; want the policy in force", o)
	}
	sock := filepath.Join(root, "run/goipsec/ipsecd.sock")
	ipsecctl := filepath.Join(root, "usr/sbin/ipsecctl")
	if out := runIn(t, src, time.Minute, nil, ipsecctl, "-s", sock, "status"); !strings.Contains(out, "daemon:   ipsecd ") || !strings.Contains(out, rev[:12]) {
		t.Errorf("ipsecctl status:\n%s\nwant the daemon's version with revision %s", out, rev[:12])
	}
	if out := runIn(t, src, time.Minute, nil, ipsecctl, "-s", sock, "version"); strings.Count(out, "(rev "+rev[:12]) != 2 {
		t.Errorf("ipsecctl version:\n%s\nwant ipsecctl's and ipsecd's revision %s", out, rev[:12])
	}
	cmd.Process.Signal(syscall.SIGTERM)
	sd.next(t, "STOPPING=1", 10*time.Second)
	waitExit(t, done)
	os.RemoveAll(filepath.Join(root, "run")) // systemd removes RuntimeDirectory= on stop
	if o := policyIn(t, ns); !o.inForce() {
		t.Errorf("after stop: %s; want the policy kept in force (daemon.on_stop: keep)", o)
	}

	// dpkg -r: the stop keeps the policy, prerm removes it; the
	// configuration stays, as a conffile does.
	dpkg("-r", "goipsec")
	if o := policyIn(t, ns); !o.none() {
		t.Errorf("after dpkg -r: %s; want no policy left", o)
	}
	if left := leftFiles(t, root); !slices.Equal(left, []string{"etc/goipsec/goipsec.yaml"}) {
		t.Errorf("after dpkg -r: files left %q, want only etc/goipsec/goipsec.yaml", left)
	}
	dpkg("--purge", "goipsec")
	if left := leftFiles(t, root); len(left) != 0 {
		t.Errorf("after dpkg --purge: files left %q, want none", left)
	}
	t.Logf("build, install, start, stop, remove, purge: %v", time.Since(t0).Round(time.Second))
}

// leftFiles lists the files and symbolic links under root outside dpkg's
// own database, and the directories that goipsec owns.
func leftFiles(t *testing.T, root string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case rel == "var/lib/dpkg":
			return filepath.SkipDir
		case d.IsDir() && (rel == "var/lib/goipsec" || rel == "etc/goipsec") && isEmptyDir(path):
			left = append(left, rel+"/")
		case !d.IsDir():
			left = append(left, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

func isEmptyDir(path string) bool {
	ents, err := os.ReadDir(path)
	return err == nil && len(ents) == 0
}
