package main

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden and testdata/compare.golden")

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestStat(t *testing.T) {
	for _, tc := range []struct {
		in            []float64
		med, min, max float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{math.NaN(), 2, math.Inf(1), 4}, 3, 2, 4},
	} {
		s, ok := newStat(tc.in)
		if !ok || !near(s.Median, tc.med) || s.Min != tc.min || s.Max != tc.max {
			t.Errorf("newStat(%v) = %+v, %v; want median %v, range %v-%v", tc.in, s, ok, tc.med, tc.min, tc.max)
		}
	}
	if _, ok := newStat([]float64{math.NaN()}); ok {
		t.Error("newStat of NaN only: ok")
	}
	s, _ := newStat([]float64{1.234, 1.1, 1.4})
	if got := s.format(2); got != "1.23 [1.10-1.40]" {
		t.Errorf("format = %q", got)
	}
}

// TestParseGoBench reads a captured run of internal/dataplane's SA-scale
// benchmarks (testdata/scale.txt: go test -count 2 at n = 1, 1000 and
// 100000, MemoryPerSA at 1000, and ScaleRatio for inbound flows and
// bursts at 100000).
func TestParseGoBench(t *testing.T) {
	g := readScale(t)
	if len(g.Lines) != 36 {
		t.Fatalf("%d result lines, want 36", len(g.Lines))
	}
	l := g.Lines[0]
	if l.Name != "InboundScale/random/n=1" || l.N != 2000 || l.Metrics["cpu-ns/op"] != 1002 || l.Metrics["MB/s"] != 1381.08 || l.Metrics["allocs/op"] != 0 {
		t.Errorf("first line = %+v", l)
	}
	if g.Header["pkg"] != "github.com/goipsec/goipsec/internal/dataplane" || g.Header["cpu"] != "AMD EPYC" {
		t.Errorf("header = %v", g.Header)
	}
	r := g.runs("InstallScale/n=100000", "install-cpu-ns/pair")
	if len(r) != 2 || r[0] != 37906 || r[1] != 8537 {
		t.Errorf("InstallScale/n=100000 install runs = %v", r)
	}
	if got := g.sizes("InboundScale/flows/"); len(got) != 3 || got[0] != 1 || got[2] != 100000 {
		t.Errorf("sizes = %v", got)
	}
}

// TestParseGoBenchSplitAndSuffix: a benchmark that logs has its figures on
// a line of their own; without a common -GOMAXPROCS suffix the names stay
// whole.
func TestParseGoBenchSplitAndSuffix(t *testing.T) {
	in := "BenchmarkA/size-64\n    a_test.go:10: a log line\n     100\t  12.5 ns/op\t 3 B/op\nBenchmarkB \t 200\t 7 ns/op\nok  \tpkg\t1.0s\n"
	g, err := parseGoBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Lines) != 2 || g.Lines[0].Name != "A/size-64" || g.Lines[0].N != 100 || g.Lines[0].Metrics["B/op"] != 3 || g.Lines[1].Name != "B" {
		t.Errorf("lines = %+v", g.Lines)
	}
}

