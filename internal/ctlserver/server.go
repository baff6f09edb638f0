// Package ctlserver serves ipsecd's control API (package ctlapi) over HTTP
// and JSON on a unix socket. It owns the transport only: listening, routing,
// method checks, request decoding, JSON encoding and mapping errors to HTTP
// statuses. What the calls do is the daemon's business, behind Backend.
package ctlserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
)

// Backend is what the control API controls: the daemon implements it. Its
// methods are called concurrently, each with the request's context, which
// is cancelled when the client goes away or the call's deadline passes.
// An error that is or wraps a *ctlapi.Error (such as ctlapi.ErrNotFound or
// ctlapi.ErrNotImplemented) answers with its status; any other error answers
// 500.
type Backend interface {
	// Status returns the daemon's status.
	Status(ctx context.Context) (ctlapi.Status, error)
	// SAs returns the IKE and CHILD SAs.
	SAs(ctx context.Context) (ctlapi.SAs, error)
	// Policies returns the SPD in evaluation order.
	Policies(ctx context.Context) (ctlapi.Policies, error)
	// Initiate brings up "conn" or "conn/child". The name has passed
	// ctlapi.SplitName.
	Initiate(ctx context.Context, name string) error
	// Terminate deletes "conn", "conn/child" or a manual SA. The name has
	// passed ctlapi.SplitName.
	Terminate(ctx context.Context, name string) error
	// Rekey rekeys "conn" (the IKE SA) or "conn/child". The name has
	// passed ctlapi.SplitName.
	Rekey(ctx context.Context, name string) error
	// Reload re-reads the configuration file and applies the difference.
	Reload(ctx context.Context) (ctlapi.ReloadResult, error)
	// Explain classifies a packet against the SPD. The request's addresses
	// are valid and of one family, and its Direction is "out" or "in".
	Explain(ctx context.Context, req ctlapi.ExplainRequest) (ctlapi.ExplainResult, error)
	// Peers returns the peers of the connections for many hosts.
	Peers(ctx context.Context) (ctlapi.Peers, error)
	// Subscribe returns a channel of events and a function that ends the
	// subscription (the server calls it exactly once, when the stream ends).
	// The backend closes the channel if it ends the stream itself; it
	// should drop events rather than block when a subscriber is slow. A
	// nil channel is a stream that stays open with no events.
	Subscribe(ctx context.Context) (<-chan ctlapi.Event, func())
}

// Timeouts of the server. A call to the backend gets opTimeout; the write
// timeout covers it, and is lifted for the event stream.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	opTimeout         = 2 * time.Minute
	writeTimeout      = opTimeout + 10*time.Second
	idleTimeout       = 60 * time.Second
	shutdownTimeout   = 5 * time.Second
	eventWriteTimeout = 10 * time.Second
	maxRequestBody    = 64 << 10
	maxHeaderBytes    = 16 << 10
)

// options are the server's knobs; tests shorten the timeouts.
type options struct {
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	opTimeout, shutdownTimeout, eventWriteTimeout             time.Duration
}

var defaultOptions = options{
	readHeaderTimeout: readHeaderTimeout,
	readTimeout:       readTimeout,
	writeTimeout:      writeTimeout,
	idleTimeout:       idleTimeout,
	opTimeout:         opTimeout,
	shutdownTimeout:   shutdownTimeout,
	eventWriteTimeout: eventWriteTimeout,
}

// Serve answers control API calls on l with b until ctx is done, then shuts
// down: it stops accepting, ends event streams, waits up to 5 seconds for
// calls in progress, and closes l (which removes a socket made by Listen).
// It returns nil after a shutdown that ctx asked for, and an error if l
// fails. A nil log discards log records.
func Serve(ctx context.Context, l net.Listener, b Backend, log *slog.Logger) error {
	return serve(ctx, l, b, log, defaultOptions)
}

func serve(ctx context.Context, l net.Listener, b Backend, log *slog.Logger, o options) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{b: b, log: log, done: ctx.Done(), opts: o}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.readHeaderTimeout,
		ReadTimeout:       o.readTimeout,
		WriteTimeout:      o.writeTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ctlserver: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("control API: calls still running at shutdown; cutting them off", "err", err)
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

// Handler returns the control API as an http.Handler, for serving it some
// other way than Serve (tests, a different listener). Event streams end when
// their client goes away or the backend closes them.
func Handler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{b: b, log: log, opts: defaultOptions}
}

type handler struct {
	b    Backend
	log  *slog.Logger
	done <-chan struct{} // closed at shutdown; nil if never
	opts options
}

// route is one endpoint: its method and what serves it.
type route struct {
	method string
	op     string // the operation's name in errors and logs
	serve  func(h *handler, w http.ResponseWriter, r *http.Request) error
}

