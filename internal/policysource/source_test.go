package policysource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
)

// memClient is an in-memory etcd: documents by key, a revision bumped on
// every change, watchers told of each change, and a switch that makes
// every call fail as an unreachable cluster does.
type memClient struct {
	mu       sync.Mutex
	docs     map[string]string
	rev      int64
	down     bool
	watchers []chan error
}

func newMem() *memClient { return &memClient{docs: map[string]string{}, rev: 1} }

func (m *memClient) put(key, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs[key] = value
	m.changed()
}

func (m *memClient) del(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.docs, key)
	m.changed()
}

func (m *memClient) changed() {
	m.rev++
	for _, w := range m.watchers {
		select {
		case w <- nil:
		default:
		}
	}
}

func (m *memClient) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
	if down {
		for _, w := range m.watchers {
			select {
			case w <- errors.New("connection refused"):
			default:
			}
		}
	}
}

func (m *memClient) Get(ctx context.Context, prefix string) ([]Document, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, 0, errors.New("context deadline exceeded")
	}
	var out []Document
	for k, v := range m.docs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Document{k, v})
		}
	}
	slices.SortFunc(out, func(a, b Document) int { return strings.Compare(a.Key, b.Key) })
	return out, m.rev, nil
}

func (m *memClient) Watch(ctx context.Context, prefix string, rev int64) <-chan error {
	ch := make(chan error, 1)
	m.mu.Lock()
	m.watchers = append(m.watchers, ch)
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		defer m.mu.Unlock()
		m.watchers = slices.DeleteFunc(m.watchers, func(c chan error) bool { return c == ch })
		close(ch)
	}()
	return ch
}

func (m *memClient) Close() error { return nil }

// rig is a Source over a memClient with a local file, recording what it
// applies and refuses.
type rig struct {
	t       *testing.T
	mem     *memClient
	src     *Source
	local   *config.Config
	applied chan *config.Config
	refused chan error
	cancel  context.CancelFunc
	done    chan struct{}
}

const prefix = "/goipsec/policy/"

func newRig(t *testing.T, mem *memClient, dir string, labels map[string]string) *rig {
	t.Helper()
	local, err := config.Parse(filepath.Join(dir, "goipsec.yaml"), []byte(
		"policies:\n  - {name: local, remote_ts: [10.1.0.0/16], action: bypass}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := config.EtcdSource{Endpoints: []string{"http://mem"}, Prefix: prefix, Labels: labels,
		DialTimeout: time.Second, RequestTimeout: time.Second, Resync: 200 * time.Millisecond,
		Cache: filepath.Join(dir, "state", "etcd-policy.json")}
	return &rig{t: t, mem: mem, src: New(Options{Etcd: e, Client: mem}), local: local,
		applied: make(chan *config.Config, 16), refused: make(chan error, 16)}
}

// start loads, applies once and runs the source; it returns the load error
// and the first configuration applied.
func (r *rig) start() (error, *config.Config) {
	r.t.Helper()
	lerr := r.src.Load(context.Background(), r.local)
	var first *config.Config
	if err := r.src.Apply(r.local, func(c *config.Config) error { first = c; return nil }); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.src.Run(ctx, func(c *config.Config) error { r.applied <- c; return nil }, func(err error) { r.refused <- err })
	}()
	r.t.Cleanup(r.stop)
	return lerr, first
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *rig) nextApplied() *config.Config {
	r.t.Helper()
	select {
	case c := <-r.applied:
		return c
	case err := <-r.refused:
		r.t.Fatalf("refused: %v", err)
	case <-time.After(5 * time.Second):
		r.t.Fatal("nothing applied within 5 s")
	}
	return nil
}

func (r *rig) nextRefused() error {
	r.t.Helper()
	select {
	case c := <-r.applied:
		r.t.Fatalf("applied %v, want a refusal", policyNames(c))
	case err := <-r.refused:
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("nothing refused within 5 s")
	}
	return nil
}

func policyNames(c *config.Config) []string {
	var out []string
	for _, p := range c.Policies {
		out = append(out, p.Name)
	}
	return out
}

func policyDoc(name, extra string) string {
	return extra + "policies:\n  - {name: " + name + ", remote_ts: [10.9.0.0/16], action: discard}\n"
}

