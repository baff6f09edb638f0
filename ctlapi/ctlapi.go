// Package ctlapi defines the control API of ipsecd: the paths, the JSON wire
// types and the errors that travel over the daemon's unix socket. The JSON
// field names documented here are a stable promise to users and scripts
// (`ipsecctl ... --json` prints them); fields may be added, never renamed or
// removed within a version, and clients must ignore fields they do not know.
//
// The transport is HTTP/1.1 with JSON bodies on a unix socket, by default
// [DefaultSocket], mode 0600. Every path starts with the API version:
//
//	GET  /v1/status     -> Status
//	GET  /v1/sas        -> SAs
//	GET  /v1/policies   -> Policies
//	POST /v1/initiate   NameRequest -> ActionResult
//	POST /v1/terminate  NameRequest -> ActionResult
//	POST /v1/rekey      NameRequest -> ActionResult
//	POST /v1/reload     (empty body or {}) -> ReloadResult
//	POST /v1/explain    ExplainRequest -> ExplainResult
//	GET  /v1/peers      -> Peers
//	GET  /v1/events     -> a stream of Event, one JSON object per line
//
// A successful call answers 200 with the result type as its body. A failed
// call answers with an HTTP status from 400 to 599 and an [ErrorBody]; see
// [Error] for the statuses and codes. The package imports only the standard
// library so that any Go program can speak the protocol.
package ctlapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Version is the API version, the first element of every path.
const Version = "v1"

// DefaultSocket is where ipsecd listens unless its configuration
// (daemon.socket) or the client (ipsecctl -s) says otherwise.
const DefaultSocket = "/run/goipsec/ipsecd.sock"

// Paths of the endpoints, relative to the root of the socket's HTTP server.
const (
	PathStatus    = "/" + Version + "/status"
	PathSAs       = "/" + Version + "/sas"
	PathPolicies  = "/" + Version + "/policies"
	PathInitiate  = "/" + Version + "/initiate"
	PathTerminate = "/" + Version + "/terminate"
	PathRekey     = "/" + Version + "/rekey"
	PathReload    = "/" + Version + "/reload"
	PathExplain   = "/" + Version + "/explain"
	PathEvents    = "/" + Version + "/events"
	PathPeers     = "/" + Version + "/peers"
)

// ContentTypeEvents is the media type of the /v1/events stream: JSON objects
// separated by newlines.
const ContentTypeEvents = "application/x-ndjson"

// ErrorBody is the JSON body of every failed call.
type ErrorBody struct {
	// Error is a one-line, human-readable reason, e.g.
	// "daemon: connection \"site-b\": not found".
	Error string `json:"error"`
	// Code is a machine-readable class of the error, one of the Code*
	// constants; it matches the HTTP status. Clients branch on Code (or the
	// status), never on the text of Error.
	Code string `json:"code,omitempty"`
}

// Error codes carried in [ErrorBody.Code], each with its HTTP status.
const (
	CodeBadRequest       = "bad_request"        // 400: malformed JSON, a missing or invalid field
	CodeNotFound         = "not_found"          // 404: no such connection, child, SA or endpoint
	CodeMethodNotAllowed = "method_not_allowed" // 405: e.g. GET on a POST endpoint
	CodeConflict         = "conflict"           // 409: the operation clashes with the current state
	CodeInternal         = "internal"           // 500: a bug or an unexpected failure in the daemon
	CodeNotImplemented   = "not_implemented"    // 501: this daemon does not implement the operation yet
	CodeUnavailable      = "unavailable"        // 503: the daemon is starting or stopping
	CodeTimeout          = "timeout"            // 504: the operation did not finish in time
)

// Error is an error with an HTTP status. A backend returns (or wraps with %w)
// one of the Err* values, or an *Error of its own, to choose the status the
// server answers with; any other error answers 500. The client returns an
// *Error for every failed call, so callers can test it with errors.Is against
// the Err* values (Is compares codes) or errors.As to read the status.
type Error struct {
	Status  int    // HTTP status, 400 to 599
	Code    string // one of the Code* constants
	Message string // one-line reason
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ctlapi.ErrNotFound) holds for an error decoded by a client.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errors for the common statuses. Their messages are short because they are
// meant to be wrapped, like fs.ErrNotExist, or used as the base of [Errorf]:
//
//	fmt.Errorf("daemon: connection %q: %w", name, ctlapi.ErrNotFound)
//	ctlapi.Errorf(ctlapi.ErrNotFound, "daemon: no connection %q", name)
var (
	ErrBadRequest     = &Error{http.StatusBadRequest, CodeBadRequest, "bad request"}
	ErrNotFound       = &Error{http.StatusNotFound, CodeNotFound, "not found"}
	ErrConflict       = &Error{http.StatusConflict, CodeConflict, "conflict"}
	ErrInternal       = &Error{http.StatusInternalServerError, CodeInternal, "internal error"}
	ErrNotImplemented = &Error{http.StatusNotImplemented, CodeNotImplemented, "not implemented"}
	ErrUnavailable    = &Error{http.StatusServiceUnavailable, CodeUnavailable, "unavailable"}
	ErrTimeout        = &Error{http.StatusGatewayTimeout, CodeTimeout, "timed out"}
)

// Errorf returns an error with the status and code of base and a formatted
// message; errors.Is(err, base) holds for it.
func Errorf(base *Error, format string, args ...any) *Error {
	return &Error{Status: base.Status, Code: base.Code, Message: fmt.Sprintf(format, args...)}
}

// CodeFor returns the error code that goes with an HTTP status, for errors
// that did not carry one (e.g. from a proxy or an older server).
func CodeFor(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return CodeBadRequest
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusNotImplemented:
		return CodeNotImplemented
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	case http.StatusGatewayTimeout:
		return CodeTimeout
	}
	return CodeInternal
}

// MaxNameLen is the longest name accepted by [SplitName].
const MaxNameLen = 255

// SplitName splits the name of an initiate, terminate or rekey request into
// the connection and the child. "conn" names a whole connection (child is
// empty); "conn/child" names one CHILD SA of it; a manual SA is named by its
// name alone. Names are 1 to MaxNameLen bytes of printable UTF-8 without
// spaces; each part is non-empty and there is at most one slash. The error
// is an *Error with the status of ErrBadRequest.
func SplitName(name string) (conn, child string, err error) {
	if name == "" {
		return "", "", Errorf(ErrBadRequest, "ctlapi: name is empty")
	}
	if len(name) > MaxNameLen {
		return "", "", Errorf(ErrBadRequest, "ctlapi: name is longer than %d bytes", MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return "", "", Errorf(ErrBadRequest, "ctlapi: name %q is not UTF-8", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return "", "", Errorf(ErrBadRequest, "ctlapi: name %q contains a space or control character", name)
		}
	}
	conn, child, slash := strings.Cut(name, "/")
	switch {
	case conn == "":
		return "", "", Errorf(ErrBadRequest, "ctlapi: name %q has no connection part", name)
	case slash && child == "":
		return "", "", Errorf(ErrBadRequest, "ctlapi: name %q has an empty child part", name)
	case strings.Contains(child, "/"):
		return "", "", Errorf(ErrBadRequest, "ctlapi: name %q has more than one slash", name)
	}
	return conn, child, nil
}

// AsError returns err as an *Error: itself if it is (or wraps) one, with the
// message of the whole chain; otherwise an internal error with err's message.
// A nil err returns nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Status: e.Status, Code: e.Code, Message: err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}
