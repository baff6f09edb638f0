// Package policysource supplies the policy that a host takes from a shared
// store, an etcd cluster (policy_sources.etcd), merged with its own
// configuration file.
//
// Every key under the prefix is one policy document (config.ParseFragment).
// The host selects the documents whose targets match its labels, merges
// them after its local file in key order (config.Merge) and hands the
// result, one complete configuration, to the daemon's reload path, so that
// each change is applied whole or not at all. The prefix is watched and
// read again every resync period; a revision whose documents do not parse,
// do not merge or do not apply is refused, reported, and the last good
// policy stays in force. The documents of the last good policy are kept in
// a cache file, from which a host starts when the cluster cannot be
// reached, and while the cluster is down the policy in force stays.
package policysource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
)

// Document is one key under the prefix and its value.
type Document struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Client is the part of an etcd client that a Source uses; Dial returns
// one over go.etcd.io/etcd/client/v3, and tests use an in-memory double.
// Its methods may be called concurrently.
type Client interface {
	// Get returns every document under prefix in key order and the
	// store's revision they were read at.
	Get(ctx context.Context, prefix string) ([]Document, int64, error)
	// Watch reports changes under prefix from revision rev on: it sends a
	// nil error on each change (several may be reported as one), and an
	// error, then closes the channel, when the watch ends; it closes the
	// channel when ctx ends.
	Watch(ctx context.Context, prefix string, rev int64) <-chan error
	// Close releases the client's connections.
	Close() error
}

// Options configure a Source.
type Options struct {
	// Etcd is the source's configuration (policy_sources.etcd).
	Etcd config.EtcdSource
	// Client reads the documents.
	Client Client
	// Logger receives the source's logs; nil means slog.Default().
	// Documents are logged by key only.
	Logger *slog.Logger
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// maxDocuments and maxDocumentSize bound what one revision may hold.
const (
	maxDocuments    = 1000
	maxDocumentSize = 1 << 20
)

// Source holds the last good documents of a shared policy source and
// merges them with the local configuration. Its methods are safe for
// concurrent use; Apply and the applications of Run never interleave.
type Source struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex // held while applying, so applications stay in order
	local *config.Config
	docs  []Document // of the policy in force
	rev   int64
	bad   []Document // of the last refused revision, not refused again
	st    ctlapi.PolicySource
}

// New returns a Source that reads through opts.Client.
func New(opts Options) *Source {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Source{opts: opts, log: opts.Logger.With("source", "etcd")}
	s.st = ctlapi.PolicySource{Kind: "etcd", Endpoints: slices.Clone(opts.Etcd.Endpoints), Prefix: opts.Etcd.Prefix, Documents: []string{}}
	return s
}

// Load reads the documents at start, before anything is applied, and
// checks them against local, the local file's configuration. When the
// cluster cannot be reached within the dial and request timeouts, or its
// documents are refused, it falls back on the cache file; without a usable
// cache the local file alone is in force until Run reads the cluster.
// Load returns the error that made it fall back, or nil.
func (s *Source) Load(ctx context.Context, local *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	docs, rev, err := s.get(ctx, s.opts.Etcd.DialTimeout+s.opts.Etcd.RequestTimeout)
	if err == nil {
		s.st.Connected = true
		if _, _, err = s.build(local, docs); err == nil {
			s.docs, s.rev = docs, rev
			s.saveCache()
			return nil
		}
		s.bad = docs
		s.st.Refused++
	}
	s.failed(err)
	c, cerr := readCache(s.opts.Etcd.Cache, s.opts.Etcd.Prefix)
	if cerr == nil {
		if _, _, cerr = s.build(local, c.Documents); cerr == nil {
			s.docs, s.rev, s.st.FromCache = c.Documents, c.Revision, true
			s.log.Warn("policy source unavailable; starting from the cached policy", "err", err, "cache", s.opts.Etcd.Cache, "revision", c.Revision)
			return err
		}
	}
	s.log.Error("policy source unavailable and no usable cache; the local file alone is in force until the source answers",
		"err", err, "cache", s.opts.Etcd.Cache, "cache_err", cerr)
	return err
}

// Apply merges local, the local file's configuration, with the documents
// of the policy in force and calls apply with the result. The daemon calls
// it at start and on every reload of the local file. Errors of the merge
// are config errors; errors of apply are returned as they are.
func (s *Source) Apply(local *config.Config, apply func(*config.Config) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	merged, keys, err := s.build(local, s.docs)
	if err != nil {
		return err
	}
	if err := apply(merged); err != nil {
		return err
	}
	if s.local != nil && !reflect.DeepEqual(local.PolicySources, s.local.PolicySources) {
		s.log.Warn("policy_sources changed in the local file; it is read at start only: restart ipsecd to use the new settings")
	}
	s.local = local
	s.st.Documents = keys
	if s.st.Applied.IsZero() {
		s.st.Applied = s.opts.Now()
	}
	return nil
}

// Run follows the source until ctx ends: it reads every document, watches
// the prefix, reads everything again on each change and every resync
// period, and reconnects after errors. Each new set of documents is merged
// with the local configuration of the last Apply and passed to apply;
// refused is called with the error of each revision refused. Run must
// start after the first Apply.
func (s *Source) Run(ctx context.Context, apply func(*config.Config) error, refused func(error)) {
	const minBackoff, maxBackoff = 250 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		docs, rev, err := s.get(ctx, s.opts.Etcd.RequestTimeout)
		if err != nil {
			s.mu.Lock()
			s.failed(err)
			s.mu.Unlock()
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		s.update(docs, rev, apply, refused)
		s.watch(ctx, rev, apply, refused)
	}
}

