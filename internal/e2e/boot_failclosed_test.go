package e2e

import (
	"net/netip"
	"testing"
	"time"
)

// TestBootFailClosedNoCleartext: the boot window. After a reboot no policy
// of goipsec is in force until something installs it; goipsec-early.service
// runs "ipsecd --fail-closed" before the network comes up, and the daemon
// starts later (after network-online.target). A protects 10.1.0.0/16 to
// 10.2.0.0/16 (B) and discards 198.51.100.0/24 (on B's loopback).
//
//   - Control first: with nothing installed, A's protected network and the
//     discard destination reach B in the clear (the window being closed).
//   - ipsecd --fail-closed exits 0 leaving the rules, the prohibit routes and
//     the nftables table in force with no daemon on either side: no datagram
//     from A's protected network reaches B and none reaches the discard
//     destination, while one outside the policy (B's outer address) does.
//   - Then B's and A's daemons start, A's takes over what --fail-closed
//     installed, and pings flow through the tunnel.
//
// B's wire is captured from before --fail-closed to the end: not one packet
// between the protected networks or to the discard destination crosses it
// in the clear. The systemd ordering itself (Before=network-pre.target)
// cannot be booted here; TestUnitFileEarly checks the unit's directives.
func TestBootFailClosedNoCleartext(t *testing.T) {
	requireBins(t)
	a, b, ca, cb := failClosedTopology(t, false)
	discardNet := netip.MustParsePrefix("198.51.100.0/24")
	discardAddr := netip.MustParseAddr("198.51.100.1")
	b.ns.AddLoopbackAddr(discardAddr.String())
	a.ns.MustRun("ip", "route", "add", discardNet.String(), "via", b.outer.String())
	confA := ikeConfig(a, b, ca) + "policies:\n  - {name: lab, remote_ts: [\"" + discardNet.String() + "\"], action: discard}\n"
	writeFile(t, a.conf, confA)

	protected := listenUDP(t, b.ns, netip.AddrPortFrom(b.inner, 7000))
	discarded := listenUDP(t, b.ns, netip.AddrPortFrom(discardAddr, 7000))
	outside := listenUDP(t, b.ns, netip.AddrPortFrom(b.outer, 7000))
	// send tries n datagrams from src to dst, 50 ms apart; a refused send
	// (the prohibit route) is what fail closed looks like, not an error.
	send := func(src, dst netip.Addr, tag string, n int) {
		for range n {
			_ = trySendUDP(a.ns, netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 7000), tag)
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The window: nothing installed, both reach B in the clear.
	if !protected.await(t, "window", func() { send(a.inner, b.inner, "window", 1) }) ||
		!discarded.await(t, "window", func() { send(a.outer, discardAddr, "window", 1) }) {
		t.Fatal("with no policy installed, A's datagrams do not reach B: the test could not see a leak")
	}

	wire := startCapture(t, b.ns, "eth0")
	out, err := a.ns.Run(ipsecd(), "-c", a.conf, "--fail-closed")
	if err != nil {
		t.Fatalf("ipsecd --fail-closed: %v\n%s", err, out)
	}
	t.Logf("ipsecd --fail-closed: %s", out)
	if o := policyIn(t, a.ns); !o.inForce() || o.prohibits != 2 {
		t.Errorf("after ipsecd --fail-closed: %s; want 2 rules, 2 prohibit routes (B's network, the discard) and the table", o)
	}
	send(a.inner, b.inner, "closed", 10)
	send(a.outer, discardAddr, "closed", 10)
	if !outside.await(t, "outside", func() { send(a.outer, b.outer, "outside", 1) }) {
		t.Error("a datagram outside the policy (A to B's outer address) did not reach B after --fail-closed")
	}
	time.Sleep(500 * time.Millisecond)
	if n, m := protected.count("closed"), discarded.count("closed"); n != 0 || m != 0 {
		t.Errorf("with only --fail-closed in force B received %d datagrams from A's protected network and %d to the discard destination, want 0", n, m)
	}

	// The daemons start; A's takes over the rules, routes and table.
	b.startDaemon(t, ikeConfig(b, a, cb))
	p := startPinger(t, a.ns, a.inner, b.inner, 20*time.Millisecond)
	start := time.Now()
	a.startDaemon(t, confA)
	up := waitTraffic(t, p, start, "after ipsecd started")
	t.Logf("traffic through the tunnel %v after A's ipsecd was started on the --fail-closed state", up.Round(time.Millisecond))
	send(a.outer, discardAddr, "running", 5)
	p.close()
	sent, errs, replies := p.counts()
	t.Logf("echo requests: %d sent, %d refused by the kernel, %d replies", sent, errs, replies)
	if m := discarded.count("running"); m != 0 {
		t.Errorf("with the daemon running the discard destination received %d datagrams, want 0", m)
	}
	wire.close()
	checkNoCleartext(t, wire, a, b, discardNet)
}