// TestSourceAppliesChanges: a document put under the prefix reaches the
// apply callback merged after the local file, and so does its removal.
func TestSourceAppliesChanges(t *testing.T) {
	mem := newMem()
	mem.put(prefix+"10-base", policyDoc("base", ""))
	r := newRig(t, mem, t.TempDir(), nil)
	if err, first := r.start(); err != nil || !slices.Equal(policyNames(first), []string{"local", "base"}) {
		t.Fatalf("start: %v, policies %v", err, policyNames(first))
	}
	mem.put(prefix+"20-more", policyDoc("more", ""))
	if got := policyNames(r.nextApplied()); !slices.Equal(got, []string{"local", "base", "more"}) {
		t.Errorf("after put: %v", got)
	}
	mem.del(prefix + "10-base")
	if got := policyNames(r.nextApplied()); !slices.Equal(got, []string{"local", "more"}) {
		t.Errorf("after delete: %v", got)
	}
	st := r.src.Status()
	if !st.Connected || st.Updates != 2 || st.Revision != mem.rev || !slices.Equal(st.Documents, []string{prefix + "20-more"}) || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
}

// TestSourceLabelsSelect: only the documents whose targets match the
// host's labels are merged.
func TestSourceLabelsSelect(t *testing.T) {
	mem := newMem()
	mem.put(prefix+"a", policyDoc("for-web", "targets: [{role: web}]\n"))
	mem.put(prefix+"b", policyDoc("for-db", "targets: [{role: db}]\n"))
	mem.put(prefix+"c", policyDoc("for-all", ""))
	r := newRig(t, mem, t.TempDir(), map[string]string{"role": "web"})
	_, first := r.start()
	if got := policyNames(first); !slices.Equal(got, []string{"local", "for-web", "for-all"}) {
		t.Errorf("web host took %v", got)
	}
}

// TestSourceRefusesBadDocument: a malformed document, and one with an
// inline secret, are refused and reported (callback, status, counter)
// while the last good policy stays; a good revision then applies.
func TestSourceRefusesBadDocument(t *testing.T) {
	mem := newMem()
	mem.put(prefix+"10-base", policyDoc("base", ""))
	r := newRig(t, mem, t.TempDir(), nil)
	r.start()
	mem.put(prefix+"20-bad", "policies:\n  - {name: bad, action: sometimes}\n")
	err := r.nextRefused()
	if !strings.Contains(err.Error(), "etcd:"+prefix+"20-bad:2: policies[0].action") {
		t.Errorf("refusal: %v", err)
	}
	st := r.src.Status()
	if st.Refused != 1 || !strings.Contains(st.LastError, "20-bad") || !slices.Equal(st.Documents, []string{prefix + "10-base"}) {
		t.Errorf("status after refusal %+v", st)
	}
	// The same bad revision is not refused again at the next resync.
	time.Sleep(3 * r.src.opts.Etcd.Resync)
	if st := r.src.Status(); st.Refused != 1 {
		t.Errorf("refused %d times", st.Refused)
	}
	mem.put(prefix+"20-bad", "secrets:\n  ike:\n    - {ids: [a, b], secret: topsecretvalue}\n")
	err = r.nextRefused()
	if !strings.Contains(err.Error(), "secrets never travel in policy documents") || strings.Contains(err.Error(), "topsecretvalue") {
		t.Errorf("inline secret: %v", err)
	}
	mem.put(prefix+"20-bad", policyDoc("fixed", ""))
	if got := policyNames(r.nextApplied()); !slices.Equal(got, []string{"local", "base", "fixed"}) {
		t.Errorf("after the fix: %v", got)
	}
	if st := r.src.Status(); st.LastError != "" || st.Refused != 2 {
		t.Errorf("status after the fix %+v", st)
	}
}

