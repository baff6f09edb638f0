package e2e

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/nstest"
	"golang.org/x/sys/unix"
)

var espTunnel4 = spec{name: "esp-tunnel-IPv4", protocol: "esp", mode: "tunnel", encap: "udp", alg: "aes256gcm16"}

// TestSpoofedInnerSource sends B, with A's key and SPI, an inner packet whose
// source lies outside A's selectors. Its ICV verifies, but B must drop it
// after decryption (RFC 4301, Section 5.2: the inner header must match the
// SA's selectors), so a filter on inner source addresses means something.
func TestSpoofedInnerSource(t *testing.T) {
	requireBins(t)
	p := newPair(t, espTunnel4, "")
	p.start(t)
	mustPing(t, p.a.ns, p.a.inner, p.b.inner, 3)

	// Above every sequence number A's daemon has used.
	s := newSealer(t, p, 1<<20)
	c := udpSender(t, p.a.ns, netip.AddrPortFrom(p.b.outer, esp.NATTPort))
	echosBefore := icmpInEchos(t, p.b.ns)
	inBefore := p.b.childSA(t).PacketsIn
	selBefore := p.b.status(t).Counters.Drops["selector"]

	const spoofed = 3
	for i := range spoofed {
		pkt := icmpEcho(netip.MustParseAddr("10.99.0.1"), p.b.inner, 0x5151, uint16(i+1), []byte("spoofed inner source"))
		if _, err := c.Write(s.seal(t, pkt)); err != nil {
			t.Fatal(err)
		}
	}
	var sel uint64
	nstest.WaitFor(10*time.Second, func() bool {
		sel = p.b.status(t).Counters.Drops["selector"]
		return sel >= selBefore+spoofed
	})
	if sel-selBefore != spoofed {
		t.Errorf("B counted %d selector drops, want %d (drops %v)", sel-selBefore, spoofed, p.b.status(t).Counters.Drops)
	}
	if n := icmpInEchos(t, p.b.ns); n != echosBefore {
		t.Errorf("B's kernel received %d echo requests from the spoofed source", n-echosBefore)
	}
	if n := p.b.childSA(t).PacketsIn; n != inBefore {
		t.Errorf("B's SA counted %d spoofed packets as received", n-inBefore)
	}

	// The control: the same thing with a source inside A's selectors is
	// delivered, so the checks above would have seen a delivery.
	pkt := icmpEcho(p.a.inner, p.b.inner, 0x5151, 100, []byte("genuine inner source"))
	if _, err := c.Write(s.seal(t, pkt)); err != nil {
		t.Fatal(err)
	}
	if !nstest.WaitFor(10*time.Second, func() bool { return icmpInEchos(t, p.b.ns) > echosBefore }) {
		t.Errorf("B's kernel did not receive the control echo request sealed by the test (drops %v)", p.b.status(t).Counters.Drops)
	}
	p.b.checkAlive(t)
}

