package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// schema names the JSON layout; compare refuses another.
const schema = "goipsec-bench/1"

// Report is everything one `make bench-net` run measured, as written to
// its JSON file.
type Report struct {
	Schema string `json:"schema"`
	Meta   Meta   `json:"meta"`
	// Parts lists the parts that ran, in order: net, latency, scale, ike.
	Parts   []string `json:"parts"`
	Net     *Part    `json:"net,omitempty"`
	Latency *Part    `json:"latency,omitempty"`
	Scale   *Part    `json:"scale,omitempty"`
	IKE     *Part    `json:"ike,omitempty"`
}

// Meta describes the machine and the code that a report measured.
type Meta struct {
	Date      string `json:"date"`
	Revision  string `json:"git_revision"`
	Modified  bool   `json:"git_modified"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	// LoadStart and LoadEnd are the 1, 5 and 15 minute load averages
	// before the first part and after the last.
	LoadStart []float64 `json:"load_avg_start"`
	LoadEnd   []float64 `json:"load_avg_end"`
	// PartLoad holds the load averages before and after each part.
	PartLoad map[string]Load `json:"part_load_avg,omitempty"`
	// Settings holds the environment that chose sizes and counts
	// (DURATION, STREAMS, NET_RUNS, SCALE_COUNT, ...).
	Settings map[string]string `json:"settings"`
}

// Load is the load averages before and after one part.
type Load struct {
	Start []float64 `json:"start"`
	End   []float64 `json:"end"`
}

// Part is one part of the report: its figures, and which cases failed.
type Part struct {
	// Status is "ok" or "failed" per case (a case that failed in any run
	// is failed).
	Status  map[string]string `json:"status,omitempty"`
	Figures []Figure          `json:"figures"`
	// Raw holds what the part's input says besides the figures: the IKE
	// load generator's runs, the header of the go test output (goos,
	// goarch, pkg, cpu).
	Raw any `json:"raw,omitempty"`

	byKey map[string]int
}

// Figure is one measured or derived quantity. Key is stable across runs
// and is what compare matches.
type Figure struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Unit  string `json:"unit"`
	// Better is "higher", "lower" or empty (neither, as for a ratio
	// whose ideal is 1 or the load of the machine).
	Better string `json:"better,omitempty"`
	Stat
}

// add appends a figure when r has a value.
func (p *Part) add(key, label, unit, better string, r runs) {
	s, ok := r.stat()
	if !ok {
		return
	}
	p.Figures = append(p.Figures, Figure{Key: key, Label: label, Unit: unit, Better: better, Stat: s})
}

// get returns the figure of key.
func (p *Part) get(key string) (Figure, bool) {
	if p == nil {
		return Figure{}, false
	}
	if p.byKey == nil || len(p.byKey) != len(p.Figures) {
		p.byKey = make(map[string]int, len(p.Figures))
		for i, f := range p.Figures {
			p.byKey[f.Key] = i
		}
	}
	i, ok := p.byKey[key]
	if !ok {
		return Figure{}, false
	}
	return p.Figures[i], true
}

// cell formats the figure of key with dec decimals, "-" when missing.
func (p *Part) cell(key string, dec int) string {
	f, ok := p.get(key)
	if !ok {
		return "-"
	}
	return f.format(dec)
}

// ---- net and latency: the TSV that scripts/bench.sh writes ----

// netRows is scripts/bench.sh's record of its runs, one tab-separated row
// per measurement:
//
//	tput   CASE RUN STREAMS GBPS CPU% HOST%   (CPU% "-" for the veth)
//	rtt    CASE RUN MEDIAN_MS P99_MS LOST PINGS
//	status CASE RUN ok|failed
type netRows struct {
	cases   []string // in the order they ran
	streams []string
	tput    map[[2]string]map[string]runs // [case, streams] -> gbps, cpu, host
	rtt     map[string]map[string]runs    // case -> median, p99, lost
	status  map[string]string
}

func readNet(r io.Reader) (*netRows, error) {
	rows, err := readTSV(r)
	if err != nil {
		return nil, err
	}
	n := &netRows{tput: map[[2]string]map[string]runs{}, rtt: map[string]map[string]runs{}, status: map[string]string{}}
	put := func(m map[string]runs, k string, run int, v string) {
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			if m[k] == nil {
				m[k] = runs{}
			}
			m[k][run] = x
		}
	}
	for i, f := range rows {
		if len(f) < 4 {
			return nil, fmt.Errorf("benchreport: net record line %d: %d fields", i+1, len(f))
		}
		c := f[1]
		run, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("benchreport: net record line %d: run %q", i+1, f[2])
		}
		if !slices.Contains(n.cases, c) {
			n.cases = append(n.cases, c)
		}
		switch {
		case f[0] == "tput" && len(f) == 7:
			if !slices.Contains(n.streams, f[3]) {
				n.streams = append(n.streams, f[3])
			}
			k := [2]string{c, f[3]}
			if n.tput[k] == nil {
				n.tput[k] = map[string]runs{}
			}
			put(n.tput[k], "gbps", run, f[4])
			put(n.tput[k], "cpu", run, f[5])
			put(n.tput[k], "host", run, f[6])
		case f[0] == "rtt" && len(f) == 7:
			if n.rtt[c] == nil {
				n.rtt[c] = map[string]runs{}
			}
			put(n.rtt[c], "median", run, f[3])
			put(n.rtt[c], "p99", run, f[4])
			put(n.rtt[c], "lost", run, f[5])
		case f[0] == "status":
			if n.status[c] != "failed" {
				n.status[c] = f[3]
			}
		default:
			return nil, fmt.Errorf("benchreport: net record line %d: unknown record %q with %d fields", i+1, f[0], len(f))
		}
	}
	return n, nil
}

// netPart builds the throughput figures: per case and stream count the
// Gbit/s, the CPU of the tunnel processes, how busy the host was, Gbit/s
// per core of tunnel CPU, and the ratios to the veth, to wireguard-go and
// strongSwan (goipsec's cases), and raw ESP over ESP in UDP. Ratios are
// taken per run (the runs interleave the cases) and summarized.
func netPart(n *netRows) *Part {
	p := &Part{Status: map[string]string{}}
	perCore := func(t map[string]runs) runs {
		return zip(t["gbps"], t["cpu"], func(g, c float64) float64 { return div(g, c/100) })
	}
	for _, c := range n.cases {
		p.Status[c] = n.status[c]
		if !hasTput(n, c) {
			continue
		}
		for _, s := range n.streams {
			t := n.tput[[2]string{c, s}]
			if t == nil {
				continue
			}
			k := "net/" + c + "/P" + s + "/"
			p.add(k+"gbps", c+" P"+s+" throughput", "Gbit/s", "higher", t["gbps"])
			p.add(k+"cpu_pct", c+" P"+s+" tunnel CPU", "% of a core", "lower", t["cpu"])
			p.add(k+"host_pct", c+" P"+s+" host busy", "%", "", t["host"])
			p.add(k+"gbps_per_core", c+" P"+s+" per core of tunnel CPU", "Gbit/s per core", "higher", perCore(t))
			if v := n.tput[[2]string{"veth", s}]; v != nil && c != "veth" {
				p.add(k+"x_veth", c+" P"+s+" / veth", "ratio", "higher", zip(t["gbps"], v["gbps"], div))
			}
			if !strings.HasPrefix(c, "goipsec") {
				continue
			}
			for _, o := range []string{"wireguard-go", "strongswan"} {
				if v := n.tput[[2]string{o, s}]; v != nil {
					p.add(k+"x_"+o, c+" P"+s+" / "+o, "ratio", "higher", zip(t["gbps"], v["gbps"], div))
				}
			}
		}
	}
	for _, s := range n.streams {
		raw, udp := n.tput[[2]string{"goipsec-none", s}], n.tput[[2]string{"goipsec-udp", s}]
		if raw == nil || udp == nil {
			continue
		}
		p.add("net/raw_udp/P"+s, "raw ESP / ESP in UDP P"+s, "ratio", "higher", zip(raw["gbps"], udp["gbps"], div))
		p.add("net/raw_udp_per_core/P"+s, "raw ESP / ESP in UDP per core of tunnel CPU P"+s, "ratio", "higher",
			zip(perCore(raw), perCore(udp), div))
	}
	return p
}

func hasTput(n *netRows, c string) bool {
	for k := range n.tput {
		if k[0] == c {
			return true
		}
	}
	return false
}

// latencyPart builds the ping figures: median and 99th percentile RTT, what
// each adds over the veth's, and what goipsec's cases add as a fraction of
// what wireguard-go adds (issue 9's target: at most 1).
func latencyPart(n *netRows) *Part {
	p := &Part{Status: map[string]string{}}
	veth, wg := n.rtt["veth"], n.rtt["wireguard-go"]
	for _, c := range n.cases {
		p.Status[c] = n.status[c]
		r := n.rtt[c]
		if r == nil {
			continue
		}
		k := "latency/" + c + "/"
		p.add(k+"median_ms", c+" RTT median", "ms", "lower", r["median"])
		p.add(k+"p99_ms", c+" RTT p99", "ms", "lower", r["p99"])
		p.add(k+"lost", c+" pings lost", "pings", "lower", r["lost"])
		if veth == nil || c == "veth" {
			continue
		}
		added := zip(r["median"], veth["median"], sub)
		p.add(k+"added_median_ms", c+" RTT median added to veth's", "ms", "lower", added)
		p.add(k+"added_p99_ms", c+" RTT p99 added to veth's", "ms", "lower", zip(r["p99"], veth["p99"], sub))
		if wg != nil && c != "wireguard-go" {
			p.add(k+"added_x_wireguard-go", c+" RTT median added / wireguard-go's", "ratio", "lower",
				zip(added, zip(wg["median"], veth["median"], sub), div))
		}
	}
	return p
}

// ---- scale: go test -bench output of internal/dataplane ----

var sizeRE = regexp.MustCompile(`n=([0-9]+)$`)

// sizes returns the n=N of the benchmarks whose names start with prefix,
// in increasing order.
func (g *goBench) sizes(prefix string) []int {
	var out []int
	for _, l := range g.Lines {
		if m := sizeRE.FindStringSubmatch(l.Name); m != nil && strings.HasPrefix(l.Name, prefix) {
			n, _ := strconv.Atoi(m[1])
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// scaleDirs and scalePatterns are the per-packet benchmarks of
// internal/dataplane (scale_test.go) the report shows.
var (
	scaleDirs     = []string{"Inbound", "Outbound"}
	scalePatterns = []string{"random", "flows"}
)

// scalePart builds the SA-scale figures: per-packet time of the inbound
// and outbound stages with n SAs (CPU time of the benchmark's thread where
// the benchmark reports it, cpu-ns/op, else ns/op) and its ratio to 1 SA,
// allocations per packet, heap per SA and per pair, and the install and
// delete cost per CHILD SA pair with the rates it gives.
func scalePart(g *goBench) *Part {
	p := &Part{Raw: g.Header}
	for _, d := range scaleDirs {
		for _, pat := range scalePatterns {
			name := d + "Scale/" + pat + "/"
			var one Stat
			for _, n := range g.sizes(name) {
				bn := name + "n=" + strconv.Itoa(n)
				unit := "cpu-ns/op"
				r := g.runs(bn, unit)
				if len(r) == 0 {
					unit = "ns/op"
					r = g.runs(bn, unit)
				}
				k := "scale/" + strings.ToLower(d) + "/" + pat + "/n=" + strconv.Itoa(n) + "/"
				label := strings.ToLower(d) + " " + pat + " n=" + strconv.Itoa(n)
				p.add(k+"ns_per_packet", label+" per packet", strings.TrimSuffix(unit, "/op")+" per packet", "lower", r)
				p.add(k+"allocs_per_packet", label+" allocations per packet", "allocs", "lower", g.runs(bn, "allocs/op"))
				s, ok := r.stat()
				if n == 1 {
					one = s
				} else if ok && len(one.Runs) > 0 {
					// The runs of -count are not interleaved across sizes:
					// the ratio of the medians.
					p.add(k+"x_n1", label+" / n=1", "ratio", "lower", runs{0: div(s.Median, one.Median)})
				}
			}
		}
	}
	// BenchmarkScaleRatio: n=1 and n alternated in rounds, so the ratio is
	// per run.
	for _, d := range scaleDirs {
		for _, pat := range append(slices.Clone(scalePatterns), "bursts") {
			name := "ScaleRatio/" + strings.ToLower(d) + "/" + pat + "/"
			for _, n := range g.sizes(name) {
				bn := name + "n=" + strconv.Itoa(n)
				k := "scale/ratio/" + strings.ToLower(d) + "/" + pat + "/n=" + strconv.Itoa(n) + "/"
				label := strings.ToLower(d) + " " + pat + " n=" + strconv.Itoa(n)
				p.add(k+"n1_ns_per_packet", label+" interleaved, n=1 per packet", "cpu-ns per packet", "lower", g.runs(bn, "n1-cpu-ns/op"))
				p.add(k+"ns_per_packet", label+" interleaved, per packet", "cpu-ns per packet", "lower", g.runs(bn, "cpu-ns/op"))
				p.add(k+"x_n1", label+" / n=1, interleaved", "ratio", "lower", g.runs(bn, "x-n1"))
			}
		}
	}
	for _, n := range g.sizes("MemoryPerSA/") {
		bn := "MemoryPerSA/n=" + strconv.Itoa(n)
		k := "scale/memory/n=" + strconv.Itoa(n) + "/"
		p.add(k+"bytes_per_sa", "heap per SA n="+strconv.Itoa(n), "B", "lower", g.runs(bn, "B/SA"))
		p.add(k+"bytes_per_pair", "heap per CHILD SA pair n="+strconv.Itoa(n), "B", "lower", g.runs(bn, "B/pair"))
	}
	rate := func(r runs) runs {
		out := runs{}
		for i, v := range r {
			out[i] = div(1e9, v)
		}
		return out
	}
	for _, n := range g.sizes("InstallScale/") {
		bn := "InstallScale/n=" + strconv.Itoa(n)
		k := "scale/install/n=" + strconv.Itoa(n) + "/"
		l := " n=" + strconv.Itoa(n)
		ins, del := g.runs(bn, "install-cpu-ns/pair"), g.runs(bn, "delete-cpu-ns/pair")
		p.add(k+"install_ns_per_pair", "install per pair"+l, "cpu-ns", "lower", ins)
		p.add(k+"delete_ns_per_pair", "delete per pair"+l, "cpu-ns", "lower", del)
		p.add(k+"build_ns_per_pair", "engines built per pair"+l, "cpu-ns", "lower", g.runs(bn, "build-cpu-ns/pair"))
		p.add(k+"install_pairs_per_s", "install rate"+l, "pairs/s", "higher", rate(ins))
		p.add(k+"delete_pairs_per_s", "delete rate"+l, "pairs/s", "higher", rate(del))
		p.add(k+"bytes_per_pair", "allocated per install and delete"+l, "B", "lower", g.runs(bn, "B/op"))
	}
	return p
}

// ---- ike: the JSON of scripts/ikeload.sh (IKELOAD_JSON) ----

// ikeRow is one ikeload run as scripts/ikeload.sh records it (every field
// a string, from its TSV).
type ikeRow map[string]string

// ikeMetrics are the columns of an ikeRow the report keeps, with their
// keys, labels, units and which way is better.
var ikeMetrics = []struct{ col, key, label, unit, better string }{
	{"hs_s", "hs_s", "handshakes per second", "hs/s", "higher"},
	{"hs_cpu", "hs_cpu_s", "handshakes per responder CPU-second", "hs/cpu-s", "higher"},
	{"p50", "p50_ms", "latency p50", "ms", "lower"},
	{"p90", "p90_ms", "latency p90", "ms", "lower"},
	{"p99", "p99_ms", "latency p99", "ms", "lower"},
	{"kib_sa", "kib_per_sa", "responder memory per IKE SA", "KiB", "lower"},
	{"failed", "failed", "IKE SAs failed", "SAs", "lower"},
}

func readIKE(r io.Reader) ([]ikeRow, error) {
	var in struct {
		Runs []ikeRow `json:"runs"`
	}
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return nil, fmt.Errorf("benchreport: reading the ikeload JSON: %w", err)
	}
	return in.Runs, nil
}

// ikePart builds the IKE figures per responder and number of IKE SAs, and
// goipsec / strongswan per run (the runs interleave the responders).
func ikePart(rows []ikeRow) *Part {
	p := &Part{Status: map[string]string{}, Raw: rows}
	type group struct {
		c string
		n int
	}
	var groups []group
	vals := map[group]map[string]runs{}
	for _, r := range rows {
		n, err1 := strconv.Atoi(r["n"])
		run, err2 := strconv.Atoi(r["run"])
		if err1 != nil || err2 != nil {
			continue
		}
		g := group{r["case"], n}
		if vals[g] == nil {
			groups = append(groups, g)
			vals[g] = map[string]runs{}
		}
		for _, m := range ikeMetrics {
			if v, err := strconv.ParseFloat(r[m.col], 64); err == nil {
				if vals[g][m.key] == nil {
					vals[g][m.key] = runs{}
				}
				vals[g][m.key][run] = v
			}
		}
		if f, _ := strconv.Atoi(r["failed"]); f > 0 || p.Status[g.c] == "failed" {
			p.Status[g.c] = "failed"
		} else {
			p.Status[g.c] = "ok"
		}
	}
	slices.SortStableFunc(groups, func(a, b group) int { return cmp.Compare(a.n, b.n) })
	for _, g := range groups {
		k := "ike/" + g.c + "/n=" + strconv.Itoa(g.n) + "/"
		for _, m := range ikeMetrics {
			p.add(k+m.key, g.c+" n="+strconv.Itoa(g.n)+" "+m.label, m.unit, m.better, vals[g][m.key])
		}
		if g.c != "goipsec" {
			continue
		}
		o := vals[group{"strongswan", g.n}]
		if o == nil {
			continue
		}
		for _, m := range ikeMetrics[:6] {
			p.add("ike/goipsec_x_strongswan/n="+strconv.Itoa(g.n)+"/"+m.key, "goipsec / strongswan n="+strconv.Itoa(g.n)+" "+m.label,
				"ratio", m.better, zip(vals[g][m.key], o[m.key], div))
		}
	}
	return p
}

// ---- meta ----

// readMeta reads KEY<tab>VALUE lines: date, revision, modified, go,
// kernel, cpu, cores, load_start, load_end, load.PART.start, load.PART.end,
// parts, and setting.NAME for each setting.
func readMeta(r io.Reader) (Meta, []string, error) {
	rows, err := readTSV(r)
	if err != nil {
		return Meta{}, nil, err
	}
	m := Meta{Settings: map[string]string{}, PartLoad: map[string]Load{}}
	var parts []string
	for _, f := range rows {
		k, v := f[0], ""
		if len(f) > 1 {
			v = f[1]
		}
		switch {
		case k == "date":
			m.Date = v
		case k == "revision":
			m.Revision = v
		case k == "modified":
			m.Modified = v == "true"
		case k == "go":
			m.GoVersion = v
		case k == "kernel":
			m.Kernel = v
		case k == "cpu":
			m.CPU = v
		case k == "cores":
			m.Cores, _ = strconv.Atoi(v)
		case k == "load_start":
			m.LoadStart = floats(v)
		case k == "load_end":
			m.LoadEnd = floats(v)
		case k == "parts":
			parts = strings.Fields(v)
		case strings.HasPrefix(k, "setting."):
			m.Settings[strings.TrimPrefix(k, "setting.")] = v
		case strings.HasPrefix(k, "load."):
			part, edge, _ := strings.Cut(strings.TrimPrefix(k, "load."), ".")
			l := m.PartLoad[part]
			if edge == "start" {
				l.Start = floats(v)
			} else {
				l.End = floats(v)
			}
			m.PartLoad[part] = l
		}
	}
	return m, parts, nil
}

func floats(s string) []float64 {
	var out []float64
	for _, f := range strings.Fields(s) {
		if v, err := strconv.ParseFloat(f, 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// readTSV returns the tab-separated fields of every non-empty line.
func readTSV(r io.Reader) ([][]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("benchreport: %w", err)
	}
	var out [][]string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			out = append(out, strings.Split(line, "\t"))
		}
	}
	return out, nil
}
