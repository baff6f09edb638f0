package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
)

// This file holds the IKEv2 end-to-end tests between two goipsec daemons
// and the helpers that the strongSwan interoperability test
// (ike_interop_test.go) and the malformed-input test (ike_malformed_test.go)
// share: configurations with a "connections" section, starting one daemon,
// reading its SAs and following its events.

// ikeProposals are the IKE proposals of issue 4's proof, each with the ESP
// proposal of the same algorithms and key exchange method (for the
// strongSwan test) and what strongSwan's list-sas calls them: the names are
// strongSwan's own, the independent side of the comparison.
var ikeProposals = []struct {
	ike    string // IKE proposal keyword
	alias  string // the same proposal as strongSwan's keyword rules also spell it (curve25519 is x25519; the PRF defaults to the integrity's hash)
	esp    string // matching ESP proposal without a key exchange method
	ke     string // the key exchange method keyword, for ESP with PFS
	encr   string // strongSwan's name of the IKE cipher
	keylen int    // its key size in bits; 0 when no Key Length attribute is sent (RFC 7634, Section 4)
	integ  string // strongSwan's name of the IKE integrity algorithm, "" for an AEAD
	prf    string
	dh     string
	// The ESP side, as strongSwan reports the CHILD_SA.
	espEncr   string
	espKeylen int
	espInteg  string
}{
	{"aes256gcm16-prfsha256-x25519", "", "aes256gcm16", "x25519", "AES_GCM_16", 256, "", "PRF_HMAC_SHA2_256", "CURVE_25519", "AES_GCM_16", 256, ""},
	{"aes128gcm16-prfsha384-ecp384", "", "aes128gcm16", "ecp384", "AES_GCM_16", 128, "", "PRF_HMAC_SHA2_384", "ECP_384", "AES_GCM_16", 128, ""},
	{"chacha20poly1305-prfsha512-curve25519", "chacha20poly1305-prfsha512-x25519", "chacha20poly1305", "curve25519", "CHACHA20_POLY1305", 0, "", "PRF_HMAC_SHA2_512", "CURVE_25519", "CHACHA20_POLY1305", 0, ""},
	{"aes256-sha256-modp2048", "aes256-sha256-prfsha256-modp2048", "aes256-sha256", "modp2048", "AES_CBC", 256, "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "MODP_2048", "AES_CBC", 256, "HMAC_SHA2_256_128"},
}

// ikeConn is one connection with one child, as ikeConfig writes it.
type ikeConn struct {
	ike         string   // IKE proposal
	child       []string // esp_proposals, or ah_proposals with ah set
	ah          bool
	mode        string // tunnel or transport
	start       string // start_action: none, trap or start
	localID     string
	remoteID    string
	localAddrs  []string // local_addrs; nil means this host's outer address
	remoteAddrs []string // remote_addrs; nil means the peer's outer address
	psk         string
	daemonIKE   string // daemon.ike flow mapping, such as "{half_open_timeout: 8s}"
	connKeys    string // more keys of the connection, one "key: value" a line
}

// Names of the connection and of its child in every configuration here:
// "ipsecctl up gw", "ipsecctl rekey gw/net".
const (
	connName  = "gw"
	childName = "net"
	childFull = connName + "/" + childName
)

// ikeConfig is the YAML of one goipsec host with an IKE connection to peer.
func ikeConfig(h, peer *host, c ikeConn) string {
	q := func(ss ...string) string {
		var b strings.Builder
		b.WriteByte('[')
		for i, s := range ss {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", s)
		}
		b.WriteByte(']')
		return b.String()
	}
	remote := c.remoteAddrs
	if remote == nil {
		remote = []string{peer.outer.String()}
	}
	local := c.localAddrs
	if local == nil {
		local = []string{h.outer.String()}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "daemon:\n  socket: %q\n  tun: {name: ipsec0, mtu: 1400}\n  log: {level: info}\n", h.sock)
	if c.daemonIKE != "" {
		fmt.Fprintf(&b, "  ike: %s\n", c.daemonIKE)
	}
	fmt.Fprintf(&b, "connections:\n  %s:\n", connName)
	fmt.Fprintf(&b, "    local_addrs: %s\n    remote_addrs: %s\n", q(local...), q(remote...))
	fmt.Fprintf(&b, "    proposals: %s\n", q(c.ike))
	for _, l := range strings.Split(strings.TrimSpace(c.connKeys), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "    %s\n", strings.TrimSpace(l))
		}
	}
	fmt.Fprintf(&b, "    local: {auth: psk, id: %q}\n    remote: {auth: psk, id: %q}\n", c.localID, c.remoteID)
	fmt.Fprintf(&b, "    children:\n      %s:\n        mode: %s\n", childName, c.mode)
	if c.mode == "transport" {
		fmt.Fprintf(&b, "        local_ts: %s\n        remote_ts: %s\n",
			q(netip.PrefixFrom(h.outer, h.outer.BitLen()).String()), q(netip.PrefixFrom(peer.outer, peer.outer.BitLen()).String()))
	} else {
		fmt.Fprintf(&b, "        local_ts: %s\n        remote_ts: %s\n", q(h.net.String()), q(peer.net.String()))
	}
	key := "esp_proposals"
	if c.ah {
		key = "ah_proposals"
	}
	fmt.Fprintf(&b, "        %s: %s\n        start_action: %s\n", key, q(c.child...), c.start)
	fmt.Fprintf(&b, "secrets:\n  ike:\n    - {ids: %s, secret: %q}\n", q(c.localID, c.remoteID), c.psk)
	return b.String()
}

