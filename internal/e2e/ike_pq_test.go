package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
)

// The exchange types of IKE_INTERMEDIATE (RFC 9242, Section 3) and
// IKE_FOLLOWUP_KE (RFC 9370, Section 2.2.4).
const (
	exchIKEIntermediate = 43
	exchIKEFollowupKE   = 44
)

// TestIKEPostQuantum runs IKEv2 with ML-KEM between two goipsec daemons:
// X25519 in IKE_SA_INIT and ML-KEM-768 as Additional Key Exchange 1 in an
// IKE_INTERMEDIATE exchange (RFC 9370, Section 2.2.2; RFC 9242), and
// ML-KEM-768 alone in IKE_SA_INIT (draft-ietf-ipsecme-ikev2-mlkem). Host A
// traps the traffic to B's network; a ping and a 10 MB TCP transfer go
// through the CHILD SA, both sides report the proposal with "ipsecctl sas
// --json", and a capture shows the IKE_INTERMEDIATE exchange when an
// additional key exchange is negotiated. An IKE SA rekey follows, with
// IKE_FOLLOWUP_KE for the additional key exchange. The CHILD SA's ESP
// proposal, aes256gcm16-x25519-ke1_mlkem768, has no effect in IKE_AUTH
// (RFC 9370, Section 2.2.3); "ipsecctl rekey gw/net" then rekeys it with
// X25519 in CREATE_CHILD_SA and ML-KEM-768 in an IKE_FOLLOWUP_KE exchange
// (RFC 9370, Section 2.2.4), and a ping goes through the new CHILD SA.
// Last, "ipsecctl down".
func TestIKEPostQuantum(t *testing.T) {
	requireBins(t)
	for _, tc := range []struct {
		ike   string
		inter int // IKE_INTERMEDIATE requests expected
	}{
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", 1},
		{"aes256gcm16-prfsha384-mlkem768", 0},
	} {
		t.Run(tc.ike, func(t *testing.T) {
			a, b, _ := ikeTopology(t, false, "tunnel")
			psk := newPSK()
			ca := ikeConn{ike: tc.ike, child: []string{"aes256gcm16-x25519-ke1_mlkem768"}, mode: "tunnel", start: "trap", localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
			cb := ca
			cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
			a.startDaemon(t, ikeConfig(a, b, ca))
			b.startDaemon(t, ikeConfig(b, a, cb))
			capt := startCapture(t, a.ns, "eth0")

			start := time.Now()
			mustPing(t, a.ns, a.inner, b.inner, 3)
			t.Logf("trap, handshake and 3 echo replies in %v", time.Since(start))
			tcpTransfer(t, a.ns, b.ns, a.inner, b.inner, 10<<20)
			ia, ca1 := a.waitEstablished(t, 5*time.Second)
			ib, cb1 := b.waitEstablished(t, 5*time.Second)
			checkPairAgrees(t, ia, ca1, ib, cb1, tc.ike, "aes256gcm16")
			if ca1.PacketsOut < 3 || cb1.PacketsIn < 3 || ca1.BytesOut < 10<<20 || cb1.BytesIn < 10<<20 {
				t.Errorf("counters after ping and 10 MB: A out %d packets %d bytes, B in %d packets %d bytes",
					ca1.PacketsOut, ca1.BytesOut, cb1.PacketsIn, cb1.BytesIn)
			}
			capt.close()
			inter, auth := 0, 0
			for _, m := range ikeMessages(capt.packets()) {
				if m.spii != uint64(ia.SPIi) || m.response {
					continue
				}
				switch m.exchange {
				case exchIKEIntermediate:
					inter++ // a datagram: fragments of one request count apart
				case 35: // IKE_AUTH
					auth++
				}
			}
			if (inter > 0) != (tc.inter > 0) || auth == 0 {
				t.Errorf("on the wire: %d IKE_INTERMEDIATE and %d IKE_AUTH request datagrams; want IKE_INTERMEDIATE %v", inter, auth, tc.inter > 0)
			}

			// Rekey the IKE SA: with an additional key exchange it
			// takes an IKE_FOLLOWUP_KE exchange (RFC 9370, Section
			// 2.2.4); traffic keeps flowing on the CHILD SA, which the
			// new IKE SA takes over.
			capt = startCapture(t, a.ns, "eth0")
			if _, err := a.ctl(context.Background(), "rekey", connName); err != nil {
				t.Fatal(err)
			}
			var ia2 ctlapi.IKESA
			if !nstest.WaitFor(15*time.Second, func() bool {
				s := a.trySAs()
				var ok bool
				ia2, _, ok = established(s)
				return ok && ia2.SPIi != ia.SPIi
			}) {
				t.Fatalf("the IKE SA was not replaced within 15s")
			}
			mustPing(t, a.ns, a.inner, b.inner, 3)
			ia3, ca3 := a.waitEstablished(t, 5*time.Second)
			ib3, cb3 := b.waitEstablished(t, 5*time.Second)
			checkPairAgrees(t, ia3, ca3, ib3, cb3, tc.ike, "aes256gcm16")
			capt.close()
			followup := 0
			for _, m := range ikeMessages(capt.packets()) {
				if m.exchange == exchIKEFollowupKE && !m.response {
					followup++
				}
			}
			if (followup > 0) != (tc.inter > 0) {
				t.Errorf("on the wire during the IKE SA rekey: %d IKE_FOLLOWUP_KE request datagrams", followup)
			}

			// Rekey the CHILD SA: CREATE_CHILD_SA with X25519, then
			// IKE_FOLLOWUP_KE with ML-KEM-768 (RFC 9370, Section 2.2.4).
			capt = startCapture(t, a.ns, "eth0")
			rekeyChild(t, a, b, ca3, cb3)
			mustPing(t, a.ns, a.inner, b.inner, 3)
			ia5, ca5 := a.waitEstablished(t, 5*time.Second)
			ib5, cb5 := b.waitEstablished(t, 5*time.Second)
			checkPairAgrees(t, ia5, ca5, ib5, cb5, tc.ike, "aes256gcm16")
			if ia5.SPIi != ia3.SPIi {
				t.Errorf("the IKE SA changed with a CHILD SA rekey")
			}
			if ca5.PacketsOut < 3 || ca5.PacketsIn < 3 || cb5.PacketsIn < 3 {
				t.Errorf("no traffic on the new CHILD SA: A out %d in %d, B in %d", ca5.PacketsOut, ca5.PacketsIn, cb5.PacketsIn)
			}
			capt.close()
			var exchs []int
			for _, m := range ikeMessages(capt.packets()) {
				if m.spii != uint64(ia3.SPIi) || m.response {
					continue
				}
				if m.exchange == exchCreateChildSA || m.exchange == exchIKEFollowupKE {
					if n := len(exchs); n == 0 || exchs[n-1] != int(m.exchange) {
						exchs = append(exchs, int(m.exchange)) // fragments count once
					}
				}
			}
			if len(exchs) != 2 || exchs[0] != exchCreateChildSA || exchs[1] != exchIKEFollowupKE {
				t.Errorf("on the wire during the CHILD SA rekey: requests %v, want CREATE_CHILD_SA (%d) then IKE_FOLLOWUP_KE (%d)", exchs, exchCreateChildSA, exchIKEFollowupKE)
			}

			if _, err := a.ctl(context.Background(), "down", connName); err != nil {
				t.Fatal(err)
			}
			a.waitNoSAs(t, 10*time.Second)
			b.waitNoSAs(t, 10*time.Second)
			a.checkAlive(t)
			b.checkAlive(t)
		})
	}
}
