package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ctlapi/client"
	"github.com/goipsec/goipsec/internal/ctlserver/ctltest"
)

func TestRoundTrips(t *testing.T) {
	f := ctltest.NewFake()
	c := client.New(ctltest.Serve(t, f))
	defer c.Close()
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || !reflect.DeepEqual(st, f.StatusResult) {
		t.Errorf("Status = %+v, %v; want %+v", st, err, f.StatusResult)
	}
	sas, err := c.SAs(ctx)
	if err != nil || !reflect.DeepEqual(sas, f.SAsResult) {
		t.Errorf("SAs = %+v, %v; want %+v", sas, err, f.SAsResult)
	}
	pol, err := c.Policies(ctx)
	if err != nil || !reflect.DeepEqual(pol, f.PoliciesResult) {
		t.Errorf("Policies = %+v, %v; want %+v", pol, err, f.PoliciesResult)
	}
	if err := c.Initiate(ctx, "site-b/net"); err != nil {
		t.Errorf("Initiate: %v", err)
	}
	if err := c.Terminate(ctx, "lab"); err != nil {
		t.Errorf("Terminate: %v", err)
	}
	if err := c.Rekey(ctx, "site-b"); err != nil {
		t.Errorf("Rekey: %v", err)
	}
	rel, err := c.Reload(ctx)
	if err != nil || rel != f.ReloadResult {
		t.Errorf("Reload = %+v, %v; want %+v", rel, err, f.ReloadResult)
	}
	req := ctlapi.ExplainRequest{Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, DPort: 22}
	exp, err := c.Explain(ctx, req)
	if err != nil || !reflect.DeepEqual(exp, f.ExplainResult) {
		t.Errorf("Explain = %+v, %v; want %+v", exp, err, f.ExplainResult)
	}
	req.Direction = "out" // the server fills in the default
	if got := f.Explains(); len(got) != 1 || got[0] != req {
		t.Errorf("backend got %+v, want %+v", got, req)
	}
	want := []string{"status", "sas", "policies", "initiate site-b/net", "terminate lab", "rekey site-b", "reload", "explain"}
	if got := f.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("backend calls %q, want %q", got, want)
	}
}

func TestErrors(t *testing.T) {
	f := ctltest.NewFake()
	f.Errors["initiate"] = fmt.Errorf("daemon: connection %q: %w", "nope", ctlapi.ErrNotFound)
	f.Errors["rekey"] = ctlapi.ErrNotImplemented
	f.Errors["sas"] = ctltest.ErrBoom
	c := client.New(ctltest.Serve(t, f))
	ctx := context.Background()

	err := c.Initiate(ctx, "nope")
	var ae *ctlapi.Error
	if !errors.Is(err, ctlapi.ErrNotFound) || !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("Initiate(nope) = %#v, want a 404 ctlapi.ErrNotFound", err)
	}
	if err == nil || err.Error() != `daemon: connection "nope": not found` {
		t.Errorf("Initiate(nope) message %q", err)
	}
	err = c.Rekey(ctx, "site-b")
	if !errors.Is(err, ctlapi.ErrNotImplemented) || !strings.Contains(err.Error(), "not implemented") {
		t.Errorf("Rekey = %v, want ErrNotImplemented", err)
	}
	if errors.Is(err, ctlapi.ErrNotFound) {
		t.Error("a 501 matches ErrNotFound")
	}
	_, err = c.SAs(ctx)
	if !errors.Is(err, ctlapi.ErrInternal) || !strings.Contains(err.Error(), "fake: boom") {
		t.Errorf("SAs = %v, want a 500 with the backend's message", err)
	}
	// The server rejects a bad name before the backend sees it.
	if err := c.Terminate(ctx, "a b"); !errors.Is(err, ctlapi.ErrBadRequest) {
		t.Errorf("Terminate(\"a b\") = %v, want ErrBadRequest", err)
	}
	if _, err := c.Explain(ctx, ctlapi.ExplainRequest{}); !errors.Is(err, ctlapi.ErrBadRequest) {
		t.Errorf("Explain(zero) = %v, want ErrBadRequest", err)
	}
}

func TestUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nothing.sock")
	c := client.New(path)
	_, err := c.Status(context.Background())
	var ue *client.UnreachableError
	if !errors.As(err, &ue) || ue.Socket != path {
		t.Fatalf("Status = %#v, want *UnreachableError for %s", err, path)
	}
	want := "client: cannot reach ipsecd at " + path + ": connect: no such file or directory"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	// A socket file with no daemon behind it: connection refused.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	err = c.Events(context.Background(), func(ctlapi.Event) error { return nil })
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Events on a dead socket = %v, want connection refused", err)
	}
}

func TestDefaultSocket(t *testing.T) {
	if got := client.New("").Socket(); got != "/run/goipsec/ipsecd.sock" {
		t.Errorf("New(\"\").Socket() = %q", got)
	}
}

// TestForeignServer checks errors from something that is not ipsecd.
func TestForeignServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ctlapi.PathSAs {
			w.Write([]byte("{not json"))
			return
		}
		http.Error(w, "teapot trouble", http.StatusTeapot)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c := client.New(path)
	_, err = c.Status(context.Background())
	var ae *ctlapi.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusTeapot || ae.Code != ctlapi.CodeInternal ||
		ae.Message != "client: ipsecd answered 418: teapot trouble" {
		t.Errorf("Status = %#v", err)
	}
	if _, err := c.SAs(context.Background()); err == nil || !strings.Contains(err.Error(), "decoding the answer") {
		t.Errorf("SAs = %v, want a decoding error", err)
	}
}

func TestEvents(t *testing.T) {
	f := ctltest.NewFake()
	c := client.New(ctltest.Serve(t, f))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	evs := []ctlapi.Event{
		{Type: ctlapi.EventIKEUp, Time: ctltest.T0, Fields: map[string]string{"name": "site-b", "id": "1"}},
		{Type: ctlapi.EventChildUp, Time: ctltest.T0.Add(time.Millisecond), Fields: map[string]string{"name": "site-b/net", "spi_in": "c0ffee01", "spi_out": "c0ffee02"}},
		{Type: "future_type", Time: ctltest.T0.Add(time.Second)},
	}
	got := make(chan ctlapi.Event, 10)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Events(ctx, func(ev ctlapi.Event) error { got <- ev; return nil })
	}()
	f.WaitSubscribers(t, 1)
	for _, ev := range evs {
		f.Publish(ev)
	}
	for i, want := range evs {
		select {
		case ev := <-got:
			if !reflect.DeepEqual(ev, want) {
				t.Errorf("event %d = %+v, want %+v", i, ev, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive", i)
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Events after cancel = %v, want context.Canceled", err)
	}
	f.WaitSubscribers(t, 0)

	// fn's error ends the stream and comes back.
	stop := errors.New("enough")
	go func() {
		errc <- c.Events(context.Background(), func(ctlapi.Event) error { return stop })
	}()
	f.WaitSubscribers(t, 1)
	f.Publish(evs[0])
	if err := <-errc; err != stop {
		t.Errorf("Events = %v, want fn's error", err)
	}
	f.WaitSubscribers(t, 0) // the server noticed the client leave

	// The daemon ending the stream.
	go func() {
		errc <- c.Events(context.Background(), func(ctlapi.Event) error { return nil })
	}()
	f.WaitSubscribers(t, 1)
	f.End()
	if err := <-errc; !errors.Is(err, client.ErrStreamEnded) {
		t.Errorf("Events = %v, want ErrStreamEnded", err)
	}
}

func TestContextCancelled(t *testing.T) {
	c := client.New(ctltest.Serve(t, ctltest.NewFake()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Status with a cancelled context = %v", err)
	}
}