// newPSK returns a random pre-shared key of 32 hex digits.
func newPSK() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ikeTopology is two namespaces joined by a veth pair with the outer and
// inner addresses of harness_test.go's pairs, and a directory for the
// daemons' files. No daemon runs yet.
func ikeTopology(t *testing.T, v6 bool, mode string) (a, b *host, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "gike") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a = &host{ns: nstest.New(t, "a")}
	b = &host{ns: nstest.New(t, "b")}
	if v6 {
		a.outer, b.outer = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		nstest.Link(t, a.ns, "eth0", []string{"2001:db8::1/64"}, b.ns, "eth0", []string{"2001:db8::2/64"})
	} else {
		a.outer, b.outer = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		nstest.Link(t, a.ns, "eth0", []string{"192.0.2.1/24"}, b.ns, "eth0", []string{"192.0.2.2/24"})
	}
	if mode == "transport" {
		a.inner, b.inner = a.outer, b.outer
	} else {
		if v6 {
			a.inner, b.inner = netip.MustParseAddr("fd01::1"), netip.MustParseAddr("fd02::1")
			a.net, b.net = netip.MustParsePrefix("fd01::/64"), netip.MustParsePrefix("fd02::/64")
		} else {
			a.inner, b.inner = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
			a.net, b.net = netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")
		}
		a.ns.AddLoopbackAddr(a.inner.String())
		b.ns.AddLoopbackAddr(b.inner.String())
	}
	a.sock, b.sock = filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	a.conf, b.conf = filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	return a, b, dir
}

// startDaemon writes conf, checks it, starts ipsecd in h's namespace and
// waits until its control socket answers. The daemon is stopped when t
// ends (or earlier by h.proc.Stop); its output is logged if t failed.
func (h *host) startDaemon(t *testing.T, conf string) {
	t.Helper()
	writeFile(t, h.conf, conf)
	if out, err := exec.Command(ipsecd(), "-c", h.conf, "--check").CombinedOutput(); err != nil {
		t.Fatalf("ipsecd --check %s: %v\n%s\n%s", h.conf, err, out, conf)
	}
	os.Remove(h.sock)
	h.proc = h.ns.Start(ipsecd(), "-c", h.conf)
	proc := h.proc
	t.Cleanup(func() {
		proc.Stop()
		if t.Failed() {
			t.Logf("[%s] ipsecd output:\n%s", h.ns.Name, proc.Output)
		}
	})
	ok := nstest.WaitFor(30*time.Second, func() bool {
		if done, _ := proc.Exited(); done {
			return true
		}
		_, err := h.ctl(context.Background(), "status")
		return err == nil
	})
	if done, err := proc.Exited(); done {
		t.Fatalf("[%s] ipsecd exited: %v\n%s", h.ns.Name, err, proc.Output)
	}
	if !ok {
		t.Fatalf("[%s] ipsecd did not answer on %s within 30s\n%s", h.ns.Name, h.sock, proc.Output)
	}
}

