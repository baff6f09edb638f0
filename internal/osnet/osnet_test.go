package osnet

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/nstest"
)

// Test values as the daemon uses them (conn.DefaultTable, DefaultMark and
// the facade's rule priority).
const (
	testTable = 0x1b5
	testPrio  = 10437
)

var testRoutes = []Route{
	{Dst: netip.MustParsePrefix("10.2.0.0/16")},
	{Dst: netip.MustParsePrefix("fd02::/64")},
}

// addTUN creates a persistent TUN device named tun0 in ns, as the daemon's
// would be.
func addTUN(t *testing.T, ns *nstest.NS) {
	t.Helper()
	ns.MustRun("ip", "tuntap", "add", "dev", "tun0", "mode", "tun")
}

func newRouter(t *testing.T, ns *nstest.NS) *Router {
	t.Helper()
	var r *Router
	if err := ns.Do(func() (err error) { r, err = New("tun0", testTable, testMark, testPrio); return err }); err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func setRoutes(t *testing.T, ns *nstest.NS, r *Router, routes []Route) {
	t.Helper()
	if err := ns.Do(func() error { return r.Set(routes) }); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

// tableDump returns "ip -4 route show table" and "ip -6 ..." of the test
// table.
func tableDump(ns *nstest.NS) string {
	return ns.MustRun("ip", "-4", "route", "show", "table", "437") + ns.MustRun("ip", "-6", "route", "show", "table", "437")
}

func ruleCount(ns *nstest.NS) int {
	out := ns.MustRun("ip", "-4", "rule", "show") + ns.MustRun("ip", "-6", "rule", "show")
	return strings.Count(out, "lookup 437")
}

// TestRouterRoutePair: every destination has a route into the TUN device
// and, behind it with a higher metric, a prohibit route that needs no
// device; IPv4 and IPv6.
func TestRouterRoutePair(t *testing.T) {
	ns := nstest.New(t, "pair")
	addTUN(t, ns)
	r := newRouter(t, ns)
	setRoutes(t, ns, r, testRoutes)
	out := tableDump(ns)
	for _, want := range []string{
		"10.2.0.0/16 dev tun0 scope link metric 100",
		"prohibit 10.2.0.0/16 metric 4000",
		"fd02::/64 dev tun0 metric 100",
		"prohibit fd02::/64 dev lo metric 4000",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table 437 has no %q:\n%s", want, out)
		}
	}
	if n := ruleCount(ns); n != 2 {
		t.Errorf("%d rules look up table 437, want 2 (IPv4 and IPv6)", n)
	}
	if got := ns.MustRun("ip", "route", "get", "10.2.0.1"); !strings.Contains(got, "dev tun0") {
		t.Errorf("ip route get 10.2.0.1: %s, want dev tun0", got)
	}
}

// TestRouterHoldAfterLinkDeletion: when the TUN device disappears (the
// daemon was killed), its routes go with it and the prohibit routes refuse
// the protected destinations, instead of the main table's default route
// sending them in the clear.
func TestRouterHoldAfterLinkDeletion(t *testing.T) {
	ns := nstest.New(t, "hold")
	other := nstest.New(t, "hold-gw")
	nstest.Link(t, ns, "eth0", []string{"192.0.2.1/24", "2001:db8::1/64"}, other, "eth0", []string{"192.0.2.2/24", "2001:db8::2/64"})
	ns.MustRun("ip", "route", "add", "default", "via", "192.0.2.2")
	ns.MustRun("ip", "-6", "route", "add", "default", "via", "2001:db8::2")
	addTUN(t, ns)
	r := newRouter(t, ns)
	setRoutes(t, ns, r, testRoutes)
	ns.MustRun("ip", "link", "del", "tun0")

	out := tableDump(ns)
	if strings.Contains(out, "tun0") || !strings.Contains(out, "prohibit 10.2.0.0/16") || !strings.Contains(out, "prohibit fd02::/64") {
		t.Errorf("after deleting tun0, table 437:\n%s\nwant the prohibit routes only", out)
	}
	for _, dst := range []string{"10.2.0.1", "fd02::1"} {
		if got, err := ns.Run("ip", "route", "get", dst); err == nil {
			t.Errorf("ip route get %s after deleting tun0: %s; want it refused, not routed by the main table", dst, got)
		}
		if got, err := ns.Run("ping", "-n", "-c", "1", "-W", "1", dst); err == nil {
			t.Errorf("ping %s after deleting tun0 succeeded:\n%s", dst, got)
		}
	}
	// Traffic with the daemon's mark (its own ESP and IKE) still takes
	// the main table.
	if got, err := ns.Run("ip", "route", "get", "10.2.0.1", "mark", "0x1b5"); err != nil || !strings.Contains(got, "via 192.0.2.2") {
		t.Errorf("ip route get 10.2.0.1 mark 0x1b5: %v %s, want via 192.0.2.2", err, got)
	}
}

// TestRouterRestartTakesOver: a second Router (a restarted daemon, on a new
// TUN device) adopts the rule and routes of the first without "file
// exists", and its first Set removes the destinations no longer configured.
// Close keeps everything; Clear removes everything.
func TestRouterRestartTakesOver(t *testing.T) {
	ns := nstest.New(t, "restart")
	addTUN(t, ns)
	r := newRouter(t, ns)
	setRoutes(t, ns, r, append(testRoutes, Route{Dst: netip.MustParsePrefix("10.9.0.0/16")}))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("ip", "link", "del", "tun0")
	if n := ruleCount(ns); n != 2 {
		t.Fatalf("after Close %d rules look up table 437, want 2", n)
	}

	addTUN(t, ns)
	r2 := newRouter(t, ns)
	if !strings.Contains(tableDump(ns), "prohibit 10.9.0.0/16") {
		t.Errorf("New removed the routes of the earlier run before Set:\n%s", tableDump(ns))
	}
	setRoutes(t, ns, r2, testRoutes)
	out := tableDump(ns)
	if strings.Contains(out, "10.9.0.0/16") {
		t.Errorf("the route no longer configured is still there:\n%s", out)
	}
	if !strings.Contains(out, "10.2.0.0/16 dev tun0") || !strings.Contains(out, "fd02::/64 dev tun0") {
		t.Errorf("the new TUN routes are missing:\n%s", out)
	}
	if n := ruleCount(ns); n != 2 {
		t.Errorf("after a restart %d rules look up table 437, want 2", n)
	}
	// Set again with the same routes: nothing changes, no error.
	setRoutes(t, ns, r2, testRoutes)
	if again := tableDump(ns); again != out {
		t.Errorf("a repeated Set changed the table:\n%s\nwas\n%s", again, out)
	}

	if err := ns.Do(r2.Clear); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	if out := strings.TrimSpace(tableDump(ns)); out != "" {
		t.Errorf("after Clear table 437 still has:\n%s", out)
	}
	if n := ruleCount(ns); n != 0 {
		t.Errorf("after Clear %d rules look up table 437", n)
	}
	// Cleanup of what is not there is no error.
	if err := ns.Do(func() error { return Cleanup(testTable, testPrio) }); err != nil {
		t.Errorf("Cleanup of nothing: %v", err)
	}
}

// TestHoldThenRouterTakesOver: Hold (ipsecd --fail-closed at boot, with no
// TUN device yet) installs the rules and the prohibit routes, which refuse
// the protected destinations; a Router started later adopts them without
// "file exists", and its first Set puts the routes into the TUN device in
// front of the prohibit routes, which stay: no moment without a route.
// Hold twice (a second boot run) changes nothing.
func TestHoldThenRouterTakesOver(t *testing.T) {
	ns := nstest.New(t, "hold-boot")
	var dsts []netip.Prefix
	for _, r := range testRoutes {
		dsts = append(dsts, r.Dst)
	}
	for range 2 {
		if err := ns.Do(func() error { return Hold(testTable, testMark, testPrio, dsts) }); err != nil {
			t.Fatalf("Hold: %v", err)
		}
	}
	if n := ruleCount(ns); n != 2 {
		t.Errorf("after Hold %d rules look up table 437, want 2", n)
	}
	out := tableDump(ns)
	if !strings.Contains(out, "prohibit 10.2.0.0/16") || !strings.Contains(out, "prohibit fd02::/64") || strings.Count(out, "prohibit") != 2 {
		t.Errorf("after Hold, table 437:\n%s\nwant one prohibit route per destination", out)
	}
	if got, err := ns.Run("ip", "route", "get", "10.2.0.1"); err == nil {
		t.Errorf("ip route get 10.2.0.1 after Hold: %s; want it refused", got)
	}
	addTUN(t, ns)
	r := newRouter(t, ns)
	setRoutes(t, ns, r, testRoutes)
	out = tableDump(ns)
	for _, want := range []string{"10.2.0.0/16 dev tun0", "fd02::/64 dev tun0", "prohibit 10.2.0.0/16", "prohibit fd02::/64"} {
		if !strings.Contains(out, want) {
			t.Errorf("after the Router's Set, table 437 has no %q:\n%s", want, out)
		}
	}
	if n := ruleCount(ns); n != 2 {
		t.Errorf("after New and Set %d rules look up table 437, want 2", n)
	}
}
