// Command benchreport turns the raw records of `make bench-net`
// (scripts/bench.sh) into one report, as text and as JSON, and compares two
// such JSON files. It is a tool of the benchmark script, not part of
// goipsec.
//
//	benchreport report -meta META.tsv [-net NET.tsv] [-scale SCALE.txt] [-ike IKE.json] [-json OUT.json]
//	benchreport compare OLD.json NEW.json
//	benchreport show FILE.json
//
// report reads the run's description (META.tsv: KEY<tab>VALUE lines, see
// readMeta), the throughput and ping records of scripts/bench.sh (NET.tsv,
// see netRows), the `go test -bench` output of internal/dataplane's SA-scale
// benchmarks (SCALE.txt) and the JSON of scripts/ikeload.sh (IKE.json),
// computes medians, ranges and ratios, prints the tables and writes them
// with every run's values to OUT.json. compare prints each figure of the
// two files, old -> new, with the ratio. show prints the tables of a JSON
// file again.
//
// `go test -bench` output is parsed here (parseGoBench), with no
// dependency on benchstat.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

const usage = `usage: benchreport report -meta META.tsv [-net NET.tsv] [-scale SCALE.txt] [-ike IKE.json] [-json OUT.json]
       benchreport compare OLD.json NEW.json
       benchreport show FILE.json`

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("benchreport: no command\n%s", usage)
	}
	switch args[0] {
	case "report":
		return runReport(args[1:], stdout)
	case "compare":
		if len(args) != 3 {
			return fmt.Errorf("benchreport: compare takes two JSON files\n%s", usage)
		}
		old, err := loadReport(args[1])
		if err != nil {
			return err
		}
		cur, err := loadReport(args[2])
		if err != nil {
			return err
		}
		compare(stdout, old, cur)
		return nil
	case "show":
		if len(args) != 2 {
			return fmt.Errorf("benchreport: show takes one JSON file\n%s", usage)
		}
		r, err := loadReport(args[1])
		if err != nil {
			return err
		}
		r.write(stdout)
		return nil
	}
	return fmt.Errorf("benchreport: unknown command %q\n%s", args[0], usage)
}

func runReport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchreport report", flag.ContinueOnError)
	metaFile := fs.String("meta", "", "the run's description, KEY<tab>VALUE lines")
	netFile := fs.String("net", "", "scripts/bench.sh's throughput and ping records")
	scaleFile := fs.String("scale", "", "go test -bench output of the SA-scale benchmarks")
	ikeFile := fs.String("ike", "", "scripts/ikeload.sh's JSON (IKELOAD_JSON)")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *metaFile == "" {
		return fmt.Errorf("benchreport: report needs -meta and takes no arguments\n%s", usage)
	}
	r, err := buildReport(*metaFile, *netFile, *scaleFile, *ikeFile)
	if err != nil {
		return err
	}
	r.write(stdout)
	if *jsonFile == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("benchreport: %w", err)
	}
	if err := os.WriteFile(*jsonFile, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("benchreport: %w", err)
	}
	return nil
}

// buildReport reads the inputs that are given ("" for a part that did not
// run) into a Report.
func buildReport(metaFile, netFile, scaleFile, ikeFile string) (*Report, error) {
	r := &Report{Schema: schema}
	err := withFile(metaFile, func(f io.Reader) (err error) {
		r.Meta, r.Parts, err = readMeta(f)
		return err
	})
	if err == nil {
		err = withFile(netFile, func(f io.Reader) error {
			n, err := readNet(f)
			if err == nil && slices.Contains(r.Parts, "net") {
				r.Net = netPart(n)
			}
			if err == nil && slices.Contains(r.Parts, "latency") {
				r.Latency = latencyPart(n)
			}
			return err
		})
	}
	if err == nil {
		err = withFile(scaleFile, func(f io.Reader) error {
			g, err := parseGoBench(f)
			if err == nil {
				r.Scale = scalePart(g)
			}
			return err
		})
	}
	if err == nil {
		err = withFile(ikeFile, func(f io.Reader) error {
			rows, err := readIKE(f)
			if err == nil {
				r.IKE = ikePart(rows)
			}
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// withFile calls f with the file at path open; nothing when path is "".
func withFile(path string, f func(io.Reader) error) error {
	if path == "" {
		return nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("benchreport: %w", err)
	}
	defer fh.Close()
	return f(fh)
}
