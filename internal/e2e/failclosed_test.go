package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/packet"
)

// The tests of this file check that goipsec fails closed: once a PROTECT
// policy is loaded, no packet between the protected networks crosses the
// wire in the clear, whether the initiator's daemon runs, starts, was killed
// with SIGKILL or stopped, until "ipsecd --cleanup" (or daemon.on_stop:
// clear) removes the policy. Both hosts have main-table routes to the other's
// inner network, so a packet that escaped the policy would leave in the
// clear (the leak of issue 7: 10 of 10 pings after kill -9).

// failClosedPair starts B (responder, start_action none) and A (initiator,
// start_action trap) with an IKE tunnel between 10.1.0.0/16 and
// 10.2.0.0/16 (fd01::/64 and fd02::/64 with v6), with extraDaemon appended to both daemon sections, and
// captures A's wire (eth0).
func failClosedPair(t *testing.T, v6 bool, extraDaemon string) (a, b *host, confA string, wire *capture) {
	t.Helper()
	requireBins(t)
	a, b, ca, cb := failClosedTopology(t, v6)
	withDaemon := func(conf string) string {
		return strings.Replace(conf, "daemon:\n", "daemon:\n"+extraDaemon, 1)
	}
	confA = withDaemon(ikeConfig(a, b, ca))
	wire = startCapture(t, a.ns, "eth0")
	b.startDaemon(t, withDaemon(ikeConfig(b, a, cb)))
	a.startDaemon(t, confA)
	return a, b, confA, wire
}

// failClosedTopology builds A and B for failClosedPair, with main-table
// routes to each other's inner network, and returns the IKE connections of
// A (initiator, trap) and B (responder, start_action none).
func failClosedTopology(t *testing.T, v6 bool) (a, b *host, ca, cb ikeConn) {
	t.Helper()
	a, b, _ = ikeTopology(t, v6, "tunnel")
	a.ns.MustRun("ip", "route", "add", b.net.String(), "via", b.outer.String())
	b.ns.MustRun("ip", "route", "add", a.net.String(), "via", a.outer.String())
	ca = ikeConn{ike: ikeProposals[0].ike, child: []string{ikeProposals[0].esp}, mode: "tunnel", start: "trap",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: newPSK()}
	cb = ca
	cb.start = "none"
	cb.localID, cb.remoteID = ca.remoteID, ca.localID
	return a, b, ca, cb
}

