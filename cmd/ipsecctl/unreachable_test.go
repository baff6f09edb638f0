package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnreachableStaleSocket: a socket file left by a daemon that died
// (connection refused) gives exit code 1 and a one-line reason, for every
// command that needs the daemon.
func TestUnreachableStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ipsecd.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, args := range [][]string{{"status"}, {"sas", "--json"}, {"up", "site-b"}, {"reload"}} {
		code, out, errOut := ipsecctl(t, sock, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, "connection refused (is ipsecd running?") {
			t.Errorf("%q: exit %d, %q, %q", args, code, out, errOut)
		}
		oneLineErr(t, errOut)
	}
}
