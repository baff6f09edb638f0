// Package deptest enforces the layering of docs/ARCHITECTURE.md: imports
// point down only. It asks the go command for every package of the module and
// checks it against one table, the way Tailscale's tstest/deptest does, so a
// forbidden import fails the tests. A package the table does not know fails
// too: a new package is added to the table with its layer and its imports.
package deptest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/goipsec/goipsec"

// Layers of ARCHITECTURE.md. test marks the packages that only tests import
// (doubles, namespace helpers, end-to-end and documentation tests).
const (
	l0 = iota
	l1
	l2
	l3
	l4
	l5
	test
)

// leaf holds the L0 value packages; every package above L0 may import them.
var leaf = []string{"iana", "sa", "traffic", "packet", "replay"}

// rule says what one package (by path relative to the module, "" for the
// facade) may import directly.
type rule struct {
	layer int
	// imports lists the goipsec packages it may import besides the L0
	// leaf packages. Each must sit on a lower layer, or on the same layer
	// when listed here explicitly.
	imports []string
	// ext lists the third-party module path prefixes it may import.
	ext []string
	// os marks the packages that may open OS resources (ARCHITECTURE.md
	// rule 4: cmd/*, the facade, the OS edges and tests): only they may
	// import os/exec, os/signal or unsafe.
	os bool
}

var (
	xcrypto = "golang.org/x/crypto"
	xsys    = "golang.org/x/sys"
)

// rules covers every package of the module.
var rules = map[string]rule{
	// L0: value types and registries, standard library only.
	"iana":    {layer: l0},
	"sa":      {layer: l0, imports: []string{"iana"}},
	"traffic": {layer: l0, imports: []string{"iana"}},
	"replay":  {layer: l0},
	// The module version and VCS revision of the running binary.
	"internal/buildinfo": {layer: l0},
	"packet":             {layer: l0, imports: []string{"iana", "sa"}},

	// L1: protocol cores without I/O, the key schedule, the configuration
	// file, the databases and the OS edges behind small interfaces.
	"transform":    {layer: l1, ext: []string{xcrypto}},
	"esp":          {layer: l1, imports: []string{"transform"}, ext: []string{xcrypto}},
	"ah":           {layer: l1, imports: []string{"transform"}, ext: []string{xcrypto}},
	"ike/ikewire":  {layer: l1, imports: []string{"transform"}, ext: []string{xcrypto}},
	"ike/keys":     {layer: l1, imports: []string{"transform"}},
	"internal/spd": {layer: l1},
	"internal/sad": {layer: l1},
	"config":       {layer: l1, imports: []string{"transform"}, ext: []string{"go.yaml.in/yaml/v3"}},
	"tun":          {layer: l1, ext: []string{"golang.zx2c4.com/wireguard/tun"}, os: true},
	"conn":         {layer: l1, ext: []string{"golang.org/x/net", xsys}, os: true},
	// The host's routes, rules and nftables filter (input, output and
	// forward chains).
	"internal/osnet": {layer: l1, ext: []string{"github.com/vishvananda/netlink", "github.com/google/nftables", "github.com/mdlayher/netlink", xsys}, os: true},
	// systemd's notification socket (sd_notify).
	"internal/sdnotify": {layer: l1, ext: []string{xsys}, os: true},

	// L2: the engines. ike and internal/dataplane never import each other
	// (checked transitively below).
	"ike":                {layer: l2, imports: []string{"transform", "ike/ikewire", "ike/keys"}, ext: []string{xcrypto}},
	"internal/dataplane": {layer: l2, imports: []string{"transform", "esp", "ah", "internal/spd", "internal/sad", "tun", "conn"}},

	// L3: the policy agent, the control API and its server, metrics, and
	// the offline swanctl.conf converter, which checks its output with
	// config and nothing else (its command, cmd/swanctl2goipsec, is
	// separate from ipsecctl so that ipsecctl stays a client of the
	// control API only).
	"internal/policy":    {layer: l3, imports: []string{"config", "ike", "transform", "internal/spd"}},
	"ctlapi":             {layer: l3},
	"ctlapi/client":      {layer: l3, imports: []string{"ctlapi"}},
	"internal/ctlserver": {layer: l3, imports: []string{"ctlapi"}},
	"internal/metrics":   {layer: l3, ext: []string{"github.com/prometheus/client_golang"}},
	"internal/swanconf":  {layer: l3, imports: []string{"config", "transform"}},
	// Shared policy from etcd (policy_sources), merged with the local file.
	"internal/policysource": {layer: l3, imports: []string{"config", "ctlapi"}, ext: []string{"go.etcd.io/etcd/client/v3", "go.uber.org/zap"}},

	// L4: the one wiring package where IKE and the data plane meet.
	"internal/daemon": {layer: l4, imports: []string{
		"transform", "esp", "ah", "config", "tun", "conn", "internal/spd", "internal/sad",
		"ike", "internal/dataplane", "internal/policy", "ctlapi", "internal/metrics",
	}},

	// L5: commands and the embeddable facade.
	"": {layer: l5, imports: []string{
		"config", "tun", "conn", "ike", "ctlapi", "internal/osnet", "internal/policy",
		"internal/ctlserver", "internal/metrics", "internal/daemon", "internal/policysource",
	}, ext: []string{"golang.zx2c4.com/wireguard/tun/netstack"}, os: true},
	"cmd/ipsecd":          {layer: l5, imports: []string{"", "config", "ctlapi", "internal/buildinfo", "internal/sdnotify"}, os: true},
	"cmd/ipsecctl":        {layer: l5, imports: []string{"ctlapi", "ctlapi/client", "internal/buildinfo"}, os: true},
	"cmd/swanctl2goipsec": {layer: l5, imports: []string{"internal/swanconf"}, os: true},
	// The IKE load generator: the engine as N initiators with an Installer
	// that installs nothing.
	"cmd/ikeload": {layer: l5, imports: []string{"ike", "transform"}, os: true},
	// The report of make bench-net (scripts/bench.sh): go test -bench
	// output and the scripts' records into tables and JSON; standard
	// library only.
	"internal/benchreport": {layer: l5},

	// Imported by tests only.
	"conn/conntest":              {layer: test, imports: []string{"conn"}},
	"tun/tuntest":                {layer: test, imports: []string{"tun"}},
	"internal/ctlserver/ctltest": {layer: test, imports: []string{"ctlapi", "internal/ctlserver"}},
	"internal/testenv":           {layer: test, os: true},
	"internal/testca":            {layer: test, os: true},
	"internal/nstest":            {layer: test, imports: []string{"internal/testenv"}, ext: []string{"github.com/vishvananda/netns"}, os: true},
	"internal/swantest":          {layer: test, imports: []string{"internal/testenv", "internal/nstest"}, os: true},
	"internal/etcdtest":          {layer: test, imports: []string{"internal/testenv"}, ext: []string{"go.etcd.io/etcd/client/v3", "go.uber.org/zap"}, os: true},
	"internal/xsk":               {layer: test, ext: []string{xsys}, os: true}, // AF_XDP, for a benchmark only
	"internal/e2e":               {layer: test},
	"internal/interop":           {layer: test},
	"internal/benchtest":         {layer: test},
	"internal/docstest":          {layer: test},
	"internal/deptest":           {layer: test},
}

