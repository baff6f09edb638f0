// Package deptest enforces the layering of ARCHITECTURE.md: imports point down
// only. It asks the go command for each package's dependencies, the way
// Tailscale's tstest/deptest does, so a forbidden import fails the build's tests.
package deptest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/goipsec/goipsec"

type pkg struct {
	ImportPath string
	Deps       []string
	Standard   bool
}

func listAll(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", mod+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := make(map[string]pkg)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")] = p
	}
	return pkgs
}

func isStd(dep string) bool {
	first, _, _ := strings.Cut(dep, "/")
	return !strings.Contains(first, ".")
}

func local(dep string) (string, bool) {
	if dep == mod {
		return "", true
	}
	if rest, ok := strings.CutPrefix(dep, mod+"/"); ok {
		return rest, true
	}
	return "", false
}

// rule says what a package (by path relative to the module) may depend on,
// transitively.
type rule struct {
	stdlibOnly   bool     // no third-party modules at all
	allowedLocal []string // prefixes of local packages it may import; nil = any not forbidden
	forbidden    []string // prefixes of local packages it must never import
	allowedExt   []string // third-party module prefixes it may use
}

var leaf = []string{"iana", "sa", "traffic", "packet", "replay"}

var rules = map[string]rule{
	"iana":               {stdlibOnly: true, allowedLocal: []string{}},
	"sa":                 {stdlibOnly: true, allowedLocal: leaf},
	"traffic":            {stdlibOnly: true, allowedLocal: leaf},
	"packet":             {stdlibOnly: true, allowedLocal: leaf},
	"replay":             {stdlibOnly: true, allowedLocal: leaf},
	"transform":          {allowedLocal: leaf, allowedExt: []string{"golang.org/x/crypto", "golang.org/x/sys"}},
	"esp":                {allowedLocal: append([]string{"transform"}, leaf...), allowedExt: []string{"golang.org/x/crypto", "golang.org/x/sys"}},
	"ah":                 {allowedLocal: append([]string{"transform"}, leaf...), allowedExt: []string{"golang.org/x/crypto", "golang.org/x/sys"}},
	"internal/dataplane": {forbidden: []string{"ike", "config", "ctlapi", "internal/policy", "internal/daemon", "internal/ctlserver"}},
	"ike":                {allowedLocal: append([]string{"transform", "ike/ikewire", "ike/keys"}, leaf...), forbidden: []string{"internal/dataplane", "config", "ctlapi", "internal/policy", "internal/daemon", "internal/ctlserver"}},
	"cmd/ipsecctl":       {allowedLocal: []string{"ctlapi", "ctlapi/client", "internal/buildinfo"}},
	"ike/keys":           {allowedLocal: append([]string{"transform"}, leaf...)},
	"ike/ikewire":        {allowedLocal: append([]string{"transform"}, leaf...)},
	"ctlapi":             {stdlibOnly: true, allowedLocal: []string{}},
	"ctlapi/client":      {stdlibOnly: true, allowedLocal: []string{"ctlapi"}},
	// The offline swanctl.conf converter checks its output with config
	// and nothing else; its command, cmd/swanctl2goipsec, is separate from
	// ipsecctl so that ipsecctl stays a client of the control API only.
	"internal/swanconf":  {allowedLocal: append([]string{"config", "transform"}, leaf...)},
	"internal/buildinfo": {stdlibOnly: true, allowedLocal: []string{}},
	"internal/sdnotify":  {allowedLocal: []string{}, allowedExt: []string{"golang.org/x/sys"}},
}

func hasPrefix(p string, prefixes []string) bool {
	for _, x := range prefixes {
		if p == x || strings.HasPrefix(p, x+"/") {
			return true
		}
	}
	return false
}

func TestLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	pkgs := listAll(t)
	for name, r := range rules {
		p, ok := pkgs[name]
		if !ok {
			continue // not written yet
		}
		for _, dep := range p.Deps {
			if isStd(dep) {
				continue
			}
			l, isLocal := local(dep)
			switch {
			case isLocal:
				if r.allowedLocal != nil && !hasPrefix(l, r.allowedLocal) {
					t.Errorf("%s imports %s; allowed local imports: %v", name, l, r.allowedLocal)
				}
				if hasPrefix(l, r.forbidden) {
					t.Errorf("%s imports %s, which ARCHITECTURE.md forbids", name, l)
				}
			case strings.HasPrefix(dep, "vendor/") || strings.HasPrefix(dep, "internal/"):
				// standard library internals
			default:
				if r.stdlibOnly || (r.allowedExt != nil && !hasPrefix(dep, r.allowedExt)) {
					t.Errorf("%s depends on %s; allowed: stdlib%v", name, dep, r.allowedExt)
				}
			}
		}
	}
}
