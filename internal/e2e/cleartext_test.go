package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/goipsec/goipsec/internal/nstest"
)

// TestCleartextFromProtectedSource checks the firewall half of RFC 4301,
// Section 5.2: a cleartext packet that arrives where a PROTECT policy applies
// is dropped. A third host C, linked to A's second interface, sends UDP
// datagrams to 10.1.0.1 from 10.2.0.1, an address of the network that A
// protects with an ESP tunnel to B. Before the daemon runs, and after
// "ipsecd --cleanup", the kernel delivers them; while it runs, and after it
// stops (the policy stays in force), only the same datagrams through the
// tunnel from B arrive, and those that a BYPASS policy names (10.2.0.53 port
// 53).
func TestCleartextFromProtectedSource(t *testing.T) {
	requireBins(t)
	s := spec{name: "cleartext", protocol: "esp", mode: "tunnel", encap: "udp", alg: "aes256gcm16"}
	p := newPair(t, s, `policies:
  - {name: dns, remote_ts: ["10.2.0.53/32[udp/53]"], action: bypass}
`)
	c := nstest.New(t, "c")
	nstest.Link(t, p.a.ns, "eth1", []string{"198.51.100.1/24"}, c, "eth0", []string{"198.51.100.2/24"})
	c.AddLoopbackAddr("10.2.0.1")
	c.AddLoopbackAddr("10.2.0.53")
	c.MustRun("ip", "route", "add", "10.1.0.0/16", "via", "198.51.100.1")
	// No reverse-path filtering in A: what drops C's datagrams is goipsec.
	p.a.ns.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.eth1.rp_filter=0")

	const port = 7000
	sink := listenUDP(t, p.a.ns, netip.AddrPortFrom(p.a.inner, port))
	dst := netip.AddrPortFrom(p.a.inner, port)
	spoofed := netip.MustParseAddrPort("10.2.0.1:40000")

	// Without the daemon the kernel delivers the spoofed datagram.
	if !sink.await(t, "before", func() { sendUDP(t, c, spoofed, dst, "before") }) {
		t.Fatalf("a datagram from C (%s) did not reach %s before the daemon started: the test network is broken", spoofed, dst)
	}

	p.start(t)
	if !filterTableExists(t, p.a.ns) {
		t.Fatalf("A's daemon runs without table inet goipsec\n%s", p.a.proc.Output)
	}

	// Through the tunnel from B, 10.2.0.1 reaches 10.1.0.1.
	if !sink.await(t, "tunnel", func() { sendUDP(t, p.b.ns, netip.AddrPortFrom(p.b.inner, 40001), dst, "tunnel") }) {
		t.Fatalf("no datagram from B through the tunnel reached %s", dst)
	}
	// In the clear from C it does not.
	const spoofs = 5
	for i := range spoofs {
		sendUDP(t, c, spoofed, dst, fmt.Sprintf("spoof %d", i))
	}
	// The BYPASS rule lets DNS answers from 10.2.0.53 through, but not
	// other ports from the same address.
	sendUDP(t, c, netip.MustParseAddrPort("10.2.0.53:5353"), dst, "not dns")
	if !sink.await(t, "dns", func() { sendUDP(t, c, netip.MustParseAddrPort("10.2.0.53:53"), dst, "dns") }) {
		t.Errorf("the datagram from 10.2.0.53 port 53, which a bypass policy names, did not arrive")
	}
	time.Sleep(time.Second) // time for any leak to arrive
	if n := sink.count("spoof"); n != 0 {
		t.Errorf("%d of %d cleartext datagrams from C claiming %s were delivered, want 0", n, spoofs, spoofed.Addr())
	}
	if n := sink.count("not dns"); n != 0 {
		t.Errorf("the datagram from 10.2.0.53 port 5353 was delivered, want it dropped")
	}
	if n := dropCount(t, p.a.ns); n < spoofs+1 {
		t.Errorf("A's filter counted %d drops, want at least %d", n, spoofs+1)
	} else {
		t.Logf("A's filter counted %d drops", n)
	}
	p.a.checkAlive(t)
	p.b.checkAlive(t)

	// A stopped daemon keeps the policy in force (daemon.on_stop: keep):
	// the table stays and still drops the spoofed datagram.
	p.a.proc.Stop()
	if !filterTableExists(t, p.a.ns) {
		t.Errorf("table inet goipsec is gone after A's daemon stopped: the policy must stay in force\n%s", p.a.proc.Output)
	}
	dropsBefore := dropCount(t, p.a.ns)
	sendUDP(t, c, spoofed, dst, "stopped")
	time.Sleep(500 * time.Millisecond)
	if n := sink.count("stopped"); n != 0 {
		t.Errorf("a cleartext datagram from C claiming %s was delivered after the daemon stopped", spoofed.Addr())
	}
	// The datagram reached A and the kept table dropped it, so the check
	// above cannot pass on a datagram that never left C.
	if n := dropCount(t, p.a.ns); n <= dropsBefore {
		t.Errorf("A's filter counted no drop after the daemon stopped (%d before, %d after)", dropsBefore, n)
	}
	// ipsecd --cleanup removes it, and the kernel delivers again.
	if out, err := p.a.ns.Run(ipsecd(), "-c", p.a.conf, "--cleanup"); err != nil {
		t.Fatalf("ipsecd --cleanup: %v\n%s", err, out)
	}
	if filterTableExists(t, p.a.ns) {
		t.Errorf("table inet goipsec is still there after ipsecd --cleanup")
	}
	if !sink.await(t, "after", func() { sendUDP(t, c, spoofed, dst, "after") }) {
		t.Errorf("a datagram from C did not reach %s after ipsecd --cleanup", dst)
	}
}

