package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/packet"
	"golang.org/x/sys/unix"
)

// TestScapyECN has scapy seal tunnel-mode raw ESP and AH packets and ESP
// in UDP (an ICMP echo request inside; IPv4 in IPv4, IPv6 in IPv6) with
// A's key, marks their outer header CE as a congested router would (ESP in
// UDP: sent from a UDP socket in A's namespace with IP_TOS or IPV6_TCLASS),
// and sends them from A's namespace to B's daemon (RFC 6040, Section 4.2):
// over an ECT(0) inner packet, the packet B's daemon writes to its TUN
// device carries CE, its DSCP kept; over a Not-ECT inner packet, B drops
// it and counts it as "ecn". For ESP in UDP it also checks the other
// direction of the rule on A's wire: a ping with DSCP and ECT(0) through
// the tunnel leaves A as ESP in UDP with that TOS on its outer header
// (RFC 6040, Section 4.1).
func TestScapyECN(t *testing.T) {
	requireBins(t)
	requireScapy(t)
	for _, s := range []spec{
		{name: "esp-tunnel-raw-IPv4", protocol: "esp", mode: "tunnel", encap: "none", alg: "aes256gcm16"},
		{name: "ah-tunnel-IPv4", protocol: "ah", mode: "tunnel", encap: "none", alg: "sha256"},
		{name: "esp-tunnel-raw-IPv6", protocol: "esp", mode: "tunnel", encap: "none", alg: "aes256gcm16", v6: true},
		{name: "ah-tunnel-IPv6", protocol: "ah", mode: "tunnel", encap: "none", alg: "sha256", v6: true},
		{name: "esp-tunnel-udp-IPv4", protocol: "esp", mode: "tunnel", encap: "udp", alg: "aes256gcm16"},
		{name: "esp-tunnel-udp-IPv6", protocol: "esp", mode: "tunnel", encap: "udp", alg: "aes256gcm16", v6: true},
	} {
		t.Run(s.name, func(t *testing.T) {
			p := newPair(t, s, "")
			p.start(t)
			if s.encap == "udp" {
				// Before scapy's packets move B's replay window far ahead.
				checkOuterTOS(t, p, 0xb8|packet.ECNECT0)
			}
			tun := startCapture(t, p.b.ns, "ipsec0")
			ab, _ := p.scapySAs()
			send := func(seq, id int, tos uint8) {
				var sealed struct {
					Packet string `json:"packet"`
				}
				runScapy(t, map[string]any{"op": "seal", "sa": ab, "seq": seq,
					"outer_src": p.a.outer.String(), "outer_dst": p.b.outer.String(),
					"inner": map[string]any{"src": p.a.inner.String(), "dst": p.b.inner.String(), "id": id, "seq": 1, "data": "ECN", "tos": tos},
				}, &sealed)
				raw, err := hexBytes(sealed.Packet)
				if err != nil || len(raw) < 20 {
					t.Fatalf("scapy's packet: %v %s", err, sealed.Packet)
				}
				if s.encap == "udp" {
					sendUDPWithTOS(t, p, raw, packet.TOS(raw)|packet.ECNCE) // a congested router
					return
				}
				packet.SetTOS(raw, packet.TOS(raw)|packet.ECNCE) // a congested router
				err = p.a.ns.Do(func() error {
					// IPPROTO_RAW: the header is sent as built (IP_HDRINCL,
					// IPV6_HDRINCL).
					family, to := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Addr: p.b.outer.As16()})
					if !s.v6 {
						family, to = unix.AF_INET, &unix.SockaddrInet4{Addr: p.b.outer.As4()}
					}
					fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
					if err != nil {
						return err
					}
					defer unix.Close(fd)
					return unix.Sendto(fd, raw, 0, to)
				})
				if err != nil {
					t.Fatalf("[%s] raw send: %v", p.a.ns.Name, err)
				}
			}
			const dscp = 0xb8
			send(1<<20, 0xeca, dscp|packet.ECNECT0)
			var got []byte
			nstest.WaitFor(10*time.Second, func() bool {
				for _, f := range tun.packets() {
					ip, ok := parseIP(f.pkt)
					if ok && (ip.proto == 1 || ip.proto == 58) && ip.src == p.a.inner && ip.dst == p.b.inner && len(ip.payload) >= 8 && ip.payload[4] == 0x0e && ip.payload[5] == 0xca {
						got = f.pkt
						return true
					}
				}
				return false
			})
			if got == nil {
				t.Fatalf("the echo request did not reach B's TUN device; B's drops: %v", p.b.status(t).Counters.Drops)
			}
			if tos := packet.TOS(got); tos != dscp|packet.ECNCE || !s.v6 && !packet.IPv4(got).IsChecksumValid() {
				t.Fatalf("inner packet on B's TUN device: TOS %#02x, want %#02x: % x", tos, dscp|packet.ECNCE, got)
			}
			send(1<<20+1, 0xecb, dscp|packet.ECNNotECT)
			var drops map[string]uint64
			if !nstest.WaitFor(10*time.Second, func() bool { drops = p.b.status(t).Counters.Drops; return drops["ecn"] == 1 }) {
				t.Fatalf("B's drops %v, want one ecn", drops)
			}
			for _, f := range tun.packets() {
				if ip, ok := parseIP(f.pkt); ok && (ip.proto == 1 || ip.proto == 58) && len(ip.payload) >= 8 && ip.payload[4] == 0x0e && ip.payload[5] == 0xcb {
					t.Fatalf("CE over Not-ECT reached B's TUN device: % x", f.pkt)
				}
			}
			t.Logf("B delivered TOS %#02x and dropped CE over Not-ECT", packet.TOS(got))
			p.b.checkAlive(t)
		})
	}
}

