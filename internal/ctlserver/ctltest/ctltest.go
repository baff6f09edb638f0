// Package ctltest provides a fake control API backend and a helper that
// serves it on a real unix socket, for the tests of the server, the client
// and ipsecctl.
package ctltest

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/ctlserver"
)

// Fake is a ctlserver.Backend that answers with its fields and records the
// calls it gets. Set the fields before serving; they are not locked. Errors,
// keyed by operation ("status", "sas", "policies", "initiate", "terminate",
// "rekey", "reload", "explain"), make that operation fail.
type Fake struct {
	StatusResult   ctlapi.Status
	SAsResult      ctlapi.SAs
	PoliciesResult ctlapi.Policies
	PeersResult    ctlapi.Peers
	ReloadResult   ctlapi.ReloadResult
	ExplainResult  ctlapi.ExplainResult
	Errors         map[string]error

	mu       sync.Mutex
	calls    []string
	explains []ctlapi.ExplainRequest
	subs     map[chan ctlapi.Event]bool
	subsCh   chan struct{} // closed and replaced when subs changes
}

// NewFake returns a Fake loaded with Sample data.
func NewFake() *Fake {
	f := &Fake{Errors: map[string]error{}}
	f.StatusResult, f.SAsResult, f.PoliciesResult, f.ReloadResult, f.ExplainResult = Sample()
	return f
}

func (f *Fake) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

// Calls returns the calls made so far, as "initiate site-b/net", "status".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Explains returns the explain requests received so far.
func (f *Fake) Explains() []ctlapi.ExplainRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ctlapi.ExplainRequest(nil), f.explains...)
}

// Status implements ctlserver.Backend.
func (f *Fake) Status(context.Context) (ctlapi.Status, error) {
	f.record("status")
	return f.StatusResult, f.Errors["status"]
}

// SAs implements ctlserver.Backend.
func (f *Fake) SAs(context.Context) (ctlapi.SAs, error) {
	f.record("sas")
	return f.SAsResult, f.Errors["sas"]
}

// Policies implements ctlserver.Backend.
func (f *Fake) Policies(context.Context) (ctlapi.Policies, error) {
	f.record("policies")
	return f.PoliciesResult, f.Errors["policies"]
}

// Peers implements ctlserver.Backend.
func (f *Fake) Peers(context.Context) (ctlapi.Peers, error) {
	f.record("peers")
	return f.PeersResult, f.Errors["peers"]
}

// Initiate implements ctlserver.Backend.
func (f *Fake) Initiate(_ context.Context, name string) error {
	f.record("initiate " + name)
	return f.Errors["initiate"]
}

// Terminate implements ctlserver.Backend.
func (f *Fake) Terminate(_ context.Context, name string) error {
	f.record("terminate " + name)
	return f.Errors["terminate"]
}

// Rekey implements ctlserver.Backend.
func (f *Fake) Rekey(_ context.Context, name string) error {
	f.record("rekey " + name)
	return f.Errors["rekey"]
}

// Reload implements ctlserver.Backend.
func (f *Fake) Reload(context.Context) (ctlapi.ReloadResult, error) {
	f.record("reload")
	return f.ReloadResult, f.Errors["reload"]
}

// Explain implements ctlserver.Backend.
func (f *Fake) Explain(_ context.Context, req ctlapi.ExplainRequest) (ctlapi.ExplainResult, error) {
	f.record("explain")
	f.mu.Lock()
	f.explains = append(f.explains, req)
	f.mu.Unlock()
	return f.ExplainResult, f.Errors["explain"]
}

// Subscribe implements ctlserver.Backend.
func (f *Fake) Subscribe(context.Context) (<-chan ctlapi.Event, func()) {
	ch := make(chan ctlapi.Event, 16)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[chan ctlapi.Event]bool{}
	}
	f.subs[ch] = true
	f.changedLocked()
	f.mu.Unlock()
	f.record("subscribe")
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch) // the channel may have been closed by End
			f.changedLocked()
			f.mu.Unlock()
		})
	}
}

func (f *Fake) changedLocked() {
	if f.subsCh != nil {
		close(f.subsCh)
	}
	f.subsCh = make(chan struct{})
}

// Subscribers returns the number of live subscriptions.
func (f *Fake) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// WaitSubscribers waits until there are n live subscriptions, or fails the
// test after 10 seconds.
func (f *Fake) WaitSubscribers(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.subs)
		if f.subsCh == nil {
			f.subsCh = make(chan struct{})
		}
		changed := f.subsCh
		f.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("ctltest: %d subscribers after 10s, want %d", got, n)
		}
	}
}

// Publish sends ev to every subscriber.
func (f *Fake) Publish(ev ctlapi.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		ch <- ev
	}
}

// End closes every subscriber's channel, as a daemon that stops does.
func (f *Fake) End() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		close(ch)
		delete(f.subs, ch)
	}
	f.changedLocked()
}

// Serve listens on a socket in a new temporary directory of t and serves b
// until the test ends; it returns the socket's path.
func Serve(t testing.TB, b ctlserver.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipsecd.sock")
	l, err := ctlserver.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctlserver.Serve(ctx, l, b, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ctlserver.Serve: %v", err)
		}
	})
	return path
}

