package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const site = `connections { a {
  local_addrs = 192.0.2.1
  remote_addrs = 192.0.2.2
  local { auth = psk
    id = a.example }
  remote { auth = psk
    id = b.example }
  children { net { local_ts = 10.1.0.0/16
    remote_ts = 10.2.0.0/16 } } } }
secrets { ike { id-1 = a.example
  id-2 = b.example
  secret = 0x00112233445566778899 } }
`

// TestExitCodes: 0 full, 3 partial (with the swanctl.conf line on
// stderr), 1 unparsable, 2 usage; -o writes a file only its owner reads.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	full := write(t, dir, "full.conf", site)
	partial := write(t, dir, "partial.conf", strings.Replace(site, "remote_addrs = 192.0.2.2", "remote_addrs = 192.0.2.2\n  pools = p", 1))
	broken := write(t, dir, "broken.conf", "connections {\n")
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{full}, exitOK, "1 connections, 0 policies, 1 secrets; 0 settings not carried over"},
		{[]string{partial}, exitPartial, "partial.conf:4: connections.a.pools: address pools are not implemented in goipsec; dropped\n"},
		{[]string{broken}, exitFail, "swanctl2goipsec: swanconf: broken.conf:2:"},
		{[]string{filepath.Join(dir, "missing.conf")}, exitFail, "no such file"},
		{nil, exitUsage, "usage:"},
		{[]string{"-x", full}, exitUsage, "not defined"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
		if strings.Contains(stderr.String(), "0x0011") {
			t.Errorf("run(%q) printed the secret on stderr", tc.args)
		}
	}
	out := filepath.Join(dir, "out", "goipsec.yaml")
	if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-o", out, full}, &stdout, &stderr); code != exitOK || stdout.Len() != 0 {
		t.Fatalf("run -o = %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("output file: %v, mode %v; want 0600", err, fi.Mode())
	}
}
