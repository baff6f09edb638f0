// Package swantest runs strongSwan's charon as an IKEv2 and ESP peer inside a
// test network namespace (see internal/nstest), so that tests can check
// goipsec against an independent implementation.
//
// This kernel has no XFRM data plane, so charon runs with the kernel-libipsec
// plugin: userspace ESP over a TUN device named ipsec0, tunnel mode only,
// always UDP-encapsulated on port 4500 (RFC 3948; charon then reports the
// peer as behind NAT). charon installs a route for each CHILD_SA's remote
// traffic selector via ipsec0 in routing table 220, so a ping from an address
// inside the local selector to one inside the remote selector goes through
// the tunnel.
//
// Each instance gets its own strongswan.conf (STRONGSWAN_CONF), swanctl.conf,
// log file and vici socket in a temporary directory, and a private tmpfs on
// /run (unshare -m) for its pid file, so several instances run side by side.
// Everything is stopped and removed when the test ends; charon's log is
// written to the test log if the test failed.
package swantest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testenv"
)

// CharonPath is where Debian's strongswan-charon installs the daemon.
const CharonPath = "/usr/lib/ipsec/charon"

// PluginDir is where Debian installs strongSwan's plugins.
const PluginDir = "/usr/lib/ipsec/plugins"

// Plugins is the charon.load list. The fast crypto plugins (openssl, aesni)
// come before the software aes and gcm ones: in the other order ESP
// throughput drops about sixfold. gmp adds the MODP groups in software,
// chapoly ChaCha20-Poly1305, curve25519 X25519 and Ed25519 (both also come
// from openssl). updown is left out: tests do not need its scripts.
var Plugins = []string{
	"random", "nonce", "openssl", "aesni", "aes", "ctr", "ccm", "gcm", "chapoly",
	"sha1", "sha2", "md5", "hmac", "cmac", "xcbc", "kdf", "curve25519", "gmp",
	"pem", "pkcs1", "pkcs8", "x509", "pubkey", "constraints",
	"kernel-libipsec", "kernel-netlink", "socket-default", "vici",
}

// swanctlPlugins is swanctl's own load list: parsing keys and certificates.
var swanctlPlugins = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey curve25519"

// credDirs are the directories swanctl --load-all reads beside swanctl.conf;
// creating them keeps its output free of "opening directory failed".
var credDirs = []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl",
	"pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"}

// Config describes one charon instance.
type Config struct {
	// Conn is swanctl.conf text: "connections { ... }" and "secrets { ... }".
	// swanctl wants one setting per line.
	Conn string

	// Charon is extra strongswan.conf text appended at the top level after
	// the generated settings, for example "charon {\n retransmit_tries = 2\n}".
	// strongswan.conf merges sections of the same name, later values win.
	// The log file is the filelog section named "swantest", so
	// "charon {\n filelog {\n swantest {\n chd = 4\n }\n }\n}" raises a
	// log level (a promise: tests rely on the name). Empty means none.
	Charon string

	// Files are extra files written beside swanctl.conf, keyed by path
	// relative to that directory: "x509/peer.pem", "private/key.pem",
	// "x509ca/ca.pem". swanctl --load-all loads them. Nil means none.
	Files map[string]string

	// Debug raises the log level of the ike, cfg, net, enc, knl and esp
	// subsystems from 1 to 2 (messages decoded, proposals compared).
	Debug bool
}

// Charon is a running charon. Its methods may be called from one goroutine
// at a time.
type Charon struct {
	t       testing.TB
	ns      *nstest.NS
	dir     string
	conf    string // strongswan.conf
	swanctl string // swanctl.conf
	sock    string // vici socket path
	logPath string
	proc    *nstest.Proc
}

