package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrPending is wrapped by the error of a Reconfig (or Reload) whose
// configuration is in force in the data plane and IKE, but whose routes or
// firewall rules could not be installed yet: the daemon retries them in the
// background until they succeed or a newer configuration supersedes them.
var ErrPending = errors.New("daemon: applied, except what is being retried in the background")

// pendingError is the error of an install that is being retried.
type pendingError struct {
	what string
	err  error
}

func (e *pendingError) Error() string {
	return "daemon: " + e.what + " not applied yet, retrying in the background: " + e.err.Error()
}

func (e *pendingError) Unwrap() error { return e.err }

// Is makes errors.Is(err, ErrPending) true.
func (e *pendingError) Is(target error) bool { return target == ErrPending }

// Retry delays: the first retry after retryMin, then doubling up to retryMax.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// retrier installs one kind of host state (routes, firewall rules) and,
// when that fails, tries again in the background with backoff. A newer set
// supersedes a pending retry; sets and retries never run concurrently, so
// an old value is never installed after a newer one.
type retrier struct {
	name     string // what it installs, for logs and Pending
	log      *slog.Logger
	min, max time.Duration // backoff; tests shorten it

	setMu sync.Mutex // serializes the calls to the install function
	mu    sync.Mutex // guards the fields below
	gen   uint64     // incremented by every set: retries of older ones stop
	stop  chan struct{}
	tries int   // failed attempts of the pending value; 0: none pending
	err   error // the last failure of the pending value
}

func newRetrier(name string, log *slog.Logger) *retrier {
	return &retrier{name: name, log: log, min: retryMin, max: retryMax}
}

// set calls install now. If it fails, set returns the error and keeps
// calling install in the background until it succeeds, set is called
// again, or close.
func (r *retrier) set(install func() error) error {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	r.mu.Lock()
	r.gen++
	gen := r.gen
	if r.stop != nil {
		close(r.stop)
		r.stop = nil
	}
	r.tries, r.err = 0, nil
	r.mu.Unlock()

	err := install()
	if err == nil {
		return nil
	}
	r.mu.Lock()
	r.tries, r.err = 1, err
	stop := make(chan struct{})
	r.stop = stop
	r.mu.Unlock()
	r.log.Warn("daemon: "+r.name+" not applied; retrying in the background", "attempt", 1, "retry_in", r.min.String(), "err", err)
	go r.retry(gen, stop, install)
	return err
}

func (r *retrier) retry(gen uint64, stop <-chan struct{}, install func() error) {
	delay := r.min
	for {
		t := time.NewTimer(delay)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, r.max)
		if r.attempt(gen, install, delay) {
			return
		}
	}
}

// attempt runs one retry of generation gen and reports whether retrying is
// over: it succeeded, or a newer set superseded it.
func (r *retrier) attempt(gen uint64, install func() error, next time.Duration) bool {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	r.mu.Lock()
	current := r.gen == gen && r.stop != nil
	r.mu.Unlock()
	if !current {
		return true
	}
	err := install()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if err == nil {
		r.log.Info("daemon: "+r.name+" applied after retrying", "attempts", r.tries)
		r.tries, r.err = 0, nil
		if r.gen == gen && r.stop != nil { // close may have run meanwhile
			close(r.stop)
			r.stop = nil
		}
		return true
	}
	r.err = err
	r.log.Warn("daemon: "+r.name+" not applied; retrying in the background", "attempt", r.tries, "retry_in", next.String(), "err", err)
	return false
}

// pending describes the value being retried, or returns "" if none is.
func (r *retrier) pending() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tries == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d failed attempts, last: %v", r.name, r.tries, r.err)
}

// close stops retrying.
func (r *retrier) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	if r.stop != nil {
		close(r.stop)
		r.stop = nil
	}
}

// Pending lists the host state (routes, firewall rules) that a reload could
// not install and that the daemon is still retrying, one line each, with
// the number of failed attempts and the last error; empty when everything
// is in force.
func (d *Daemon) Pending() []string {
	var out []string
	for _, r := range []*retrier{d.routes, d.filter} {
		if p := r.pending(); p != "" {
			out = append(out, p)
		}
	}
	return out
}