// T0 is the reference time of the Sample data.
var T0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// Sample returns a small, realistic answer for each query: one IKE SA with
// one CHILD SA, one manual SA, three SPD rules and an explained packet.
func Sample() (ctlapi.Status, ctlapi.SAs, ctlapi.Policies, ctlapi.ReloadResult, ctlapi.ExplainResult) {
	st := ctlapi.Status{
		Version:       "v0.1.0",
		API:           "v1",
		PID:           4242,
		Started:       T0,
		UptimeSeconds: 3*3600 + 12*60 + 7,
		ConfigFile:    "/etc/goipsec/ipsecd.yaml",
		IKESAs:        1,
		ChildSAs:      2,
		Counters: ctlapi.Counters{
			PacketsIn: 1234, PacketsOut: 2345, BytesIn: 1234, BytesOut: 3565158,
			Drops: map[string]uint64{"bad_icv": 3, "replay": 1},
		},
	}
	sas := ctlapi.SAs{
		IKESAs: []ctlapi.IKESA{{
			Name: "site-b", ID: 1, State: ctlapi.IKEEstablished, Version: 2, Initiator: true,
			LocalAddr:  netip.MustParseAddrPort("192.0.2.1:4500"),
			RemoteAddr: netip.MustParseAddrPort("198.51.100.2:4500"),
			LocalID:    "gw-a.example", RemoteID: "gw-b.example",
			SPIi: 0x0123456789abcdef, SPIr: 0xfedcba9876543210,
			Proposal: "aes256gcm16-prfsha256-x25519", Encap: true,
			Established: T0.Add(-2 * time.Minute), RekeyAt: T0.Add(4 * time.Hour),
		}},
		ChildSAs: []ctlapi.ChildSA{{
			Name: "site-b/net", IKESA: 1, State: ctlapi.ChildInstalled, Protocol: "esp",
			Mode: "tunnel", Encap: "udp",
			LocalAddr: netip.MustParseAddr("192.0.2.1"), RemoteAddr: netip.MustParseAddr("198.51.100.2"),
			SPIIn: 0xc0ffee01, SPIOut: 0xc0ffee02, Algorithm: "aes256gcm16", ESN: true,
			LocalTS:  []string{"10.1.0.0/16"},
			RemoteTS: []string{"10.2.0.0/16", "10.3.0.0/16[tcp/443]"},
			BytesIn:  1234, BytesOut: 5632, PacketsIn: 10, PacketsOut: 12,
			ReplayDrops: 1, ICVFailures: 3,
			Installed: T0.Add(-2 * time.Minute),
			Lifetime: ctlapi.Lifetime{
				RekeyAt: T0.Add(58 * time.Minute), ExpireAt: T0.Add(time.Hour),
				ExpireBytes: 1 << 40,
			},
		}, {
			Name: "lab", Manual: true, State: ctlapi.ChildInstalled, Protocol: "ah",
			Mode: "transport", Encap: "none",
			LocalAddr: netip.MustParseAddr("2001:db8::1"), RemoteAddr: netip.MustParseAddr("2001:db8::2"),
			SPIIn: 0x2001, SPIOut: 0x1001, Algorithm: "sha256",
			LocalTS: []string{"2001:db8::1/128"}, RemoteTS: []string{"2001:db8::2/128"},
			Installed: T0.Add(-time.Hour),
		}},
	}
	pol := ctlapi.Policies{Policies: []ctlapi.Policy{
		{Index: 1, Name: "dns", RemoteTS: []string{"10.2.0.53/32[udp/53]"}, LocalTS: []string{}, Action: ctlapi.ActionBypass, Hits: 12},
		{Index: 2, Name: "site-b/net", Direction: "out", LocalTS: []string{"10.1.0.0/16"},
			RemoteTS: []string{"10.2.0.0/16", "10.3.0.0/16[tcp/443]"}, Action: ctlapi.ActionProtect, SA: "site-b/net", Hits: 1234},
		{Index: 3, Name: "drop-rest", LocalTS: []string{}, RemoteTS: []string{"0.0.0.0/0"}, Action: ctlapi.ActionDiscard},
	}}
	rel := ctlapi.ReloadResult{Changed: true, Summary: "added connection site-c"}
	rule := pol.Policies[1]
	exp := ctlapi.ExplainResult{
		Request: ctlapi.ExplainRequest{
			Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.9"),
			Proto: 6, DPort: 22, Direction: "out",
		},
		Matched: true,
		Rule:    &rule,
		Action:  ctlapi.ActionProtect,
		Reason:  "SA site-b/net is installed",
		Steps: []ctlapi.ExplainStep{
			{Index: 1, Name: "dns", Reason: "dst 10.2.0.9 not in remote_ts 10.2.0.53/32[udp/53]"},
			{Index: 2, Name: "site-b/net", Matched: true, Reason: "src in local_ts 10.1.0.0/16, dst in remote_ts 10.2.0.0/16"},
		},
	}
	return st, sas, pol, rel, exp
}

// ErrBoom is a plain error, which the server must answer with 500.
var ErrBoom = errors.New("fake: boom")