// udpSink collects the payloads of the datagrams a UDP socket receives.
type udpSink struct {
	mu  sync.Mutex
	got []string
}

func listenUDP(t *testing.T, ns *nstest.NS, at netip.AddrPort) *udpSink {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		t.Fatalf("[%s] listen on %s: %v", ns.Name, at, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &udpSink{}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

// count returns how many datagrams arrived whose payload starts with prefix.
func (s *udpSink) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.got {
		if strings.HasPrefix(g, prefix) {
			n++
		}
	}
	return n
}

// await calls send until a datagram whose payload starts with prefix has
// arrived, for up to 10 seconds.
func (s *udpSink) await(t *testing.T, prefix string, send func()) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		send()
		if nstest.WaitFor(time.Second, func() bool { return s.count(prefix) > 0 }) {
			return true
		}
	}
	return false
}

// sendUDP sends one datagram from src, an address of ns, to dst.
func sendUDP(t *testing.T, ns *nstest.NS, src, dst netip.AddrPort, payload string) {
	t.Helper()
	if err := trySendUDP(ns, src, dst, payload); err != nil {
		t.Fatalf("[%s] UDP %s -> %s: %v", ns.Name, src, dst, err)
	}
}

// trySendUDP sends one datagram from src, an address of ns, to dst and
// returns the error, for senders that a prohibit route may refuse.
func trySendUDP(ns *nstest.NS, src, dst netip.AddrPort, payload string) error {
	return ns.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

var goipsecTable = &nftables.Table{Name: "goipsec", Family: nftables.TableFamilyINet}

func filterTableExists(t *testing.T, ns *nstest.NS) bool {
	t.Helper()
	var tables []*nftables.Table
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
		return err
	}); err != nil {
		t.Fatalf("[%s] listing nftables tables: %v", ns.Name, err)
	}
	for _, tb := range tables {
		if tb.Name == goipsecTable.Name {
			return true
		}
	}
	return false
}

// dropCount sums the counters of the inbound policy rules (chain spd_in)
// of the goipsec table of ns.
func dropCount(t *testing.T, ns *nstest.NS) uint64 {
	t.Helper()
	var rules []*nftables.Rule
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		rules, err = c.GetRules(goipsecTable, &nftables.Chain{Name: "spd_in"})
		return err
	}); err != nil {
		t.Fatalf("[%s] listing the spd_in chain: %v", ns.Name, err)
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	return n
}