// sas returns "ipsecctl sas --json".
func (h *host) sas(t *testing.T) ctlapi.SAs {
	t.Helper()
	var s ctlapi.SAs
	h.ctlJSON(t, &s, "sas")
	return s
}

// trySAs is sas for polling loops: nil on error.
func (h *host) trySAs() *ctlapi.SAs {
	out, err := h.ctl(context.Background(), "sas", "--json")
	if err != nil {
		return nil
	}
	var s ctlapi.SAs
	if json.Unmarshal(out, &s) != nil {
		return nil
	}
	return &s
}

// established returns the established IKE SA of the connection and the
// installed CHILD SAs of child, or ok false.
func established(s *ctlapi.SAs) (ike ctlapi.IKESA, children []ctlapi.ChildSA, ok bool) {
	if s == nil {
		return ike, nil, false
	}
	for _, i := range s.IKESAs {
		if i.Name == connName && strings.EqualFold(i.State, ctlapi.IKEEstablished) {
			ike, ok = i, true
		}
	}
	for _, c := range s.ChildSAs {
		if c.Name == childFull && strings.EqualFold(c.State, ctlapi.ChildInstalled) {
			children = append(children, c)
		}
	}
	return ike, children, ok
}

// waitEstablished waits until h has an established IKE SA with exactly one
// installed CHILD SA, and returns them.
// rekeyChild runs "ipsecctl rekey" for the child on a and waits until both
// a and b show one CHILD SA whose SPIs differ from prevA's and prevB's.
func rekeyChild(t *testing.T, a, b *host, prevA, prevB ctlapi.ChildSA) {
	t.Helper()
	if _, err := a.ctl(context.Background(), "rekey", childFull); err != nil {
		t.Fatal(err)
	}
	var lastA, lastB *ctlapi.SAs
	if !nstest.WaitFor(15*time.Second, func() bool {
		lastA, lastB = a.trySAs(), b.trySAs()
		_, csa, okA := established(lastA)
		_, csb, okB := established(lastB)
		if !okA || !okB || len(csa) != 1 || len(csb) != 1 {
			return false
		}
		return csa[0].SPIIn != prevA.SPIIn && csa[0].SPIOut != prevA.SPIOut && csb[0].SPIIn != prevB.SPIIn
	}) {
		t.Fatalf("the CHILD SA was not replaced within 15s:\nA %+v\nB %+v", lastA, lastB)
	}
}

func (h *host) waitEstablished(t *testing.T, timeout time.Duration) (ctlapi.IKESA, ctlapi.ChildSA) {
	t.Helper()
	var last *ctlapi.SAs
	var ike ctlapi.IKESA
	var child ctlapi.ChildSA
	if !nstest.WaitFor(timeout, func() bool {
		last = h.trySAs()
		i, cs, ok := established(last)
		if !ok || len(cs) != 1 {
			return false
		}
		ike, child = i, cs[0]
		return true
	}) {
		t.Fatalf("[%s] no established IKE SA with one CHILD SA within %v: %+v", h.ns.Name, timeout, last)
	}
	return ike, child
}

// waitNoSAs waits until h lists no negotiated SA at all.
func (h *host) waitNoSAs(t *testing.T, timeout time.Duration) {
	t.Helper()
	var last *ctlapi.SAs
	if !nstest.WaitFor(timeout, func() bool {
		last = h.trySAs()
		return last != nil && len(last.IKESAs) == 0 && len(last.ChildSAs) == 0
	}) {
		t.Fatalf("[%s] SAs still listed after %v: %+v", h.ns.Name, timeout, last)
	}
}

