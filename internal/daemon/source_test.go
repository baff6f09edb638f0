package daemon

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// fakeSource is a PolicySource whose shared policy is one extra policy
// that the test changes by sending on next.
type fakeSource struct {
	mu     sync.Mutex
	extra  []config.Policy
	next   chan []config.Policy
	bad    chan error
	status ctlapi.PolicySource
	local  *config.Config
}

func (f *fakeSource) merge(local *config.Config) *config.Config {
	c := *local
	c.Policies = append(slices.Clone(local.Policies), f.extra...)
	return &c
}

func (f *fakeSource) Apply(local *config.Config, apply func(*config.Config) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := apply(f.merge(local)); err != nil {
		return err
	}
	f.local = local
	return nil
}

func (f *fakeSource) Run(ctx context.Context, apply func(*config.Config) error, refused func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-f.bad:
			refused(err)
		case p := <-f.next:
			f.mu.Lock()
			old := f.extra
			f.extra = p
			if err := apply(f.merge(f.local)); err != nil {
				f.extra = old
				refused(err)
			} else {
				f.status.Revision++
			}
			f.mu.Unlock()
		}
	}
}

func (f *fakeSource) Status() ctlapi.PolicySource {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func discardPolicy(t *testing.T, name string) config.Policy {
	t.Helper()
	c, err := config.Parse("x.yaml", []byte("policies:\n  - {name: "+name+", remote_ts: [10.9.0.0/16], action: discard}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return c.Policies[0]
}

// TestDaemonPolicySource: the daemon applies the shared policy merged with
// the local file at start, on each change of the source (publishing an
// event) and on each reload of the local file; a refusal is published as
// an event and the source's state is in Status.
func TestDaemonPolicySource(t *testing.T) {
	local, err := config.Parse("local.yaml", []byte("policies:\n  - {name: local, remote_ts: [10.1.0.0/16], action: bypass}\n"))
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{extra: []config.Policy{discardPolicy(t, "shared")}, next: make(chan []config.Policy), bad: make(chan error),
		status: ctlapi.PolicySource{Kind: "etcd", Prefix: "/p/"}}
	d, err := New(local, Options{TUN: tuntest.New(1400, 16, 256), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Source: src,
		Load: func(string) (*config.Config, error) { return local, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names := func() string {
		var out []string
		for _, p := range d.Config().Policies {
			out = append(out, p.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(); got != "local,shared" {
		t.Fatalf("at start: %s", got)
	}
	events, cancel := d.Subscribe(context.Background())
	defer cancel()
	src.next <- []config.Policy{discardPolicy(t, "shared2")}
	ev := nextEvent(t, events, ctlapi.EventPolicySource)
	if got := names(); got != "local,shared2" || ev.Fields["result"] != "applied" || ev.Fields["source"] != "etcd" {
		t.Errorf("after a change: %s, event %v", got, ev.Fields)
	}
	src.bad <- &config.Error{File: "etcd:/p/x", Line: 2, Key: "policies[0].action", Reason: "bad"}
	ev = nextEvent(t, events, ctlapi.EventPolicySource)
	if ev.Fields["result"] != "refused" || !strings.Contains(ev.Fields["error"], "etcd:/p/x:2") || names() != "local,shared2" {
		t.Errorf("after a refusal: %s, event %v", names(), ev.Fields)
	}
	if _, err := d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(); got != "local,shared2" {
		t.Errorf("after a reload: %s", got)
	}
	st, _ := d.Status(context.Background())
	if len(st.PolicySources) != 1 || st.PolicySources[0].Revision != 1 {
		t.Errorf("status: %+v", st.PolicySources)
	}
	if m := d.Metrics().PolicySources; len(m) != 1 || m[0].Revision != 1 || m[0].Kind != "etcd" {
		t.Errorf("metrics: %+v", m)
	}
}

func nextEvent(t *testing.T, events <-chan ctlapi.Event, typ string) ctlapi.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}
