// Package client is the typed Go client of ipsecd's control API (package
// ctlapi): HTTP+JSON over the daemon's unix socket. ipsecctl is built on it,
// and so can any other program that manages the daemon.
//
// A Client is safe for concurrent use. Every method takes a context that
// bounds the call; Events runs until its context is done.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
)

// DefaultSocket is the socket that New uses when given an empty path, and
// the one ipsecd listens on by default.
const DefaultSocket = ctlapi.DefaultSocket

// maxBody bounds a response body, so a misbehaving server cannot make the
// client buffer without limit.
const maxBody = 64 << 20

// maxEventLine bounds one line of the event stream.
const maxEventLine = 1 << 20

// dialTimeout bounds connecting to the socket; a live daemon accepts at once.
const dialTimeout = 5 * time.Second

// ErrStreamEnded is returned by Events when the daemon closes the event
// stream (it is stopping).
var ErrStreamEnded = errors.New("client: ipsecd ended the event stream")

// UnreachableError is returned when nothing answers on the socket: the daemon
// is not running, the path is wrong, or the caller may not open the socket.
type UnreachableError struct {
	Socket string // the socket path
	Err    error  // the cause, e.g. "connect: no such file or directory"
}

// Error implements error.
func (e *UnreachableError) Error() string {
	return "client: cannot reach ipsecd at " + e.Socket + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to one ipsecd. The zero value is not usable; call New.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a client of the daemon listening on socketPath, or on
// DefaultSocket if socketPath is empty. It does not connect until a method
// is called.
func New(socketPath string) *Client {
	if socketPath == "" {
		socketPath = DefaultSocket
	}
	c := &Client{socket: socketPath}
	tr := &http.Transport{
		DialContext:        c.dial,
		MaxIdleConns:       2,
		IdleConnTimeout:    30 * time.Second,
		DisableCompression: true,
	}
	c.hc = &http.Client{Transport: tr}
	return c
}

// Socket returns the socket path the client uses.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections. The client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// Report the system call's error ("connect: connection refused")
		// rather than net's, which repeats the path.
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = se
		}
		return nil, &UnreachableError{Socket: c.socket, Err: err}
	}
	return conn, nil
}

// Status returns the daemon's status (GET /v1/status).
func (c *Client) Status(ctx context.Context) (ctlapi.Status, error) {
	var st ctlapi.Status
	err := c.call(ctx, http.MethodGet, ctlapi.PathStatus, nil, &st)
	return st, err
}

// SAs returns the IKE and CHILD SAs (GET /v1/sas).
func (c *Client) SAs(ctx context.Context) (ctlapi.SAs, error) {
	var sas ctlapi.SAs
	err := c.call(ctx, http.MethodGet, ctlapi.PathSAs, nil, &sas)
	return sas, err
}

// Policies returns the SPD in evaluation order (GET /v1/policies).
func (c *Client) Policies(ctx context.Context) (ctlapi.Policies, error) {
	var p ctlapi.Policies
	err := c.call(ctx, http.MethodGet, ctlapi.PathPolicies, nil, &p)
	return p, err
}

// Peers returns the peers of the connections for many hosts (GET
// /v1/peers).
func (c *Client) Peers(ctx context.Context) (ctlapi.Peers, error) {
	var p ctlapi.Peers
	err := c.call(ctx, http.MethodGet, ctlapi.PathPeers, nil, &p)
	return p, err
}

// Initiate brings up a connection ("conn") or one of its children
// ("conn/child") (POST /v1/initiate).
func (c *Client) Initiate(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, ctlapi.PathInitiate, ctlapi.NameRequest{Name: name}, nil)
}

// Terminate deletes a connection's IKE SA and children ("conn"), one CHILD SA
// ("conn/child") or a manual SA (POST /v1/terminate).
func (c *Client) Terminate(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, ctlapi.PathTerminate, ctlapi.NameRequest{Name: name}, nil)
}

// Rekey rekeys a connection's IKE SA ("conn") or one CHILD SA ("conn/child")
// (POST /v1/rekey).
func (c *Client) Rekey(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, ctlapi.PathRekey, ctlapi.NameRequest{Name: name}, nil)
}

// Reload makes the daemon re-read its configuration file and apply the
// difference (POST /v1/reload).
func (c *Client) Reload(ctx context.Context) (ctlapi.ReloadResult, error) {
	var r ctlapi.ReloadResult
	err := c.call(ctx, http.MethodPost, ctlapi.PathReload, struct{}{}, &r)
	return r, err
}

// Explain asks which SPD rule a packet would hit, and why (POST /v1/explain).
func (c *Client) Explain(ctx context.Context, req ctlapi.ExplainRequest) (ctlapi.ExplainResult, error) {
	var r ctlapi.ExplainResult
	err := c.call(ctx, http.MethodPost, ctlapi.PathExplain, req, &r)
	return r, err
}

// Events calls fn with each event of the daemon's event stream (GET
// /v1/events), in order, until ctx is done (it returns ctx's error), fn
// returns an error (it returns that error), or the daemon ends the stream (it
// returns ErrStreamEnded). Lines it cannot decode end the stream with an
// error; events of unknown types are passed to fn.
func (c *Client) Events(ctx context.Context, fn func(ctlapi.Event) error) error {
	resp, err := c.do(ctx, http.MethodGet, ctlapi.PathEvents, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue // keepalive
		}
		var ev ctlapi.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("client: decoding event: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("client: reading events: %w", err)
	}
	return ErrStreamEnded
}

// call sends a request with in as its JSON body (none if in is nil), and
// decodes a successful response into out (discarded if out is nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxBody)
	if out == nil {
		_, err := io.Copy(io.Discard, body)
		return err
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("client: decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}

// do sends a request and returns the response if its status is 2xx, or an
// error: *UnreachableError if the socket does not answer, *ctlapi.Error if
// the daemon answered with an error status.
func (c *Client) do(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("client: encoding %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://ipsecd"+path, body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return nil, ue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("client: %s %s: %w", method, path, unwrapURL(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

// decodeError turns an error response into a *ctlapi.Error.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ctlapi.ErrorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		// Not our server, or not our format: say what came back.
		msg := strings.TrimSpace(string(b))
		if msg == "" || len(msg) > 200 || strings.ContainsAny(msg, "\n\r") {
			msg = http.StatusText(resp.StatusCode)
		}
		eb.Error = fmt.Sprintf("client: ipsecd answered %d: %s", resp.StatusCode, msg)
	}
	if eb.Code == "" {
		eb.Code = ctlapi.CodeFor(resp.StatusCode)
	}
	return &ctlapi.Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
}

// unwrapURL drops the *url.Error layer, whose text repeats the placeholder
// URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
