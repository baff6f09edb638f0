package ctlapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ctlapi"
)

func TestSPIText(t *testing.T) {
	b, err := json.Marshal(struct {
		In  ctlapi.SPI    `json:"in"`
		IKE ctlapi.IKESPI `json:"ike"`
	}{0xc0ffee01, 0x1})
	if err != nil || string(b) != `{"in":"c0ffee01","ike":"0000000000000001"}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	for _, tt := range []struct {
		in   string
		want ctlapi.SPI
		ok   bool
	}{
		{`"c0ffee01"`, 0xc0ffee01, true},
		{`"C0FFEE01"`, 0xc0ffee01, true},
		{`"0x00001001"`, 0x1001, true},
		{`"1"`, 1, true},
		{`""`, 0, false},
		{`"0x"`, 0, false},
		{`"c0ffee011"`, 0, false},
		{`"-1"`, 0, false},
		{`"+1"`, 0, false},
		{`"g"`, 0, false},
		{`3221225985`, 0, false}, // a number is not the promised form
	} {
		var s ctlapi.SPI
		err := json.Unmarshal([]byte(tt.in), &s)
		if (err == nil) != tt.ok || (tt.ok && s != tt.want) {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v ok=%v", tt.in, s, err, tt.want, tt.ok)
		}
	}
	var ike ctlapi.IKESPI
	if err := json.Unmarshal([]byte(`"fedcba9876543210"`), &ike); err != nil || ike != 0xfedcba9876543210 {
		t.Errorf("IKESPI = %v, %v", ike, err)
	}
	if err := json.Unmarshal([]byte(`"1fedcba9876543210"`), &ike); err == nil {
		t.Error("17 hex digits accepted as an IKE SPI")
	}
}

func TestSplitName(t *testing.T) {
	for _, tt := range []struct {
		name, conn, child string
		ok                bool
	}{
		{"site-b", "site-b", "", true},
		{"site-b/net", "site-b", "net", true},
		{"lab", "lab", "", true},
		{"ümlaut/κ", "ümlaut", "κ", true},
		{"", "", "", false},
		{"/net", "", "", false},
		{"site-b/", "", "", false},
		{"a/b/c", "", "", false},
		{"a b", "", "", false},
		{"a\tb", "", "", false},
		{"a\x00", "", "", false},
		{"\xff", "", "", false},
		{strings.Repeat("x", ctlapi.MaxNameLen), strings.Repeat("x", ctlapi.MaxNameLen), "", true},
		{strings.Repeat("x", ctlapi.MaxNameLen+1), "", "", false},
	} {
		conn, child, err := ctlapi.SplitName(tt.name)
		if (err == nil) != tt.ok || conn != tt.conn || child != tt.child {
			t.Errorf("SplitName(%q) = %q, %q, %v", tt.name, conn, child, err)
		}
		if err != nil && !errors.Is(err, ctlapi.ErrBadRequest) {
			t.Errorf("SplitName(%q) error %v is not ErrBadRequest", tt.name, err)
		}
	}
}

func TestErrors(t *testing.T) {
	wrapped := fmt.Errorf("daemon: connection %q: %w", "x", ctlapi.ErrNotFound)
	if e := ctlapi.AsError(wrapped); e.Status != 404 || e.Code != "not_found" || e.Message != `daemon: connection "x": not found` {
		t.Errorf("AsError(wrapped) = %+v", e)
	}
	if e := ctlapi.AsError(errors.New("x: boom")); e.Status != 500 || e.Code != "internal" || e.Message != "x: boom" {
		t.Errorf("AsError(plain) = %+v", e)
	}
	if ctlapi.AsError(nil) != nil {
		t.Error("AsError(nil) != nil")
	}
	// A decoded error matches the sentinel by code.
	decoded := &ctlapi.Error{Status: 501, Code: ctlapi.CodeNotImplemented, Message: "daemon: rekey: not implemented"}
	if !errors.Is(decoded, ctlapi.ErrNotImplemented) || errors.Is(decoded, ctlapi.ErrNotFound) {
		t.Error("errors.Is by code does not hold")
	}
	e := ctlapi.Errorf(ctlapi.ErrConflict, "daemon: %s busy", "x")
	if e.Status != http.StatusConflict || e.Error() != "daemon: x busy" || !errors.Is(e, ctlapi.ErrConflict) {
		t.Errorf("Errorf = %+v", e)
	}
	for status, code := range map[int]string{400: "bad_request", 404: "not_found", 405: "method_not_allowed",
		409: "conflict", 500: "internal", 501: "not_implemented", 503: "unavailable", 504: "timeout", 502: "internal"} {
		if got := ctlapi.CodeFor(status); got != code {
			t.Errorf("CodeFor(%d) = %q, want %q", status, got, code)
		}
	}
	// Each sentinel's status agrees with CodeFor.
	for _, e := range []*ctlapi.Error{ctlapi.ErrBadRequest, ctlapi.ErrNotFound, ctlapi.ErrConflict, ctlapi.ErrInternal,
		ctlapi.ErrNotImplemented, ctlapi.ErrUnavailable, ctlapi.ErrTimeout} {
		if ctlapi.CodeFor(e.Status) != e.Code {
			t.Errorf("%v: status %d and code %q disagree", e, e.Status, e.Code)
		}
	}
}

// TestChildSAKEsWireNames checks the JSON names of a hybrid CHILD SA's key
// exchanges: "ke" keeps the first, "kes" lists them all, and both are
// absent without PFS.
func TestChildSAKEsWireNames(t *testing.T) {
	b, err := json.Marshal(ctlapi.ChildSA{KE: "x25519", KEs: []string{"x25519", "mlkem768"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"ke":"x25519","kes":["x25519","mlkem768"]`) {
		t.Errorf("hybrid CHILD SA: %s", s)
	}
	b, _ = json.Marshal(ctlapi.ChildSA{})
	if s := string(b); strings.Contains(s, `"ke"`) || strings.Contains(s, `"kes"`) {
		t.Errorf("CHILD SA without PFS: %s", s)
	}
}