// sample opens testdata/name for the test.
func sample(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readScale(t *testing.T) *goBench {
	t.Helper()
	g, err := parseGoBench(sample(t, "scale.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func figure(t *testing.T, p *Part, key string) Figure {
	t.Helper()
	f, ok := p.get(key)
	if !ok {
		t.Fatalf("no figure %s", key)
	}
	return f
}

func TestScalePart(t *testing.T) {
	p := scalePart(readScale(t))
	f := figure(t, p, "scale/inbound/random/n=1/ns_per_packet")
	if !near(f.Median, (1002+982.3)/2) || f.Unit != "cpu-ns per packet" || len(f.Runs) != 2 {
		t.Errorf("inbound random n=1 = %+v", f)
	}
	f = figure(t, p, "scale/inbound/random/n=1000/x_n1")
	if !near(f.Median, ((1988+1566)/2.0)/((1002+982.3)/2)) {
		t.Errorf("inbound random n=1000 / n=1 = %v", f.Median)
	}
	if f := figure(t, p, "scale/outbound/flows/n=100000/allocs_per_packet"); f.Max != 0 {
		t.Errorf("allocations = %+v", f)
	}
	if f := figure(t, p, "scale/memory/n=1000/bytes_per_sa"); !near(f.Median, 1977) || f.Min != 1976 {
		t.Errorf("memory per SA = %+v", f)
	}
	f = figure(t, p, "scale/install/n=1/install_pairs_per_s")
	if !near(f.Max, 1e9/5081) || !near(f.Min, 1e9/5135) {
		t.Errorf("install rate = %+v", f)
	}
	// BenchmarkScaleRatio's ratio is per run (its rounds are interleaved).
	if f := figure(t, p, "scale/ratio/inbound/bursts/n=100000/x_n1"); !near(f.Median, (0.9538+1.108)/2) || len(f.Runs) != 2 {
		t.Errorf("interleaved ratio = %+v", f)
	}
	if f := figure(t, p, "scale/ratio/inbound/flows/n=100000/n1_ns_per_packet"); !near(f.Median, (1172+1493)/2.0) {
		t.Errorf("interleaved n=1 = %+v", f)
	}
	if _, ok := p.get("scale/memory/n=1/bytes_per_sa"); ok {
		t.Error("a memory figure at n=1, which the sample does not have")
	}
	if p.Raw.(map[string]string)["cpu"] != "AMD EPYC" {
		t.Errorf("raw = %v, want the go test header", p.Raw)
	}
	// Output without the per-packet benchmarks (renamed, say) says so
	// instead of printing an empty table.
	var out bytes.Buffer
	(&Report{Scale: scalePart(&goBench{})}).writeScale(&out)
	if !strings.Contains(out.String(), "no InboundScale results") {
		t.Errorf("empty scale part:\n%s", out.String())
	}
}

func readNetSample(t *testing.T) *netRows {
	t.Helper()
	n, err := readNet(sample(t, "net.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNetPart checks the throughput figures and that ratios pair the runs:
// testdata/net.tsv has two runs of every case, strongSwan failing in the
// first, "ghost" in both.
func TestNetPart(t *testing.T) {
	p := netPart(readNetSample(t))
	for _, tc := range []struct {
		key      string
		med, min float64
		runs     int
	}{
		{"net/veth/P1/gbps", 9, 8, 2},
		{"net/goipsec-udp/P1/x_veth", 0.25, 0.2, 2},
		{"net/raw_udp/P1", 0.625, 0.5, 2},
		{"net/raw_udp/P4", 0.5, 0.5, 2},
		{"net/raw_udp_per_core/P4", 0.625, 0.5, 2},
		{"net/goipsec-udp/P1/gbps_per_core", 4, 4, 2},
		{"net/goipsec-udp/P1/x_strongswan", 4.8, 4.8, 1},
	} {
		f := figure(t, p, tc.key)
		if !near(f.Median, tc.med) || !near(f.Min, tc.min) || len(f.Runs) != tc.runs {
			t.Errorf("%s = %+v, want median %v, min %v over %d runs", tc.key, f.Stat, tc.med, tc.min, tc.runs)
		}
	}
	if _, ok := p.get("net/veth/P1/cpu_pct"); ok {
		t.Error("the veth has a tunnel CPU figure")
	}
	if p.Status["strongswan"] != "failed" || p.Status["veth"] != "ok" || p.Status["ghost"] != "failed" {
		t.Errorf("status = %v", p.Status)
	}
}

func TestLatencyPart(t *testing.T) {
	p := latencyPart(readNetSample(t))
	if f := figure(t, p, "latency/goipsec-udp/added_median_ms"); !near(f.Median, 0.35) || !near(f.Max, 0.4) {
		t.Errorf("added median = %+v", f.Stat)
	}
	// Per run: 0.40/0.60 and 0.30/0.50.
	if f := figure(t, p, "latency/goipsec-udp/added_x_wireguard-go"); !near(f.Median, (0.4/0.6+0.3/0.5)/2) {
		t.Errorf("added / wireguard-go's = %+v", f.Stat)
	}
	if f := figure(t, p, "latency/strongswan/median_ms"); len(f.Runs) != 1 || f.Median != 0.8 {
		t.Errorf("strongswan median = %+v", f.Stat)
	}
	if _, ok := p.get("latency/wireguard-go/added_x_wireguard-go"); ok {
		t.Error("wireguard-go against itself")
	}
}

func TestIKEPart(t *testing.T) {
	p := ikePart(readIKESample(t))
	f := figure(t, p, "ike/goipsec_x_strongswan/n=100/hs_cpu_s")
	g, s := figure(t, p, "ike/goipsec/n=100/hs_cpu_s"), figure(t, p, "ike/strongswan/n=100/hs_cpu_s")
	if len(f.Runs) != 2 || len(g.Runs) != 2 || !near(f.Runs[0], g.Runs[0]/s.Runs[0]) {
		t.Errorf("goipsec / strongswan hs/cpu-s = %+v from %+v and %+v", f.Stat, g.Stat, s.Stat)
	}
	if f := figure(t, p, "ike/goipsec/n=100/failed"); f.Max != 0 {
		t.Errorf("failed = %+v", f.Stat)
	}
}

func readIKESample(t *testing.T) []ikeRow {
	t.Helper()
	rows, err := readIKE(sample(t, "ike.json"))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./internal/benchreport -update rewrites it):\n%s", path, got)
	}
}

// TestReport runs the command on the samples: the text report matches
// testdata/report.golden, the JSON reads back with every part, and show
// prints the same report from it.
func TestReport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	var stdout bytes.Buffer
	err := run([]string{"report", "-meta", "testdata/meta.tsv", "-net", "testdata/net.tsv", "-scale", "testdata/scale.txt",
		"-ike", "testdata/ike.json", "-json", out}, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden", stdout.Bytes())
	var shown bytes.Buffer
	if err := run([]string{"show", out}, &shown); err != nil || !bytes.Equal(shown.Bytes(), stdout.Bytes()) {
		t.Errorf("show of the JSON (%v) differs from the report:\n%s", err, shown.Bytes())
	}
	r, err := loadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Net == nil || r.Latency == nil || r.Scale == nil || r.IKE == nil || r.Meta.Cores != 2 || len(r.Meta.LoadEnd) != 3 ||
		r.Meta.PartLoad["net"].End[0] != 3 || r.Meta.Settings["STREAMS"] != "1 4" {
		t.Errorf("report read back: %+v", r.Meta)
	}
}

// TestCompare compares the sample with itself changed: a figure whose
// range moved away is better or worse by its direction, one within the
// old range is "~", one of a single run "-".
func TestCompare(t *testing.T) {
	dir := t.TempDir()
	old, cur := filepath.Join(dir, "old.json"), filepath.Join(dir, "new.json")
	var discard bytes.Buffer
	if err := run([]string{"report", "-meta", "testdata/meta.tsv", "-net", "testdata/net.tsv", "-json", old}, &discard); err != nil {
		t.Fatal(err)
	}
	tsv, err := os.ReadFile("testdata/net.tsv")
	if err != nil {
		t.Fatal(err)
	}
	// goipsec-none twice as fast at 1 stream, strongSwan's RTT (one run)
	// 0.8 -> 0.81.
	changed := strings.NewReplacer("tput\tgoipsec-none\t1\t1\t1.00", "tput\tgoipsec-none\t1\t1\t2.00",
		"tput\tgoipsec-none\t2\t1\t1.80", "tput\tgoipsec-none\t2\t1\t3.60",
		"rtt\tstrongswan\t2\t0.800", "rtt\tstrongswan\t2\t0.810").Replace(string(tsv))
	if err := os.WriteFile(filepath.Join(dir, "net.tsv"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"report", "-meta", "testdata/meta.tsv", "-net", filepath.Join(dir, "net.tsv"), "-json", cur}, &discard); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := run([]string{"compare", old, cur}, &stdout); err != nil {
		t.Fatal(err)
	}
	golden(t, "compare.golden", stdout.Bytes())
	for _, want := range []string{
		"net/goipsec-none/P1/gbps ", "net/raw_udp/P1 ",
	} {
		line := lineOf(stdout.String(), want)
		if verdict(line) != "better" {
			t.Errorf("%q: %q, want better", want, line)
		}
	}
	if line := lineOf(stdout.String(), "latency/strongswan/median_ms "); verdict(line) != "-" {
		t.Errorf("strongswan RTT: %q, want - (one run each: no spread to judge by)", line)
	}
	if line := lineOf(stdout.String(), "latency/goipsec-none/lost "); verdict(line) != "~" {
		t.Errorf("unchanged losses: %q", line)
	}
	if line := lineOf(stdout.String(), "net/goipsec-udp/P1/gbps "); verdict(line) != "~" {
		t.Errorf("unchanged: %q", line)
	}
	if err := run([]string{"compare", old, "testdata/net.tsv"}, &discard); err == nil {
		t.Error("compare with a file that is not a report: no error")
	}
}

func lineOf(s, prefix string) string {
	for l := range strings.Lines(s) {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimRight(l, "\n")
		}
	}
	return ""
}

// verdict is the last column of a line of compare's table.
func verdict(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}