// TestSourceRefusedByApply: a revision that parses but that the daemon
// cannot apply is refused too, and the last good one stays.
func TestSourceRefusedByApply(t *testing.T) {
	mem := newMem()
	r := newRig(t, mem, t.TempDir(), nil)
	r.start()
	r.cancel()
	<-r.done
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refused := make(chan error, 1)
	go r.src.Run(ctx, func(*config.Config) error { return errors.New("daemon: no") }, func(err error) { refused <- err })
	mem.put(prefix+"x", policyDoc("x", ""))
	select {
	case err := <-refused:
		if err.Error() != "daemon: no" {
			t.Errorf("refused: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not refused")
	}
	if st := r.src.Status(); len(st.Documents) != 0 || st.Refused != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestSourceCacheAndOutage: while the cluster is down the policy in force
// stays and the status says so; a host started while it is down starts
// from the cache (mode 0600) with the last good documents; once the
// cluster answers again its changes apply.
func TestSourceCacheAndOutage(t *testing.T) {
	dir := t.TempDir()
	mem := newMem()
	mem.put(prefix+"10-base", policyDoc("base", ""))
	r := newRig(t, mem, dir, nil)
	r.start()
	mem.setDown(true)
	deadline := time.Now().Add(5 * time.Second)
	for r.src.Status().Connected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.src.Status(); st.Connected || st.LastError == "" || !slices.Equal(st.Documents, []string{prefix + "10-base"}) {
		t.Errorf("status while down %+v", st)
	}
	r.stop()
	fi, err := os.Stat(r.src.opts.Etcd.Cache)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache: %v %v", fi, err)
	}

	// A restart while the cluster is down starts from the cache.
	r2 := newRig(t, mem, dir, nil)
	lerr, first := r2.start()
	if lerr == nil || !slices.Equal(policyNames(first), []string{"local", "base"}) {
		t.Fatalf("restart while down: load error %v, policies %v", lerr, policyNames(first))
	}
	if st := r2.src.Status(); !st.FromCache || st.Connected {
		t.Errorf("status from cache %+v", st)
	}
	mem.setDown(false)
	mem.put(prefix+"20-new", policyDoc("new", ""))
	if got := policyNames(r2.nextApplied()); !slices.Equal(got, []string{"local", "base", "new"}) {
		t.Errorf("after reconnecting: %v", got)
	}
	if st := r2.src.Status(); st.FromCache || !st.Connected || st.LastError != "" {
		t.Errorf("status after reconnecting %+v", st)
	}
}

// TestSourceLocalReload: a reload of the local file is merged with the
// documents in force, and one that clashes with them is refused.
func TestSourceLocalReload(t *testing.T) {
	mem := newMem()
	mem.put(prefix+"10-base", policyDoc("base", ""))
	dir := t.TempDir()
	r := newRig(t, mem, dir, nil)
	r.start()
	local, err := config.Parse(filepath.Join(dir, "goipsec.yaml"), []byte("policies:\n  - {name: base, action: bypass}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = r.src.Apply(local, func(*config.Config) error { t.Error("applied a clash"); return nil })
	if err == nil || !strings.Contains(err.Error(), `name "base" is already used in`) {
		t.Errorf("clash: %v", err)
	}
}

// TestGuideDocuments: the policy documents shown in docs/guide-etcd.md
// parse, and select the hosts the guide says.
func TestGuideDocuments(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "guide-etcd.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml-document\n(.*?)```").FindAllSubmatch(b, -1)
	if len(blocks) < 2 {
		t.Fatalf("%d document examples in the guide", len(blocks))
	}
	web := map[string]string{"role": "web", "site": "rome"}
	for i, m := range blocks {
		f, err := config.ParseFragment("guide", t.TempDir(), m[1], web)
		if err != nil || !f.Selected || len(f.Policies) == 0 {
			t.Errorf("document %d: %v, selected %v", i+1, err, f != nil && f.Selected)
		}
	}
}

// TestSourceStartRefusesBadDocuments: a host that starts while the
// documents in the cluster are bad refuses them and starts from the cache
// of the last good policy.
func TestSourceStartRefusesBadDocuments(t *testing.T) {
	dir := t.TempDir()
	mem := newMem()
	mem.put(prefix+"10-base", policyDoc("base", ""))
	r := newRig(t, mem, dir, nil)
	r.start()
	r.stop()
	mem.put(prefix+"20-bad", "policies: {}\n")
	r2 := newRig(t, mem, dir, nil)
	lerr, first := r2.start()
	if lerr == nil || !strings.Contains(lerr.Error(), "etcd:"+prefix+"20-bad:1: policies: must be a list") ||
		!slices.Equal(policyNames(first), []string{"local", "base"}) {
		t.Errorf("start with a bad document: %v, policies %v", lerr, policyNames(first))
	}
	if st := r2.src.Status(); !st.FromCache || st.Refused != 1 || !strings.Contains(st.LastError, "20-bad") {
		t.Errorf("status %+v", st)
	}
}

// TestCachedAtBoot: Cached (ipsecd --fail-closed at boot) merges the local
// file with the cache a running source wrote, without the cluster; with no
// cache it returns the local file and the error, and without an etcd
// source the local file alone.
func TestCachedAtBoot(t *testing.T) {
	dir := t.TempDir()
	mem := newMem()
	mem.put(prefix+"10-base", policyDoc("base", ""))
	r := newRig(t, mem, dir, nil)
	local := *r.local
	if got, err := Cached(&local); err != nil || got != &local {
		t.Errorf("Cached without an etcd source: %p, %v; want the local configuration", got, err)
	}
	e := r.src.opts.Etcd
	local.PolicySources.Etcd = &e
	if got, err := Cached(&local); err == nil || got != &local {
		t.Errorf("Cached without a cache file: %v, %v; want the local configuration and an error", policyNames(got), err)
	}
	r.start()
	r.stop()
	mem.setDown(true)
	got, err := Cached(&local)
	if err != nil || !slices.Equal(policyNames(got), []string{"local", "base"}) {
		t.Errorf("Cached from the cache: %v, %v; want [local base]", policyNames(got), err)
	}
}
