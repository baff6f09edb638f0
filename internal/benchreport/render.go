package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// table prints rows under header, the first column left-aligned and the
// others right-aligned, columns separated by " | ".
func table(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range append([][]string{header}, rows...) {
		cells := make([]string, len(r))
		for i, c := range r {
			if i == 0 {
				cells[i] = fmt.Sprintf("%-*s", width[i], c)
			} else {
				cells[i] = fmt.Sprintf("%*s", width[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(strings.Join(cells, " | "), " "))
	}
}

func loads(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	if len(s) == 0 {
		return "?"
	}
	return strings.Join(s, " ")
}

// setting returns a setting of the run, or def when it was not recorded.
func (r *Report) setting(name, def string) string {
	if v, ok := r.Meta.Settings[name]; ok && v != "" {
		return v
	}
	return def
}

// write prints the report as text: one table per part, with the ratios.
func (r *Report) write(w io.Writer) {
	m := r.Meta
	mod := ""
	if m.Modified {
		mod = " (modified)"
	}
	fmt.Fprintf(w, "goipsec benchmarks %s; revision %s%s; %s; kernel %s; %d cores", m.Date, m.Revision, mod, m.GoVersion, m.Kernel, m.Cores)
	if m.CPU != "" {
		fmt.Fprintf(w, " (%s)", m.CPU)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "load average (1, 5, 15 min): %s before, %s after; parts: %s\n", loads(m.LoadStart), loads(m.LoadEnd), strings.Join(r.Parts, " "))
	fmt.Fprintln(w, "Cells: median [min-max] over the runs; ratios per run of interleaved runs, or of the medians (scale).")
	if r.Net != nil {
		r.writeNet(w)
	}
	if r.Latency != nil {
		r.writeLatency(w)
	}
	if r.Scale != nil {
		r.writeScale(w)
	}
	if r.IKE != nil {
		r.writeIKE(w)
	}
}

// netCases returns the cases of a net or latency part in the order they
// ran, from its figures, then those that measured nothing (failed in every
// run), by name.
func netCases(p *Part, prefix string) []string {
	var out []string
	for _, f := range p.Figures {
		c, _, _ := strings.Cut(strings.TrimPrefix(f.Key, prefix), "/")
		if strings.HasPrefix(f.Key, prefix) && c != "raw_udp" && c != "raw_udp_per_core" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(p.Status)) {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (r *Report) writeNet(w io.Writer) {
	p := r.Net
	streams := strings.Fields(r.setting("STREAMS", "1 4"))
	fmt.Fprintf(w, "\n== Throughput: iperf3 TCP A -> B, %s s per run, %s run(s) interleaved, tunnel MTU %s\n",
		r.setting("DURATION", "?"), r.setting("NET_RUNS", "?"), r.setting("MTU", "?"))
	fmt.Fprintln(w, "CPU: tunnel processes of both hosts, % of one core; host: whole machine busy %.")
	header := []string{"case"}
	for _, s := range streams {
		header = append(header, "P"+s+" Gbit/s", "x veth", "CPU%", "host%")
	}
	header = append(header, "status")
	var rows [][]string
	cases := netCases(p, "net/")
	for _, c := range cases {
		row := []string{c}
		for _, s := range streams {
			k := "net/" + c + "/P" + s + "/"
			row = append(row, p.cell(k+"gbps", 2), p.cell(k+"x_veth", 2), p.cell(k+"cpu_pct", 0), p.cell(k+"host_pct", 0))
		}
		rows = append(rows, append(row, p.Status[c]))
	}
	table(w, header, rows)
	fmt.Fprintln(w)
	line := func(label string, key func(s string) string) {
		out := label
		found := false
		for _, s := range streams {
			if f, ok := p.get(key(s)); ok {
				out += "  P" + s + " " + f.format(2)
				found = true
			}
		}
		if found {
			fmt.Fprintln(w, out)
		}
	}
	for _, g := range []string{"goipsec-udp", "goipsec-none"} {
		for _, o := range []string{"wireguard-go", "strongswan"} {
			line(g+" / "+o+":", func(s string) string { return "net/" + g + "/P" + s + "/x_" + o })
		}
	}
	line("raw ESP / ESP in UDP (goipsec-none / goipsec-udp, target 0.90):", func(s string) string { return "net/raw_udp/P" + s })
	line("the same per core of tunnel CPU (less sensitive to other tenants):", func(s string) string { return "net/raw_udp_per_core/P" + s })
}

func (r *Report) writeLatency(w io.Writer) {
	p := r.Latency
	fmt.Fprintf(w, "\n== Latency: ping RTT on the idle tunnel, %s echo requests %s s apart per run, A -> B\n",
		r.setting("PINGS", "?"), r.setting("PING_INTERVAL", "?"))
	fmt.Fprintln(w, "+ veth: what the tunnel adds to the veth's RTT; / wg-go: that as a fraction of what wireguard-go adds (target: at most 1).")
	var rows [][]string
	for _, c := range netCases(p, "latency/") {
		k := "latency/" + c + "/"
		rows = append(rows, []string{c, p.cell(k+"median_ms", 3), p.cell(k+"p99_ms", 3), p.cell(k+"added_median_ms", 3),
			p.cell(k+"added_p99_ms", 3), p.cell(k+"added_x_wireguard-go", 2), p.cell(k+"lost", 0), p.Status[c]})
	}
	table(w, []string{"case", "median ms", "p99 ms", "+ veth median", "+ veth p99", "/ wg-go", "lost", "status"}, rows)
}

// scaleSizes returns the n of the figures under prefix ("scale/memory/"),
// in the order they appear.
func scaleSizes(p *Part, prefix string) []string {
	var out []string
	for _, f := range p.Figures {
		if rest, ok := strings.CutPrefix(f.Key, prefix); ok {
			if n, _, _ := strings.Cut(rest, "/"); !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

func (r *Report) writeScale(w io.Writer) {
	p := r.Scale
	fmt.Fprintf(w, "\n== SA scale: internal/dataplane benchmarks, -count %s; per packet: CPU time of the benchmark's thread\n", r.setting("SCALE_COUNT", "?"))
	fmt.Fprintln(w, "(cpu-ns), 1400-byte packets in batches of 64 over n SAs; x1: against 1 SA (target at 100,000: 1.15).")
	header := []string{"n SAs"}
	for _, d := range scaleDirs {
		for _, pat := range scalePatterns {
			header = append(header, strings.ToLower(d)+" "+pat, "x1")
		}
	}
	var rows [][]string
	for _, n := range scaleSizes(p, "scale/inbound/random/") {
		row := []string{count(n)}
		for _, d := range scaleDirs {
			for _, pat := range scalePatterns {
				k := "scale/" + strings.ToLower(d) + "/" + pat + "/" + n + "/"
				x := p.cell(k+"x_n1", 2)
				if n == "n=1" {
					x = "1.00"
				}
				row = append(row, p.cell(k+"ns_per_packet", 0), x)
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "(no InboundScale results: did the benchmarks of internal/dataplane change their names?)")
	}
	table(w, header, rows)
	rows = nil
	for _, d := range scaleDirs {
		for _, pat := range append(slices.Clone(scalePatterns), "bursts") {
			prefix := "scale/ratio/" + strings.ToLower(d) + "/" + pat + "/"
			for _, n := range scaleSizes(p, prefix) {
				k := prefix + n + "/"
				rows = append(rows, []string{strings.ToLower(d) + " " + pat, count(n),
					p.cell(k+"n1_ns_per_packet", 0), p.cell(k+"ns_per_packet", 0), p.cell(k+"x_n1", 2)})
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Interleaved (BenchmarkScaleRatio): rounds of 1 SA and of n SAs alternated in one process, ratio per run;")
		fmt.Fprintln(w, "flows: runs of 8 packets per SA, bursts: runs of 32. The figure to hold against the 1.15 target.")
		table(w, []string{"traffic", "n SAs", "n=1 cpu-ns", "n cpu-ns", "x1"}, rows)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Memory: heap per installed SA and per CHILD SA pair (in and out). Install and delete through the data plane")
	fmt.Fprintln(w, "API with n installed: CPU time per pair and the rate it gives; the engines are built beforehand (build).")
	rows = nil
	sizes := scaleSizes(p, "scale/install/")
	for _, n := range scaleSizes(p, "scale/memory/") {
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		mk, ik := "scale/memory/"+n+"/", "scale/install/"+n+"/"
		rows = append(rows, []string{count(n), p.cell(mk+"bytes_per_sa", 0), p.cell(mk+"bytes_per_pair", 0),
			p.cell(ik+"install_ns_per_pair", 0), p.cell(ik+"delete_ns_per_pair", 0), p.cell(ik+"build_ns_per_pair", 0),
			p.cell(ik+"install_pairs_per_s", 0), p.cell(ik+"delete_pairs_per_s", 0)})
	}
	table(w, []string{"n SAs", "B/SA", "B/pair", "install ns/pair", "delete ns/pair", "build ns/pair", "installs/s", "deletes/s"}, rows)
}

func (r *Report) writeIKE(w io.Writer) {
	p := r.IKE
	fmt.Fprintf(w, "\n== IKE: IKEv2 responders driven by cmd/ikeload, %s run(s) interleaved, %s concurrent;\n",
		r.setting("IKE_RUNS", "?"), r.setting("IKE_CONC", "?"))
	fmt.Fprintln(w, "ike aes256gcm16-prfsha256-x25519, esp aes256gcm16, PSK. hs/cpu-s: per CPU-second of the responder.")
	var rows [][]string
	var sizes []string
	for _, f := range p.Figures {
		parts := strings.Split(f.Key, "/")
		if len(parts) != 4 || parts[1] == "goipsec_x_strongswan" || !strings.HasSuffix(f.Key, "/hs_s") {
			continue
		}
		k := "ike/" + parts[1] + "/" + parts[2] + "/"
		if !slices.Contains(sizes, parts[2]) {
			sizes = append(sizes, parts[2])
		}
		rows = append(rows, []string{parts[1], count(parts[2]), p.cell(k+"hs_s", 0), p.cell(k+"hs_cpu_s", 0),
			p.cell(k+"p50_ms", 1), p.cell(k+"p99_ms", 1), p.cell(k+"kib_per_sa", 1), p.cell(k+"failed", 0)})
	}
	table(w, []string{"responder", "IKE SAs", "hs/s", "hs/cpu-s", "p50 ms", "p99 ms", "KiB/SA", "failed"}, rows)
	for _, n := range sizes {
		k := "ike/goipsec_x_strongswan/" + n + "/"
		if _, ok := p.get(k + "hs_s"); !ok {
			continue
		}
		fmt.Fprintf(w, "goipsec / strongswan at %s IKE SAs: hs/s %s, hs/cpu-s %s, p50 %s, p99 %s, KiB/SA %s\n",
			count(n), p.cell(k+"hs_s", 2), p.cell(k+"hs_cpu_s", 2), p.cell(k+"p50_ms", 2),
			p.cell(k+"p99_ms", 2), p.cell(k+"kib_per_sa", 2))
	}
}

// count prints "n=100000" as "100,000".
func count(n string) string {
	n = strings.TrimPrefix(n, "n=")
	for i := len(n) - 3; i > 0; i -= 3 {
		n = n[:i] + "," + n[i:]
	}
	return n
}