// cleartextBetween returns the packets captured that carry an address of
// one of nets in their outer header: inner traffic on the wire, unprotected.
func cleartextBetween(c *capture, nets ...netip.Prefix) []ipPacket {
	var out []ipPacket
	for _, f := range c.packets() {
		p, ok := parseIP(f.pkt)
		if !ok {
			continue
		}
		for _, n := range nets {
			if n.Contains(p.src) || n.Contains(p.dst) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// checkNoCleartext fails t if c captured a packet between a's and b's
// protected networks, or to or from one of extra, in the clear.
func checkNoCleartext(t *testing.T, c *capture, a, b *host, extra ...netip.Prefix) {
	t.Helper()
	leaks := cleartextBetween(c, append([]netip.Prefix{a.net, b.net}, extra...)...)
	for i, p := range leaks {
		if i == 5 {
			break
		}
		t.Errorf("cleartext on the wire: %s -> %s protocol %d", p.src, p.dst, p.proto)
	}
	if len(leaks) > 0 {
		t.Errorf("%d cleartext packets of the protected (or discarded) networks on the wire, want 0", len(leaks))
	} else {
		t.Logf("%d packets captured on the wire, none in the clear", len(c.packets()))
	}
}

// pinger sends ICMP echo requests from src to dst at a fixed interval
// through a raw socket and records when replies arrive; send errors (the
// kernel refusing a protected destination) are counted, not fatal.
type pinger struct {
	c    *net.IPConn
	dst  netip.Addr
	id   uint16
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sent     int
	sendErrs int
	replies  []time.Time
}

func startPinger(t *testing.T, ns *nstest.NS, src, dst netip.Addr, interval time.Duration) *pinger {
	t.Helper()
	p := &pinger{dst: dst, id: uint16(time.Now().UnixNano()), stop: make(chan struct{})}
	network := "ip4:icmp"
	if src.Is6() {
		network = "ip6:ipv6-icmp"
	}
	if err := ns.Do(func() (err error) {
		p.c, err = net.ListenIP(network, &net.IPAddr{IP: src.AsSlice()})
		return err
	}); err != nil {
		t.Fatalf("[%s] ICMP socket: %v", ns.Name, err)
	}
	p.wg.Add(2)
	go p.send(interval)
	go p.receive()
	t.Cleanup(p.close)
	return p
}

func (p *pinger) send(interval time.Duration) {
	defer p.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	dst := &net.IPAddr{IP: p.dst.AsSlice()}
	for seq := uint16(0); ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		m := make([]byte, 8+32)
		m[0] = 8 // echo request, RFC 792
		if p.dst.Is6() {
			m[0] = 128 // RFC 4443, Section 4.1; the kernel sums ICMPv6
		}
		binary.BigEndian.PutUint16(m[4:], p.id)
		binary.BigEndian.PutUint16(m[6:], seq)
		if p.dst.Is4() {
			binary.BigEndian.PutUint16(m[2:], packet.Checksum(m, 0))
		}
		_, err := p.c.WriteTo(m, dst)
		p.mu.Lock()
		p.sent++
		if err != nil {
			p.sendErrs++
		}
		p.mu.Unlock()
	}
}

func (p *pinger) receive() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		p.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := p.c.ReadFrom(buf)
		select {
		case <-p.stop:
			return
		default:
		}
		if err != nil || n < 8 {
			continue
		}
		// Echo reply (ICMP 0, ICMPv6 129) with our identifier; reads
		// of raw sockets start at the ICMP header.
		reply := byte(0)
		if p.dst.Is6() {
			reply = 129
		}
		if buf[0] == reply && binary.BigEndian.Uint16(buf[4:]) == p.id {
			p.mu.Lock()
			p.replies = append(p.replies, time.Now())
			p.mu.Unlock()
		}
	}
}

func (p *pinger) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.wg.Wait()
	p.c.Close()
}

// firstReplyAfter returns the time of the first reply after t0, waiting up
// to timeout for it.
func (p *pinger) firstReplyAfter(t0 time.Time, timeout time.Duration) (time.Time, bool) {
	var first time.Time
	ok := nstest.WaitFor(timeout, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range p.replies {
			if r.After(t0) {
				first = r
				return true
			}
		}
		return false
	})
	return first, ok
}

func (p *pinger) counts() (sent, sendErrs, replies int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.sendErrs, len(p.replies)
}

// policyObjects describes what of goipsec's policy is in ns's kernel: the
// rules that look up table 0x1b5 (437), the prohibit routes in it, and
// whether table inet goipsec exists.
type policyObjects struct {
	rules, prohibits int
	table            bool
}

func policyIn(t *testing.T, ns *nstest.NS) policyObjects {
	t.Helper()
	rules := ns.MustRun("ip", "-4", "rule", "show") + ns.MustRun("ip", "-6", "rule", "show")
	// "ip route show table" fails for a family without routes in it.
	r4, _ := ns.Run("ip", "-4", "route", "show", "table", "437")
	r6, _ := ns.Run("ip", "-6", "route", "show", "table", "437")
	routes := r4 + r6
	return policyObjects{
		rules:     strings.Count(rules, "lookup 437"),
		prohibits: strings.Count(routes, "prohibit "),
		table:     filterTableExists(t, ns),
	}
}

func (o policyObjects) String() string {
	return fmt.Sprintf("%d rules, %d prohibit routes, nftables table %v", o.rules, o.prohibits, o.table)
}

func (o policyObjects) inForce() bool { return o.rules == 2 && o.prohibits >= 1 && o.table }

func (o policyObjects) none() bool { return o.rules == 0 && o.prohibits == 0 && !o.table }

// waitTraffic waits until the pinger gets a reply after t0 and returns how
// long after t0 it came.
func waitTraffic(t *testing.T, p *pinger, t0 time.Time, what string) time.Duration {
	t.Helper()
	first, ok := p.firstReplyAfter(t0, 30*time.Second)
	if !ok {
		sent, errs, replies := p.counts()
		t.Fatalf("%s: no echo reply within 30s (sent %d, %d refused by the kernel, %d replies in all)", what, sent, errs, replies)
	}
	return first.Sub(t0)
}

