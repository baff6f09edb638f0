package ctlserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/ctlserver"
	"github.com/goipsec/goipsec/internal/ctlserver/ctltest"
)

// httpClient talks plain HTTP to a unix socket, so these tests do not depend
// on package client.
func httpClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
}

// call does one request and returns the status, the Content-Type and the body.
func call(t *testing.T, hc *http.Client, method, path, body string) (int, string, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://ipsecd"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func TestListenSocketMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "goipsec")
	path := filepath.Join(dir, "ipsecd.sock")
	l, err := ctlserver.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("%s is %v, want a socket", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %#o, want 0600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil || !di.IsDir() {
		t.Fatalf("socket directory: %v", err)
	}
	if perm := di.Mode().Perm(); perm&0o022 != 0 || perm&0o700 != 0o700 {
		t.Errorf("directory mode %#o, want 0755 less the umask", perm)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("socket directory holds %d entries, want only the socket: %v", len(ents), ents)
	}
	if got := l.Addr().String(); got != path {
		t.Errorf("Addr() = %q, want %q", got, path)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Close, Lstat(socket) = %v, want not exist", err)
	}
}

func TestListenRefusesLiveDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipsecd.sock")
	l, err := ctlserver.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := ctlserver.Listen(path)
	if err == nil {
		l2.Close()
		t.Fatal("second Listen succeeded; want an error")
	}
	if !strings.Contains(err.Error(), "another ipsecd") {
		t.Errorf("error %q does not say another daemon is running", err)
	}
	// The first listener still works.
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("first listener unreachable after the refused Listen: %v", err)
	}
	c.Close()
}

func TestListenRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipsecd.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // as a crashed daemon leaves it
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l, err := ctlserver.Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipsecd.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := ctlserver.Listen(path); err == nil {
		l.Close()
		t.Fatal("Listen replaced a regular file")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("file changed: %q, %v", b, err)
	}
}

func TestServeStopsAndRemovesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipsecd.sock")
	l, err := ctlserver.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctlserver.Serve(ctx, l, ctltest.NewFake(), nil) }()
	if code, _, _ := call(t, httpClient(path), "GET", ctlapi.PathStatus, ""); code != 200 {
		t.Fatalf("status %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Serve: %v", err)
	}
}

func TestQueries(t *testing.T) {
	f := ctltest.NewFake()
	hc := httpClient(ctltest.Serve(t, f))
	tests := []struct {
		path string
		got  any
		want any
	}{
		{ctlapi.PathStatus, new(ctlapi.Status), &f.StatusResult},
		{ctlapi.PathSAs, new(ctlapi.SAs), &f.SAsResult},
		{ctlapi.PathPolicies, new(ctlapi.Policies), &f.PoliciesResult},
	}
	for _, tt := range tests {
		code, ctype, body := call(t, hc, "GET", tt.path, "")
		if code != 200 || ctype != "application/json" {
			t.Errorf("GET %s: %d %q, want 200 application/json", tt.path, code, ctype)
		}
		if err := json.Unmarshal(body, tt.got); err != nil {
			t.Fatalf("GET %s: %v in %s", tt.path, err, body)
		}
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("GET %s:\n got %+v\nwant %+v", tt.path, tt.got, tt.want)
		}
	}
}

// TestWireNames pins a few JSON names and formats that users depend on.
func TestWireNames(t *testing.T) {
	hc := httpClient(ctltest.Serve(t, ctltest.NewFake()))
	_, _, body := call(t, hc, "GET", ctlapi.PathSAs, "")
	for _, want := range []string{
		`"spi_in":"c0ffee01"`, `"spi_out":"c0ffee02"`, `"spi_i":"0123456789abcdef"`,
		`"local_addr":"192.0.2.1:4500"`, `"encap":"udp"`, `"local_ts":["10.1.0.0/16"]`,
		`"installed":"2026-03-14T15:07:26Z"`, `"spi_in":"00002001"`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET /v1/sas lacks %s in %s", want, body)
		}
	}
	_, _, body = call(t, hc, "GET", ctlapi.PathStatus, "")
	for _, want := range []string{`"uptime_seconds":11527`, `"drops":{"bad_icv":3,"replay":1}`, `"bytes_out":3565158`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET /v1/status lacks %s in %s", want, body)
		}
	}
}