// sendUDPWithTOS sends the ESP packet of sealed, an IP/ESP packet as scapy
// builds it (no extension headers), from a UDP socket in A's namespace to
// port 4500 of B with the TOS or traffic class tos.
func sendUDPWithTOS(t *testing.T, p *pair, sealed []byte, tos uint8) {
	t.Helper()
	hl := 40
	if sealed[0]>>4 == 4 {
		hl = int(sealed[0]&0xf) * 4
	}
	err := p.a.ns.Do(func() error {
		family, to := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Addr: p.b.outer.As16(), Port: 4500})
		level, opt := unix.IPPROTO_IPV6, unix.IPV6_TCLASS
		if p.b.outer.Is4() {
			family, to = unix.AF_INET, &unix.SockaddrInet4{Addr: p.b.outer.As4(), Port: 4500}
			level, opt = unix.IPPROTO_IP, unix.IP_TOS
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, level, opt, int(tos)); err != nil {
			return err
		}
		return unix.Sendto(fd, sealed[hl:], 0, to)
	})
	if err != nil {
		t.Fatalf("[%s] UDP send: %v", p.a.ns.Name, err)
	}
}

// checkOuterTOS pings B's inner address from A's with the TOS or traffic
// class tos, expecting every reply, and checks that the ESP-in-UDP packets
// on A's eth0 from A to B carry tos on their outer header.
func checkOuterTOS(t *testing.T, p *pair, tos uint8) {
	t.Helper()
	wire := startCapture(t, p.a.ns, "eth0")
	out, _ := p.a.ns.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "5", "-Q", fmt.Sprintf("%#x", tos), "-I", p.a.inner.String(), p.b.inner.String())
	if m := receivedRE.FindStringSubmatch(out); m == nil || m[2] != "3" {
		t.Fatalf("ping with TOS %#02x through the tunnel:\n%s", tos, out)
	}
	n := 0
	nstest.WaitFor(5*time.Second, func() bool {
		n = 0
		for _, f := range wire.packets() {
			ip, ok := parseIP(f.pkt)
			if !ok || ip.proto != 17 || ip.src != p.a.outer || ip.dst != p.b.outer {
				continue
			}
			if _, _, ok := espOf(ip); !ok {
				continue
			}
			if got := packet.TOS(f.pkt); got != tos {
				t.Fatalf("ESP in UDP from A: outer TOS %#02x, want %#02x (the inner's)", got, tos)
			}
			n++
		}
		return n >= 3
	})
	if n < 3 {
		t.Fatalf("%d ESP-in-UDP packets from A with the inner TOS, want 3; ping:\n%s", n, out)
	}
}
