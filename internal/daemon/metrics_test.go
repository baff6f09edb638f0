package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/metrics"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// The daemon is a metrics.Source.
var _ metrics.Source = (*Daemon)(nil)

// childByName returns the CHILD SA name of a snapshot.
func childByName(t *testing.T, s metrics.Snapshot, name string) metrics.ChildSA {
	t.Helper()
	for _, c := range s.ChildSAs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no CHILD SA %q in %+v", name, s.ChildSAs)
	return metrics.ChildSA{}
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsManual(t *testing.T) {
	nw := conntest.NewNetwork(1024)
	a := newPeer(t, nw, "a", manualConfig(t, "a", ""))
	b := newPeer(t, nw, "b", manualConfig(t, "b", ""))

	src, dst := netip.MustParseAddrPort("10.1.0.1:1000"), netip.MustParseAddrPort("10.2.0.1:2000")
	var sent uint64
	for i := range 5 {
		pkt := tuntest.UDP(src, dst, []byte(fmt.Sprintf("hello %d", i)))
		sent += uint64(len(pkt))
		a.tun.In <- pkt
		recv(t, b.tun)
	}
	// One packet back, from B to A.
	back := tuntest.UDP(dst, src, []byte("reply"))
	b.tun.In <- back
	recv(t, a.tun)

	// The inner packets' sizes are what the SA carried (sad.Stats): the
	// IPv4 total length of each datagram tuntest built.
	ma := a.d.Metrics()
	ca := childByName(t, ma, "lab")
	if ca.Protocol != "esp" || ca.Mode != "tunnel" || ca.SPIOut != "00001001" || ca.SPIIn != "00002001" {
		t.Errorf("a's CHILD SA labels: %+v", ca)
	}
	if ca.PacketsOut != 5 || ca.BytesOut != sent || ca.PacketsIn != 1 || ca.BytesIn != uint64(len(back)) {
		t.Errorf("a's CHILD SA counters: %+v; want 5 packets, %d bytes out, 1 packet, %d bytes in", ca, sent, len(back))
	}
	if ca.ReplayDrops != 0 || ca.ICVFailures != 0 {
		t.Errorf("a's CHILD SA drops: %+v", ca)
	}
	if len(ma.Rules) != 2 || ma.Rules[0] != (metrics.Rule{Index: 1, Name: "lab", Action: "protect", Hits: 5}) || ma.Rules[1].Name != "default" || ma.Rules[1].Index != 2 {
		t.Errorf("a's rules: %+v", ma.Rules)
	}
	if ma.Dataplane.TUNRead != 5 || ma.Dataplane.Sealed != 5 || ma.Dataplane.Opened != 1 || ma.Dataplane.TUNWritten != 1 {
		t.Errorf("a's data plane counters: %+v", ma.Dataplane)
	}
	if ma.IKESAs != nil || ma.Handshakes.Started != 0 || ma.Handshakes.Duration != nil || ma.Acquires != 0 {
		t.Errorf("a runs no IKE, yet: IKE SAs %v, handshakes %+v, acquires %d", ma.IKESAs, ma.Handshakes, ma.Acquires)
	}

	mb := b.d.Metrics()
	cb := childByName(t, mb, "lab")
	if cb.SPIIn != "00001001" || cb.PacketsIn != 5 || cb.BytesIn != sent || cb.PacketsOut != 1 {
		t.Errorf("b's CHILD SA: %+v", cb)
	}
}

// startPeer is newPeer with an IKE socket (nil for none) that also returns
// the peer's NAT-T socket.
func startPeer(t *testing.T, nw *conntest.Network, side string, cfg *config.Config, ikeSock IKESocket) (*peer, *conntest.UDP) {
	addr := netip.MustParseAddr("192.0.2.1")
	if side == "b" {
		addr = netip.MustParseAddr("192.0.2.2")
	}
	return startAt(t, nw, addr, cfg, ikeSock)
}

// startAt starts a daemon with address addr on nw.
func startAt(t *testing.T, nw *conntest.Network, addr netip.Addr, cfg *config.Config, ikeSock IKESocket) (*peer, *conntest.UDP) {
	return startTweaked(t, nw, addr, cfg, ikeSock, nil)
}

// startTweaked is startAt with the Options changed by tweak (nil: none)
// before the daemon starts.
func startTweaked(t *testing.T, nw *conntest.Network, addr netip.Addr, cfg *config.Config, ikeSock IKESocket, tweak func(*Options)) (*peer, *conntest.UDP) {
	dev := tuntest.New(1400, 16, 256)
	udp := nw.UDP(netip.AddrPortFrom(addr, conn.NATTPort), 16, 256)
	rt := fakeRouter{routes: make(chan []policy.Route, 8)}
	// IKE negotiates no UDP encapsulation without a NAT: ESP goes raw.
	raw := nw.Raw(addr, 50, 16, 256)
	opts := Options{TUN: dev, UDP: udp, Raw: []conn.Raw{raw}, Router: rt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if ikeSock != nil {
		opts.IKE = ikeSock
	}
	if tweak != nil {
		tweak(&opts)
	}
	d, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &peer{d: d, tun: dev, rt: rt}, udp
}

// TestMetricsDrops replays and corrupts a captured ESP packet: the copy
// with a flipped ciphertext byte fails the ICV (RFC 4303, Section 3.4.4),
// the original is accepted once and is a replay the second time (RFC
// 4303, Section 3.4.3).
func TestMetricsDrops(t *testing.T) {
	nw := conntest.NewNetwork(1024)
	bAddr, aAddr := netip.MustParseAddrPort("192.0.2.2:4500"), netip.MustParseAddrPort("192.0.2.1:4500")
	tap := nw.UDP(bAddr, 4, 16) // stands in for b while a sends one packet
	a, _ := startPeer(t, nw, "a", manualConfig(t, "a", ""), nil)
	pkt := tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:1"), netip.MustParseAddrPort("10.2.0.1:1"), []byte("once"))
	a.tun.In <- pkt
	bufs, sizes, addrs := [][]byte{make([]byte, 2048)}, []int{0}, []netip.AddrPort{{}}
	if n, err := tap.Read(bufs, sizes, addrs, 0); err != nil || n != 1 {
		t.Fatalf("capturing a's ESP packet: %d, %v", n, err)
	}
	esp := bufs[0][:sizes[0]]
	tap.Close()

	b, bUDP := startPeer(t, nw, "b", manualConfig(t, "b", ""), nil)
	bad := bytes.Clone(esp)
	bad[len(bad)-20] ^= 1 // in the ciphertext or ICV of the last bytes
	bUDP.Inject(bad, aAddr)
	bUDP.Inject(esp, aAddr)
	if got := recv(t, b.tun); !bytes.Equal(got, pkt) {
		t.Fatalf("b received %x, want %x", got, pkt)
	}
	bUDP.Inject(esp, aAddr)
	waitFor(t, "a replay drop", func() bool { return childByName(t, b.d.Metrics(), "lab").ReplayDrops == 1 })
	m := b.d.Metrics()
	c := childByName(t, m, "lab")
	if c.ICVFailures != 1 || c.PacketsIn != 1 || c.BytesIn != uint64(len(pkt)) {
		t.Errorf("b's CHILD SA: %+v; want 1 ICV failure, 1 packet of %d bytes in", c, len(pkt))
	}
	if m.Drops["replay"] != 1 || m.Drops["bad_icv"] != 1 {
		t.Errorf("global drops: %v", m.Drops)
	}
}

// ikeNet joins the port 500 sockets of daemons in memory, by address.
type ikeNet struct {
	mu    sync.Mutex
	socks map[netip.Addr]*ikeSock
}

type ikeDatagram struct {
	b        []byte
	from, to netip.AddrPort
}

// ikeSock is an in-memory IKESocket.
type ikeSock struct {
	nw   *ikeNet
	addr netip.Addr
	in   chan ikeDatagram
	done chan struct{}
	once sync.Once
}

func (nw *ikeNet) listen(addr netip.Addr) *ikeSock {
	s := &ikeSock{nw: nw, addr: addr, in: make(chan ikeDatagram, 64), done: make(chan struct{})}
	nw.mu.Lock()
	if nw.socks == nil {
		nw.socks = make(map[netip.Addr]*ikeSock)
	}
	nw.socks[addr] = s
	nw.mu.Unlock()
	return s
}

func (s *ikeSock) ReadFrom(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	select {
	case d := <-s.in:
		return copy(b, d.b), d.from, d.to, nil
	case <-s.done:
		return 0, netip.AddrPort{}, netip.AddrPort{}, net.ErrClosed
	}
}

func (s *ikeSock) WriteTo(b []byte, from, to netip.AddrPort) error {
	s.nw.mu.Lock()
	dst := s.nw.socks[to.Addr()]
	s.nw.mu.Unlock()
	if dst == nil {
		return nil
	}
	if !from.Addr().IsValid() || from.Addr().IsUnspecified() {
		from = netip.AddrPortFrom(s.addr, from.Port())
	}
	select {
	case dst.in <- ikeDatagram{bytes.Clone(b), from, to}:
	case <-dst.done:
	}
	return nil
}

func (s *ikeSock) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

// ikeConfig is a connection between 192.0.2.1 (a, 10.1.0.0/16) and
// 192.0.2.2 (b, 10.2.0.0/16) with a pre-shared key.
func ikeConfig(t *testing.T, side, start, psk string) *config.Config {
	t.Helper()
	local, remote, lnet, rnet, lid, rid := "192.0.2.1", "192.0.2.2", "10.1.0.0/16", "10.2.0.0/16", "a.example", "b.example"
	if side == "b" {
		local, remote, lnet, rnet, lid, rid = remote, local, rnet, lnet, rid, lid
	}
	y := fmt.Sprintf(`connections:
  net:
    local_addrs: [%s]
    remote_addrs: [%s]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: {auth: psk, id: %s}
    remote: {auth: psk, id: %s}
    children:
      lan:
        mode: tunnel
        local_ts: [%s]
        remote_ts: [%s]
        esp_proposals: [aes256gcm16]
        start_action: %s
secrets:
  ike:
    - {ids: [a.example, b.example], secret: %q}
`, local, remote, lid, rid, lnet, rnet, start, psk)
	c, err := config.Parse(side+".yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newIKEPeer(t *testing.T, nw *conntest.Network, inw *ikeNet, side string, cfg *config.Config) *peer {
	addr := netip.MustParseAddr("192.0.2.1")
	if side == "b" {
		addr = netip.MustParseAddr("192.0.2.2")
	}
	p, _ := startPeer(t, nw, side, cfg, inw.listen(addr))
	return p
}

// TestMetricsIKE runs a trap-started connection: the first packet is an
// acquire, one handshake starts and completes on both sides, and the CHILD
// SA's counters follow the traffic.
func TestMetricsIKE(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	a := newIKEPeer(t, nw, inw, "a", ikeConfig(t, "a", "trap", "correct horse battery staple"))
	b := newIKEPeer(t, nw, inw, "b", ikeConfig(t, "b", "none", "correct horse battery staple"))

	src, dst := netip.MustParseAddrPort("10.1.0.1:1000"), netip.MustParseAddrPort("10.2.0.1:2000")
	var sent uint64
	var hits0 uint64
	for i := range 5 {
		pkt := tuntest.UDP(src, dst, []byte(fmt.Sprintf("hello %d", i)))
		sent += uint64(len(pkt))
		a.tun.In <- pkt
		recv(t, b.tun) // the first one after IKE installed the SA
		if i == 0 {
			// The staged packet is looked up again when it is flushed,
			// so the rule's count of the first one is not asserted.
			hits0 = a.d.Metrics().Rules[0].Hits
		}
	}
	waitFor(t, "handshakes completed on both sides", func() bool {
		return a.d.Metrics().Handshakes.Completed == 1 && b.d.Metrics().Handshakes.Completed == 1
	})
	for _, p := range []struct {
		name string
		d    *Daemon
	}{{"a", a.d}, {"b", b.d}} {
		m := p.d.Metrics()
		if h := m.Handshakes; h.Started != 1 || h.Completed != 1 || h.Failed != 0 || h.Duration == nil || h.Duration.Count != 1 {
			t.Errorf("%s: handshakes %+v, want 1 started, 1 completed", p.name, m.Handshakes)
		}
		if m.IKESAs["established"] != 1 || len(m.IKESAs) != 1 {
			t.Errorf("%s: IKE SAs %v", p.name, m.IKESAs)
		}
		if st, err := p.d.Status(context.Background()); err != nil || m.Panics != (metrics.Panics{}) || st.Panics.IKE != 0 {
			t.Errorf("%s: panics %+v, status %+v (%v), want none", p.name, m.Panics, st.Panics, err)
		}
	}
	ma := a.d.Metrics()
	if ma.Acquires != 1 {
		t.Errorf("a: acquires %d, want 1", ma.Acquires)
	}
	ca := childByName(t, ma, "net/lan")
	if ca.PacketsOut != 5 || ca.BytesOut != sent || len(ca.SPIIn) != 8 || len(ca.SPIOut) != 8 || ca.Protocol != "esp" || ca.Mode != "tunnel" {
		t.Errorf("a's CHILD SA: %+v; want 5 packets, %d bytes out", ca, sent)
	}
	if r := ma.Rules[0]; r.Name != "net/lan" || r.Action != "protect" || r.Index != 1 || r.Hits-hits0 != 4 {
		t.Errorf("a's rules: %+v; want 4 hits after the first packet's %d", ma.Rules, hits0)
	}
	cb := childByName(t, b.d.Metrics(), "net/lan")
	if cb.PacketsIn != 5 || cb.BytesIn != sent || cb.SPIIn != ca.SPIOut || cb.SPIOut != ca.SPIIn {
		t.Errorf("b's CHILD SA: %+v (a's: %+v)", cb, ca)
	}
}

// TestMetricsIKEAuthFailed counts a handshake that fails authentication
// on both sides: the keys differ (RFC 7296, Section 2.15).
func TestMetricsIKEAuthFailed(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	a := newIKEPeer(t, nw, inw, "a", ikeConfig(t, "a", "none", "one key"))
	b := newIKEPeer(t, nw, inw, "b", ikeConfig(t, "b", "none", "another key"))
	if err := a.d.Initiate(t.Context(), "net/lan"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed handshake on both sides", func() bool {
		return a.d.Metrics().Handshakes.Failed == 1 && b.d.Metrics().Handshakes.Failed == 1
	})
	time.Sleep(100 * time.Millisecond) // a second count would show by now
	for _, p := range []struct {
		name string
		d    *Daemon
	}{{"a", a.d}, {"b", b.d}} {
		if m := p.d.Metrics(); m.Handshakes.Started != 1 || m.Handshakes.Failed != 1 || m.Handshakes.Completed != 0 || m.IKESAs["established"] != 0 {
			t.Errorf("%s: handshakes %+v, IKE SAs %v; want 1 started, 1 failed", p.name, m.Handshakes, m.IKESAs)
		}
	}
}
