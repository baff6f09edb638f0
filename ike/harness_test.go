package ike

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// fakeInstaller records what the engine installs and deletes. Like the
// daemon's SAD, it keeps one active outbound SA per Ref: ActivateOutbound
// replaces it, and DeleteSA removes it only if it is still the active one.
type fakeInstaller struct {
	mu        sync.Mutex
	installed []ChildSA
	deleted   []ChildSA
	fail      bool
	out       map[uint32]uint32 // Ref -> the active outbound SPI
	activated []uint32          // inbound SPIs of the SAs activated, in order
}

func (f *fakeInstaller) InstallSA(c ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return fmt.Errorf("fake: refused")
	}
	// The engine zeroes the keys when InstallSA returns.
	c.KeyIn, c.KeyOut = bytes.Clone(c.KeyIn), bytes.Clone(c.KeyOut)
	f.installed = append(f.installed, c)
	return nil
}

func (f *fakeInstaller) ActivateOutbound(c ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.out == nil {
		f.out = map[uint32]uint32{}
	}
	f.out[c.Ref] = c.SPIOut
	f.activated = append(f.activated, c.SPIIn)
	return nil
}

func (f *fakeInstaller) DeleteSA(c ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, c)
	if f.out[c.Ref] == c.SPIOut {
		delete(f.out, c.Ref)
	}
	return nil
}

// outbound returns the active outbound SPI of ref, 0 if none.
func (f *fakeInstaller) outbound(ref uint32) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out[ref]
}

// inbound reports whether the inbound SA spi is installed.
func (f *fakeInstaller) inbound(spi uint32) bool {
	for _, c := range f.live() {
		if c.SPIIn == spi {
			return true
		}
	}
	return false
}

// live returns the installed SAs not deleted since.
func (f *fakeInstaller) live() []ChildSA {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ChildSA
	for _, c := range f.installed {
		gone := false
		for _, d := range f.deleted {
			if d.SPIIn == c.SPIIn {
				gone = true
			}
		}
		if !gone {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeInstaller) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.installed), len(f.deleted)
}

// datagram is one packet in flight.
type datagram struct {
	pkt      []byte
	from, to netip.AddrPort
}

// stepNet is an in-memory network for managers in step mode: Send queues,
// the test delivers one datagram at a time.
type stepNet struct {
	t     testing.TB
	queue []datagram
	nodes map[netip.Addr]*Manager
	sent  []datagram // every datagram ever sent, for inspection
}

type stepTransport struct{ n *stepNet }

func (tr stepTransport) Send(pkt []byte, from, to netip.AddrPort) error {
	d := datagram{bytes.Clone(pkt), from, to}
	tr.n.queue = append(tr.n.queue, d)
	tr.n.sent = append(tr.n.sent, d)
	return nil
}

// deliver delivers the first queued datagram and returns it.
func (n *stepNet) deliver() datagram {
	n.t.Helper()
	if len(n.queue) == 0 {
		n.t.Fatal("no datagram in flight")
	}
	d := n.queue[0]
	n.queue = n.queue[1:]
	m := n.nodes[d.to.Addr()]
	if m == nil {
		n.t.Fatalf("no node at %v", d.to)
	}
	m.HandlePacket(d.pkt, d.from, d.to)
	return d
}

// drop discards the first queued datagram and returns it.
func (n *stepNet) drop() datagram {
	n.t.Helper()
	if len(n.queue) == 0 {
		n.t.Fatal("no datagram to drop")
	}
	d := n.queue[0]
	n.queue = n.queue[1:]
	return d
}

// run delivers until the network is quiet or limit datagrams were
// delivered.
func (n *stepNet) run(limit int) int {
	i := 0
	for ; i < limit && len(n.queue) > 0; i++ {
		n.deliver()
	}
	return i
}

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// node is one peer in a step test.
type node struct {
	m    *Manager
	inst *fakeInstaller
	addr netip.Addr
}

// eventsOf drains the node's events.
func (nd *node) events() []Event {
	var out []Event
	for {
		select {
		case e := <-nd.m.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(evs []Event, k EventKind) bool {
	for _, e := range evs {
		if e.Kind == k {
			return true
		}
	}
	return false
}

// testLogger discards logs unless -v.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// Quiet runs keep the engine's log and print it only if the test
	// fails: goroutines may still log after the test ends, so they write to
	// a buffer, never to t.
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	addrC = netip.MustParseAddr("192.0.2.3")
)

func host(a netip.Addr) []netip.Prefix { return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())} }

