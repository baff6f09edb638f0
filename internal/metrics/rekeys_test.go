package metrics

import (
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
