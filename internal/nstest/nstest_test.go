package nstest

import (
	"strings"
	"testing"
)

func TestLinkPing(t *testing.T) {
	a := New(t, "a")
	b := New(t, "b")
	Link(t, a, "eth0", []string{"192.0.2.1/24", "2001:db8::1/64"}, b, "eth0", []string{"192.0.2.2/24", "2001:db8::2/64"})
	out := a.MustRun("ping", "-c", "1", "-W", "2", "192.0.2.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping: %s", out)
	}
	a.MustRun("ping", "-c", "1", "-W", "2", "2001:db8::2")
}