// TestEmptyListsAreNotNull checks that lists are [] and maps {} when the
// backend leaves them nil, as ctlapi promises.
func TestEmptyListsAreNotNull(t *testing.T) {
	f := ctltest.NewFake()
	f.StatusResult = ctlapi.Status{}
	f.SAsResult = ctlapi.SAs{ChildSAs: []ctlapi.ChildSA{{Name: "x"}}}
	f.PoliciesResult = ctlapi.Policies{Policies: []ctlapi.Policy{{Index: 1, Name: "p"}}}
	f.ExplainResult = ctlapi.ExplainResult{Action: ctlapi.ActionDiscard}
	hc := httpClient(ctltest.Serve(t, f))
	for path, wants := range map[string][]string{
		ctlapi.PathStatus:   {`"drops":{}`, `"api":"v1"`},
		ctlapi.PathSAs:      {`"ike_sas":[]`, `"local_ts":[]`, `"remote_ts":[]`},
		ctlapi.PathPolicies: {`"local_ts":[]`, `"remote_ts":[]`},
	} {
		_, _, body := call(t, hc, "GET", path, "")
		for _, want := range wants {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("GET %s lacks %s in %s", path, want, body)
			}
		}
		if bytes.Contains(body, []byte("null")) {
			t.Errorf("GET %s has null: %s", path, body)
		}
	}
	_, _, body := call(t, hc, "POST", ctlapi.PathExplain, `{"src":"10.0.0.1","dst":"10.0.0.2"}`)
	if !bytes.Contains(body, []byte(`"steps":[]`)) || !bytes.Contains(body, []byte(`"direction":"out"`)) {
		t.Errorf("explain answer %s lacks steps [] or the echoed request", body)
	}
}

func TestActions(t *testing.T) {
	f := ctltest.NewFake()
	hc := httpClient(ctltest.Serve(t, f))
	for _, tt := range []struct{ path, action string }{
		{ctlapi.PathInitiate, "initiate"},
		{ctlapi.PathTerminate, "terminate"},
		{ctlapi.PathRekey, "rekey"},
	} {
		code, _, body := call(t, hc, "POST", tt.path, `{"name":"site-b/net"}`)
		if code != 200 {
			t.Fatalf("POST %s: %d %s", tt.path, code, body)
		}
		var res ctlapi.ActionResult
		if err := json.Unmarshal(body, &res); err != nil || res != (ctlapi.ActionResult{Name: "site-b/net", Action: tt.action}) {
			t.Errorf("POST %s: %s, %v", tt.path, body, err)
		}
	}
	code, _, body := call(t, hc, "POST", ctlapi.PathReload, "")
	var rel ctlapi.ReloadResult
	if err := json.Unmarshal(body, &rel); code != 200 || err != nil || rel != f.ReloadResult {
		t.Errorf("POST reload: %d %s %v", code, body, err)
	}
	code, _, body = call(t, hc, "POST", ctlapi.PathExplain, `{"src":"10.1.0.5","dst":"10.2.0.9","proto":6,"dport":22}`)
	var exp ctlapi.ExplainResult
	if err := json.Unmarshal(body, &exp); code != 200 || err != nil || !reflect.DeepEqual(exp, f.ExplainResult) {
		t.Errorf("POST explain: %d %s %v", code, body, err)
	}
	wantReq := ctlapi.ExplainRequest{Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, DPort: 22, Direction: "out"}
	if got := f.Explains(); len(got) != 1 || got[0] != wantReq {
		t.Errorf("backend got explain %+v, want %+v", got, wantReq)
	}
	want := []string{"initiate site-b/net", "terminate site-b/net", "rekey site-b/net", "reload", "explain"}
	if got := f.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("backend calls %q, want %q", got, want)
	}
}