var routes = map[string]route{
	ctlapi.PathStatus:    {http.MethodGet, "status", (*handler).status},
	ctlapi.PathSAs:       {http.MethodGet, "sas", (*handler).sas},
	ctlapi.PathPolicies:  {http.MethodGet, "policies", (*handler).policies},
	ctlapi.PathInitiate:  {http.MethodPost, "initiate", (*handler).initiate},
	ctlapi.PathTerminate: {http.MethodPost, "terminate", (*handler).terminate},
	ctlapi.PathRekey:     {http.MethodPost, "rekey", (*handler).rekey},
	ctlapi.PathReload:    {http.MethodPost, "reload", (*handler).reload},
	ctlapi.PathExplain:   {http.MethodPost, "explain", (*handler).explain},
	ctlapi.PathEvents:    {http.MethodGet, "events", (*handler).events},
	ctlapi.PathPeers:     {http.MethodGet, "peers", (*handler).peers},
}

// statusWriter remembers the status, for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	rt, ok := routes[r.URL.Path]
	var err error
	switch {
	case !ok:
		err = ctlapi.Errorf(ctlapi.ErrNotFound, "ctlserver: no endpoint %s (this daemon speaks API %s)", r.URL.Path, ctlapi.Version)
	case r.Method != rt.method:
		w.Header().Set("Allow", rt.method)
		err = &ctlapi.Error{
			Status:  http.StatusMethodNotAllowed,
			Code:    ctlapi.CodeMethodNotAllowed,
			Message: fmt.Sprintf("ctlserver: %s wants %s, not %s", r.URL.Path, rt.method, r.Method),
		}
	default:
		err = rt.serve(h, w, r)
		if err != nil {
			err = describe(rt.op, err)
		}
	}
	if err != nil {
		h.writeError(w, err)
	}
	level := slog.LevelDebug
	if w.status >= 500 {
		level = slog.LevelWarn
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", w.status, "duration", time.Since(start)}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	h.log.Log(r.Context(), level, "control API call", attrs...)
}

// describe names the operation in errors that do not say what failed: a bare
// sentinel ("not implemented" becomes "ctlserver: rekey: not implemented by
// this ipsecd") and context errors, which also get their statuses here.
func describe(op string, err error) error {
	var e *ctlapi.Error
	switch {
	case errors.As(err, &e):
		if err != error(e) || !isSentinel(e) {
			return err
		}
		if e == ctlapi.ErrNotImplemented {
			return ctlapi.Errorf(e, "ctlserver: %s: not implemented by this ipsecd", op)
		}
		return ctlapi.Errorf(e, "ctlserver: %s: %s", op, e.Message)
	case errors.Is(err, context.DeadlineExceeded):
		return ctlapi.Errorf(ctlapi.ErrTimeout, "ctlserver: %s: %v", op, err)
	case errors.Is(err, context.Canceled):
		return ctlapi.Errorf(ctlapi.ErrUnavailable, "ctlserver: %s: %v", op, err)
	}
	return err
}

func isSentinel(e *ctlapi.Error) bool {
	switch e {
	case ctlapi.ErrBadRequest, ctlapi.ErrNotFound, ctlapi.ErrConflict, ctlapi.ErrInternal,
		ctlapi.ErrNotImplemented, ctlapi.ErrUnavailable, ctlapi.ErrTimeout:
		return true
	}
	return false
}

// writeError answers with err's status and an ErrorBody.
func (h *handler) writeError(w *statusWriter, err error) {
	if w.status != 0 {
		return // the answer has begun (an event stream); nothing to add
	}
	e := ctlapi.AsError(err)
	writeJSON(w, e.Status, ctlapi.ErrorBody{Error: e.Message, Code: e.Code})
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ctlserver: encoding the answer: %w", err)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
	return nil
}

// opContext bounds a backend call.
func (h *handler) opContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.opts.opTimeout)
}

// decode reads a JSON request body into v. An empty body leaves v alone if
// optional is set.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF) && optional:
			return nil
		case errors.Is(err, io.EOF):
			return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: %s needs a JSON body", r.URL.Path)
		case errors.As(err, &mbe):
			return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: request body is larger than %d bytes", mbe.Limit)
		}
		return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: decoding the request: %v", err)
	}
	if dec.More() {
		return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: request body has data after the JSON value")
	}
	return nil
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.opContext(r)
	defer cancel()
	st, err := h.b.Status(ctx)
	if err != nil {
		return err
	}
	if st.API == "" {
		st.API = ctlapi.Version
	}
	if st.Counters.Drops == nil {
		st.Counters.Drops = map[string]uint64{}
	}
	return writeJSON(w, http.StatusOK, st)
}

