package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/internal/testca"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// hostConfig is one host of 192.0.2.0/29: every host has the same file
// but its own address, and groups in the YAML of groups.
func hostConfig(t *testing.T, self, groups string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`connections:
  hosts:
    local_addrs: [%s]
    remote_addrs: [192.0.2.0/29]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: {auth: psk}
    remote: {auth: psk}
    children:
      host: {mode: transport, esp_proposals: [aes256gcm16], start_action: trap}
groups:
%s
secrets:
  ike:
    - {ids: [192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4], secret: one key for the three hosts}
`, self, groups)
	c, err := config.Parse(self+".yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sendHost sends one UDP packet from host from to host to's address and
// checks that it arrives on to's TUN device, decrypted.
func sendHost(t *testing.T, from *peer, src, dst netip.Addr, to *peer) {
	t.Helper()
	pkt := tuntest.UDP(netip.AddrPortFrom(src, 1000), netip.AddrPortFrom(dst, 2000), []byte("to "+dst.String()))
	deadline := time.Now().Add(5 * time.Second)
	for {
		from.tun.In <- pkt
		select {
		case <-to.tun.Out:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no packet from %v reached %v", src, dst)
		}
	}
}

func explainTo(t *testing.T, d *Daemon, src, dst netip.Addr) ctlapi.ExplainResult {
	t.Helper()
	return explainDir(t, d, src, dst, "out")
}

func explainDir(t *testing.T, d *Daemon, src, dst netip.Addr, dir string) ctlapi.ExplainResult {
	t.Helper()
	res, err := d.Explain(context.Background(), ctlapi.ExplainRequest{Src: src, Dst: dst, Proto: 17, DPort: 2000, Direction: dir})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestOnDemandPrivateGroup checks on-demand IKE per host with one policy
// on three hosts: the first packet from A to B and to C starts an IKE SA
// and a transport-mode CHILD SA with that host alone; ipsecctl peers lists
// both; explain names the group.
func TestOnDemandPrivateGroup(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	groups := "  private: {prefixes: [192.0.2.0/29], connection: hosts}"
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	pa, _ := startAt(t, nw, a, hostConfig(t, "192.0.2.1", groups), inw.listen(a))
	pb, _ := startAt(t, nw, b, hostConfig(t, "192.0.2.2", groups), inw.listen(b))
	pc, _ := startAt(t, nw, c, hostConfig(t, "192.0.2.3", groups), inw.listen(c))
	sendHost(t, pa, a, b, pb)
	sendHost(t, pa, a, c, pc)
	sendHost(t, pb, b, a, pa)
	if n := len(pa.d.ike.SAs()); n != 2 {
		t.Errorf("A has %d IKE SAs, want one with B and one with C", n)
	}
	peers, err := pa.d.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(peers.Peers) != 2 || peers.Peers[0].Addr != b || peers.Peers[1].Addr != c ||
		peers.Peers[0].State != ctlapi.PeerEstablished || peers.Peers[0].Group != "private" || peers.Peers[0].Children != 1 {
		t.Errorf("peers of A: %+v", peers.Peers)
	}
	res := explainTo(t, pa.d, a, b)
	if res.Group != "private" || res.GroupPrefix != "192.0.2.0/29" || res.Action != ctlapi.ActionProtect || res.Fallback != nil {
		t.Errorf("explain A -> B: group %q %q action %q fallback %+v", res.Group, res.GroupPrefix, res.Action, res.Fallback)
	}
}

// TestOnDemandConnectionForManyPeers checks a connection for many peers
// without groups: remote_addrs a prefix, a trapped transport-mode child
// with dynamic selectors; the first packet to each host starts an IKE SA
// with that host alone.
func TestOnDemandConnectionForManyPeers(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	pa, _ := startAt(t, nw, a, hostConfig(t, "192.0.2.1", ""), inw.listen(a))
	pb, _ := startAt(t, nw, b, hostConfig(t, "192.0.2.2", ""), inw.listen(b))
	pc, _ := startAt(t, nw, c, hostConfig(t, "192.0.2.3", ""), inw.listen(c))
	sendHost(t, pa, a, b, pb)
	sendHost(t, pa, a, c, pc)
	spis := outSPIs(pa.d)
	if len(spis) != 2 || spis[b.String()] == 0 || spis[c.String()] == 0 {
		t.Errorf("A's outbound SAs by peer: %v, want one with B and one with C", spis)
	}
	peers, _ := pa.d.Peers(context.Background())
	if len(peers.Peers) != 2 || peers.Peers[0].Group != "" {
		t.Errorf("peers: %+v", peers.Peers)
	}
}

// startPrivateOrClear starts host A (192.0.2.1) of 192.0.2.0/29, which is
// private but for 192.0.2.4, private-or-clear with the YAML timers (such as
// ", fallback_timeout: 1s"; empty: the defaults), and subscribes to its
// events.
func startPrivateOrClear(t *testing.T, nw *conntest.Network, inw *ikeNet, timers string) (*peer, <-chan ctlapi.Event) {
	t.Helper()
	a := netip.MustParseAddr("192.0.2.1")
	groups := "  private: {prefixes: [192.0.2.0/29], connection: hosts}\n" +
		"  private-or-clear: {prefixes: [192.0.2.4/32], connection: hosts" + timers + "}"
	pa, _ := startAt(t, nw, a, hostConfig(t, "192.0.2.1", groups), inw.listen(a))
	events, cancel := pa.d.Subscribe(context.Background())
	t.Cleanup(cancel)
	return pa, events
}

// TestPrivateOrClearFallback checks the fallback cache: A's packet to D,
// which runs no IKE, starts a negotiation; without an SA after
// fallback_timeout, D's traffic is in the clear (explain and peers say
// until when) for fallback_time, then the next packet tries IKE again.
func TestPrivateOrClearFallback(t *testing.T) {
	a, dAddr := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.4")
	pa, events := startPrivateOrClear(t, conntest.NewNetwork(1024), &ikeNet{}, ", fallback_timeout: 300ms, fallback_time: 1s")
	pa.tun.In <- tuntest.UDP(netip.AddrPortFrom(a, 1000), netip.AddrPortFrom(dAddr, 2000), []byte("to D"))
	waitFor(t, "the negotiation with D", func() bool {
		f := explainTo(t, pa.d, a, dAddr).Fallback
		return f != nil && f.Negotiating
	})
	if res := explainTo(t, pa.d, a, dAddr); res.Action != ctlapi.ActionProtect || res.Group != "private-or-clear" {
		t.Errorf("during the negotiation: %s by group %q", res.Action, res.Group)
	}
	var fallbackAt time.Time
	waitFor(t, "the fallback event", func() bool {
		select {
		case ev := <-events:
			if ev.Type == ctlapi.EventFallback && ev.Fields["peer"] == dAddr.String() {
				fallbackAt = time.Now()
				if r := ev.Fields["reason"]; r != "no SA within fallback_timeout (300ms)" {
					t.Errorf("fallback reason %q", r)
				}
				return true
			}
		default:
		}
		return false
	})
	res := explainTo(t, pa.d, a, dAddr)
	if res.Action != ctlapi.ActionBypass || res.Fallback == nil || !res.Fallback.Active || res.Fallback.Until.IsZero() || res.Group != "private-or-clear" {
		t.Errorf("after the fallback: %s by group %q, fallback %+v", res.Action, res.Group, res.Fallback)
	}
	if in := explainDir(t, pa.d, dAddr, a, "in"); in.Steps[len(in.Steps)-1].Name != "fallback private-or-clear 192.0.2.4" {
		t.Errorf("inbound cleartext from D is decided by %q", in.Steps[len(in.Steps)-1].Name)
	}
	peers, _ := pa.d.Peers(context.Background())
	found := false
	for _, p := range peers.Peers {
		found = found || p.Addr == dAddr && p.State == ctlapi.PeerClear && !p.Until.IsZero()
	}
	if !found {
		t.Errorf("peers: %+v, want D in the clear", peers.Peers)
	}
	// Another host of the private group is not affected.
	if r := explainTo(t, pa.d, a, netip.MustParseAddr("192.0.2.2")); r.Action != ctlapi.ActionProtect {
		t.Errorf("B during D's fallback: %s", r.Action)
	}
	waitFor(t, "the end of the fallback", func() bool {
		select {
		case ev := <-events:
			return ev.Type == ctlapi.EventFallbackEnd
		default:
		}
		return false
	})
	if d := time.Since(fallbackAt); d < 500*time.Millisecond {
		t.Errorf("the fallback ended %v after it began, want about fallback_time (1s)", d)
	}
	if res := explainTo(t, pa.d, a, dAddr); res.Action != ctlapi.ActionProtect || res.Fallback == nil || res.Fallback.Active {
		t.Errorf("after the fallback ended: %s, fallback %+v", res.Action, res.Fallback)
	}
	// The next packet tries IKE again. The data plane asks again for
	// an SA once its last acquire is older than its acquire interval
	// (5 s); in use, fallback_time is far longer.
	time.Sleep(time.Until(fallbackAt.Add(4 * time.Second)))
	waitFor(t, "a new negotiation with D", func() bool {
		pa.tun.In <- tuntest.UDP(netip.AddrPortFrom(a, 1000), netip.AddrPortFrom(dAddr, 2000), []byte("to D again"))
		time.Sleep(50 * time.Millisecond)
		f := explainTo(t, pa.d, a, dAddr).Fallback
		return f != nil && (f.Negotiating || f.Active)
	})
}

// TestClearOrPrivate checks that a clear-or-private peer's traffic goes in
// the clear until the peer initiates IKE, and is protected once it has an
// SA.
func TestClearOrPrivate(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	pa, _ := startAt(t, nw, a, hostConfig(t, "192.0.2.1", "  clear-or-private: {prefixes: [192.0.2.0/29], connection: hosts}"), inw.listen(a))
	pb, _ := startAt(t, nw, b, hostConfig(t, "192.0.2.2", "  private: {prefixes: [192.0.2.0/29], connection: hosts}"), inw.listen(b))
	if res := explainTo(t, pa.d, a, b); res.Action != ctlapi.ActionBypass || res.Group != "clear-or-private" {
		t.Errorf("before B initiates: %s by %q", res.Action, res.Group)
	}
	sendHost(t, pb, b, a, pa)
	waitFor(t, "A protects B", func() bool { return explainTo(t, pa.d, a, b).Action == ctlapi.ActionProtect })
	if res := explainTo(t, pa.d, a, b); res.Group != "clear-or-private" || res.Steps[len(res.Steps)-1].Name != "peer clear-or-private 192.0.2.2" {
		t.Errorf("with B's SA: group %q, rule %q", res.Group, res.Steps[len(res.Steps)-1].Name)
	}
	sendHost(t, pa, a, b, pb)
	if err := pb.d.Terminate(context.Background(), "hosts"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A back to the clear", func() bool { return explainTo(t, pa.d, a, b).Action == ctlapi.ActionBypass })
}

// certHostConfig is hostConfig with certificates from ca: the host's
// certificate is NAME.pem, and its identity id (empty: its address).
func certHostConfig(t *testing.T, ca *testca.CA, self, name, id string) *config.Config {
	t.Helper()
	local := fmt.Sprintf("{auth: pubkey, certs: [%s.pem], key: %s.key}", name, name)
	if id != "" {
		local = fmt.Sprintf("{auth: pubkey, certs: [%s.pem], key: %s.key, id: %q}", name, name, id)
	}
	y := fmt.Sprintf(`connections:
  hosts:
    local_addrs: [%s]
    remote_addrs: [192.0.2.0/29]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: %s
    remote: {auth: pubkey, cacerts: [ca.pem]}
    children:
      host: {mode: transport, esp_proposals: [aes256gcm16]}
groups:
  private: {prefixes: [192.0.2.0/29], connection: hosts}
`, self, local)
	c, err := config.Parse(ca.Path(name+".yaml"), []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGroupPeerBoundToAddress checks that a group's peer must hold a
// certificate for the address it speaks from: B, with its own certificate,
// gets an SA with A; C, with a valid certificate of the same CA for its
// own address, speaking from B's address, is refused whichever identity it
// claims (its own, which is not the address it speaks from, or B's, which
// is not in its certificate), and no SA holds B's traffic.
func TestGroupPeerBoundToAddress(t *testing.T) {
	ca, err := testca.New(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for name, addr := range map[string]netip.Addr{"a": a, "b": b, "c": c} {
		if err := ca.Host(name, addr); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("B", func(t *testing.T) {
		nw, inw := conntest.NewNetwork(1024), &ikeNet{}
		pa, _ := startAt(t, nw, a, certHostConfig(t, ca, "192.0.2.1", "a", ""), inw.listen(a))
		pb, _ := startAt(t, nw, b, certHostConfig(t, ca, "192.0.2.2", "b", ""), inw.listen(b))
		sendHost(t, pa, a, b, pb)
		if s := pa.d.ike.SAs(); len(s) != 1 || s[0].RemoteID.String() != "192.0.2.2" {
			t.Errorf("A's IKE SAs: %+v", s)
		}
	})
	for _, id := range []string{"192.0.2.3", "192.0.2.2"} {
		t.Run("C as "+id, func(t *testing.T) {
			nw, inw := conntest.NewNetwork(1024), &ikeNet{}
			pa, _ := startAt(t, nw, a, certHostConfig(t, ca, "192.0.2.1", "a", ""), inw.listen(a))
			events, cancel := pa.d.Subscribe(context.Background())
			defer cancel()
			// C runs at B's address.
			startAt(t, nw, b, certHostConfig(t, ca, "192.0.2.2", "c", id), inw.listen(b))
			pa.tun.In <- tuntest.UDP(netip.AddrPortFrom(a, 1000), netip.AddrPortFrom(b, 2000), []byte("for B"))
			waitFor(t, "A refuses C", func() bool {
				select {
				case ev := <-events:
					return ev.Type == ctlapi.EventAuthFailed || ev.Type == ctlapi.EventIKEDown && ev.Fields["reason"] != ""
				default:
				}
				return false
			})
			if n := len(outSPIs(pa.d)); n != 0 {
				t.Errorf("A installed %d outbound SAs for C speaking from B's address", n)
			}
		})
	}
}

// refuserConfig is a goipsec host at 192.0.2.4 that answers IKE with ike
// and esp proposals of its own and the hosts' key, under private.
func refuserConfig(t *testing.T, ikeProposal, espProposal, psk string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`connections:
  hosts:
    local_addrs: [192.0.2.4]
    remote_addrs: [192.0.2.0/29]
    proposals: [%s]
    local: {auth: psk}
    remote: {auth: psk}
    children:
      host: {mode: transport, esp_proposals: [%s], start_action: trap}
groups:
  private: {prefixes: [192.0.2.0/29], connection: hosts}
secrets:
  ike:
    - {ids: [192.0.2.1, 192.0.2.4], secret: %s}
`, ikeProposal, espProposal, psk)
	c, err := config.Parse("e.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPrivateOrClearRefused checks that a private-or-clear peer that
// refuses the negotiation puts its traffic in the clear at once, not
// after fallback_timeout (a minute here, longer than the test waits):
// E runs goipsec but accepts none of A's IKE proposals (NO_PROPOSAL_CHOSEN
// in IKE_SA_INIT), asks for a key exchange method A does not offer
// (INVALID_KE_PAYLOAD), or accepts A's IKE proposal but none of its ESP
// proposals (NO_PROPOSAL_CHOSEN in IKE_AUTH). The fallback event and
// explain give the refusal as the reason.
func TestPrivateOrClearRefused(t *testing.T) {
	for _, tc := range []struct {
		name, ike, esp, psk, notify string
	}{
		{"IKE_SA_INIT", "aes128gcm16-prfsha384-ecp384", "aes256gcm16", "one key for the three hosts", "NO_PROPOSAL_CHOSEN"},
		{"INVALID_KE", "", "", "", "INVALID_KE_PAYLOAD"},
		{"IKE_AUTH", "aes256gcm16-prfsha256-x25519", "aes128gcm16", "one key for the three hosts", "NO_PROPOSAL_CHOSEN"},
		{"AUTHENTICATION_FAILED", "aes256gcm16-prfsha256-x25519", "aes256gcm16", "another key", "AUTHENTICATION_FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw, inw := conntest.NewNetwork(1024), &ikeNet{}
			a, e := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.4")
			pa, events := startPrivateOrClear(t, nw, inw, ", fallback_timeout: 1m, fallback_time: 1m")
			if tc.ike != "" {
				startAt(t, nw, e, refuserConfig(t, tc.ike, tc.esp, tc.psk), inw.listen(e))
			} else {
				askOtherKE(t, inw.listen(e))
			}
			start := time.Now()
			pa.tun.In <- tuntest.UDP(netip.AddrPortFrom(a, 1000), netip.AddrPortFrom(e, 2000), []byte("to E"))
			var fb ctlapi.Event
			waitFor(t, "the fallback event", func() bool {
				select {
				case ev := <-events:
					if ev.Type == ctlapi.EventFallback {
						fb = ev
						return true
					}
				default:
				}
				return false
			})
			t.Logf("fallback %v after the first packet: %s", time.Since(start), fb.Fields["reason"])
			if fb.Fields["peer"] != e.String() || !strings.Contains(fb.Fields["reason"], tc.notify) {
				t.Errorf("fallback event %v, want peer %v refused with %s", fb.Fields, e, tc.notify)
			}
			res := explainTo(t, pa.d, a, e)
			if res.Action != ctlapi.ActionBypass || res.Fallback == nil || !res.Fallback.Active || !strings.Contains(res.Reason, tc.notify) {
				t.Errorf("after the refusal: %s, fallback %+v, reason %q", res.Action, res.Fallback, res.Reason)
			}
		})
	}
}

// askOtherKE answers every IKE_SA_INIT request on sock with
// INVALID_KE_PAYLOAD for ecp521 (RFC 7296, Section 1.2), which the hosts
// do not offer: a peer whose demand cannot be met.
func askOtherKE(t *testing.T, sock *ikeSock) {
	t.Cleanup(func() { sock.Close() })
	go func() {
		b := make([]byte, 65536)
		for {
			n, from, to, err := sock.ReadFrom(b)
			if err != nil {
				return
			}
			m, err := ikewire.Parse(b[:n])
			if err != nil || m.Exchange != ikewire.IKE_SA_INIT || m.IsResponse() {
				continue
			}
			resp := &ikewire.Message{
				Header:   ikewire.Header{SPIi: m.SPIi, Exchange: ikewire.IKE_SA_INIT, Flags: ikewire.FlagResponse},
				Payloads: []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidKEPayload, Data: []byte{0, 21}}},
			}
			out, err := resp.Marshal()
			if err != nil {
				t.Error(err)
				return
			}
			sock.WriteTo(out, to, from)
		}
	}()
}

// TestPrivateOrClearTimersFakeClock runs the fallback timers at their
// defaults (fallback_timeout 5s, fallback_time 10m) in a testing/synctest
// bubble, whose fake clock drives both Options.Now (time.Now) and the
// timers (time.AfterFunc): the daemon has no clock interface of its own.
// D at 192.0.2.4 does not answer: A falls back after exactly
// fallback_timeout and tries IKE again after exactly fallback_time.
func TestPrivateOrClearTimersFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, dAddr := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.4")
		pa, events := startPrivateOrClear(t, conntest.NewNetwork(1024), &ikeNet{}, "")
		next := func(typ string) time.Time {
			t.Helper()
			for ev := range events {
				if ev.Type == typ {
					return time.Now()
				}
			}
			t.Fatalf("no %s event", typ)
			return time.Time{}
		}
		start := time.Now()
		pa.tun.In <- tuntest.UDP(netip.AddrPortFrom(a, 1000), netip.AddrPortFrom(dAddr, 2000), []byte("to D"))
		fb := next(ctlapi.EventFallback)
		if d := fb.Sub(start); d != 5*time.Second {
			t.Errorf("the fallback began %v after the first packet, want fallback_timeout (5s)", d)
		}
		if f := explainTo(t, pa.d, a, dAddr).Fallback; f == nil || !f.Active || !f.Until.Equal(fb.Add(10*time.Minute)) {
			t.Errorf("during the fallback: %+v, want until %v", f, fb.Add(10*time.Minute))
		}
		if end := next(ctlapi.EventFallbackEnd); end.Sub(fb) != 10*time.Minute {
			t.Errorf("the fallback ended %v after it began, want fallback_time (10m)", end.Sub(fb))
		}
	})
}
