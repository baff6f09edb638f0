package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// benchLine is one result line of `go test -bench` output: one run of one
// benchmark.
type benchLine struct {
	// Name is the benchmark's name without "Benchmark" and without the
	// -GOMAXPROCS suffix: "InboundScale/random/n=1000".
	Name string
	// N is the number of iterations.
	N int
	// Metrics holds the values by unit: "ns/op", "cpu-ns/op", "B/op",
	// "allocs/op", "MB/s" and the benchmark's own ReportMetric units.
	Metrics map[string]float64
}

// goBench is what parseGoBench read from one or more `go test -bench`
// outputs.
type goBench struct {
	// Header holds the goos, goarch, pkg and cpu lines (the last seen).
	Header map[string]string
	Lines  []benchLine
}

var procsSuffix = regexp.MustCompile(`-[0-9]+$`)

// parseGoBench reads `go test -bench` output (several runs may be
// concatenated). Lines that are not results (PASS, ok, logs) are skipped;
// a benchmark that logged has its name and its figures on two lines, which
// are put together. The -GOMAXPROCS suffix is removed when every result
// line has the same one, as the testing package prints it.
func parseGoBench(r io.Reader) (*goBench, error) {
	out := &goBench{Header: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	pending := ""
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok && (k == "goos" || k == "goarch" || k == "pkg" || k == "cpu") {
			out.Header[k] = strings.TrimSpace(v)
			continue
		}
		name := ""
		if strings.HasPrefix(f[0], "Benchmark") {
			name, f = f[0], f[1:]
			if len(f) == 0 {
				pending = name // the figures follow the benchmark's log
				continue
			}
		} else if pending != "" {
			name = pending
		} else {
			continue
		}
		l, ok := parseFigures(f)
		if !ok {
			continue
		}
		pending = ""
		l.Name = name
		out.Lines = append(out.Lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("benchreport: reading go test output: %w", err)
	}
	suffix := ""
	for i, l := range out.Lines {
		s := procsSuffix.FindString(l.Name)
		if i > 0 && s != suffix {
			suffix = ""
			break
		}
		suffix = s
	}
	for i := range out.Lines {
		l := &out.Lines[i]
		l.Name = strings.TrimSuffix(strings.TrimPrefix(l.Name, "Benchmark"), suffix)
	}
	return out, nil
}

// parseFigures parses "N value unit value unit ...".
func parseFigures(f []string) (benchLine, bool) {
	if len(f) < 3 || len(f)%2 == 0 {
		return benchLine{}, false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return benchLine{}, false
	}
	l := benchLine{N: n, Metrics: make(map[string]float64, len(f)/2)}
	for i := 1; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return benchLine{}, false
		}
		l.Metrics[f[i+1]] = v
	}
	return l, true
}

// runs returns the values of unit over the runs of the benchmark name, in
// the order they were printed, keyed by their index.
func (g *goBench) runs(name, unit string) runs {
	out := runs{}
	for _, l := range g.Lines {
		if v, ok := l.Metrics[unit]; ok && l.Name == name {
			out[len(out)] = v
		}
	}
	return out
}
