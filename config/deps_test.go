package config

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps config on layer L1: it may use the value packages and
// transform (to validate suites), never engines, policy or the daemon.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"github.com/goipsec/goipsec/iana":      true,
		"github.com/goipsec/goipsec/sa":        true,
		"github.com/goipsec/goipsec/traffic":   true,
		"github.com/goipsec/goipsec/transform": true,
		"go.yaml.in/yaml/v3":                   true,
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") && !allowed[imp] {
			t.Errorf("config imports %s", imp)
		}
	}
}
