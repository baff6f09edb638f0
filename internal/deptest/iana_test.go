package deptest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// ianaNumbers are the IP protocol numbers and UDP ports that package iana
// defines and that no other package may define again as a literal.
var ianaNumbers = map[string]bool{
	"1": true, "6": true, "17": true, "41": true, "50": true, "51": true, "58": true, "59": true,
	"500": true, "4500": true,
}

// literalExceptions are files, or "file:name" for one name in a file,
// that may still hold such a literal, with why.
var literalExceptions = map[string]string{
	// ipsecctl imports only ctlapi and its client (ARCHITECTURE.md rule 3),
	// so it cannot name iana's constants.
	"cmd/ipsecctl/main.go":   "ipsecctl's protocol names",
	"cmd/ipsecctl/format.go": "ipsecctl's protocol names",
	// Another registry: IKE's Protocol ID (RFC 7296, Section 3.3.1).
	"ike/ikewire/types.go:ProtoIKE": "IKE Protocol ID 1, not ICMP",
}

// TestIANANumbersDefinedOnce: protocol numbers and the IKE ports are
// defined in iana only. A constant, or an assignment to a name that says
// Proto or Port, with one of those numbers as a literal fails, in every
// non-test file of the module. The names other packages export for them
// must equal iana's.
func TestIANANumbersDefinedOnce(t *testing.T) {
	if traffic.ProtoESP != iana.ProtoESP || traffic.ProtoAH != iana.ProtoAH || traffic.ProtoUDP != iana.ProtoUDP ||
		sa.ESP != iana.ProtoESP || sa.AH != iana.ProtoAH ||
		esp.NATTPort != iana.PortNATT || conn.NATTPort != iana.PortNATT || esp.NonESPMarkerLen != iana.NonESPMarkerLen {
		t.Error("a package's protocol number or port differs from iana's")
	}
	fset := token.NewFileSet()
	for name, p := range listAll(t) {
		if name == "iana" {
			continue
		}
		for _, file := range p.GoFiles {
			rel := file
			if name != "" {
				rel = name + "/" + file
			}
			if literalExceptions[rel] != "" {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, file), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkLiterals(t, fset, rel, f)
		}
	}
}

// checkLiterals reports the IANA numbers that f, at rel in the module,
// defines as literals.
func checkLiterals(t *testing.T, fset *token.FileSet, rel string, f *ast.File) {
	t.Helper()
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, v := range n.Values {
				if i < len(n.Names) && isIANALiteral(v) && namesNumber(n.Names[i].Name) && literalExceptions[rel+":"+n.Names[i].Name] == "" {
					t.Errorf("%s: %s = %s: use package iana's constant", fset.Position(v.Pos()), n.Names[i].Name, v.(*ast.BasicLit).Value)
				}
			}
		case *ast.AssignStmt:
			for i, v := range n.Rhs {
				if i < len(n.Lhs) && isIANALiteral(v) && namesNumber(exprName(n.Lhs[i])) && literalExceptions[rel+":"+exprName(n.Lhs[i])] == "" {
					t.Errorf("%s: %s = %s: use package iana's constant", fset.Position(v.Pos()), exprName(n.Lhs[i]), v.(*ast.BasicLit).Value)
				}
			}
		}
		return true
	})
}

func isIANALiteral(e ast.Expr) bool {
	l, ok := e.(*ast.BasicLit)
	return ok && l.Kind == token.INT && ianaNumbers[l.Value]
}

// namesNumber reports whether a name says it holds a protocol number or a
// port.
func namesNumber(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "proto") || strings.HasSuffix(n, "port") || n == "esp" || n == "ah"
}

func exprName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}
