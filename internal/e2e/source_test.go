package e2e

import (
	"net/netip"
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
			a, b, _ := ikeTopology(t, false, "tunnel")
			second := netip.MustParseAddr("192.0.2.11")
			a.ns.MustRun("ip", "addr", "add", second.String()+"/24", "dev", "eth0")
			a.outer = second
			ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "trap",
				localID: "a.e2e.example", remoteID: "b.e2e.example", psk: newPSK()}
			cb := ca
			cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
			if encap {
				ca.connKeys, cb.connKeys = "encap: yes", "encap: yes"
			}
			a.startDaemon(t, ikeConfig(a, b, ca))
			b.startDaemon(t, ikeConfig(b, a, cb))
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