// Start writes the configuration, starts charon in ns, waits for its vici
// socket and loads c.Conn with swanctl --load-all. It skips the test (fails
// it under CI=true) when root, charon, swanctl or the kernel-libipsec plugin
// is missing, and fails it when charon does not start or the configuration
// does not load. charon is stopped by its PID when the test ends.
func Start(t testing.TB, ns *nstest.NS, c Config) *Charon {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, CharonPath)
	testenv.RequireCommand(t, "swanctl")
	testenv.RequireCommand(t, "unshare")
	testenv.RequireCommand(t, "env")
	if _, err := os.Stat(filepath.Join(PluginDir, "libstrongswan-kernel-libipsec.so")); err != nil {
		testenv.Missing(t, "strongSwan's kernel-libipsec plugin is not installed (libcharon-extra-plugins)")
	}

	dir := t.TempDir()
	// A unix socket path holds at most 107 bytes; long test names make
	// long temporary directories.
	if len(dir) > 80 {
		d, err := os.MkdirTemp("", "swan")
		if err != nil {
			t.Fatalf("swantest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	ch := &Charon{
		t:       t,
		ns:      ns,
		dir:     dir,
		conf:    filepath.Join(dir, "strongswan.conf"),
		swanctl: filepath.Join(dir, "swanctl.conf"),
		sock:    filepath.Join(dir, "charon.vici"),
		logPath: filepath.Join(dir, "charon.log"),
	}
	if err := os.WriteFile(ch.conf, []byte(ch.strongswanConf(c)), 0o644); err != nil {
		t.Fatalf("swantest: %v", err)
	}
	for _, d := range credDirs {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatalf("swantest: %v", err)
		}
	}
	for name, text := range c.Files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("swantest: file %q is outside the configuration directory", name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatalf("swantest: %v", err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatalf("swantest: %v", err)
		}
	}

	// Registered before the process, so it runs after the process stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("[%s] charon log %s:\n%s", ns.Name, ch.logPath, ch.Log())
		}
	})
	// ip netns exec, env, unshare (without --fork) and sh all exec, so the
	// PID that nstest stops is charon's. The private tmpfs on /run keeps
	// the pid files of several instances apart.
	ch.proc = ns.Start("env", "STRONGSWAN_CONF="+ch.conf,
		"unshare", "-m", "sh", "-c", `mount -t tmpfs tmpfs /run && exec "$0"`, CharonPath)

	up := nstest.WaitFor(15*time.Second, func() bool {
		if done, _ := ch.proc.Exited(); done {
			return true
		}
		fi, err := os.Stat(ch.sock)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	})
	if done, err := ch.proc.Exited(); done || !up {
		t.Fatalf("swantest: [%s] charon did not start (exited %v, %v): %s\n%s", ns.Name, done, err, ch.proc.Output, ch.Log())
	}
	if missing := ch.missingPlugins(); len(missing) > 0 {
		testenv.Missing(t, fmt.Sprintf("charon could not load the plugins %v (Debian packages %s)",
			missing, strings.Join(Packages, " ")))
	}
	if err := ch.Load(c.Conn); err != nil {
		t.Fatal(err)
	}
	return ch
}

// Packages are the Debian packages that provide charon, swanctl and every
// plugin in Plugins. libstrongswan-standard-plugins (openssl, aesni, gcm)
// is only recommended by libstrongswan, so an install with
// --no-install-recommends must name it.
var Packages = []string{"strongswan-charon", "strongswan-swanctl", "libstrongswan-standard-plugins",
	"libstrongswan-extra-plugins", "libcharon-extra-plugins"}

// missingPlugins returns the plugins of Plugins that charon's
// "loaded plugins:" log line lacks. charon skips a plugin it cannot load, so
// without this check a missing openssl would show up later as a proposal
// mismatch (ECP groups) or a sixfold slower data path.
func (ch *Charon) missingPlugins() []string {
	var loaded []string
	nstest.WaitFor(5*time.Second, func() bool {
		for _, l := range strings.Split(ch.Log(), "\n") {
			if _, after, ok := strings.Cut(l, "loaded plugins: "); ok {
				loaded = strings.Fields(after)
				return true
			}
		}
		return false
	})
	var missing []string
	for _, p := range Plugins {
		if !slices.Contains(loaded, p) {
			missing = append(missing, p)
		}
	}
	return missing
}

func (ch *Charon) strongswanConf(c Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by internal/swantest for one charon instance.\n")
	fmt.Fprintf(&b, "charon {\n")
	fmt.Fprintf(&b, "  load = %s\n", strings.Join(Plugins, " "))
	// kernel-libipsec needs the routes via its TUN device (table 220).
	fmt.Fprintf(&b, "  install_routes = yes\n")
	fmt.Fprintf(&b, "  install_virtual_ip = yes\n")
	fmt.Fprintf(&b, "  plugins {\n    vici {\n      socket = unix://%s\n    }\n  }\n", ch.sock)
	fmt.Fprintf(&b, "  filelog {\n    swantest {\n")
	fmt.Fprintf(&b, "      path = %s\n", ch.logPath)
	fmt.Fprintf(&b, "      time_format = %%T\n      time_add_ms = yes\n")
	fmt.Fprintf(&b, "      flush_line = yes\n      append = no\n      default = 1\n")
	if c.Debug {
		for _, s := range []string{"ike", "cfg", "net", "enc", "knl", "esp"} {
			fmt.Fprintf(&b, "      %s = 2\n", s)
		}
	}
	fmt.Fprintf(&b, "    }\n  }\n")
	fmt.Fprintf(&b, "  syslog {\n    daemon {\n      default = -1\n    }\n  }\n")
	fmt.Fprintf(&b, "}\n")
	fmt.Fprintf(&b, "swanctl {\n  load = %s\n}\n", swanctlPlugins)
	if c.Charon != "" {
		b.WriteString(c.Charon)
		b.WriteString("\n")
	}
	return b.String()
}

