package spd

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps the SPD on layer L1: standard library and the L0 value
// packages only (ARCHITECTURE.md).
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"github.com/goipsec/goipsec/packet":  true,
		"github.com/goipsec/goipsec/sa":      true,
		"github.com/goipsec/goipsec/traffic": true,
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") && !allowed[imp] {
			t.Errorf("spd imports %s", imp)
		}
	}
}
