package e2e

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
)

// TestGroupKill9NoCleartext: fail closed under a policy group while no
// daemon runs. A and B run goipsec with 10.77.0.0/24 in the private group;
// D runs no IPsec, so A's traffic to D must never leave: while ipsecd
// runs it waits for an SA that never comes, and after kill -9 the kept
// routes and filter still drop it. The control at the end: once ipsecd
// --cleanup removed what the killed daemon kept, the same datagrams reach
// D, so the test would see a leak.
func TestGroupKill9NoCleartext(t *testing.T) {
	requireBins(t)
	a, b, _, d := bridgeHosts(t)
	for _, h := range []*groupHost{a, b} {
		h.startDaemon(t, groupsPolicy(h, groupsPrivate))
	}
	mustPingSoon(t, a.ns, a.outer, b.outer)
	sink := listenUDP(t, d.ns, netip.AddrPortFrom(d.outer, 7000))
	// send tries a few datagrams from A to D; a refused send (the
	// prohibit route) is what fail closed looks like, not an error.
	send := func(tag string) {
		for range 5 {
			_ = a.ns.Do(func() error {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(d.outer, 7000)))
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte(tag))
				return err
			})
			time.Sleep(50 * time.Millisecond)
		}
	}
	send("running")
	if err := a.proc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !nstest.WaitFor(10*time.Second, func() bool { done, _ := a.proc.Exited(); return done }) {
		t.Fatal("A's ipsecd did not exit after SIGKILL")
	}
	send("killed")
	time.Sleep(time.Second)
	if n := sink.count("running") + sink.count("killed"); n != 0 {
		t.Errorf("D received %d cleartext datagrams from A under the private group (running or killed)", n)
	}
	if out, err := a.ns.Run(ipsecd(), "-c", a.conf, "--cleanup"); err != nil {
		t.Fatalf("ipsecd --cleanup: %v\n%s", err, out)
	}
	if !sink.await(t, "cleaned", func() { send("cleaned") }) {
		t.Error("after ipsecd --cleanup A's datagrams still do not reach D: the check above could not see a leak")
	}
}

// TestBootFailClosedGroup: ipsecd --fail-closed (goipsec-early.service at
// boot) enforces a private group with no daemon running: A's datagrams to D,
// in the group but running no IPsec, never arrive; once ipsecd --cleanup
// removed what --fail-closed installed they do, so the check could see a
// leak.
func TestBootFailClosedGroup(t *testing.T) {
	requireBins(t)
	n := newBridge(t)
	a := n.add(t, "a", netip.MustParseAddr("10.77.0.1"), 24, true)
	d := n.add(t, "d", netip.MustParseAddr("10.77.0.4"), 24, false)
	writeFile(t, a.conf, groupsPolicy(a, groupsPrivate))
	if out, err := a.ns.Run(ipsecd(), "-c", a.conf, "--fail-closed"); err != nil {
		t.Fatalf("ipsecd --fail-closed: %v\n%s", err, out)
	}
	sink := listenUDP(t, d.ns, netip.AddrPortFrom(d.outer, 7000))
	send := func(tag string) {
		for range 5 {
			_ = trySendUDP(a.ns, netip.AddrPortFrom(a.outer, 0), netip.AddrPortFrom(d.outer, 7000), tag)
			time.Sleep(50 * time.Millisecond)
		}
	}
	send("closed")
	time.Sleep(500 * time.Millisecond)
	if n := sink.count("closed"); n != 0 {
		t.Errorf("D received %d cleartext datagrams from A under the private group after --fail-closed, want 0", n)
	}
	if out, err := a.ns.Run(ipsecd(), "-c", a.conf, "--cleanup"); err != nil {
		t.Fatalf("ipsecd --cleanup: %v\n%s", err, out)
	}
	if !sink.await(t, "cleaned", func() { send("cleaned") }) {
		t.Error("after ipsecd --cleanup A's datagrams still do not reach D: the check above could not see a leak")
	}
}