// Dir returns the directory holding strongswan.conf, swanctl.conf, the log
// and the credential directories (x509, private, ...).
func (ch *Charon) Dir() string { return ch.dir }

// URI returns the vici socket URI, as swanctl's --uri takes it.
func (ch *Charon) URI() string { return "unix://" + ch.sock }

// Log returns charon's log so far.
func (ch *Charon) Log() string {
	b, err := os.ReadFile(ch.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// Swanctl runs swanctl against this instance (--uri is added) and returns
// its combined output. It gives up after a minute.
func (ch *Charon) Swanctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swanctl", append(args, "--uri", ch.URI())...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+ch.conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swantest: swanctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Load replaces swanctl.conf with conn and runs swanctl --load-all: the
// connections and secrets in conn are loaded, those no longer in it are
// unloaded (their SAs stay up until terminated).
func (ch *Charon) Load(conn string) error {
	if err := os.WriteFile(ch.swanctl, []byte(conn), 0o600); err != nil {
		return fmt.Errorf("swantest: %w", err)
	}
	_, err := ch.Swanctl("--load-all", "--file", ch.swanctl)
	return err
}

// initiateTimeout bounds how long charon tries to set up an SA for Initiate.
const initiateTimeout = 30 * time.Second

// Initiate asks charon to set up the CHILD_SA named child, with its IKE SA
// when there is none yet (IKE_SA_INIT and IKE_AUTH), and waits until it is
// established. It returns the time from the request to charon's answer on
// the vici socket: no swanctl process start is included, so it measures the
// exchanges themselves plus a few microseconds of local socket I/O.
func (ch *Charon) Initiate(child string) (time.Duration, error) {
	v, err := dialVici(ch.sock, time.Now().Add(initiateTimeout+5*time.Second))
	if err != nil {
		return 0, err
	}
	defer v.Close()
	start := time.Now()
	res, err := v.call("initiate", []viciKV{
		{"child", child},
		{"timeout", strconv.FormatInt(initiateTimeout.Milliseconds(), 10)},
	}, "", nil)
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("swantest: initiate %s: %w", child, err)
	}
	if res.get("success") != "yes" {
		return d, fmt.Errorf("swantest: initiate %s failed: %s", child, res.get("errmsg"))
	}
	return d, nil
}

// ListSAs returns the IKE SAs charon has, with their CHILD_SAs: the vici
// list-sas command, the data behind swanctl --list-sas --raw.
func (ch *Charon) ListSAs() ([]IKESA, error) {
	v, err := dialVici(ch.sock, time.Now().Add(30*time.Second))
	if err != nil {
		return nil, err
	}
	defer v.Close()
	var sas []IKESA
	res, err := v.call("list-sas", nil, "list-sa", func(m viciMsg) error {
		s, err := parseIKESAs(m)
		sas = append(sas, s...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("swantest: list-sas: %w", err)
	}
	if res.get("success") == "no" {
		return nil, fmt.Errorf("swantest: list-sas failed: %s", res.get("errmsg"))
	}
	return sas, nil
}

// Terminate deletes every IKE SA of connection ike (and their CHILD_SAs)
// and waits until the peer answered the INFORMATIONAL exchange or charon
// gave up.
func (ch *Charon) Terminate(ike string) error {
	v, err := dialVici(ch.sock, time.Now().Add(initiateTimeout+5*time.Second))
	if err != nil {
		return err
	}
	defer v.Close()
	res, err := v.call("terminate", []viciKV{
		{"ike", ike},
		{"timeout", strconv.FormatInt(initiateTimeout.Milliseconds(), 10)},
	}, "", nil)
	if err != nil {
		return fmt.Errorf("swantest: terminate %s: %w", ike, err)
	}
	if res.get("success") != "yes" {
		return fmt.Errorf("swantest: terminate %s failed: %s", ike, res.get("errmsg"))
	}
	return nil
}
