package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// flaky records every Set call and fails the next fail of them.
type flaky struct {
	mu    sync.Mutex
	fail  int
	calls []string // the values given to Set, in order, "ok:" or "fail:" first
}

func (f *flaky) set(v any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		f.calls = append(f.calls, fmt.Sprint("fail:", v))
		return errors.New("test: netlink says no")
	}
	f.calls = append(f.calls, fmt.Sprint("ok:", v))
	return nil
}

func (f *flaky) failNext(n int) {
	f.mu.Lock()
	f.fail = n
	f.mu.Unlock()
}

func (f *flaky) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type flakyRouter struct{ flaky }

func (r *flakyRouter) Set(routes []policy.Route) error { return r.set(routes) }

type flakyFilter struct{ flaky }

func (f *flakyFilter) Set(rules []policy.FilterRule) error { return f.set(rules) }

// TestReloadRetriesFailedRoutesAndFilter makes Router.Set and Filter.Set
// fail a few times on a reload and checks that the daemon retries them in
// the background until they succeed, reports them as pending meanwhile,
// that a newer configuration supersedes a pending retry (its routes are
// never installed after the newer ones), and that Reload reports the new
// configuration as applied rather than failed.
func TestReloadRetriesFailedRoutesAndFilter(t *testing.T) {
	discard := func(net string) *config.Config {
		return manualConfig(t, "a", "policies:\n  - {name: never, remote_ts: ["+net+"], action: discard}\n")
	}
	next := discard("10.7.0.0/16")
	rt, fl := &flakyRouter{}, &flakyFilter{}
	nw := conntest.NewNetwork(64)
	d, err := New(manualConfig(t, "a", ""), Options{TUN: tuntest.New(1400, 16, 256), UDP: nw.UDP(netip.MustParseAddrPort("192.0.2.1:4500"), 16, 256),
		Router: rt, Filter: fl, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Load: func(string) (*config.Config, error) { return next, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, r := range []*retrier{d.routes, d.filter} {
		r.min, r.max = 2*time.Millisecond, 8*time.Millisecond
	}

	// Routes fail three times, firewall rules twice.
	rt.failNext(3)
	fl.failNext(2)
	err = d.Reconfig(discard("10.9.0.0/16"))
	if !errors.Is(err, ErrPending) || !isOnlyPending(err) {
		t.Fatalf("Reconfig with failing routes and filter = %v, want ErrPending only", err)
	}
	if p := d.Pending(); len(p) != 2 || !strings.Contains(p[0], "routes: 1 failed attempts") {
		t.Errorf("Pending() = %q", p)
	}
	if st, _ := d.Status(context.Background()); len(st.Pending) == 0 {
		t.Errorf("Status().Pending is empty while routes are retried")
	}
	waitFor(t, "the retries to succeed", func() bool { return len(d.Pending()) == 0 })
	calls := rt.log()
	if len(calls) != 1+4 || !strings.HasPrefix(calls[4], "ok:") || !strings.Contains(calls[4], "10.9.0.0/16") {
		t.Errorf("router calls: %q, want the start, 3 failures, then success with 10.9.0.0/16", calls)
	}
	if calls := fl.log(); len(calls) != 1+3 || !strings.HasPrefix(calls[3], "ok:") {
		t.Errorf("filter calls: %q, want the start, 2 failures, then success", calls)
	}

	// A newer configuration supersedes a pending retry.
	rt.failNext(1_000_000)
	if err := d.Reconfig(discard("10.8.0.0/16")); !errors.Is(err, ErrPending) {
		t.Fatalf("Reconfig with failing routes = %v", err)
	}
	rt.failNext(0)
	if err := d.Reconfig(discard("10.6.0.0/16")); err != nil {
		t.Fatalf("Reconfig with working routes = %v", err)
	}
	n := len(rt.log())
	time.Sleep(50 * time.Millisecond) // several backoff periods
	calls = rt.log()
	if len(calls) != n || !strings.Contains(calls[n-1], "10.6.0.0/16") {
		t.Errorf("router calls after the newer configuration: %q", calls[n-1:])
	}
	if p := d.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %q after the newer configuration succeeded", p)
	}

	// Reload says the new configuration is in force.
	rt.failNext(1_000_000)
	res, err := d.Reload(context.Background())
	if err != nil || !res.Changed || !strings.Contains(res.Summary, "retrying in the background: routes") {
		t.Errorf("Reload with failing routes = %+v, %v", res, err)
	}
}
