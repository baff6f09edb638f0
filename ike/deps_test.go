package ike

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps ike on layer L2 (ARCHITECTURE.md): it may use the value
// packages, transform and its own codec and key schedule, never the data
// plane, the configuration file's package, the control API or the daemon.
// internal/deptest checks the transitive closure.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/goipsec/goipsec/"
	allowed := map[string]bool{
		mod + "iana": true, mod + "sa": true, mod + "traffic": true, mod + "transform": true,
		mod + "ike/ikewire": true, mod + "ike/keys": true,
		"golang.org/x/crypto": true,
	}
	for _, imp := range pkg.Imports {
		first, _, _ := strings.Cut(imp, "/")
		if !strings.Contains(first, ".") {
			continue // standard library
		}
		ok := allowed[imp]
		for a := range allowed {
			if strings.HasPrefix(imp, a+"/") && !strings.HasPrefix(a, mod) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("ike imports %s", imp)
		}
	}
}
