package policysource

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/internal/etcdtest"
)

// TestEtcdCluster runs the source against a real cluster of three etcd
// 3.4 members (Debian's etcd-server) on loopback, through the v3 client
// that ipsecd uses: a change under the prefix reaches the apply callback
// (the time is logged); labels select documents; a malformed document and
// one with an inline secret are refused and reported while the last good
// policy stays; with one member killed changes still apply; with all of
// them killed the policy stays, the status says so, and a host that
// starts then starts from the cache; once the members are back the source
// reconnects and applies the next change.
func TestEtcdCluster(t *testing.T) {
	cl := etcdtest.Start(t, 3, "127.0.0.1", "")
	cl.Put(prefix+"10-base", policyDoc("base", ""))
	cl.Put(prefix+"15-db-only", policyDoc("db-only", "targets: [{role: db}]\n"))

	dir := t.TempDir()
	e := config.EtcdSource{Endpoints: cl.Endpoints, Prefix: prefix, Labels: map[string]string{"role": "web"},
		DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Resync: 2 * time.Second,
		Cache: filepath.Join(dir, "state", "etcd-policy.json")}
	// The client closes after the source stopped (cleanups run last
	// first).
	newSource := func() *rig {
		client, err := Dial(e)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		r := newRig(t, nil, dir, e.Labels)
		r.src = New(Options{Etcd: e, Client: client})
		return r
	}
	r := newSource()
	if err, first := r.start(); err != nil || !slices.Equal(policyNames(first), []string{"local", "base"}) {
		t.Fatalf("start: %v, policies %v", err, policyNames(first))
	}

	// A change reaches the apply callback.
	var took []time.Duration
	change := func(key, doc string, want ...string) {
		t.Helper()
		start := time.Now()
		cl.Put(key, doc)
		got := policyNames(r.nextApplied())
		took = append(took, time.Since(start))
		if !slices.Equal(got, want) {
			t.Errorf("after putting %s: %v, want %v", key, got, want)
		}
	}
	for i := range 5 {
		change(prefix+"20-change", policyDoc("change"+string(rune('a'+i)), ""), "local", "base", "change"+string(rune('a'+i)))
	}
	slices.Sort(took)
	t.Logf("put to apply: median %v, min %v, max %v over %d changes", took[len(took)/2], took[0], took[len(took)-1], len(took))

	// A malformed document and an inline secret are refused; the policy
	// stays.
	cl.Put(prefix+"30-bad", "policies:\n  - {name: bad, remote_ts: [10.9.0.0/33], action: discard}\n")
	if err := r.nextRefused(); !strings.Contains(err.Error(), "etcd:"+prefix+"30-bad:2: policies[0].remote_ts[0]") {
		t.Errorf("malformed document: %v", err)
	}
	cl.Put(prefix+"30-bad", "secrets:\n  ike:\n    - {ids: [a, b], secret: \"0x0011223344556677\"}\n")
	if err := r.nextRefused(); !strings.Contains(err.Error(), "secrets never travel in policy documents") {
		t.Errorf("inline secret: %v", err)
	}
	if st := r.src.Status(); st.Refused != 2 || !strings.Contains(st.LastError, "30-bad") ||
		!slices.Equal(st.Documents, []string{prefix + "10-base", prefix + "20-change"}) {
		t.Errorf("status after refusals: %+v", st)
	}
	cl.Delete(prefix + "30-bad") // the policy in force again: nothing to apply
	if !waitFor(10*time.Second, func() bool { return r.src.Status().LastError == "" }) {
		t.Errorf("the error stays after the bad document is gone: %+v", r.src.Status())
	}

	// One member down: the other two are a quorum.
	cl.Members[0].Kill()
	change(prefix+"20-change", policyDoc("quorum", ""), "local", "base", "quorum")

	// All down: nothing changes, the status says so.
	for _, m := range cl.Members[1:] {
		m.Kill()
	}
	if !waitFor(15*time.Second, func() bool { return !r.src.Status().Connected }) {
		t.Errorf("status still connected with every member down: %+v", r.src.Status())
	}
	select {
	case c := <-r.applied:
		t.Errorf("applied %v with every member down", policyNames(c))
	default:
	}

	// A host that starts now starts from the cache.
	r2 := newSource()
	lerr, first := r2.start()
	if lerr == nil || !slices.Equal(policyNames(first), []string{"local", "base", "quorum"}) || !r2.src.Status().FromCache {
		t.Errorf("start with the cluster down: load error %v, policies %v, status %+v", lerr, policyNames(first), r2.src.Status())
	}
	r2.stop()

	// Back up: the source reconnects and follows changes again.
	for _, m := range cl.Members {
		cl.Restart(m)
	}
	cl.WaitHealthy()
	change(prefix+"20-change", policyDoc("after", ""), "local", "base", "after")
	if st := r.src.Status(); !st.Connected || st.LastError != "" {
		t.Errorf("status after reconnecting: %+v", st)
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
