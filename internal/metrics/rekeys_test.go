package metrics

import (
	"math"
	"net/http/httptest"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestScrapeRekeys: rekeys are counted by kind, zero included.
func TestScrapeRekeys(t *testing.T) {
	snap := sample()
	snap.Handshakes.IKERekeys = 2
	srv := httptest.NewServer(Handler(&fakeSource{snap: snap}, quiet()))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	if v := value(t, fams, "goipsec_rekeys_total", dto.MetricType_COUNTER, map[string]string{"kind": "ike"}); v != 2 {
		t.Errorf("IKE rekeys %v, want 2", v)
	}
	if v := value(t, fams, "goipsec_rekeys_total", dto.MetricType_COUNTER, map[string]string{"kind": "child"}); v != 0 {
		t.Errorf("CHILD rekeys %v, want 0", v)
	}
}

// TestScrapeHandshakeDuration: the handshake histogram is exported with its
// count, sum and cumulative buckets, and is absent while IKE is not running
// (Duration nil).
func TestScrapeHandshakeDuration(t *testing.T) {
	const name = "goipsec_ike_handshake_duration_seconds"
	snap := sample()
	snap.Handshakes.Duration = &Histogram{Count: 3, Sum: 1.5, Buckets: map[float64]uint64{0.1: 1, 1: 3}}
	srv := httptest.NewServer(Handler(&fakeSource{snap: snap}, quiet()))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	if f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: type %v, %d samples; want one histogram", name, f.GetType(), len(f.GetMetric()))
	}
	h := f.GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 3 || h.GetSampleSum() != 1.5 {
		t.Errorf("count %d, sum %v; want 3, 1.5", h.GetSampleCount(), h.GetSampleSum())
	}
	got := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		got[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	// The exposition adds the +Inf bucket, which holds every observation.
	if len(got) != 3 || got[0.1] != 1 || got[1] != 3 || got[math.Inf(1)] != 3 {
		t.Errorf("buckets %v, want 0.1:1 1:3 +Inf:3", got)
	}

	snap.Handshakes.Duration = nil
	srv2 := httptest.NewServer(Handler(&fakeSource{snap: snap}, quiet()))
	defer srv2.Close()
	if _, ok := scrape(t, srv2.URL)[name]; ok {
		t.Errorf("%s exported with Duration nil", name)
	}
}
