package ipsec

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
)

// freePorts returns n distinct UDP ports that were free on all addresses a
// moment ago.
func freePorts(t *testing.T, n int) []uint16 {
	t.Helper()
	var out []uint16
	var conns []net.PacketConn
	for len(out) < n {
		c, err := net.ListenPacket("udp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		out = append(out, uint16(c.LocalAddr().(*net.UDPAddr).Port))
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}

// testLogger writes the Server's log to the test's log until the test's
// cleanups (which close the Servers) are done.
func testLogger(t *testing.T, name string) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(w.stop) // registered before the Server's Close, so it runs after
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("server", name)
}

type logWriter struct {
	mu      sync.Mutex
	t       *testing.T
	stopped bool
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// pair starts two netstack Servers on 127.0.0.1 with their own ports:
// A has inner address 10.1.0.1, B 10.2.0.1.
func pair(t *testing.T, cfgA, cfgB string) (a, b *Server) {
	t.Helper()
	p := freePorts(t, 4)
	mk := func(name, y string, addr string, ike, natt, pike, pnatt uint16) *Server {
		cfg, err := config.Parse(name+".yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Daemon.StateDir = t.TempDir() // manual SAs keep their send counters here
		s := &Server{
			Config: cfg,
			Logger: testLogger(t, name),
			Netstack: &Netstack{
				Addresses: []netip.Addr{netip.MustParseAddr(addr)},
				IKEPort:   ike, NATTPort: natt, PeerIKEPort: pike, PeerNATTPort: pnatt,
			},
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a = mk("a", cfgA, "10.1.0.1", p[0], p[1], p[2], p[3])
	b = mk("b", cfgB, "10.2.0.1", p[2], p[3], p[0], p[1])
	return a, b
}

// roundTrip has B echo one connection and A send n random bytes through
// it, then checks that the SHA-256 of what came back is that of what was
// sent.
func roundTrip(t *testing.T, a, b *Server, n int) {
	t.Helper()
	l, err := b.Listen("tcp", "10.2.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if _, err := io.Copy(c, c); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", "10.2.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, n)
	rand.Read(data)
	want := sha256.Sum256(data)
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(n)); err != nil {
			t.Error(err)
		}
		var sum [32]byte
		h.Sum(sum[:0])
		got <- sum
	}()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if sum := <-got; !bytes.Equal(sum[:], want[:]) {
		t.Fatalf("sha256 of the echo %x, sent %x", sum, want)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
}

const (
	keyAB = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
	keyBA = "0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3"
)

func manualYAML(side string) string {
	lnet, rnet, spiOut, spiIn, kOut, kIn := "10.1.0.0/16", "10.2.0.0/16", "0x1001", "0x2001", keyAB, keyBA
	if side == "b" {
		lnet, rnet, spiOut, spiIn, kOut, kIn = rnet, lnet, spiIn, spiOut, kIn, kOut
	}
	return fmt.Sprintf(`manual_sas:
  - name: lab
    protocol: esp
    mode: tunnel
    encap: udp
    local_addr: 127.0.0.1
    remote_addr: 127.0.0.1
    local_ts: [%s]
    remote_ts: [%s]
    spi_out: %s
    spi_in: %s
    algorithm: aes256gcm16
    key_out: %s
    key_in: %s
`, lnet, rnet, spiOut, spiIn, kOut, kIn)
}

// TestNetstackManual carries 1 MB over TCP between two netstack Servers
// joined by a manual ESP SA pair (AES-256-GCM, tunnel mode, in UDP).
func TestNetstackManual(t *testing.T) {
	a, b := pair(t, manualYAML("a"), manualYAML("b"))
	roundTrip(t, a, b, 1<<20)
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.ChildSAs != 1 || st.Counters.PacketsOut == 0 || st.Counters.PacketsIn == 0 {
		t.Errorf("status of A: %d CHILD SAs, %d packets sealed, %d opened; want 1 and traffic", st.ChildSAs, st.Counters.PacketsOut, st.Counters.PacketsIn)
	}
}

func ikeYAML(side, start string) string {
	lnet, rnet, lid, rid := "10.1.0.0/16", "10.2.0.0/16", "a.example", "b.example"
	if side == "b" {
		lnet, rnet, lid, rid = rnet, lnet, rid, lid
	}
	return fmt.Sprintf(`connections:
  net:
    local_addrs: [127.0.0.1]
    remote_addrs: [127.0.0.1]
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
    - {ids: [a.example, b.example], secret: "correct horse battery staple"}
`, lid, rid, lnet, rnet, start)
}

// TestNetstackIKE negotiates the SAs with IKEv2 (PSK): A's first Dial hits
// a trap policy, the acquire starts IKE on the unprivileged ports, and the
// connection goes through once the CHILD SA is up (the TCP handshake
// retransmits the SYN staged or dropped meanwhile).
func TestNetstackIKE(t *testing.T) {
	a, b := pair(t, ikeYAML("a", "trap"), ikeYAML("b", "none"))
	roundTrip(t, a, b, 1<<20)
	for name, s := range map[string]*Server{"A": a, "B": b} {
		st, err := s.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.IKESAs != 1 || st.ChildSAs != 1 {
			t.Errorf("status of %s: %d IKE SAs, %d CHILD SAs; want 1 and 1", name, st.IKESAs, st.ChildSAs)
		}
		sas, err := s.SAs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(sas.IKESAs) != 1 || sas.IKESAs[0].State != "established" || !sas.IKESAs[0].Encap {
			t.Errorf("IKE SAs of %s: %+v; want one, established, UDP-encapsulated", name, sas.IKESAs)
		}
	}
}

// TestNetstackInitiate starts the connection explicitly and checks the
// errors of an unknown name and of a Server that is not running.
func TestNetstackInitiate(t *testing.T) {
	a, b := pair(t, ikeYAML("a", "none"), ikeYAML("b", "none"))
	ctx := context.Background()
	if err := a.Initiate(ctx, "nosuch"); err == nil {
		t.Error("Initiate of an unknown connection succeeded")
	}
	if err := a.Initiate(ctx, "net/lan"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := b.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.ChildSAs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no CHILD SA on B after Initiate")
		}
		time.Sleep(50 * time.Millisecond)
	}
	roundTrip(t, a, b, 64<<10)
	a.Close()
	if _, err := a.Status(ctx); err == nil {
		t.Error("Status after Close succeeded")
	}
	if _, err := a.Dial(ctx, "tcp", "10.2.0.1:8080"); err == nil {
		t.Error("Dial after Close succeeded")
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestStartErrors checks the configuration errors Start reports.
func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	if err := (&Server{}).Start(ctx); err == nil || !strings.HasPrefix(err.Error(), "ipsec: ") {
		t.Errorf("Start without a configuration: %v", err)
	}
	cfg, err := config.Parse("a.yaml", []byte(manualYAML("a")))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Config: cfg, Netstack: &Netstack{}}
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "Addresses") {
		t.Errorf("Start without addresses: %v", err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
}

// TestNetstackDialErrors checks the networks and addresses netstack mode
// refuses.
func TestNetstackDialErrors(t *testing.T) {
	a, _ := pair(t, manualYAML("a"), manualYAML("b"))
	ctx := context.Background()
	for _, c := range []struct{ network, address string }{
		{"tcp", "example.com:80"},
		{"unix", "/tmp/x"},
		{"tcp4", "[fd00::1]:80"},
		{"tcp", "10.2.0.1"},
	} {
		if _, err := a.Dial(ctx, c.network, c.address); err == nil || !strings.HasPrefix(err.Error(), "ipsec: ") {
			t.Errorf("Dial(%q, %q) = %v; want an ipsec error", c.network, c.address, err)
		}
	}
	if _, err := a.Listen("udp", ":53"); err == nil {
		t.Error("Listen udp succeeded")
	}
	if _, err := a.ListenPacket("tcp", ":53"); err == nil {
		t.Error("ListenPacket tcp succeeded")
	}
}

// TestNetstackUDP sends a datagram each way through the manual SAs.
func TestNetstackUDP(t *testing.T) {
	a, b := pair(t, manualYAML("a"), manualYAML("b"))
	pc, err := b.ListenPacket("udp", "10.2.0.1:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := a.Dial(context.Background(), "udp", "10.2.0.1:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The first datagram may race the peer's stack coming up; resend
	// until one arrives.
	var from net.Addr
	for i := 0; ; i++ {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var n int
		n, from, err = pc.ReadFrom(buf)
		if err == nil {
			if string(buf[:n]) != "ping" {
				t.Fatalf("B got %q", buf[:n])
			}
			break
		}
		if i == 10 {
			t.Fatal(err)
		}
	}
	if from.(*net.UDPAddr).IP.String() != "10.1.0.1" {
		t.Errorf("datagram from %v; want 10.1.0.1", from)
	}
	if _, err := pc.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("A got %q, %v", buf[:n], err)
	}
}

// TestPortMap checks the port translation both ways and that it allocates
// nothing per packet.
func TestPortMap(t *testing.T) {
	m := portMap{local: 4500, peer: 14500}
	peer := netip.MustParseAddrPort("192.0.2.1:14500")
	if got := m.in(peer); got.Port() != 4500 || got.Addr() != peer.Addr() {
		t.Errorf("in(%v) = %v", peer, got)
	}
	if got := m.out(netip.MustParseAddrPort("192.0.2.1:4500")); got != peer {
		t.Errorf("out = %v; want %v", got, peer)
	}
	other := netip.MustParseAddrPort("192.0.2.1:1234")
	if m.in(other) != other || m.out(other) != other {
		t.Error("an unrelated port was translated")
	}
	if id := (portMap{local: 4500}); id.in(peer) != peer || id.out(netip.MustParseAddrPort("192.0.2.1:4500")).Port() != 4500 {
		t.Error("a zero peer port translated")
	}
	addrs := []netip.AddrPort{peer, other}
	u := &mappedUDP{UDP: fakeUDP{}, m: m}
	bufs, sizes := [][]byte{make([]byte, 10), make([]byte, 10)}, make([]int, 2)
	if n := testing.AllocsPerRun(100, func() {
		addrs[0] = peer
		u.Read(bufs, sizes, addrs, 0)
		u.Write(bufs, addrs[0])
	}); n != 0 {
		t.Errorf("%v allocations per packet; want 0", n)
	}
}

// fakeUDP returns two datagrams per Read and discards Writes.
type fakeUDP struct{}

func (fakeUDP) Read(bufs [][]byte, sizes []int, addrs []netip.AddrPort, offset int) (int, error) {
	return 2, nil
}
func (fakeUDP) Write(bufs [][]byte, dst netip.AddrPort) error { return nil }
func (fakeUDP) BatchSize() int                                { return 2 }
func (fakeUDP) LocalAddr() netip.AddrPort                     { return netip.AddrPort{} }
func (fakeUDP) Close() error                                  { return nil }