// TestKill9NoCleartext: pings flow from A's protected network through the
// IKE tunnel; A's ipsecd is killed with SIGKILL mid-traffic, so it cleans
// nothing up; the pings go on for 3 s without a daemon, then ipsecd starts
// again, takes over the rule, routes and firewall table it finds, and the
// pings come back once IKE has negotiated a new SA. Not one packet between
// the protected networks crosses A's wire in the clear, before, during or
// after.
func TestKill9NoCleartext(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { kill9NoCleartext(t, v6) })
	}
}

func kill9NoCleartext(t *testing.T, v6 bool) {
	a, b, confA, wire := failClosedPair(t, v6, "")
	p := startPinger(t, a.ns, a.inner, b.inner, 50*time.Millisecond)
	up := waitTraffic(t, p, time.Now(), "first negotiation")
	t.Logf("traffic through the tunnel %v after the pings started (trap, IKE_SA_INIT, IKE_AUTH)", up.Round(time.Millisecond))
	time.Sleep(2 * time.Second)

	if err := a.proc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !nstest.WaitFor(10*time.Second, func() bool { done, _ := a.proc.Exited(); return done }) {
		t.Fatal("A's ipsecd did not exit after SIGKILL")
	}
	killed := time.Now()
	time.Sleep(3 * time.Second)
	if o := policyIn(t, a.ns); !o.inForce() {
		t.Errorf("after kill -9: %s; want the policy in force", o)
	}
	_, errs0, _ := p.counts()

	restart := time.Now()
	a.startDaemon(t, confA)
	back := waitTraffic(t, p, restart, "after the restart")
	t.Logf("restart: traffic back %v after ipsecd was started again (requirement: 10s); %v after the kill",
		back.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	p.close()
	sent, errs, replies := p.counts()
	t.Logf("echo requests: %d sent, %d refused by the kernel (%d while no daemon ran), %d replies", sent, errs, errs0, replies)
	wire.close()
	checkNoCleartext(t, wire, a, b)
	if o := policyIn(t, a.ns); o.rules != 2 {
		t.Errorf("after the restart: %s; want one rule per family, taken over", o)
	}
	a.checkAlive(t)
	b.checkAlive(t)
}

// TestCleanStopKeepsPolicy: SIGTERM stops A's ipsecd, and by default
// (daemon.on_stop: keep) the rule, the prohibit routes and the firewall
// table stay: pings from the protected network are refused, none leaves in
// the clear. "ipsecd --cleanup" then removes them all, and once B's
// daemon is cleaned up too, the same pings flow in the clear.
func TestCleanStopKeepsPolicy(t *testing.T) {
	a, b, _, wire := failClosedPair(t, false, "")
	p := startPinger(t, a.ns, a.inner, b.inner, 50*time.Millisecond)
	waitTraffic(t, p, time.Now(), "negotiation")
	a.proc.Stop()
	if done, err := a.proc.Exited(); !done || err != nil {
		t.Errorf("ipsecd after SIGTERM: exited %v, %v", done, err)
	}
	stopped := time.Now()
	time.Sleep(2 * time.Second)
	if o := policyIn(t, a.ns); !o.inForce() {
		t.Errorf("after SIGTERM: %s; want the policy in force", o)
	}
	if _, ok := p.firstReplyAfter(stopped.Add(500*time.Millisecond), 0); ok {
		t.Errorf("echo replies came back while A's daemon was stopped")
	}
	wire.close()
	checkNoCleartext(t, wire, a, b)
	p.close()

	// --cleanup refuses while a daemon runs: B's.
	if out, err := b.ns.Run(ipsecd(), "-c", b.conf, "--cleanup"); err == nil {
		t.Errorf("ipsecd --cleanup succeeded while B's daemon runs:\n%s", out)
	}
	b.proc.Stop()
	for _, h := range []*host{a, b} {
		if out, err := h.ns.Run(ipsecd(), "-c", h.conf, "--cleanup"); err != nil {
			t.Fatalf("[%s] ipsecd --cleanup: %v\n%s", h.ns.Name, err, out)
		}
		if o := policyIn(t, h.ns); !o.none() {
			t.Errorf("[%s] after ipsecd --cleanup: %s; want nothing", h.ns.Name, o)
		}
	}
	// A second run finds nothing and succeeds.
	if out, err := a.ns.Run(ipsecd(), "--cleanup"); err != nil {
		t.Errorf("a second ipsecd --cleanup (default names): %v\n%s", err, out)
	}
	plain := startCapture(t, a.ns, "eth0")
	mustPing(t, a.ns, a.inner, b.inner, 3)
	plain.close()
	if n := len(cleartextBetween(plain, a.net, b.net)); n == 0 {
		t.Errorf("after --cleanup the pings were answered but none was seen in the clear on the wire")
	}
}

// TestOnStopClear: with daemon.on_stop: clear, SIGTERM removes the rule,
// the routes and the firewall table, and traffic follows the main table in
// the clear.
func TestOnStopClear(t *testing.T) {
	a, b, _, _ := failClosedPair(t, false, "  on_stop: clear\n")
	p := startPinger(t, a.ns, a.inner, b.inner, 50*time.Millisecond)
	waitTraffic(t, p, time.Now(), "negotiation")
	p.close()
	for _, h := range []*host{a, b} {
		if o := policyIn(t, h.ns); !o.inForce() {
			t.Fatalf("[%s] while running: %s", h.ns.Name, o)
		}
		h.proc.Stop()
		if o := policyIn(t, h.ns); !o.none() {
			t.Errorf("[%s] after SIGTERM with on_stop clear: %s; want nothing", h.ns.Name, o)
		}
	}
	mustPing(t, a.ns, a.inner, b.inner, 3)
}

// TestStartingNoCleartext: A's daemon ran once and stopped (the policy
// stays). Pings from the protected network run while ipsecd starts again:
// none leaves in the clear while it opens its devices, loads the policy and
// negotiates, and traffic comes back through the tunnel.
func TestStartingNoCleartext(t *testing.T) {
	a, b, confA, wire := failClosedPair(t, false, "")
	mustPing(t, a.ns, a.inner, b.inner, 1)
	a.proc.Stop()
	p := startPinger(t, a.ns, a.inner, b.inner, 20*time.Millisecond)
	time.Sleep(time.Second)
	start := time.Now()
	a.startDaemon(t, confA)
	back := waitTraffic(t, p, start, "after the start")
	t.Logf("traffic back %v after ipsecd was started", back.Round(time.Millisecond))
	p.close()
	sent, errs, replies := p.counts()
	t.Logf("echo requests: %d sent, %d refused by the kernel, %d replies", sent, errs, replies)
	wire.close()
	checkNoCleartext(t, wire, a, b)
}

// TestReloadNoCleartext: pings run while A's configuration is reloaded six
// times, each reload adding or removing a DISCARD policy, so that routes and
// the firewall table are replaced under traffic: none leaves in the clear
// and the tunnel keeps carrying the pings.
func TestReloadNoCleartext(t *testing.T) {
	a, b, confA, wire := failClosedPair(t, false, "")
	p := startPinger(t, a.ns, a.inner, b.inner, 20*time.Millisecond)
	waitTraffic(t, p, time.Now(), "negotiation")
	discard := "policies:\n  - {name: lab, remote_ts: [\"10.9.0.0/16\"], action: discard}\n"
	for i := range 6 {
		conf, want := confA, 1
		if i%2 == 0 {
			conf, want = conf+discard, 2
		}
		writeFile(t, a.conf, conf)
		if out, err := a.ctl(t.Context(), "reload"); err != nil {
			t.Fatalf("reload %d: %v\n%s", i, err, out)
		}
		if o := policyIn(t, a.ns); o.prohibits != want {
			t.Errorf("after reload %d: %s, want %d prohibit routes", i, o, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
	mark := time.Now()
	waitTraffic(t, p, mark, "after the reloads")
	p.close()
	sent, errs, replies := p.counts()
	t.Logf("echo requests during 6 reloads: %d sent, %d refused by the kernel, %d replies", sent, errs, replies)
	wire.close()
	checkNoCleartext(t, wire, a, b)
	a.checkAlive(t)
}
