package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
)

// TestBypassDiscard puts BYPASS and DISCARD rules in front of a PROTECT rule
// (the policies section comes first in the SPD, RFC 4301, Section 4.4.1) and
// watches B's side of the link: DNS to 10.2.0.53 leaves A in the clear, traffic
// to 10.9.0.0/16 never leaves A and is counted, and the rest of 10.2.0.0/16 is
// ESP.
func TestBypassDiscard(t *testing.T) {
	requireBins(t)
	s := spec{name: "policies", protocol: "esp", mode: "tunnel", encap: "udp", alg: "aes256gcm16"}
	p := newPair(t, s, `policies:
  - {name: dns, remote_ts: ["10.2.0.53/32[udp/53]"], action: bypass}
  - {name: blackhole, remote_ts: ["10.9.0.0/16"], action: discard}
`)
	// B bypasses the same datagrams: without the rule, B's firewall drops
	// cleartext from A's protected network (RFC 4301, Section 5.2).
	bconf, err := os.ReadFile(p.b.conf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.b.conf, string(bconf)+`policies:
  - {name: dns, local_ts: ["10.2.0.53/32[udp/53]"], action: bypass}
`)
	// Bypassed packets leave through the daemon's marked raw socket, which
	// uses the main table: give it a route to B's inner network.
	p.a.ns.MustRun("ip", "route", "add", "10.2.0.0/16", "via", "192.0.2.2")
	p.b.ns.AddLoopbackAddr("10.2.0.53")
	p.start(t)
	wire := startCapture(t, p.b.ns, "eth0")

	var pol ctlapi.Policies
	p.a.ctlJSON(t, &pol, "policies")
	if len(pol.Policies) < 3 || pol.Policies[0].Name != "dns" || pol.Policies[0].Action != ctlapi.ActionBypass ||
		pol.Policies[1].Name != "blackhole" || pol.Policies[1].Action != ctlapi.ActionDiscard ||
		pol.Policies[2].Name != "e2e" || pol.Policies[2].Action != ctlapi.ActionProtect {
		t.Fatalf("A's SPD order: %+v, want dns (bypass), blackhole (discard), e2e (protect)", pol.Policies)
	}

	// BYPASS: a DNS query in the clear, seen on the wire and received by B.
	probe := fmt.Appendf(nil, "goipsec bypass probe %d", time.Now().UnixNano())
	var dns *net.UDPConn
	if err := p.b.ns.Do(func() (err error) {
		dns, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(10, 2, 0, 53), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	var client *net.UDPConn
	if err := p.a.ns.Do(func() (err error) {
		client, err = net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(10, 1, 0, 1)}, &net.UDPAddr{IP: net.IPv4(10, 2, 0, 53), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	got := make([]byte, 1500)
	var n int
	for try := 0; try < 10; try++ {
		if _, err := client.Write(probe); err != nil {
			t.Fatal(err)
		}
		dns.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err = dns.ReadFromUDP(got); err == nil {
			break
		}
	}
	if err != nil || !bytes.Equal(got[:n], probe) {
		t.Errorf("B did not receive the bypassed DNS datagram: %v (got %q)", err, got[:n])
	}
	clear := func(f frame) bool {
		ip, ok := parseIP(f.pkt)
		return ok && ip.proto == 17 && ip.src == netip.MustParseAddr("10.1.0.1") && ip.dst == netip.MustParseAddr("10.2.0.53") &&
			len(ip.payload) >= 8 && binary.BigEndian.Uint16(ip.payload[2:]) == 53 && bytes.Equal(ip.payload[8:], probe)
	}
	if !nstest.WaitFor(10*time.Second, func() bool { return countFrames(wire, clear) > 0 }) {
		t.Errorf("the DNS probe was not seen in the clear on B's link")
	}

	// DISCARD: datagrams and pings to 10.9.0.0/16 go nowhere and are counted.
	const discarded = 5
	if err := p.a.ns.Do(func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(10, 1, 0, 1)}, &net.UDPAddr{IP: net.IPv4(10, 9, 0, 1), Port: 9})
		if err != nil {
			return err
		}
		defer c.Close()
		for range discarded {
			if _, err := c.Write([]byte("discard me")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, out := ping(t, p.a.ns, p.a.inner, netip.MustParseAddr("10.9.0.1"), 2, "0.2"); n != 0 {
		t.Errorf("ping 10.9.0.1 got %d replies, want 0:\n%s", n, out)
	}
	var hits uint64
	nstest.WaitFor(10*time.Second, func() bool {
		p.a.ctlJSON(t, &pol, "policies")
		hits = pol.Policies[1].Hits
		return hits >= discarded+2
	})
	if hits < discarded+2 {
		t.Errorf("the discard rule has %d hits, want at least %d: %+v", hits, discarded+2, pol.Policies[1])
	}
	if st := p.a.status(t); st.Counters.Drops["policy"] < discarded+2 {
		t.Errorf("A's status: %d drops for policy, want at least %d (drops %v)", st.Counters.Drops["policy"], discarded+2, st.Counters.Drops)
	}

	// PROTECT: ping 10.2.0.1 is ESP in UDP on the wire with A's SPI.
	mustPing(t, p.a.ns, p.a.inner, p.b.inner, 3)
	esp := func(f frame) bool {
		ip, ok := parseIP(f.pkt)
		if !ok || ip.src != p.a.outer || ip.dst != p.b.outer {
			return false
		}
		spi, _, ok := espOf(ip)
		return ok && ip.proto == 17 && spi == p.spiAB
	}
	if !nstest.WaitFor(10*time.Second, func() bool { return countFrames(wire, esp) >= 3 }) {
		t.Errorf("fewer than 3 ESP-in-UDP packets with SPI %08x on B's link", p.spiAB)
	}
	wire.close()
	for _, f := range wire.packets() {
		ip, ok := parseIP(f.pkt)
		if !ok {
			continue
		}
		if netip.MustParsePrefix("10.9.0.0/16").Contains(ip.dst) {
			t.Errorf("a discarded packet reached B's link: %s -> %s protocol %d", ip.src, ip.dst, ip.proto)
		}
		if ip.proto == 1 && ip.src == p.a.inner && ip.dst == p.b.inner {
			t.Errorf("ICMP between the inner addresses in the clear on B's link")
		}
	}
	p.a.ctlJSON(t, &pol, "policies")
	t.Logf("A's SPD: %+v", pol.Policies)
	p.a.checkAlive(t)
	p.b.checkAlive(t)
}

func countFrames(c *capture, match func(frame) bool) int {
	n := 0
	for _, f := range c.packets() {
		if match(f) {
			n++
		}
	}
	return n
}