// TestGarbage floods B, from a third namespace C on another link, with more
// than 100,000 bad packets while A pings B through the tunnel: random bytes,
// truncated and unknown-SPI ESP in UDP, forged ESP with B's inbound SPI
// (aligned, so the ICV check rejects it, and unaligned), genuine packets
// replayed, and random bytes as raw ESP and AH. No ping may be lost,
// B's daemon must survive, and B must count each kind of drop.
func TestGarbage(t *testing.T) {
	requireBins(t)
	p := newPair(t, espTunnel4, "")
	c := nstest.New(t, "c")
	nstest.Link(t, c, "eth0", []string{"198.51.100.1/24"}, p.b.ns, "eth1", []string{"198.51.100.2/24"})
	target := netip.MustParseAddr("198.51.100.2")
	p.start(t)

	// Genuine traffic first, so that B has accepted sequence numbers that
	// can be replayed.
	mustPing(t, p.a.ns, p.a.inner, p.b.inner, 5)
	accepted := p.b.childSA(t).PacketsIn
	if accepted == 0 {
		t.Fatal("B accepted no packets")
	}
	s := newSealer(t, p, 0)
	var replays [][]byte
	for i := range accepted {
		replays = append(replays, s.seal(t, icmpEcho(p.a.inner, p.b.inner, 0x7777, uint16(i), []byte("replayed"))))
	}

	udp := udpSender(t, c, netip.AddrPortFrom(target, esp.NATTPort))
	raw := map[int]int{}
	for _, proto := range []int{50, 51} {
		if err := c.Do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
			raw[proto] = fd
			return err
		}); err != nil {
			t.Fatalf("raw socket for protocol %d: %v", proto, err)
		}
		t.Cleanup(func() { unix.Close(raw[proto]) })
	}
	dst := &unix.SockaddrInet4{Addr: target.As4()}

	rnd := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
	buf := make([]byte, 1500)
	random := func(n int) []byte {
		b := buf[:n]
		rand.Read(b)
		return b
	}
	kinds := []struct {
		name string
		per  int // packets per round
		send func() error
	}{
		{"random UDP", 200, func() error {
			_, err := udp.Write(random(8 + rnd.IntN(1400)))
			return err
		}},
		{"truncated UDP", 150, func() error {
			b := random(rnd.IntN(8)) // fewer bytes than an ESP header
			if len(b) == 1 {
				b[0] = 0 // not a NAT-keepalive
			}
			_, err := udp.Write(b)
			return err
		}},
		{"unknown SPI", 150, func() error {
			b := random(8 + rnd.IntN(200))
			spi := 0x100 + rnd.Uint32N(1<<31)
			if spi == p.spiAB {
				spi++
			}
			binary.BigEndian.PutUint32(b, spi)
			_, err := udp.Write(b)
			return err
		}},
		{"bad ICV", 150, func() error {
			// Aligned as RFC 4303, Section 2.4 wants, so that only the
			// ICV check can reject it.
			b := random(48 + 4*rnd.IntN(50))
			binary.BigEndian.PutUint32(b, p.spiAB)
			binary.BigEndian.PutUint32(b[4:], 1<<24+rnd.Uint32N(1<<24))
			_, err := udp.Write(b)
			return err
		}},
		{"unaligned", 50, func() error {
			b := random(49 + 4*rnd.IntN(50)) // ciphertext not 4-byte aligned
			binary.BigEndian.PutUint32(b, p.spiAB)
			_, err := udp.Write(b)
			return err
		}},
		{"replay", 100, func() error {
			_, err := udp.Write(replays[rnd.IntN(len(replays))])
			return err
		}},
		{"raw ESP", 100, func() error {
			return unix.Sendto(raw[50], random(rnd.IntN(300)), 0, dst)
		}},
		{"raw AH", 100, func() error {
			return unix.Sendto(raw[51], random(rnd.IntN(300)), 0, dst)
		}},
	}
	// About 1,000 packets a round, 40 rounds a second, until 100,000 have
	// been sent (failed sends, ENOBUFS and the like, do not count).
	const wantSent, maxRounds = 100_000, 300
	sent, failed := 0, 0
	var sendErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(200 * time.Millisecond) // let the ping start
		for r := 0; sent < wantSent && r < maxRounds; r++ {
			for _, k := range kinds {
				for range k.per {
					if err := k.send(); err != nil {
						failed++
						sendErr = err
						continue
					}
					sent++
				}
			}
			time.Sleep(25 * time.Millisecond)
		}
	}()
	n, out := ping(t, p.a.ns, p.a.inner, p.b.inner, 30, "0.1")
	<-done
	t.Logf("sent %d bad packets; %d sends failed (last error: %v)", sent, failed, sendErr)
	if sent < wantSent {
		t.Errorf("sent %d bad packets, want at least %d", sent, wantSent)
	}
	if n != 30 {
		t.Errorf("ping during the flood: %d of 30 replies\n%s", n, out)
	}
	p.b.checkAlive(t)
	p.a.checkAlive(t)

	want := []string{"unknown_spi", "bad_icv", "replay", "truncated", "malformed"}
	var drops map[string]uint64
	nstest.WaitFor(10*time.Second, func() bool {
		drops = p.b.status(t).Counters.Drops
		for _, r := range want {
			if drops[r] == 0 {
				return false
			}
		}
		return true
	})
	var total uint64
	for _, v := range drops {
		total += v
	}
	t.Logf("B's drops: %v (total %d)", drops, total)
	for _, r := range want {
		if drops[r] == 0 {
			t.Errorf("B counted no %s drops: %v", r, drops)
		}
	}
	sa := p.b.childSA(t)
	if sa.ReplayDrops == 0 || sa.ICVFailures == 0 {
		t.Errorf("B's SA: %d replay drops, %d ICV failures; want both above zero", sa.ReplayDrops, sa.ICVFailures)
	}
	// The tunnel still works after the flood.
	mustPing(t, p.a.ns, p.a.inner, p.b.inner, 3)
}