// checkPairAgrees checks that the initiator's and the responder's views of
// the IKE SA and of its CHILD SA agree: SPIs (one side's inbound SPI is the
// other's outbound SPI), roles, proposal and algorithm.
func checkPairAgrees(t *testing.T, ia ctlapi.IKESA, ca ctlapi.ChildSA, ib ctlapi.IKESA, cb ctlapi.ChildSA, proposal, alg string) {
	t.Helper()
	if !ia.Initiator || ib.Initiator {
		t.Errorf("initiator flags: A %v, B %v", ia.Initiator, ib.Initiator)
	}
	if ia.SPIi == 0 || ia.SPIr == 0 || ia.SPIi != ib.SPIi || ia.SPIr != ib.SPIr {
		t.Errorf("IKE SPIs: A %v/%v, B %v/%v", ia.SPIi, ia.SPIr, ib.SPIi, ib.SPIr)
	}
	if ia.Proposal != ib.Proposal || !sameProposal(ia.Proposal, proposal) {
		t.Errorf("IKE proposals: A %q, B %q, want %q", ia.Proposal, ib.Proposal, proposal)
	}
	if ia.LocalAddr != ib.RemoteAddr || ia.RemoteAddr != ib.LocalAddr {
		t.Errorf("IKE endpoints: A %v -> %v, B %v -> %v", ia.LocalAddr, ia.RemoteAddr, ib.LocalAddr, ib.RemoteAddr)
	}
	if ca.SPIIn == 0 || ca.SPIOut == 0 || ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
		t.Errorf("CHILD SPIs: A in %v out %v, B in %v out %v", ca.SPIIn, ca.SPIOut, cb.SPIIn, cb.SPIOut)
	}
	for _, c := range []ctlapi.ChildSA{ca, cb} {
		if strings.TrimSuffix(c.Algorithm, "-esn") != alg {
			t.Errorf("CHILD SA %s: algorithm %q, want %q", c.LocalAddr, c.Algorithm, alg)
		}
	}
	if ca.Protocol != cb.Protocol || ca.Mode != cb.Mode || ca.Encap != cb.Encap || ca.ESN != cb.ESN {
		t.Errorf("CHILD SAs differ: A %s %s %s esn=%v, B %s %s %s esn=%v", ca.Protocol, ca.Mode, ca.Encap, ca.ESN, cb.Protocol, cb.Mode, cb.Encap, cb.ESN)
	}
	if strings.Join(ca.LocalTS, ",") != strings.Join(cb.RemoteTS, ",") || strings.Join(ca.RemoteTS, ",") != strings.Join(cb.LocalTS, ",") {
		t.Errorf("traffic selectors: A %v === %v, B %v === %v", ca.LocalTS, ca.RemoteTS, cb.LocalTS, cb.RemoteTS)
	}
}

// sameProposal reports whether the IKE proposal keyword got names the
// proposal want of ikeProposals, in either spelling.
func sameProposal(got, want string) bool {
	for _, p := range ikeProposals {
		if p.ike == want {
			return got == want || got == p.alias
		}
	}
	return got == want
}

// ikeMessage is the IKE header of a captured datagram (RFC 7296, Section
// 3.1) and its length on the wire.
type ikeMessage struct {
	spii, spir uint64
	exchange   uint8
	response   bool
	initiator  bool
	length     int // of the IKE message, without the non-ESP marker
}

// ikeMessages returns the IKE messages among captured frames: UDP to or
// from port 500, and UDP on port 4500 behind a non-ESP marker (RFC 3948,
// Section 2.2).
func ikeMessages(frames []frame) []ikeMessage {
	var out []ikeMessage
	for _, f := range frames {
		p, ok := parseIP(f.pkt)
		if !ok || p.proto != 17 || len(p.payload) < 8 {
			continue
		}
		sport, dport := binary.BigEndian.Uint16(p.payload), binary.BigEndian.Uint16(p.payload[2:])
		m := p.payload[8:]
		switch {
		case sport == 500 || dport == 500:
		case (sport == 4500 || dport == 4500) && len(m) >= 4 && binary.BigEndian.Uint32(m) == 0:
			m = m[4:]
		default:
			continue
		}
		if len(m) < 28 {
			continue
		}
		out = append(out, ikeMessage{
			spii: binary.BigEndian.Uint64(m), spir: binary.BigEndian.Uint64(m[8:]),
			exchange: m[18], response: m[19]&0x20 != 0, initiator: m[19]&0x08 != 0,
			length: len(m),
		})
	}
	return out
}

// Exchange types, RFC 7296, Section 3.1.
const (
	exchIKESAInit     = 34
	exchIKEAuth       = 35
	exchCreateChildSA = 36
	exchInformational = 37
)

