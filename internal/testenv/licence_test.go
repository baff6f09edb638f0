package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// licenceMarks identifies the licences compatible with the Apache License
// 2.0 by a phrase of their text, in the order labels name them.
var licenceMarks = []struct{ id, mark string }{
	{"Apache-2.0", "Apache License"},
	{"MIT", "Permission is hereby granted, free of charge"},
	{"BSD-3-Clause", "Neither the name"},
	{"ISC", "Permission to use, copy, modify, and/or distribute this software for any"},
	{"MPL-2.0", "Mozilla Public License Version 2.0"},
}

// copyleft marks licences that a module of an Apache-2.0 program may not
// carry.
var copyleft = []string{"GNU GENERAL PUBLIC LICENSE", "GNU LESSER GENERAL PUBLIC LICENSE", "GNU AFFERO GENERAL PUBLIC LICENSE"}

// TestDependencyLicences reads the licence files of every module that the
// packages and tests of this module build with (go list -deps -test), and
// checks that each licence is one of licenceMarks, no copyleft licence is
// among them, and the README's Licence section lists the module under the
// licences found ("- Apache-2.0 and MIT: `module`, ...").
func TestDependencyLicences(t *testing.T) {
	root := RepoRoot(t)
	goBin := RequireCommand(t, "go")
	cmd := exec.Command(goBin, "list", "-deps", "-test", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Dir}}{{end}}{{end}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	listed := readmeLicences(t, filepath.Join(root, "README.md"))
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, dir, ok := strings.Cut(line, " ")
		if !ok || seen[path] {
			continue
		}
		seen[path] = true
		if dir == "" {
			Missing(t, path+" is not in the module cache (go mod download)")
			continue
		}
		text := licenceText(t, dir)
		if text == "" {
			t.Errorf("%s: no LICENSE, LICENCE or COPYING file in %s", path, dir)
			continue
		}
		for _, c := range copyleft {
			if strings.Contains(text, c) {
				t.Errorf("%s: its licence files contain %q", path, c)
			}
		}
		var ids []string
		for _, l := range licenceMarks {
			if strings.Contains(text, l.mark) {
				ids = append(ids, l.id)
			}
		}
		if len(ids) == 0 {
			t.Errorf("%s: a licence this test does not know; check it by hand and add it to licenceMarks", path)
			continue
		}
		switch want := strings.Join(ids, " and "); listed[path] {
		case want:
		case "":
			t.Errorf("README.md's Licence section does not list %s (%s)", path, want)
		default:
			t.Errorf("README.md's Licence section lists %s as %q, its licence files say %q", path, listed[path], want)
		}
	}
	for path := range listed {
		if !seen[path] {
			t.Errorf("README.md's Licence section lists %s, which the build does not use", path)
		}
	}
}

// licenceText returns the licence files at the top of a module's
// directory, concatenated, with every run of white space made one space.
func licenceText(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		n := strings.ToUpper(e.Name())
		if e.Type().IsRegular() && (strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") || strings.HasPrefix(n, "COPYING")) {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			b.Write(raw)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ") // phrases may wrap
}

// readmeLicences returns, from the list items of the README's Licence
// section ("- LABEL: `module`, `module`" with indented continuation lines),
// each module's label.
func readmeLicences(t *testing.T, readme string) map[string]string {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	in, label := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in, label = line == "## Licence", ""
			continue
		case !in:
			continue
		case strings.HasPrefix(line, "- "):
			label, line, _ = strings.Cut(strings.TrimPrefix(line, "- "), ":")
		case !strings.HasPrefix(line, "  "):
			label = ""
		}
		if label == "" {
			continue
		}
		for i, f := range strings.Split(line, "`") {
			if i%2 == 1 && strings.Contains(f, ".") && strings.Contains(f, "/") {
				out[f] = label
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("README.md has no Licence section with a list of modules")
	}
	return out
}
