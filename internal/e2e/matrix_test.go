package e2e

import (
	"fmt"
	"testing"
)

// matrix is every protocol, mode and address family, with ESP in UDP (RFC
// 3948) and AH over IP (AH cannot be UDP-encapsulated), plus ESP over IP in
// both families and modes at the corners.
func matrix() []spec {
	var specs []spec
	for _, proto := range []string{"esp", "ah"} {
		for _, mode := range []string{"tunnel", "transport"} {
			for _, v6 := range []bool{false, true} {
				s := spec{protocol: proto, mode: mode, encap: "udp", v6: v6, alg: "aes256gcm16"}
				if proto == "ah" {
					s.encap, s.alg = "none", "sha256"
				}
				specs = append(specs, s)
			}
		}
	}
	specs = append(specs,
		spec{protocol: "esp", mode: "tunnel", encap: "none", alg: "aes128-sha256"},
		spec{protocol: "esp", mode: "transport", encap: "none", v6: true, alg: "aes256gcm16"},
	)
	for i := range specs {
		s := &specs[i]
		fam := "IPv4"
		if s.v6 {
			fam = "IPv6"
		}
		s.name = fmt.Sprintf("%s-%s-%s-%s-%s", s.protocol, s.mode, fam, s.encap, s.alg)
	}
	return specs
}

// TestMatrix runs two daemons with static keys for each combination: ping
// through, then 10 MB of TCP with a matching SHA-256, then B's counters.
func TestMatrix(t *testing.T) {
	requireBins(t)
	for _, s := range matrix() {
		t.Run(s.name, func(t *testing.T) {
			p := newPair(t, s, "")
			p.start(t)
			mustPing(t, p.a.ns, p.a.inner, p.b.inner, 3)
			const size = 10 << 20
			wire := startCapture(t, p.b.ns, "eth0")
			tcpTransfer(t, p.a.ns, p.b.ns, p.a.inner, p.b.inner, size)
			wire.close()
			checkWire(t, p, wire.packets())

			c := p.b.childSA(t)
			if c.Protocol != s.protocol || c.Mode != s.mode || c.Encap != s.encap || c.Algorithm != s.alg {
				t.Errorf("B's SA is %s %s encap %s %s, want %s %s encap %s %s",
					c.Protocol, c.Mode, c.Encap, c.Algorithm, s.protocol, s.mode, s.encap, s.alg)
			}
			if uint32(c.SPIIn) != p.spiAB || uint32(c.SPIOut) != p.spiBA {
				t.Errorf("B's SPIs in %08x out %08x, want %08x %08x", uint32(c.SPIIn), uint32(c.SPIOut), p.spiAB, p.spiBA)
			}
			// 10 MB in segments of at most 1400 bytes: over 7000 packets in.
			if c.PacketsIn < size/1400 || c.BytesIn < size {
				t.Errorf("B's SA counted %d packets, %d bytes in; want at least %d, %d", c.PacketsIn, c.BytesIn, size/1400, size)
			}
			if c.PacketsOut == 0 {
				t.Errorf("B's SA sent no packets (ping replies and TCP ACKs go back through it)")
			}
			if c.ReplayDrops != 0 || c.ICVFailures != 0 {
				t.Errorf("B's SA: %d replay drops, %d ICV failures; want none", c.ReplayDrops, c.ICVFailures)
			}
			st := p.b.status(t)
			for _, r := range []string{"bad_icv", "replay"} {
				if n := st.Counters.Drops[r]; n != 0 {
					t.Errorf("B's status: %d drops for %s, want 0 (all drops: %v)", n, r, st.Counters.Drops)
				}
			}
			t.Logf("B: SA in %d packets %d bytes, out %d packets; drops %v", c.PacketsIn, c.BytesIn, c.PacketsOut, st.Counters.Drops)
			p.a.checkAlive(t)
			p.b.checkAlive(t)
		})
	}
}

// checkWire checks B's side of the link during the TCP transfer: no TCP in
// the clear, and the protocol the SA uses on the wire.
func checkWire(t *testing.T, p *pair, frames []frame) {
	t.Helper()
	want := map[string]uint8{"esp": 50, "ah": 51}[p.spec.protocol]
	if p.spec.encap == "udp" {
		want = 17
	}
	n := 0
	for _, f := range frames {
		ip, ok := parseIP(f.pkt)
		if !ok {
			continue
		}
		if ip.proto == 6 {
			t.Fatalf("TCP in the clear on B's link: %s -> %s", ip.src, ip.dst)
		}
		if ip.proto == want && ip.src == p.a.outer && ip.dst == p.b.outer {
			if p.spec.protocol == "esp" {
				if spi, _, ok := espOf(ip); !ok || spi != p.spiAB {
					continue
				}
			}
			n++
		}
	}
	// The capture may lose packets under load; one is enough to show the
	// encapsulation.
	if n == 0 {
		t.Fatalf("no %s packets (IP protocol %d) from A to B among %d captured on B's link", p.spec.protocol, want, len(frames))
	}
	t.Logf("wire: %d of %d captured packets are %s from A to B", n, len(frames), p.spec.protocol)
}
