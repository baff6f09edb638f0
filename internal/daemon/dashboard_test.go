package daemon

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/metrics"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// dashboardFile is the Grafana dashboard the README points at.
const dashboardFile = "../../docs/grafana-dashboard.json"

// dashboardExprs returns the PromQL of every panel target and the queries
// of the template variables.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

var (
	metricName = regexp.MustCompile(`goipsec_[a-z_]+`)
	byLabels   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matchLabel = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)\s*"`)
)

// TestDashboardMetricsExist: every metric the Grafana dashboard queries is
// in the /metrics output of a running daemon (IKE on, a manual SA, one
// drop), and every label it groups or filters by is one of that metric's
// labels (or a label Prometheus adds).
func TestDashboardMetricsExist(t *testing.T) {
	exprs := dashboardExprs(t)

	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	p, udp := startPeer(t, nw, "a", manualConfig(t, "a", ""), inw.listen(netip.MustParseAddr("192.0.2.1")))
	// An ESP packet of an SPI nobody installed: a drop by reason.
	udp.Inject([]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, netip.MustParseAddrPort("192.0.2.9:4500"))
	waitFor(t, "a drop", func() bool { return len(p.d.Metrics().Drops) > 0 })

	srv := httptest.NewServer(metrics.Handler(p.d, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{} // by metric name
	for name, f := range fams {
		labels[name] = []string{"instance", "job"} // added by Prometheus
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[name] = append(labels[name], l.GetName())
			}
		}
	}

	queried := map[string]bool{}
	for _, e := range exprs {
		names := metricName.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("query %q names no goipsec metric", e)
		}
		for _, n := range names {
			queried[n] = true
			if _, ok := labels[n]; !ok {
				t.Errorf("the dashboard queries %s, which the daemon does not export (query %q)", n, e)
			}
		}
		var used []string
		for _, m := range byLabels.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				used = append(used, strings.TrimSpace(l))
			}
		}
		for _, m := range matchLabel.FindAllStringSubmatch(e, -1) {
			used = append(used, m[1])
		}
		for _, l := range used {
			if !slices.ContainsFunc(names, func(n string) bool { return slices.Contains(labels[n], l) }) {
				t.Errorf("query %q uses label %q, which none of its metrics has", e, l)
			}
		}
	}
	var unused []string
	for name := range fams {
		if strings.HasPrefix(name, "goipsec_") && !queried[name] {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	t.Logf("%d queries over %d metrics; exported but not on the dashboard: %v", len(exprs), len(queried), unused)
}
