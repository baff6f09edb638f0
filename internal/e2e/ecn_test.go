package e2e

import (
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/packet"
	"golang.org/x/sys/unix"
)

// TestScapyECN has scapy seal tunnel-mode raw ESP and AH packets (an ICMP
// echo request inside; IPv4 in IPv4, IPv6 in IPv6) with A's key, marks their outer header CE as a
// congested router would, and sends them from A's namespace to B's daemon
// (RFC 6040, Section 4.2): over an ECT(0) inner packet, the packet B's
// daemon writes to its TUN device carries CE, its DSCP kept; over a Not-ECT
// inner packet, B drops it and counts it as "ecn".
func TestScapyECN(t *testing.T) {
	requireBins(t)
	requireScapy(t)
	for _, s := range []spec{
		{name: "esp-tunnel-raw-IPv4", protocol: "esp", mode: "tunnel", encap: "none", alg: "aes256gcm16"},
		{name: "ah-tunnel-IPv4", protocol: "ah", mode: "tunnel", encap: "none", alg: "sha256"},
		{name: "esp-tunnel-raw-IPv6", protocol: "esp", mode: "tunnel", encap: "none", alg: "aes256gcm16", v6: true},
		{name: "ah-tunnel-IPv6", protocol: "ah", mode: "tunnel", encap: "none", alg: "sha256", v6: true},
	} {
		t.Run(s.name, func(t *testing.T) {
			p := newPair(t, s, "")
			p.start(t)
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
