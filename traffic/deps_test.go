package traffic

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps traffic a leaf package (L0): the standard library only.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("traffic imports %s; L0 packages use the standard library only", imp)
		}
	}
}
