package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fakeSource returns a fixed snapshot and counts the calls.
type fakeSource struct {
	snap  Snapshot
	calls atomic.Int64
}

func (f *fakeSource) Metrics() Snapshot { f.calls.Add(1); return f.snap }

func sample() Snapshot {
	return Snapshot{
		ChildSAs: []ChildSA{
			{Name: "lab", Protocol: "esp", Mode: "tunnel", SPIIn: "00002001", SPIOut: "00001001",
				BytesIn: 1234, BytesOut: 5678, PacketsIn: 10, PacketsOut: 20, ReplayDrops: 3, ICVFailures: 4},
			{Name: "site/net", Protocol: "ah", Mode: "transport", SPIIn: "c0ffee01", SPIOut: "c0ffee02", BytesOut: 7},
		},
		Rules: []Rule{
			{Index: 1, Name: "lab", Action: "protect", Hits: 30},
			{Index: 2, Name: "default", Action: "bypass", Hits: 2},
		},
		IKESAs:                map[string]int{"established": 2, "rekeying": 1},
		Handshakes:            Handshakes{Started: 5, Completed: 3, Failed: 1},
		Acquires:              6,
		IKEEventsLost:         0,
		Panics:                Panics{IKE: 2},
		IKERefusedRetransmits: 4,
		Drops:                 map[string]uint64{"replay": 3, "bad_icv": 4},
		Dataplane: Dataplane{TUNRead: 100, TUNWritten: 90, Sealed: 80, Opened: 70, Bypassed: 60,
			IKEMessages: 9, Keepalives: 8, SendErrors: 1, ReadErrors: 2, WriteErrors: 3, EventsLost: 5},
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want, and
// checks the family's type.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	if f.GetType() != typ {
		t.Fatalf("%s has type %v, want %v", name, f.GetType(), typ)
	}
	var found []float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		if typ == dto.MetricType_COUNTER {
			found = append(found, m.GetCounter().GetValue())
		} else {
			found = append(found, m.GetGauge().GetValue())
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d samples match, want 1", name, want, len(found))
	}
	return found[0]
}

func TestScrape(t *testing.T) {
	src := &fakeSource{snap: sample()}
	srv := httptest.NewServer(Handler(src, quiet()))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	if src.calls.Load() != 1 {
		t.Errorf("Source called %d times for one scrape", src.calls.Load())
	}

	c := dto.MetricType_COUNTER
	g := dto.MetricType_GAUGE
	lab := map[string]string{"name": "lab", "protocol": "esp", "mode": "tunnel", "spi_in": "00002001", "spi_out": "00001001"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		typ    dto.MetricType
		labels map[string]string
		want   float64
	}{
		{"goipsec_child_sa_bytes_total", c, with(lab, "direction", "in"), 1234},
		{"goipsec_child_sa_bytes_total", c, with(lab, "direction", "out"), 5678},
		{"goipsec_child_sa_packets_total", c, with(lab, "direction", "in"), 10},
		{"goipsec_child_sa_packets_total", c, with(lab, "direction", "out"), 20},
		{"goipsec_child_sa_replay_drops_total", c, lab, 3},
		{"goipsec_child_sa_icv_failures_total", c, lab, 4},
		{"goipsec_child_sa_bytes_total", c, map[string]string{"name": "site/net", "protocol": "ah", "mode": "transport", "direction": "out"}, 7},
		{"goipsec_spd_rule_hits_total", c, map[string]string{"index": "1", "name": "lab", "action": "protect"}, 30},
		{"goipsec_spd_rule_hits_total", c, map[string]string{"index": "2", "name": "default", "action": "bypass"}, 2},
		{"goipsec_ike_sas", g, map[string]string{"state": "established"}, 2},
		{"goipsec_ike_sas", g, map[string]string{"state": "connecting"}, 0},
		{"goipsec_ike_sas", g, map[string]string{"state": "deleting"}, 0},
		{"goipsec_ike_sas", g, map[string]string{"state": "rekeying"}, 1},
		{"goipsec_ike_handshakes_started_total", c, nil, 5},
		{"goipsec_ike_handshakes_completed_total", c, nil, 3},
		{"goipsec_ike_handshakes_failed_total", c, nil, 1},
		{"goipsec_ike_events_lost_total", c, nil, 0},
		{"goipsec_panics_total", c, map[string]string{"component": "ike"}, 2},
		{"goipsec_panics_total", c, map[string]string{"component": "dataplane"}, 0},
		{"goipsec_ike_refused_retransmits_total", c, nil, 4},
		{"goipsec_acquires_total", c, nil, 6},
		{"goipsec_dropped_packets_total", c, map[string]string{"reason": "replay"}, 3},
		{"goipsec_dropped_packets_total", c, map[string]string{"reason": "bad_icv"}, 4},
		{"goipsec_dataplane_tun_read_packets_total", c, nil, 100},
		{"goipsec_dataplane_tun_written_packets_total", c, nil, 90},
		{"goipsec_dataplane_sealed_packets_total", c, nil, 80},
		{"goipsec_dataplane_opened_packets_total", c, nil, 70},
		{"goipsec_dataplane_bypassed_packets_total", c, nil, 60},
		{"goipsec_dataplane_ike_messages_total", c, nil, 9},
		{"goipsec_dataplane_nat_keepalives_total", c, nil, 8},
		{"goipsec_dataplane_errors_total", c, map[string]string{"op": "send"}, 1},
		{"goipsec_dataplane_errors_total", c, map[string]string{"op": "read"}, 2},
		{"goipsec_dataplane_errors_total", c, map[string]string{"op": "write"}, 3},
		{"goipsec_dataplane_events_lost_total", c, nil, 5},
	} {
		if got := value(t, fams, tc.name, tc.typ, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := len(fams["goipsec_child_sa_bytes_total"].GetMetric()); n != 4 {
		t.Errorf("goipsec_child_sa_bytes_total has %d series, want 4 (2 SAs x 2 directions)", n)
	}
	// The runtime and process collectors (the process one reads /proc,
	// so it exports nothing where there is none).
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s: the Go collector is missing", name)
		}
	}
	if _, ok := fams["process_start_time_seconds"]; !ok {
		t.Logf("no process_start_time_seconds (no procfs here?)")
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "goipsec_") && f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
}