func TestErrors(t *testing.T) {
	f := ctltest.NewFake()
	f.Errors["initiate"] = fmt.Errorf("daemon: connection %q: %w", "nope", ctlapi.ErrNotFound)
	f.Errors["rekey"] = ctlapi.ErrNotImplemented
	f.Errors["terminate"] = ctltest.ErrBoom
	f.Errors["reload"] = ctlapi.Errorf(ctlapi.ErrConflict, "daemon: a reload is running")
	f.Errors["status"] = context.DeadlineExceeded
	hc := httpClient(ctltest.Serve(t, f))
	tests := []struct {
		method, path, body string
		status             int
		code               string
		msg                string // a part of the message
	}{
		{"POST", ctlapi.PathInitiate, `{"name":"nope"}`, 404, ctlapi.CodeNotFound, `daemon: connection "nope": not found`},
		{"POST", ctlapi.PathRekey, `{"name":"site-b"}`, 501, ctlapi.CodeNotImplemented, "ctlserver: rekey: not implemented by this ipsecd"},
		{"POST", ctlapi.PathTerminate, `{"name":"site-b"}`, 500, ctlapi.CodeInternal, "fake: boom"},
		{"POST", ctlapi.PathReload, ``, 409, ctlapi.CodeConflict, "daemon: a reload is running"},
		{"GET", ctlapi.PathStatus, ``, 504, ctlapi.CodeTimeout, "ctlserver: status: context deadline exceeded"},
		{"GET", "/v1/nope", ``, 404, ctlapi.CodeNotFound, "no endpoint /v1/nope"},
		{"GET", "/v2/status", ``, 404, ctlapi.CodeNotFound, "no endpoint /v2/status"},
		{"POST", ctlapi.PathStatus, ``, 405, ctlapi.CodeMethodNotAllowed, "wants GET"},
		{"GET", ctlapi.PathInitiate, ``, 405, ctlapi.CodeMethodNotAllowed, "wants POST"},
		{"POST", ctlapi.PathInitiate, ``, 400, ctlapi.CodeBadRequest, "needs a JSON body"},
		{"POST", ctlapi.PathInitiate, `{"name":`, 400, ctlapi.CodeBadRequest, "decoding the request"},
		{"POST", ctlapi.PathInitiate, `{"name":"a"} {}`, 400, ctlapi.CodeBadRequest, "data after"},
		{"POST", ctlapi.PathInitiate, `{"name":""}`, 400, ctlapi.CodeBadRequest, "name is empty"},
		{"POST", ctlapi.PathInitiate, `{"name":"a b"}`, 400, ctlapi.CodeBadRequest, "space"},
		{"POST", ctlapi.PathInitiate, `{"name":"a/b/c"}`, 400, ctlapi.CodeBadRequest, "more than one slash"},
		{"POST", ctlapi.PathInitiate, `{"name":"/b"}`, 400, ctlapi.CodeBadRequest, "no connection part"},
		{"POST", ctlapi.PathInitiate, `{"name":"` + strings.Repeat("x", 70000) + `"}`, 400, ctlapi.CodeBadRequest, "larger than"},
		{"POST", ctlapi.PathExplain, `{"src":"10.0.0.1"}`, 400, ctlapi.CodeBadRequest, "needs src and dst"},
		{"POST", ctlapi.PathExplain, `{"src":"10.0.0.1","dst":"2001:db8::1"}`, 400, ctlapi.CodeBadRequest, "different address families"},
		{"POST", ctlapi.PathExplain, `{"src":"10.0.0.1","dst":"10.0.0.300"}`, 400, ctlapi.CodeBadRequest, "decoding"},
		{"POST", ctlapi.PathExplain, `{"src":"10.0.0.1","dst":"10.0.0.2","direction":"up"}`, 400, ctlapi.CodeBadRequest, "direction"},
		{"POST", ctlapi.PathReload, `[1,2]`, 400, ctlapi.CodeBadRequest, "decoding"},
	}
	for _, tt := range tests {
		code, ctype, body := call(t, hc, tt.method, tt.path, tt.body)
		var eb ctlapi.ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil {
			t.Errorf("%s %s: body %q is not an ErrorBody: %v", tt.method, tt.path, body, err)
			continue
		}
		if code != tt.status || eb.Code != tt.code || !strings.Contains(eb.Error, tt.msg) || ctype != "application/json" {
			t.Errorf("%s %s %.40s: %d %q %q (%s), want %d %q containing %q", tt.method, tt.path, tt.body,
				code, eb.Code, eb.Error, ctype, tt.status, tt.code, tt.msg)
		}
	}
	// A 405 names the allowed method.
	req, _ := http.NewRequest("DELETE", "http://ipsecd"+ctlapi.PathSAs, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("DELETE /v1/sas: %d Allow %q, want 405 Allow GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// readEvent reads one line of the stream as an Event.
func readEvent(t *testing.T, br *bufio.Reader) ctlapi.Event {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the event stream: %v", err)
	}
	var ev ctlapi.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("event line %q: %v", line, err)
	}
	return ev
}

func TestEventStream(t *testing.T) {
	f := ctltest.NewFake()
	path := filepath.Join(t.TempDir(), "ipsecd.sock")
	l, err := ctlserver.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	const timeout = 200 * time.Millisecond
	go func() { done <- ctlserver.ServeQuick(ctx, l, f, nil, timeout) }()

	hc := httpClient(path)
	hc.Timeout = 0
	resp, err := hc.Get("http://ipsecd" + ctlapi.PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctlapi.ContentTypeEvents {
		t.Fatalf("GET /v1/events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	f.WaitSubscribers(t, 1)
	br := bufio.NewReader(resp.Body)

	ev1 := ctlapi.Event{Type: ctlapi.EventChildUp, Time: ctltest.T0, Fields: map[string]string{"name": "site-b/net", "spi_in": "c0ffee01"}}
	f.Publish(ev1)
	if got := readEvent(t, br); !reflect.DeepEqual(got, ev1) {
		t.Errorf("event %+v, want %+v", got, ev1)
	}
	// The stream outlives the server's read, write and idle timeouts.
	time.Sleep(3 * timeout)
	ev2 := ctlapi.Event{Type: ctlapi.EventReload, Time: ctltest.T0.Add(time.Second)}
	f.Publish(ev2)
	if got := readEvent(t, br); !reflect.DeepEqual(got, ev2) {
		t.Errorf("event %+v, want %+v", got, ev2)
	}

	// Shutting down ends the stream, and Serve returns promptly.
	cancel()
	if _, err := br.ReadBytes('\n'); err == nil {
		t.Error("stream still open after shutdown")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	f.WaitSubscribers(t, 0)
}

func TestEventStreamClientLeaves(t *testing.T) {
	f := ctltest.NewFake()
	path := ctltest.Serve(t, f)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: ipsecd\r\n\r\n", ctlapi.PathEvents)
	f.WaitSubscribers(t, 1)
	c.Close()
	f.WaitSubscribers(t, 0) // the server noticed and unsubscribed
}

func TestEventStreamBackendEnds(t *testing.T) {
	f := ctltest.NewFake()
	hc := httpClient(ctltest.Serve(t, f))
	hc.Timeout = 0
	resp, err := hc.Get("http://ipsecd" + ctlapi.PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f.WaitSubscribers(t, 1)
	f.End()
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 0 {
		t.Errorf("after the backend ended the stream: %q, %v; want a clean end", b, err)
	}
}

func TestHandler(t *testing.T) {
	// Handler serves the same API on any listener.
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ctlserver.Handler(ctltest.NewFake(), nil)}
	go srv.Serve(ln)
	defer srv.Close()
	code, _, body := call(t, httpClient(ln.Addr().String()), "GET", ctlapi.PathPolicies, "")
	if code != 200 || !bytes.Contains(body, []byte(`"name":"site-b/net"`)) {
		t.Errorf("GET /v1/policies via Handler: %d %s", code, body)
	}
}

func TestListenPathTooLong(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("x", 110))
	if l, err := ctlserver.Listen(path); err == nil {
		l.Close()
		t.Fatal("Listen accepted a path longer than a unix socket allows")
	} else if !strings.Contains(err.Error(), "longer than 107 bytes") {
		t.Errorf("error %q does not say the path is too long", err)
	}
}