func mustIKE(t testing.TB, ss ...string) []transform.IKEProposal {
	t.Helper()
	var out []transform.IKEProposal
	for _, s := range ss {
		p, err := transform.ParseIKEProposal(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func mustESP(t testing.TB, ss ...string) []transform.ESPProposal {
	t.Helper()
	var out []transform.ESPProposal
	for _, s := range ss {
		p, err := transform.ParseESPProposal(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func pskFunc(secret string) func(Identity, Identity) []byte {
	return func(Identity, Identity) []byte { return []byte(secret) }
}

// peerPair returns the configurations of a site-to-site tunnel between A
// (10.1.0.0/16) and B (10.2.0.0/16).
func peerPair(t testing.TB, ike string, esp string) (pa, pb Peer) {
	pa = Peer{
		Name: "b", LocalAddrs: host(addrA), RemoteAddrs: host(addrB),
		Proposals: mustIKE(t, ike), LocalID: ParseIdentity("a.example"), RemoteID: ParseIdentity("b.example"),
		PSK: pskFunc("correct horse battery staple"),
		Children: []ChildConfig{{
			Name: "net", Ref: 7, LocalTS: traffic.MustParseSet("10.1.0.0/16"), RemoteTS: traffic.MustParseSet("10.2.0.0/16"),
			Proposals: mustESP(t, esp),
		}},
	}
	pb = Peer{
		Name: "a", LocalAddrs: host(addrB), RemoteAddrs: host(addrA),
		Proposals: mustIKE(t, ike), LocalID: ParseIdentity("b.example"), RemoteID: ParseIdentity("a.example"),
		PSK: pskFunc("correct horse battery staple"),
		Children: []ChildConfig{{
			Name: "net", Ref: 9, LocalTS: traffic.MustParseSet("10.2.0.0/16"), RemoteTS: traffic.MustParseSet("10.1.0.0/16"),
			Proposals: mustESP(t, esp),
		}},
	}
	return pa, pb
}

// stepPair builds two managers in step mode on one stepNet.
type stepPair struct {
	net  *stepNet
	clk  *clock
	a, b *node
}

func newStepPair(t testing.TB, pa, pb Peer, tweak func(a, b *Config)) *stepPair {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := &stepNet{t: t, nodes: map[netip.Addr]*Manager{}}
	ca := Config{Now: clk.Now, Logger: testLogger(t)}
	cb := ca
	if tweak != nil {
		tweak(&ca, &cb)
	}
	p := &stepPair{net: n, clk: clk}
	p.a = newStepNode(t, n, addrA, ca)
	p.b = newStepNode(t, n, addrB, cb)
	if err := p.a.m.SetPeers([]Peer{pa}); err != nil {
		t.Fatal(err)
	}
	if err := p.b.m.SetPeers([]Peer{pb}); err != nil {
		t.Fatal(err)
	}
	return p
}

func newStepNode(t testing.TB, n *stepNet, addr netip.Addr, cfg Config) *node {
	inst := &fakeInstaller{}
	m := NewManager(cfg, inst, stepTransport{n})
	m.step = true
	n.nodes[addr] = m
	return &node{m: m, inst: inst, addr: addr}
}

// advance moves the clock and runs every session's timers.
func (p *stepPair) advance(d time.Duration) {
	p.clk.t = p.clk.t.Add(d)
	for _, nd := range []*node{p.a, p.b} {
		nd.m.tickAll()
	}
}

// tickAll runs the timers of every session (step mode only).
func (m *Manager) tickAll() {
	m.mu.Lock()
	as := make([]*actor, 0, len(m.actors))
	for a := range m.actors {
		as = append(as, a)
	}
	m.mu.Unlock()
	for _, a := range as {
		if !a.dead {
			m.run(a, input{kind: inTimer})
		}
	}
}

// establish runs IKE_SA_INIT and IKE_AUTH one message at a time.
func (p *stepPair) establish(t testing.TB) {
	t.Helper()
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // IKE_SA_INIT request
	p.net.deliver() // IKE_SA_INIT response
	p.net.deliver() // IKE_AUTH request
	p.net.deliver() // IKE_AUTH response
	if len(p.net.queue) != 0 {
		t.Fatalf("%d datagrams left after IKE_AUTH", len(p.net.queue))
	}
}

// checkKeys verifies that the live CHILD SAs of the two nodes pair up:
// each one's outbound SA is the other's inbound one, with the same keys,
// suite and ESN.
func checkKeys(t testing.TB, a, b *fakeInstaller, want int) {
	t.Helper()
	la, lb := a.live(), b.live()
	if len(la) != want || len(lb) != want {
		t.Fatalf("live CHILD SAs: %d and %d, want %d", len(la), len(lb), want)
	}
	for _, x := range la {
		found := false
		for _, y := range lb {
			if x.SPIOut != y.SPIIn {
				continue
			}
			found = true
			if x.SPIIn != y.SPIOut {
				t.Errorf("SPIs do not pair: %08x/%08x vs %08x/%08x", x.SPIIn, x.SPIOut, y.SPIIn, y.SPIOut)
			}
			if !bytes.Equal(x.KeyOut, y.KeyIn) || !bytes.Equal(x.KeyIn, y.KeyOut) {
				t.Errorf("keys of SA %08x differ between the peers", x.SPIOut)
			}
			if len(x.KeyIn) != x.Suite.KeyLen() || bytes.Equal(x.KeyIn, x.KeyOut) {
				t.Errorf("bad key lengths or equal keys for %s", x.Suite.Name)
			}
			if x.Suite != y.Suite || x.ESN != y.ESN || x.Mode != y.Mode || x.Protocol != y.Protocol {
				t.Errorf("suites differ: %v/%v esn %v/%v", x.Suite, y.Suite, x.ESN, y.ESN)
			}
			if !x.LocalTS.Equal(y.RemoteTS) || !x.RemoteTS.Equal(y.LocalTS) {
				t.Errorf("selectors differ: %v <=> %v and %v <=> %v", x.LocalTS, y.RemoteTS, x.RemoteTS, y.LocalTS)
			}
			if _, err := x.Suite.NewESP(x.KeyOut); x.Protocol == sa.ESP && err != nil {
				t.Errorf("NewESP: %v", err)
			}
		}
		if !found {
			t.Errorf("SA %08x of A has no partner on B", x.SPIOut)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// sealerOf and openerOf return x's SK ciphers, which exist once it has keys.
func sealerOf(x *ikeSA) ikewire.SKCipher {
	c, err := x.sealer()
	if err != nil {
		panic(err)
	}
	return c
}

func openerOf(x *ikeSA) ikewire.SKCipher {
	c, err := x.opener()
	if err != nil {
		panic(err)
	}
	return c
}