// watch applies the changes under the prefix after revision rev until the
// watch fails or a resync is due.
func (s *Source) watch(ctx context.Context, rev int64, apply func(*config.Config) error, refused func(error)) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := s.opts.Client.Watch(wctx, s.opts.Etcd.Prefix, rev+1)
	resync := time.NewTimer(s.opts.Etcd.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			return
		case err, ok := <-changes:
			if !ok {
				return
			}
			if err != nil {
				s.mu.Lock()
				s.failed(fmt.Errorf("policysource: watch: %w", err))
				s.mu.Unlock()
				return
			}
			docs, rev, err := s.get(ctx, s.opts.Etcd.RequestTimeout)
			if err != nil {
				s.mu.Lock()
				s.failed(err)
				s.mu.Unlock()
				return
			}
			s.update(docs, rev, apply, refused)
		}
	}
}

// update applies docs, read at revision rev, unless they are those in
// force or those last refused.
func (s *Source) update(docs []Document, rev int64, apply func(*config.Config) error, refused func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Connected = true
	if s.local == nil {
		return // Run before the first Apply: nothing to merge with
	}
	if sameDocs(docs, s.docs) {
		if s.st.FromCache || s.rev != rev {
			// Confirmed by the source: the cache is current again.
			s.st.FromCache = false
			s.rev, s.st.Revision = rev, rev
			s.saveCache()
		}
		s.bad = nil // a refused revision, if any, is gone
		s.clearError()
		return
	}
	if s.bad != nil && sameDocs(docs, s.bad) {
		return // refused already; the error stays in the status
	}
	merged, keys, err := s.build(s.local, docs)
	if err == nil {
		err = apply(merged)
	}
	if err != nil {
		s.bad = docs
		s.st.Refused++
		s.failed(err)
		s.log.Error("policy refused; the last good policy stays in force", "revision", rev, "in_force", s.rev, "err", err)
		if refused != nil {
			refused(err)
		}
		return
	}
	s.docs, s.rev, s.bad = docs, rev, nil
	s.st.Updates++
	s.st.Revision, s.st.Documents, s.st.Applied, s.st.FromCache = rev, keys, s.opts.Now(), false
	s.clearError()
	s.saveCache()
	s.log.Info("policy applied", "revision", rev, "documents", keys)
}

// build parses docs for this host and merges the selected ones after
// local. It returns the merged configuration and the keys of the selected
// documents.
func (s *Source) build(local *config.Config, docs []Document) (*config.Config, []string, error) {
	if len(docs) > maxDocuments {
		return nil, nil, fmt.Errorf("policysource: %d documents under %s, more than %d", len(docs), s.opts.Etcd.Prefix, maxDocuments)
	}
	dir := filepath.Dir(local.File)
	var (
		frags []*config.Fragment
		keys  = []string{}
		errs  []error
	)
	for _, d := range docs {
		name := "etcd:" + d.Key
		if len(d.Value) > maxDocumentSize {
			errs = append(errs, &config.Error{File: name, Key: "(document)", Reason: fmt.Sprintf("larger than %d bytes", maxDocumentSize)})
			continue
		}
		f, err := config.ParseFragment(name, dir, []byte(d.Value), s.opts.Etcd.Labels)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f.Selected {
			frags = append(frags, f)
			keys = append(keys, d.Key)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	merged, err := config.Merge(local, frags)
	if err != nil {
		return nil, nil, err
	}
	return merged, keys, nil
}

// get reads every document, within timeout.
func (s *Source) get(ctx context.Context, timeout time.Duration) ([]Document, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	docs, rev, err := s.opts.Client.Get(ctx, s.opts.Etcd.Prefix)
	if err != nil {
		return nil, 0, fmt.Errorf("policysource: reading %s: %w", s.opts.Etcd.Prefix, err)
	}
	return docs, rev, nil
}

// failed records err in the status. The caller holds mu.
func (s *Source) failed(err error) {
	if err == nil {
		return
	}
	var cfgErr *config.Error
	if !errors.As(err, &cfgErr) {
		s.st.Connected = false // not a document's fault: the source's
	}
	if s.st.LastError != err.Error() {
		s.log.Warn("policy source error", "err", err)
	}
	s.st.LastError, s.st.LastErrorTime = err.Error(), s.opts.Now()
}

// clearError forgets the last error of the source, which is answering
// again. A refused revision's error stays until a good one is applied.
func (s *Source) clearError() {
	if s.bad == nil {
		s.st.LastError, s.st.LastErrorTime = "", time.Time{}
	}
}

// saveCache writes the documents in force to the cache file. The caller
// holds mu.
func (s *Source) saveCache() {
	err := writeCache(s.opts.Etcd.Cache, cache{Prefix: s.opts.Etcd.Prefix, Revision: s.rev, Documents: s.docs})
	if err != nil {
		s.log.Error("cannot save the policy cache; a restart without the source would start without this policy", "cache", s.opts.Etcd.Cache, "err", err)
	}
}

// Status reports the source's state.
func (s *Source) Status() ctlapi.PolicySource {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Revision = s.rev
	st.Endpoints = slices.Clone(st.Endpoints)
	st.Documents = slices.Clone(st.Documents)
	return st
}

func sameDocs(a, b []Document) bool {
	return slices.EqualFunc(a, b, func(x, y Document) bool { return x.Key == y.Key && x.Value == y.Value })
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
