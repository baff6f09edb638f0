package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// responder is an in-process goipsec IKE responder on a loopback UDP
// socket.
type responder struct {
	m    *ike.Manager
	c    *net.UDPConn
	addr netip.AddrPort
	wg   sync.WaitGroup
}

type udpTransport struct{ c *net.UDPConn }

func (t udpTransport) Send(pkt []byte, _, to netip.AddrPort) error {
	_, err := t.c.WriteToUDPAddrPort(pkt, to)
	return err
}

func newResponder(t *testing.T, psk []byte) *responder {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{c: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	r.m = ike.NewManager(ike.Config{
		Logger:               slog.New(slog.NewTextHandler(io.Discard, nil)),
		Port:                 r.addr.Port(),
		CookieThreshold:      -1,
		MaxHalfOpenPerSource: -1,
	}, nopInstaller{}, udpTransport{c})
	err = r.m.SetPeers([]ike.Peer{{
		Name:        "clients",
		LocalAddrs:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		RemoteAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		LocalID:     ike.ParseIdentity("gw.ikeload"),
		RemoteID:    ike.ParseIdentity("*.ikeload"),
		PSK:         func(_, _ ike.Identity) []byte { return psk },
		Children: []ike.ChildConfig{{
			Name:     "load",
			LocalTS:  traffic.MustParseSet("10.2.0.0/16"),
			RemoteTS: traffic.MustParseSet("10.1.0.0/16"),
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.m.HandlePacket(buf[:n], from, r.addr)
		}
	}()
	t.Cleanup(func() {
		r.m.Close()
		c.Close()
		r.wg.Wait()
	})
	return r
}

func testConfig(t *testing.T, target netip.AddrPort, n, c int, psk []byte) loadConfig {
	t.Helper()
	p, err := transform.ParseIKEProposal("aes256gcm16-prfsha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	e, err := transform.ParseESPProposal("aes256gcm16")
	if err != nil {
		t.Fatal(err)
	}
	return loadConfig{
		Target: target, N: n, Concurrency: c, Sockets: 4,
		IKE: []transform.IKEProposal{p}, ESP: []transform.ESPProposal{e}, PSK: psk,
		IDFormat: "c%d.ikeload", RemoteID: ike.ParseIdentity("gw.ikeload"),
		LocalNet: netip.MustParsePrefix("10.1.0.0/16"), RemoteTS: traffic.MustParseSet("10.2.0.0/16"),
		Timeout: 20 * time.Second, Retransmit: time.Second,
	}
}

// waitSAs waits until the responder holds want IKE SAs, all established.
// The responder publishes an IKE SA's state after it sent the IKE_AUTH
// answer, so the initiator may finish before the listing shows it.
func waitSAs(t *testing.T, m *ike.Manager, want int) []ike.IKESA {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sas := m.SAs()
		settled := len(sas) == want
		for _, s := range sas {
			settled = settled && s.State == ike.StateEstablished
		}
		if settled || time.Now().After(deadline) {
			if len(sas) != want {
				t.Fatalf("responder holds %d IKE SAs, want %d", len(sas), want)
			}
			return sas
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLoadLoopback opens IKE SAs against an in-process goipsec responder:
// every one comes up with its own identity and TSi, the report counts
// them, and closing deletes them at the responder.
func TestLoadLoopback(t *testing.T) {
	psk := []byte("load test key")
	r := newResponder(t, psk)
	const n = 24
	res, err := run(context.Background(), testConfig(t, r.addr, n, 6, psk))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != n || res.Failed != 0 || len(res.latencies) != n {
		t.Fatalf("established %d, failed %d (%v)", res.OK, res.Failed, res.perFailure)
	}
	if res.Rate <= 0 || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Fatalf("summary %+v rate %v", res.Latency, res.Rate)
	}
	sas := waitSAs(t, r.m, n)
	ids := map[string]bool{}
	ts := map[string]bool{}
	for _, s := range sas {
		if s.State != ike.StateEstablished || len(s.Children) != 1 {
			t.Fatalf("responder SA %+v", s)
		}
		ids[s.RemoteID.String()] = true
		ts[s.Children[0].RemoteTS.String()] = true
	}
	if len(ids) != n || len(ts) != n {
		t.Fatalf("%d distinct identities and %d distinct TSi for %d IKE SAs", len(ids), len(ts), n)
	}
	res.closeFn()
	waitSAs(t, r.m, 0)
}

// TestLoadFailures counts IKE SAs that fail by reason: a wrong key is
// refused by the responder.
func TestLoadFailures(t *testing.T) {
	r := newResponder(t, []byte("the right key"))
	res, err := run(context.Background(), testConfig(t, r.addr, 3, 3, []byte("a wrong key")))
	if err != nil {
		t.Fatal(err)
	}
	defer res.closeFn()
	if res.OK != 0 || res.Failed != 3 || res.Failures["auth_failed"] != 3 {
		t.Fatalf("established %d, failures %v (%v)", res.OK, res.Failures, res.perFailure)
	}
}

// TestMainJSON runs the command against a loopback responder and checks
// its exit status, its report and its JSON.
func TestMainJSON(t *testing.T) {
	psk := []byte("load test key")
	r := newResponder(t, psk)
	out := filepath.Join(t.TempDir(), "r.json")
	var stdout, stderr bytes.Buffer
	rc := mainRun(context.Background(), []string{"-target", r.addr.String(), "-n", "5", "-c", "2",
		"-psk", fmt.Sprintf("0x%x", psk), "-remote-id", "gw.ikeload", "-json", out}, &stdout, &stderr)
	if rc != exitOK {
		t.Fatalf("exit %d: %s%s", rc, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "5 established, 0 failed") {
		t.Fatalf("report: %s", stdout.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Established int     `json:"established"`
		Rate        float64 `json:"handshakes_per_s"`
		Latency     struct {
			P99 float64 `json:"p99"`
		} `json:"latency_ms"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.Established != 5 || got.Rate <= 0 || got.Latency.P99 <= 0 {
		t.Fatalf("JSON %s: %v", b, err)
	}
}

// TestMainUsage checks that bad arguments exit with 2 and say why.
func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-target", "192.0.2.1"}, // no key
		{"-target", "192.0.2.1", "-psk", "k", "-ike", "nonsense"},    // proposal
		{"-target", "192.0.2.1", "-psk", "0xzz"},                     // hex
		{"-target", "192.0.2.1", "-psk", "k", "-id", "same.for.all"}, // no verb
	} {
		var stderr bytes.Buffer
		if rc := mainRun(context.Background(), args, io.Discard, &stderr); rc != exitUsage || !strings.Contains(stderr.String(), "ikeload: ") {
			t.Errorf("%q: exit %d, %q", args, rc, stderr.String())
		}
	}
}

func TestTSAddr(t *testing.T) {
	for _, c := range []struct {
		p    string
		i    int
		want string
	}{
		{"10.1.0.0/16", 0, "10.1.0.0/32"},
		{"10.1.0.0/16", 258, "10.1.1.2/32"},
		{"10.1.0.0/24", 257, "10.1.0.1/32"}, // wraps within the prefix
		{"fd00::/64", 65537, "fd00::1:1/128"},
	} {
		if got := tsAddr(netip.MustParsePrefix(c.p), c.i); got.String() != c.want {
			t.Errorf("tsAddr(%s, %d) = %s, want %s", c.p, c.i, got, c.want)
		}
	}
}

// The failure reasons wrap the engine's error.
func TestFailureUnwrap(t *testing.T) {
	err := error(&failure{"no_response", ike.ErrPeerDead})
	if !errors.Is(err, ike.ErrPeerDead) || reasonOf(err) != "no_response" {
		t.Fatal(err)
	}
}
