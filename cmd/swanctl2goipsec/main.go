// Command swanctl2goipsec converts a strongSwan swanctl.conf into a goipsec
// configuration file:
//
//	swanctl2goipsec [-o OUT.yaml] SWANCTL.CONF
//
// The YAML goes to standard output, or to OUT.yaml (created with mode 0600:
// it holds the pre-shared keys). Standard error gets one line per setting
// that could not be carried over, with its swanctl.conf line:
//
//	swanctl.conf:12: connections.rw.pools: address pools are not implemented in goipsec; dropped
//
// and a summary. The output is checked as `ipsecd --check` would check it
// (relative certificate paths are written for a file next to OUT.yaml, or
// next to swanctl.conf without -o), and what goipsec refuses is dropped
// and reported the same way.
//
// Exit codes: 0 everything was converted, 3 the conversion is partial (see
// standard error), 1 the file could not be read or parsed, 2 usage error.
//
// It is a command of its own rather than an ipsecctl subcommand because it
// works offline on files and needs the config package to check its output,
// while ipsecctl stays a thin client of the control API (ARCHITECTURE.md).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/goipsec/goipsec/internal/swanconf"
)

// Exit codes.
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitPartial = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("swanctl2goipsec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the YAML to this file (mode 0600) instead of standard output")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: swanctl2goipsec [-o OUT.yaml] SWANCTL.CONF\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "exit codes: 0 converted, 3 partly converted, 1 cannot read or parse, 2 usage\n")
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	var o swanconf.Options
	if *out != "" {
		o.Dir = filepath.Dir(*out)
	}
	res, err := swanconf.ConvertFile(fs.Arg(0), o)
	if err != nil {
		fmt.Fprintf(stderr, "swanctl2goipsec: %v\n", err)
		return exitFail
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	if *out != "" {
		if err := os.WriteFile(*out, res.YAML, 0o600); err != nil {
			fmt.Fprintf(stderr, "swanctl2goipsec: %v\n", err)
			return exitFail
		}
	} else if _, err := stdout.Write(res.YAML); err != nil {
		fmt.Fprintf(stderr, "swanctl2goipsec: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stderr, "swanctl2goipsec: %d connections, %d policies, %d secrets; %d settings not carried over\n",
		res.Connections, res.Policies, res.Secrets, len(res.Notes))
	if len(res.Notes) > 0 {
		return exitPartial
	}
	return exitOK
}