// eventStream follows a daemon's GET /v1/events. It returns once the
// daemon has answered, that is, once the subscription exists, so no event
// that happens after it returns is missed.
func eventStream(t *testing.T, sock string) <-chan ctlapi.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ipsecd"+ctlapi.PathEvents, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s on %s: %v", ctlapi.PathEvents, sock, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s on %s: %s", ctlapi.PathEvents, sock, resp.Status)
	}
	ch := make(chan ctlapi.Event, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev ctlapi.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				select {
				case ch <- ev:
				default: // a slow reader loses events; the tests read promptly
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return ch
}

// waitEvent returns the first event of type typ from ch, or fails t.
func waitEvent(t *testing.T, ch <-chan ctlapi.Event, typ string, timeout time.Duration) ctlapi.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended before a %s event", typ)
			}
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", typ, timeout)
		}
	}
}

// ikeCase is one configuration of TestIKEGoipsecPair.
type ikeCase struct {
	name  string
	ike   string
	child string // ESP or AH proposal
	alg   string // the suite keyword ipsecctl sas shows
	pfs   bool   // child has a key exchange method: its rekey runs a KE
	ah    bool
	mode  string
	v6    bool
}

func goipsecPairCases() []ikeCase {
	var cases []ikeCase
	for _, p := range ikeProposals {
		cases = append(cases,
			ikeCase{name: p.ike + "/aes256gcm16", ike: p.ike, child: "aes256gcm16", alg: "aes256gcm16", mode: "tunnel"},
			ikeCase{name: p.ike + "/aes256gcm16-x25519", ike: p.ike, child: "aes256gcm16-x25519", alg: "aes256gcm16", pfs: true, mode: "tunnel"})
	}
	first := ikeProposals[0].ike
	return append(cases,
		ikeCase{name: "transport", ike: first, child: "aes256gcm16", alg: "aes256gcm16", mode: "transport"},
		ikeCase{name: "ah-sha256", ike: first, child: "sha256", alg: "sha256", ah: true, mode: "tunnel"},
		ikeCase{name: "ipv6", ike: first, child: "aes256gcm16-x25519", alg: "aes256gcm16", pfs: true, mode: "tunnel", v6: true})
}

// TestIKEGoipsecPair runs IKEv2 between two goipsec daemons. Host A traps
// the traffic to B's network (start_action trap), so the first ping starts
// IKE_SA_INIT and IKE_AUTH and must itself be answered. Then a 10 MB TCP
// transfer, the SAs of both sides compared, a CHILD SA rekey
// (CREATE_CHILD_SA, RFC 7296, Section 1.3.3; with a KE payload when the ESP
// proposal names a key exchange method) after which traffic flows on the
// new SAs, and "ipsecctl down", which must remove the SAs on both sides
// (INFORMATIONAL with Delete, RFC 7296, Section 1.4.1).
func TestIKEGoipsecPair(t *testing.T) {
	requireBins(t)
	// The length of the CREATE_CHILD_SA request of the rekey, by IKE
	// proposal, without and with PFS: the one with a KE payload (RFC
	// 7296, Section 3.4) must be longer by about the payload.
	rekeyLen := map[string][2]int{}
	for _, tc := range goipsecPairCases() {
		t.Run(tc.name, func(t *testing.T) {
			n := runPairCase(t, tc)
			if tc.mode == "tunnel" && !tc.v6 && !tc.ah {
				l := rekeyLen[tc.ike]
				if tc.pfs {
					l[1] = n
				} else {
					l[0] = n
				}
				rekeyLen[tc.ike] = l
			}
		})
	}
	// X25519's KE payload is 8+32 bytes; AES-CBC padding may hide up to
	// 15 of them.
	for _, p := range ikeProposals {
		ike, l := p.ike, rekeyLen[p.ike]
		t.Logf("%s: CREATE_CHILD_SA rekey request %d bytes without PFS, %d with X25519", ike, l[0], l[1])
		if l[0] != 0 && l[1] != 0 && l[1]-l[0] < 40-15 {
			t.Errorf("%s: the CREATE_CHILD_SA request with PFS is %d bytes, without %d: no room for an X25519 KE payload", ike, l[1], l[0])
		}
	}
}