// forbiddenBelowL3 are the packages that nothing in L0-L2 may depend on,
// even indirectly (ARCHITECTURE.md rule 2).
var forbiddenBelowL3 = []string{"config", "ctlapi", "internal/policy", "internal/daemon"}

// osImports are the standard library packages that only rule.os packages
// may import.
var osImports = []string{"os/exec", "os/signal", "unsafe"}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// listAll returns the module's packages by path relative to the module.
func listAll(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-e", "-json", mod+"/...").Output()
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
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		name, _ := local(p.ImportPath)
		pkgs[name] = p
	}
	return pkgs
}

// local returns a goipsec package's path relative to the module.
func local(path string) (string, bool) {
	if path == mod {
		return "", true
	}
	return strings.CutPrefix(path, mod+"/")
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func hasPrefix(p string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(x string) bool {
		return p == x || strings.HasPrefix(p, x+"/")
	})
}

func show(name string) string {
	if name == "" {
		return "ipsec (module root)"
	}
	return name
}

// TestLayers checks every package's direct imports against rules, and the
// rules of ARCHITECTURE.md on the transitive dependencies. It runs in -short:
// one go list of the module takes about a second.
func TestLayers(t *testing.T) {
	pkgs := listAll(t)
	if len(pkgs) < len(leaf) {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	for _, name := range unknown(pkgs) {
		t.Errorf("package %s is not in internal/deptest's table: add it with its layer and allowed imports", show(name))
	}
	for name, r := range rules {
		if _, ok := pkgs[name]; !ok {
			t.Errorf("internal/deptest's table lists %s, which go list does not know", show(name))
		}
		for _, imp := range r.imports {
			ir, ok := rules[imp]
			switch {
			case !ok:
				t.Errorf("table: %s may import %s, which the table does not know", show(name), show(imp))
			case ir.layer > r.layer || ir.layer == test && r.layer != test:
				t.Errorf("table: %s (L%d) may import %s (L%d), a higher layer", show(name), r.layer, show(imp), ir.layer)
			}
		}
	}
	for name, p := range pkgs {
		r, ok := rules[name]
		if !ok {
			continue
		}
		checkImports(t, name, r, p.Imports)
		checkDeps(t, name, r, p.Deps)
	}
}

// unknown returns the packages of pkgs that the table does not know.
func unknown(pkgs map[string]pkg) []string {
	var out []string
	for name := range pkgs {
		if _, ok := rules[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// reporter is the part of testing.T that the checks use, so that a test can
// check the checks.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

func checkImports(t reporter, name string, r rule, imports []string) {
	t.Helper()
	for _, imp := range imports {
		if l, ok := local(imp); ok {
			ir := rules[l]
			allowed := slices.Contains(r.imports, l) || r.layer > l0 && slices.Contains(leaf, l)
			if !allowed || ir.layer > r.layer {
				t.Errorf("%s (L%d) imports %s (L%d); the table allows %v plus L0 %v", show(name), r.layer, show(l), ir.layer, r.imports, leaf)
			}
			continue
		}
		if isStd(imp) {
			if !r.os && slices.Contains(osImports, imp) {
				t.Errorf("%s imports %s: only cmd/*, the facade, the OS edges and tests open OS resources", show(name), imp)
			}
			continue
		}
		if !hasPrefix(imp, r.ext) {
			t.Errorf("%s imports %s; the table allows the standard library and %v", show(name), imp, r.ext)
		}
	}
}

func checkDeps(t reporter, name string, r rule, deps []string) {
	t.Helper()
	for _, dep := range deps {
		l, ok := local(dep)
		if !ok {
			continue
		}
		switch {
		case name == "ike" && l == "internal/dataplane", name == "internal/dataplane" && l == "ike":
			t.Errorf("%s depends on %s: ike and internal/dataplane never import each other", name, l)
		case r.layer <= l2 && hasPrefix(l, forbiddenBelowL3):
			t.Errorf("%s (L%d) depends on %s: nothing in L0-L2 imports %v", show(name), r.layer, l, forbiddenBelowL3)
		case name == "cmd/ipsecctl" && l != "ctlapi" && l != "ctlapi/client" && l != "internal/buildinfo":
			t.Errorf("cmd/ipsecctl depends on %s: it imports only ctlapi, ctlapi/client and internal/buildinfo (its own version)", show(l))
		case r.layer != test && rules[l].layer == test:
			t.Errorf("%s depends on %s, which only tests may import", show(name), l)
		}
	}
}

// recorder collects what the checks report.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestLayersRejectUnknownPackage: a package that the table does not know
// is reported, so a new package cannot slip past the layering rules.
func TestLayersRejectUnknownPackage(t *testing.T) {
	pkgs := map[string]pkg{"": {}, "iana": {}, "internal/newthing": {}}
	if got := unknown(pkgs); !slices.Equal(got, []string{"internal/newthing"}) {
		t.Errorf("unknown = %q", got)
	}
}

// TestLayersRejectForbiddenImports: the checks catch each rule of
// ARCHITECTURE.md on a made-up import.
func TestLayersRejectForbiddenImports(t *testing.T) {
	for _, tc := range []struct {
		name    string
		imports []string // direct
		deps    []string // transitive
		want    string
	}{
		{"ike", []string{mod + "/internal/dataplane"}, []string{mod + "/internal/dataplane"}, "never import each other"},
		{"internal/dataplane", nil, []string{mod + "/ike"}, "never import each other"},
		{"esp", nil, []string{mod + "/config"}, "nothing in L0-L2 imports"},
		{"cmd/ipsecctl", []string{mod + "/internal/daemon"}, []string{mod + "/internal/daemon"}, "imports only ctlapi, ctlapi/client and internal/buildinfo"},
		{"traffic", []string{mod + "/packet"}, nil, "the table allows"},
		{"transform", []string{"github.com/vishvananda/netlink"}, nil, "the table allows the standard library"},
		{"internal/policy", []string{"os/exec"}, nil, "open OS resources"},
		{"internal/daemon", []string{mod + "/conn/conntest"}, []string{mod + "/conn/conntest"}, "only tests may import"},
	} {
		var rec recorder
		checkImports(&rec, tc.name, rules[tc.name], tc.imports)
		checkDeps(&rec, tc.name, rules[tc.name], tc.deps)
		if !slices.ContainsFunc(rec.errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
			t.Errorf("%s importing %v: reported %q, want %q", tc.name, tc.deps, rec.errs, tc.want)
		}
	}
}
