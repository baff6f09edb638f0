// Package nstest builds small networks of Linux network namespaces for
// end-to-end tests: namespaces, veth links, addresses, processes running
// inside them. Everything it creates is removed by t.Cleanup, also when the
// test fails, and processes are stopped by the PID this package started.
// Traffic stays inside the namespaces the test made.
package nstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/vishvananda/netns"
)

var seq atomic.Uint32

// NS is a network namespace created for one test.
type NS struct {
	Name string
	t    testing.TB
}

// New creates a namespace with loopback up. It needs root (the test is
// skipped otherwise, or fails under CI=true).
func New(t testing.TB, label string) *NS {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	name := fmt.Sprintf("gi%d-%d-%s", os.Getpid()%100000, seq.Add(1), label)
	if len(name) > 40 {
		name = name[:40]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		// Deleting the namespace removes its links (and the peer ends of veths).
		exec.Command("ip", "netns", "pids", name).Run()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// Cmd returns a command that runs inside the namespace.
func (ns *NS) Cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := ns.Cmd(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// MustRun runs a command in the namespace and fails the test if it fails.
func (ns *NS) MustRun(name string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		ns.t.Fatalf("[%s] %s %s: %v\n%s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Link connects a and b with a veth pair named ifA (in a) and ifB (in b),
// gives them the addresses (CIDR, any number, IPv4 or IPv6) and sets them up.
// IPv6 duplicate address detection is switched off so addresses work at once.
func Link(t testing.TB, a *NS, ifA string, addrsA []string, b *NS, ifB string, addrsB []string) {
	t.Helper()
	tmpA := fmt.Sprintf("gv%d-%d", os.Getpid()%100000, seq.Add(1))
	tmpB := fmt.Sprintf("gv%d-%d", os.Getpid()%100000, seq.Add(1))
	if out, err := exec.Command("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", tmpA).Run() }) // gone already if moved
	for _, x := range []struct {
		ns       *NS
		tmp, dev string
		addrs    []string
	}{{a, tmpA, ifA, addrsA}, {b, tmpB, ifB, addrsB}} {
		if out, err := exec.Command("ip", "link", "set", x.tmp, "netns", x.ns.Name).CombinedOutput(); err != nil {
			t.Fatalf("ip link set netns: %v: %s", err, out)
		}
		x.ns.MustRun("ip", "link", "set", x.tmp, "name", x.dev)
		x.ns.MustRun("sysctl", "-qw", "net.ipv6.conf."+x.dev+".accept_dad=0")
		for _, addr := range x.addrs {
			args := []string{"addr", "add", addr, "dev", x.dev}
			if strings.Contains(addr, ":") {
				args = []string{"-6", "addr", "add", addr, "dev", x.dev, "nodad"}
			}
			x.ns.MustRun("ip", args...)
		}
		x.ns.MustRun("ip", "link", "set", x.dev, "up")
	}
}

// AddLoopbackAddr puts an extra address (as /32 or /128) on lo: this kernel
// has no dummy links, so inner tunnel addresses live on lo.
func (ns *NS) AddLoopbackAddr(addr string) {
	ns.t.Helper()
	if strings.Contains(addr, ":") {
		ns.MustRun("ip", "-6", "addr", "add", addr+"/128", "dev", "lo")
	} else {
		ns.MustRun("ip", "addr", "add", addr+"/32", "dev", "lo")
	}
}

// Do runs f on a locked OS thread switched into the namespace, then switches
// the thread back. Sockets that f creates belong to the namespace and stay in
// it after Do returns, so they may be used from any goroutine; goroutines that
// f starts run in the caller's namespace, not in ns. If the thread cannot be
// switched back, it stays locked, so the Go runtime ends it when the
// goroutine exits instead of reusing it in the wrong namespace.
func (ns *NS) Do(f func() error) error {
	target, err := netns.GetFromName(ns.Name)
	if err != nil {
		return fmt.Errorf("nstest: opening namespace %s: %w", ns.Name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		// setns failed, so the thread is still in orig.
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: entering namespace %s: %w", ns.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			return // keep the thread locked: it dies with this goroutine
		}
		runtime.UnlockOSThread()
	}()
	return f()
}

// Proc is a process started in a namespace by a test.
type Proc struct {
	Cmd    *exec.Cmd
	Output *syncBuffer
	done   chan struct{}
	err    error
}

// Start starts a long-running command in the namespace. It is stopped (SIGTERM,
// then SIGKILL after 5s) by PID when the test ends; its output is logged if the
// test failed.
func (ns *NS) Start(name string, args ...string) *Proc {
	ns.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	buf := &syncBuffer{}
	cmd.Stdout = buf
	cmd.Stderr = buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		ns.t.Fatalf("[%s] start %s: %v", ns.Name, name, err)
	}
	p := &Proc{Cmd: cmd, Output: buf, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t := ns.t
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("[%s] output of %s:\n%s", ns.Name, name, buf.String())
		}
	})
	return p
}

// Stop stops the process by its PID and waits for it.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has ended, and its error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls cond every 100ms until it returns true or the timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}
