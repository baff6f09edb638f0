// Package sdnotify tells the service manager (systemd) how the daemon is
// doing, with the datagram protocol of sd_notify(3): one unix datagram of
// newline-separated VAR=VALUE assignments to the socket named by
// $NOTIFY_SOCKET. A daemon not started by systemd has no such socket, and
// then every call does nothing.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The states a daemon sends, as sd_notify(3) names them.
const (
	Ready    = "READY=1"    // started: with Type=notify, systemd waits for it
	Stopping = "STOPPING=1" // shutting down
	Watchdog = "WATCHDOG=1" // alive: resets the WatchdogSec= timer
)

// Notifier sends states to the service manager. The nil *Notifier (no
// $NOTIFY_SOCKET) sends nothing and returns nil. A Notifier may be used by
// several goroutines at once.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns the Notifier of $NOTIFY_SOCKET, or nil when it is unset. A
// name starting with '@' is a socket in the abstract namespace.
func New() *Notifier {
	return NewSocket(os.Getenv("NOTIFY_SOCKET"))
}

// NewSocket returns the Notifier that sends to the unix datagram socket at
// path, or nil when path is empty.
func NewSocket(path string) *Notifier {
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Notify sends state, one or more newline-separated assignments, in one
// datagram.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Reloading is the state that starts a reload: RELOADING=1 with the
// CLOCK_MONOTONIC time in microseconds, which systemd 253 and later want
// to tell this reload from an earlier one (older versions ignore it). Send
// Ready when the reload is done, whether it applied or not.
func Reloading() (string, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "", fmt.Errorf("sdnotify: reading CLOCK_MONOTONIC: %w", err)
	}
	usec := ts.Nano() / 1000
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10), nil
}

// Status is the free-form status line "systemctl status" shows. It must
// not carry secrets: the service manager logs it.
func Status(s string) string {
	return "STATUS=" + s
}

// WatchdogInterval returns how often the daemon must send Watchdog: half
// the $WATCHDOG_USEC that systemd sets from WatchdogSec=, as
// sd_watchdog_enabled(3) recommends. It returns 0 and no error when the
// watchdog is off, or is meant for another process ($WATCHDOG_PID is not
// this process).
func WatchdogInterval() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID %q: %w", p, err)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	usec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC %q: %w", s, err)
	}
	if usec <= 0 {
		return 0, errors.New("sdnotify: WATCHDOG_USEC must be positive")
	}
	return time.Duration(usec) * time.Microsecond / 2, nil
}