// runPairCase runs one case of TestIKEGoipsecPair and returns the length of
// the CREATE_CHILD_SA request of the rekey.
func runPairCase(t *testing.T, tc ikeCase) int {
	a, b, _ := ikeTopology(t, tc.v6, tc.mode)
	psk := newPSK()
	ca := ikeConn{ike: tc.ike, child: []string{tc.child}, ah: tc.ah, mode: tc.mode, start: "trap", localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
	cb := ca
	cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
	a.startDaemon(t, ikeConfig(a, b, ca))
	b.startDaemon(t, ikeConfig(b, a, cb))
	if s := a.sas(t); len(s.IKESAs) != 0 || len(s.ChildSAs) != 0 {
		t.Fatalf("SAs before any traffic: %+v", s)
	}

	// The trap: the first echo request starts IKE, is held, and goes out
	// once the CHILD SA is installed, so all three are answered.
	mustPing(t, a.ns, a.inner, b.inner, 3)
	tcpTransfer(t, a.ns, b.ns, a.inner, b.inner, 10<<20)
	ia, ca1 := a.waitEstablished(t, 5*time.Second)
	ib, cb1 := b.waitEstablished(t, 5*time.Second)
	checkPairAgrees(t, ia, ca1, ib, cb1, tc.ike, tc.alg)
	wantProto, wantEncap := "esp", "none"
	if tc.ah {
		wantProto = "ah"
	}
	if ca1.Protocol != wantProto || ca1.Mode != tc.mode || ca1.Encap != wantEncap {
		t.Errorf("CHILD SA: %s %s encap %s, want %s %s %s", ca1.Protocol, ca1.Mode, ca1.Encap, wantProto, tc.mode, wantEncap)
	}
	if ia.Encap || ia.LocalAddr.Port() != 500 {
		t.Errorf("IKE SA without NAT: encap %v, local %v; want port 500 without encapsulation", ia.Encap, ia.LocalAddr)
	}
	if ca1.PacketsOut < 3 || cb1.PacketsIn < 3 || ca1.BytesOut < 10<<20 || cb1.BytesIn < 10<<20 {
		t.Errorf("counters after ping and 10 MB: A out %d packets %d bytes, B in %d packets %d bytes",
			ca1.PacketsOut, ca1.BytesOut, cb1.PacketsIn, cb1.BytesIn)
	}

	// Rekey the CHILD SA from A. A capture on A's link shows the
	// CREATE_CHILD_SA exchange.
	capt := startCapture(t, a.ns, "eth0")
	rekeyChild(t, a, b, ca1, cb1)
	mustPing(t, a.ns, a.inner, b.inner, 3)
	ia2, ca2 := a.waitEstablished(t, 5*time.Second)
	ib2, cb2 := b.waitEstablished(t, 5*time.Second)
	checkPairAgrees(t, ia2, ca2, ib2, cb2, tc.ike, tc.alg)
	if ia2.SPIi != ia.SPIi || ia2.SPIr != ia.SPIr {
		t.Errorf("the IKE SA changed with a CHILD SA rekey: %v/%v, was %v/%v", ia2.SPIi, ia2.SPIr, ia.SPIi, ia.SPIr)
	}
	if ca2.PacketsOut < 3 || ca2.PacketsIn < 3 || cb2.PacketsIn < 3 {
		t.Errorf("no traffic on the new CHILD SA: A out %d in %d, B in %d", ca2.PacketsOut, ca2.PacketsIn, cb2.PacketsIn)
	}
	capt.close()
	reqLen := 0
	for _, m := range ikeMessages(capt.packets()) {
		if m.exchange == exchCreateChildSA && !m.response && m.spii == uint64(ia.SPIi) {
			reqLen = m.length
		}
	}
	if reqLen == 0 {
		t.Errorf("no CREATE_CHILD_SA request of the IKE SA on the wire during the rekey")
	}

	// Delete the IKE SA from A: both sides lose it and its CHILD SA.
	if _, err := a.ctl(context.Background(), "down", connName); err != nil {
		t.Fatal(err)
	}
	a.waitNoSAs(t, 10*time.Second)
	b.waitNoSAs(t, 10*time.Second)
	a.checkAlive(t)
	b.checkAlive(t)
	return reqLen
}
