package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a notify socket like systemd's and returns its path and a
// function that reads one datagram.
func listen(t *testing.T) (string, func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the notify socket: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotifySendsOneDatagram(t *testing.T) {
	path, read := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	n := New()
	for _, state := range []string{Ready, Watchdog, Status("running") + "\n" + Stopping} {
		if err := n.Notify(state); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != state {
			t.Errorf("received %q, want %q", got, state)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "goipsec-sdnotify-test-" + strconv.Itoa(os.Getpid())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := NewSocket("@" + name).Notify(Ready); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != Ready {
		t.Errorf("received %q, %v", buf[:n], err)
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New()
	if n != nil {
		t.Fatalf("New() = %v without NOTIFY_SOCKET, want nil", n)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("nil Notifier: %v", err)
	}
}

func TestReloadingHasMonotonicUsec(t *testing.T) {
	s, err := Reloading()
	if err != nil {
		t.Fatal(err)
	}
	first, rest, ok := strings.Cut(s, "\n")
	if first != "RELOADING=1" || !ok {
		t.Fatalf("Reloading() = %q", s)
	}
	v, ok := strings.CutPrefix(rest, "MONOTONIC_USEC=")
	if usec, err := strconv.ParseInt(v, 10, 64); !ok || err != nil || usec <= 0 {
		t.Errorf("Reloading() = %q: MONOTONIC_USEC not a positive number", s)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"20000000", "", 10 * time.Second, false},
		{"20000000", pid, 10 * time.Second, false},
		{"20000000", "1", 0, false}, // meant for another process
		{"x", "", 0, true},
		{"0", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := WatchdogInterval()
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.err)
		}
	}
}