// TestScrapeEmpty checks the zero Snapshot: no per-SA or per-rule series,
// no IKE SA gauge (IKE not running), the global counters at 0.
func TestScrapeEmpty(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeSource{}, quiet()))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	for _, name := range []string{"goipsec_child_sa_bytes_total", "goipsec_spd_rule_hits_total", "goipsec_ike_sas", "goipsec_dropped_packets_total"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s exported for an empty snapshot", name)
		}
	}
	if v := value(t, fams, "goipsec_acquires_total", dto.MetricType_COUNTER, nil); v != 0 {
		t.Errorf("acquires = %v", v)
	}
}

// TestScrapeDuplicate checks that two series with the same labels do not
// cost the whole scrape.
func TestScrapeDuplicate(t *testing.T) {
	s := sample()
	s.ChildSAs = append(s.ChildSAs, s.ChildSAs[0])
	srv := httptest.NewServer(Handler(&fakeSource{snap: s}, quiet()))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	if v := value(t, fams, "goipsec_acquires_total", dto.MetricType_COUNTER, nil); v != 6 {
		t.Errorf("acquires = %v after a duplicate series", v)
	}
}

func TestServe(t *testing.T) {
	src := &fakeSource{snap: sample()}
	s, err := Listen("127.0.0.1:0", src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr().String()

	fams := scrape(t, base+"/metrics")
	if v := value(t, fams, "goipsec_dataplane_sealed_packets_total", dto.MetricType_COUNTER, nil); v != 80 {
		t.Errorf("sealed = %v", v)
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", http.StatusNotFound},
		{"GET", "/metrics/x", http.StatusNotFound},
		{"GET", "/debug/pprof/", http.StatusNotFound},
		{"POST", "/metrics", http.StatusMethodNotAllowed},
		{"HEAD", "/metrics", http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}

	// A second endpoint on the same address cannot listen.
	if _, err := Listen(s.Addr().String(), src, quiet()); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("listening twice on %s: %v", s.Addr(), err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("the endpoint still answers after shutdown")
	}
}

func TestServeListenError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, "256.0.0.1:1", &fakeSource{}, quiet()); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("Serve on a bad address: %v", err)
	}
	if _, err := Listen("127.0.0.1:0", nil, quiet()); err == nil {
		t.Error("Listen with a nil Source succeeded")
	}
}
