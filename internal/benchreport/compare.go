package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

// loadReport reads a report's JSON file.
func loadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("benchreport: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("benchreport: %s: %w", path, err)
	}
	if r.Schema != schema {
		return nil, fmt.Errorf("benchreport: %s: schema %q, not %q (a file of make bench-net)", path, r.Schema, schema)
	}
	return &r, nil
}

// parts returns the report's parts by name, in report order.
func (r *Report) parts() []struct {
	name string
	p    *Part
} {
	return []struct {
		name string
		p    *Part
	}{{"net", r.Net}, {"latency", r.Latency}, {"scale", r.Scale}, {"ike", r.IKE}}
}

// decimals is how many decimals a figure of unit is shown with.
func decimals(unit string) int {
	switch unit {
	case "ratio", "Gbit/s", "Gbit/s per core":
		return 2
	case "ms":
		return 3
	case "KiB":
		return 1
	}
	return 0
}

// compare prints every figure of cur next to the same figure of old, with
// cur/old of the medians and a verdict: "~" when the two ranges overlap
// (the difference is within the spread of the runs), else "better" or
// "worse" by the figure's direction ("changed" when it has none). Figures
// that only one report has are listed after each part.
func compare(w io.Writer, old, cur *Report) {
	for _, x := range []struct {
		name string
		r    *Report
	}{{"old", old}, {"new", cur}} {
		m := x.r.Meta
		fmt.Fprintf(w, "%s: %s, revision %s (modified %t), %s, load %s -> %s, parts %v\n", x.name, m.Date, m.Revision, m.Modified,
			m.GoVersion, loads(m.LoadStart), loads(m.LoadEnd), x.r.Parts)
	}
	fmt.Fprintln(w, "Cells: median [min-max]; new/old: ratio of the medians; ~: the ranges overlap (within the noise of the runs); -: a single value.")
	olds := old.parts()
	for i, np := range cur.parts() {
		op := olds[i].p
		if np.p == nil && op == nil {
			continue
		}
		fmt.Fprintf(w, "\n== %s\n", np.name)
		if np.p == nil || op == nil {
			fmt.Fprintf(w, "only in the %s report\n", map[bool]string{true: "old", false: "new"}[np.p == nil])
			continue
		}
		var rows [][]string
		var onlyNew, onlyOld []string
		for _, f := range np.p.Figures {
			o, ok := op.get(f.Key)
			if !ok {
				onlyNew = append(onlyNew, f.Key)
				continue
			}
			d := decimals(f.Unit)
			verdict := "~"
			switch {
			case len(f.Runs) < 2 || len(o.Runs) < 2:
				verdict = "-" // no spread to judge by
			case !f.overlaps(o.Stat):
				verdict = "changed"
				switch up := f.Median > o.Median; {
				case f.Better == "higher" && up || f.Better == "lower" && !up:
					verdict = "better"
				case f.Better != "":
					verdict = "worse"
				}
			}
			ratio := "-"
			if o.Median != 0 {
				ratio = strconv.FormatFloat(f.Median/o.Median, 'f', 2, 64)
			}
			rows = append(rows, []string{f.Key, f.Unit, o.format(d), f.format(d), ratio, verdict})
		}
		for _, f := range op.Figures {
			if _, ok := np.p.get(f.Key); !ok {
				onlyOld = append(onlyOld, f.Key)
			}
		}
		table(w, []string{"figure", "unit", "old", "new", "new/old", ""}, rows)
		if len(onlyOld) > 0 {
			fmt.Fprintf(w, "only in old: %v\n", onlyOld)
		}
		if len(onlyNew) > 0 {
			fmt.Fprintf(w, "only in new: %v\n", onlyNew)
		}
	}
}
