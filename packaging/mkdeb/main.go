// Command mkdeb builds goipsec's Debian package from packaging/nfpm.yaml
// with nfpm used as a library, so that `make dist` needs nothing but Go:
//
//	go build -C packaging/mkdeb -o dist/mkdeb . && dist/mkdeb -arch amd64 -version 0.1.0 -bin dist/linux-amd64 -o dist
//
// It runs from the repository root (the paths in nfpm.yaml are relative to
// it) and prints the path of the package it wrote.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conf := fs.String("config", "packaging/nfpm.yaml", "nfpm configuration `file`")
	arch := fs.String("arch", "amd64", "Debian architecture: amd64 or arm64")
	version := fs.String("version", "", "package `version` (required), e.g. 0.1.0 or 0.0.0~git20261203.abcdef123456")
	bin := fs.String("bin", "", "`directory` holding the ipsecd and ipsecctl binaries (required)")
	out := fs.String("o", "dist", "output `directory`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version == "" || *bin == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: mkdeb -version VERSION -bin DIR [-arch ARCH] [-config FILE] [-o DIR]")
		return 2
	}
	path, err := build(*conf, *arch, *version, *bin, *out)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, path)
	return 0
}

// build writes the package and returns its path.
func build(conf, arch, version, bin, out string) (string, error) {
	switch arch {
	case "amd64", "arm64":
	default:
		return "", fmt.Errorf("mkdeb: architecture %q: only amd64 and arm64 are built", arch)
	}
	env := map[string]string{"ARCH": arch, "VERSION": version, "BINDIR": bin}
	cfg, err := nfpm.ParseFileWithEnvMapping(conf, func(k string) string { return env[k] })
	if err != nil {
		return "", fmt.Errorf("mkdeb: %s: %w", conf, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("mkdeb: %w", err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("mkdeb: %s: %w", conf, err)
	}
	for _, c := range info.Contents {
		if c.Source == "" {
			continue
		}
		if _, err := os.Stat(c.Source); err != nil {
			return "", fmt.Errorf("mkdeb: %s: %w", c.Destination, err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("mkdeb: %w", err)
	}
	path := filepath.Join(out, deb.Default.ConventionalFileName(info))
	tmp, err := os.CreateTemp(out, ".mkdeb-*")
	if err != nil {
		return "", fmt.Errorf("mkdeb: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = deb.Default.Package(info, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("mkdeb: packaging: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("mkdeb: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("mkdeb: %w", err)
	}
	return path, nil
}
