package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestIKEFromLocalAddrs is the namespace regression test of issue 8's
// first daemon bug: A has a second address on its link (192.0.2.11, a
// secondary one, so the routing table prefers 192.0.2.1 towards B) and its
// connection's local_addrs is that second address; B accepts only it as
// remote_addrs. IKE on port 500, and with encap yes on port 4500 (RFC
// 7296, Section 2.23), must leave A from 192.0.2.11: from 192.0.2.1 B
// finds no connection for the request. Both sides must show the IKE SA
// between 192.0.2.11 and 192.0.2.2, and the tunnel must carry pings.
func TestIKEFromLocalAddrs(t *testing.T) {
	requireBins(t)
	for _, encap := range []bool{false, true} {
		name := "port500"
		if encap {
			name = "encap"
		}
		t.Run(name, func(t *testing.T) {
			a, b, second, _ := secondAddrPair(t, false, encap)
			mustPing(t, a.ns, a.inner, b.inner, 3)
			ia, cha := a.waitEstablished(t, 10*time.Second)
			ib, chb := b.waitEstablished(t, 10*time.Second)
			if ia.LocalAddr.Addr() != second || ib.RemoteAddr.Addr() != second {
				t.Errorf("IKE SA on A from %v, on B from %v; want %v on both", ia.LocalAddr, ib.RemoteAddr, second)
			}
			if encap && (ia.LocalAddr.Port() != 4500 || ib.RemoteAddr.Port() != 4500) {
				t.Errorf("encap yes: IKE SA on A %v, on B from %v; want port 4500", ia.LocalAddr, ib.RemoteAddr)
			}
			if cha.LocalAddr != second || chb.RemoteAddr != second {
				t.Errorf("CHILD SA on A from %v, on B to %v; want %v", cha.LocalAddr, chb.RemoteAddr, second)
			}
			// A rekey runs over the same socket once the SA is up, and
			// keeps the addresses.
			rekeyChild(t, a, b, cha, chb)
			mustPing(t, a.ns, a.inner, b.inner, 2)
			ia, _ = a.waitEstablished(t, 10*time.Second)
			ib, _ = b.waitEstablished(t, 10*time.Second)
			if ia.LocalAddr.Addr() != second || ib.RemoteAddr.Addr() != second {
				t.Errorf("after a rekey: IKE SA on A from %v, on B from %v; want %v on both", ia.LocalAddr, ib.RemoteAddr, second)
			}
			a.checkAlive(t)
			b.checkAlive(t)
		})
	}
}

// TestESPInUDPFromLocalAddrs is the namespace regression test of ESP in UDP
// leaving from the address the routing table prefers instead of the SA's:
// A has a second address on its link (192.0.2.11 beside 192.0.2.1,
// 2001:db8::11 beside 2001:db8::1) that the routing table does not prefer
// towards B (the test checks with ip route get), its connection's
// local_addrs is that second address, and encap yes forces ESP in UDP (RFC
// 3948). IKE already left from it (TestIKEFromLocalAddrs); the data
// plane's batched sends on the NAT-T socket did not. A capture on B's link
// must see every ESP-in-UDP packet of A come from the second address, and
// pings and a TCP transfer must pass the tunnel. B's goipsec accepts ESP
// in UDP from any source, so only the capture tells.
func TestESPInUDPFromLocalAddrs(t *testing.T) {
	requireBins(t)
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			a, b, second, preferred := secondAddrPair(t, v6, true)
			capt := startCapture(t, b.ns, "eth0")
			mustPing(t, a.ns, a.inner, b.inner, 5)
			_, cha := a.waitEstablished(t, 10*time.Second)
			if cha.LocalAddr != second {
				t.Fatalf("CHILD SA on A from %v, want %v", cha.LocalAddr, second)
			}
			// A TCP transfer fills batches: runs of equal-sized
			// datagrams go out as UDP_SEGMENT sends, which must carry
			// the source too.
			tcpTransfer(t, a.ns, b.ns, a.inner, b.inner, 4<<20)
			capt.close()
			from := map[netip.Addr]int{} // ESP-in-UDP packets from A, by source
			var raw int
			for _, f := range capt.packets() {
				p, ok := parseIP(f.pkt)
				if !ok || p.src == b.outer {
					continue
				}
				if p.proto == 50 {
					raw++
				}
				if _, _, ok := espOf(p); ok && p.proto == 17 && p.dst == b.outer {
					from[p.src]++
				}
			}
			t.Logf("ESP in UDP from A to B by source: %v (the routing table prefers %v); raw ESP: %d", from, preferred, raw)
			if from[second] < 5 || len(from) != 1 || raw != 0 {
				t.Errorf("ESP-in-UDP packets from A by source %v and %d raw ESP packets, want at least 5 pings' worth from %v only", from, raw, second)
			}
			a.checkAlive(t)
			b.checkAlive(t)
		})
	}
}

// secondAddrPair starts two daemons, A and B, with an IKE connection (PSK,
// tunnel mode, trap on A) over ikeTopology's link, on which A has a second
// address (192.0.2.11 or 2001:db8::11) that the routing table does not
// prefer towards B: A's connection has it as local_addrs, B's as
// remote_addrs; encap yes on both with encap. It returns the second address
// and the preferred one.
func secondAddrPair(t *testing.T, v6, encap bool) (a, b *host, second, preferred netip.Addr) {
	t.Helper()
	a, b, _ = ikeTopology(t, v6, "tunnel")
	second = netip.MustParseAddr("192.0.2.11")
	if v6 {
		// Linux prefers the newest of two IPv6 addresses that tie on
		// RFC 6724's rules: the first goes back on after the second.
		second = netip.MustParseAddr("2001:db8::11")
		a.ns.MustRun("ip", "-6", "addr", "add", second.String()+"/64", "dev", "eth0", "nodad")
		a.ns.MustRun("ip", "-6", "addr", "del", a.outer.String()+"/64", "dev", "eth0")
		a.ns.MustRun("ip", "-6", "addr", "add", a.outer.String()+"/64", "dev", "eth0", "nodad")
	} else {
		a.ns.MustRun("ip", "addr", "add", second.String()+"/24", "dev", "eth0")
	}
	preferred = a.outer
	if out := a.ns.MustRun("ip", "route", "get", b.outer.String()); !strings.Contains(out, " src "+preferred.String()+" ") {
		t.Fatalf("the routing table must prefer %v towards B, else the test proves nothing:\n%s", preferred, out)
	}
	a.outer = second
	ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "trap",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: newPSK()}
	if encap {
		ca.connKeys = "encap: yes"
	}
	cb := ca
	cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
	a.startDaemon(t, ikeConfig(a, b, ca))
	b.startDaemon(t, ikeConfig(b, a, cb))
	return a, b, second, preferred
}
