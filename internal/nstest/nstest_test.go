package nstest

import (
	"net"
	"slices"
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

func TestDo(t *testing.T) {
	a := New(t, "do")
	Link(t, a, "eth0", []string{"192.0.2.1/24"}, New(t, "peer"), "eth0", []string{"192.0.2.2/24"})
	var names []string
	if err := a.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "eth0") {
		t.Fatalf("interfaces inside Do: %v, want eth0", names)
	}
	// Back in the original namespace, which has no 192.0.2.1.
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		if strings.HasPrefix(ad.String(), "192.0.2.1/") {
			t.Fatalf("the calling namespace has %s after Do", ad)
		}
	}
}