func (h *handler) sas(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.opContext(r)
	defer cancel()
	sas, err := h.b.SAs(ctx)
	if err != nil {
		return err
	}
	sas.IKESAs = nonNil(sas.IKESAs)
	sas.ChildSAs = nonNil(sas.ChildSAs)
	for i := range sas.ChildSAs {
		sas.ChildSAs[i].LocalTS = nonNil(sas.ChildSAs[i].LocalTS)
		sas.ChildSAs[i].RemoteTS = nonNil(sas.ChildSAs[i].RemoteTS)
	}
	return writeJSON(w, http.StatusOK, sas)
}

func (h *handler) peers(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.opContext(r)
	defer cancel()
	p, err := h.b.Peers(ctx)
	if err != nil {
		return err
	}
	p.Peers = nonNil(p.Peers)
	return writeJSON(w, http.StatusOK, p)
}

func (h *handler) policies(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.opContext(r)
	defer cancel()
	p, err := h.b.Policies(ctx)
	if err != nil {
		return err
	}
	p.Policies = nonNil(p.Policies)
	for i := range p.Policies {
		normalizePolicy(&p.Policies[i])
	}
	return writeJSON(w, http.StatusOK, p)
}

func normalizePolicy(p *ctlapi.Policy) {
	p.LocalTS = nonNil(p.LocalTS)
	p.RemoteTS = nonNil(p.RemoteTS)
}

func (h *handler) initiate(w http.ResponseWriter, r *http.Request) error {
	return h.named(w, r, "initiate", h.b.Initiate)
}

func (h *handler) terminate(w http.ResponseWriter, r *http.Request) error {
	return h.named(w, r, "terminate", h.b.Terminate)
}

func (h *handler) rekey(w http.ResponseWriter, r *http.Request) error {
	return h.named(w, r, "rekey", h.b.Rekey)
}

// named serves the calls that take a NameRequest.
func (h *handler) named(w http.ResponseWriter, r *http.Request, action string, call func(context.Context, string) error) error {
	var req ctlapi.NameRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if _, _, err := ctlapi.SplitName(req.Name); err != nil {
		return err
	}
	ctx, cancel := h.opContext(r)
	defer cancel()
	if err := call(ctx, req.Name); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ctlapi.ActionResult{Name: req.Name, Action: action})
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) error {
	var empty struct{}
	if err := decode(w, r, &empty, true); err != nil {
		return err
	}
	ctx, cancel := h.opContext(r)
	defer cancel()
	res, err := h.b.Reload(ctx)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (h *handler) explain(w http.ResponseWriter, r *http.Request) error {
	var req ctlapi.ExplainRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	switch {
	case !req.Src.IsValid() || !req.Dst.IsValid():
		return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: explain needs src and dst addresses")
	case req.Src.Unmap().Is4() != req.Dst.Unmap().Is4():
		return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: explain: src %s and dst %s are of different address families", req.Src, req.Dst)
	}
	switch req.Direction {
	case "":
		req.Direction = "out"
	case "out", "in":
	default:
		return ctlapi.Errorf(ctlapi.ErrBadRequest, "ctlserver: explain: direction %q is not \"out\" or \"in\"", req.Direction)
	}
	ctx, cancel := h.opContext(r)
	defer cancel()
	res, err := h.b.Explain(ctx, req)
	if err != nil {
		return err
	}
	if !res.Request.Src.IsValid() {
		res.Request = req
	}
	res.Steps = nonNil(res.Steps)
	if res.Rule != nil {
		normalizePolicy(res.Rule)
	}
	return writeJSON(w, http.StatusOK, res)
}

// events streams events as JSON lines until the client goes away, the
// backend closes the channel or the server shuts down.
func (h *handler) events(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ch, unsubscribe := h.b.Subscribe(ctx)
	if unsubscribe != nil {
		defer unsubscribe()
	}
	rc := http.NewResponseController(w)
	// The stream outlives the server's write timeout: each write gets its
	// own deadline. (net/http lifts the read deadline itself while it waits
	// in the background for the client to close the connection, which
	// cancels ctx.)
	if err := rc.SetWriteDeadline(time.Now().Add(h.opts.eventWriteTimeout)); err != nil {
		return fmt.Errorf("ctlserver: events: %w", err)
	}
	w.Header().Set("Content-Type", ctlapi.ContentTypeEvents)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil // the client is gone
	}
	enc := json.NewEncoder(w)
	for {
		var ev ctlapi.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-h.done:
			return nil
		case ev, ok = <-ch:
			if !ok {
				return nil
			}
		}
		rc.SetWriteDeadline(time.Now().Add(h.opts.eventWriteTimeout))
		if err := enc.Encode(ev); err != nil {
			return nil // the client is gone or too slow
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// nonNil returns s, or an empty slice if s is nil, so that JSON has [] and
// never null where the API promises a list.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
