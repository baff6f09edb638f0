package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testFiles returns the YAML files of a testdata directory.
func testFiles(t *testing.T, dir string) map[string][]byte {
	names, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no testdata/%s/*.yaml: %v", dir, err)
	}
	out := make(map[string][]byte)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(n)] = b
	}
	return out
}

var checkKey = regexp.MustCompile(`(?m)^# --check: (.+)$`)

// refusedFor checks that ipsecd --check refuses a test file for the key its
// "# --check: KEY" line names.
func refusedFor(t *testing.T, name string, data []byte) (out string) {
	t.Helper()
	m := checkKey.FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no \"# --check: KEY\" line", name)
	}
	ok, out := check(t, name, data)
	if ok {
		t.Errorf("%s: ipsecd --check accepts it", name)
	} else if !strings.Contains(out, ": "+string(m[1])+": ") {
		t.Errorf("%s: ipsecd --check refuses it, but not for %s:\n%s", name, m[1], out)
	}
	return out
}

// TestCheckSchemaAgreeOnInvalid: both refuse each file in testdata/invalid
// (unknown keys, wrong types, bad enum values and durations, missing
// required keys, ...), ipsecd --check for the key the file names.
func TestCheckSchemaAgreeOnInvalid(t *testing.T) {
	s := compileSchema(t)
	for name, data := range testFiles(t, "invalid") {
		refusedFor(t, name, data)
		if err := validate(s, data); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}

// TestCheckSchemaKnownDisagreements: each file in testdata/checkonly is
// refused by ipsecd --check and accepted by the schema, which checks each
// value on its own, not what it means next to the others (the list is in
// docs/config.md). A file the schema comes to refuse belongs in
// testdata/invalid.
func TestCheckSchemaKnownDisagreements(t *testing.T) {
	s := compileSchema(t)
	for name, data := range testFiles(t, "checkonly") {
		if out := refusedFor(t, name, data); !onlyCheckCanSee(out) {
			t.Errorf("%s: a reason not in checkOnly:\n%s", name, out)
		}
		if err := validate(s, data); err != nil {
			t.Errorf("%s: the schema refuses it now: move it to testdata/invalid (%v)", name, err)
		}
	}
	// The other way round: ipsecd is more lenient than the schema here
	// (docs/config.md says so too).
	for name, data := range testFiles(t, "schemaonly") {
		if ok, out := check(t, name, data); !ok {
			t.Errorf("%s: ipsecd --check refuses it now: move it to testdata/invalid:\n%s", name, out)
		}
		if err := validate(s, data); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}

// checkOnly are the reasons of ipsecd --check that the schema cannot see
// by nature: what docs/config.md lists under "What only ipsecd --check
// checks" (and testdata/checkonly shows, one file each).
var checkOnly = []string{
	"unknown keyword", "proposal", "unknown algorithm", // proposals and algorithms
	"invalid prefix", "selector", "not a unicast IP address", "is not an IP address, prefix, range, DNS name", "identity \"",
	"address range",                                                                                                            // remote_addrs ranges
	"no connection \"", "a group's connection has exactly one", "protects a group: leave remote.id out", "is already in group", // groups and their connections
	"dynamic selectors would protect all traffic", "fallback_timeout and fallback_time must be positive",
	"psk needs a secret in secrets.ike",
	"is already used by", "is already the spi_in",
	"bytes (", "equal to key_out", "same address family", "in transport mode the selectors", "soft limit is larger",
	"must be between", "invalid number of days", // values written as strings; days
	"cannot read", "cannot stat", "accessible by group or others", "is not a regular file",
	"only one YAML document", "merge keys are not supported", "nodes once aliases are expanded",
	"empty list element",
	"must be larger than rekey_", "must be smaller than rekey_time", "must be smaller than reauth_time", "needs dpd_delay", // lifetimes that depend on each other
	`"0x`,                                  // a 0x duration, which YAML reads as a number
	"must be hexadecimal starting with 0x", // a key YAML reads as a number
	// policy_sources.etcd
	"must be a URL", "must be name=value", "must start and end with '/'", "must be longer than 0s",
}

// onlyCheckCanSee reports whether every problem --check printed is one
// the schema cannot see.
func onlyCheckCanSee(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		known := false
		for _, r := range checkOnly {
			known = known || strings.Contains(line, r)
		}
		if !known {
			return false
		}
	}
	return true
}
