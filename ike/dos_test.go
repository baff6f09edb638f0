package ike

import (
	crand "crypto/rand"
	"encoding/binary"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// dosPair is a step pair whose responder B accepts IKE_SA_INIT from any
// address, and an IKE_SA_INIT request of A to replay from other sources.
func dosPair(t *testing.T, tweak func(b *Config)) (*stepPair, []byte) {
	t.Helper()
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.LocalAddrs, pb.RemoteAddrs = nil, nil
	p := newStepPair(t, pa, pb, func(_, b *Config) { tweak(b) })
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	req := p.net.drop().pkt
	// A's own IKE SA is left to retransmit; the tests deliver only what
	// they send.
	return p, req
}

// flood feeds B the request from source from with IKE SPI spi, optionally
// preceded by a COOKIE notify, and returns B's answer, if any.
func flood(t *testing.T, p *stepPair, req []byte, from netip.Addr, spi uint64, cookie []byte) *ikewire.Message {
	t.Helper()
	m, err := ikewire.Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	m.SPIi = spi
	if cookie != nil {
		m.Payloads = append([]ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyCookie, Data: cookie}}, m.Payloads...)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p.net.queue = p.net.queue[:0]
	p.net.sent = p.net.sent[:0]
	p.b.m.HandlePacket(b, netip.AddrPortFrom(from, 500), netip.AddrPortFrom(addrB, 500))
	if len(p.net.queue) == 0 {
		return nil
	}
	d := p.net.queue[0]
	p.net.queue = p.net.queue[:0]
	return parse(t, d)
}

// cookieOfAnswer returns the COOKIE of a lone-COOKIE answer, nil otherwise.
func cookieOfAnswer(m *ikewire.Message) []byte {
	if m == nil || len(m.Payloads) != 1 {
		return nil
	}
	if n := findNotify(m.Payloads, ikewire.NotifyCookie); n != nil {
		return n.Data
	}
	return nil
}

func nthAddr(base netip.Addr, n int) netip.Addr {
	b := base.As16()
	binary.BigEndian.PutUint32(b[12:], binary.BigEndian.Uint32(b[12:])+uint32(n))
	if base.Is4() {
		return netip.AddrFrom16(b).Unmap()
	}
	return netip.AddrFrom16(b)
}

// TestHalfOpenPerSourceLimit: one source (an IPv4 address, or an IPv6
// /64) cannot hold more than MaxHalfOpenPerSource half-open IKE SAs, so it
// cannot exhaust the table; other sources still get in.
func TestHalfOpenPerSourceLimit(t *testing.T) {
	p, req := dosPair(t, func(b *Config) { b.CookieThreshold = -1; b.MaxHalfOpen = 50 })
	attacker := netip.MustParseAddr("198.51.100.7")
	for i := range 200 {
		flood(t, p, req, attacker, uint64(1000+i), nil)
	}
	if got := p.b.m.halfOpen; got != 5 {
		t.Fatalf("one IPv4 source holds %d half-open IKE SAs, want the default limit 5", got)
	}
	v6 := netip.MustParseAddr("2001:db8:1:2::1")
	for i := range 200 {
		flood(t, p, req, nthAddr(v6, i*7919), uint64(5000+i), nil) // one /64
	}
	if got := p.b.m.halfOpen; got != 10 {
		t.Fatalf("half-open %d after a flood from one IPv6 /64, want 5+5", got)
	}
	if m := flood(t, p, req, netip.MustParseAddr("2001:db8:1:3::1"), 9000, nil); m == nil || find[*ikewire.KE](m.Payloads) == nil {
		t.Fatalf("another /64 was refused: %v", m)
	}
	if m := flood(t, p, req, addrA, 9001, nil); m == nil || find[*ikewire.KE](m.Payloads) == nil {
		t.Fatalf("a legitimate peer was refused: %v", m)
	}
	if got, want := p.b.m.halfOpen, 12; got != want {
		t.Fatalf("half-open %d, want %d", got, want)
	}
	// Expiry releases the per-source slots.
	p.clk.t = p.clk.t.Add(31 * time.Second)
	p.b.m.tickAll()
	if p.b.m.halfOpen != 0 || len(p.b.m.halfOpenBySrc) != 0 {
		t.Fatalf("after the half-open timeout: %d half-open, %v", p.b.m.halfOpen, p.b.m.halfOpenBySrc)
	}
	if m := flood(t, p, req, attacker, 77, nil); m == nil || find[*ikewire.KE](m.Payloads) == nil {
		t.Fatalf("the source was not let in again after its SAs expired: %v", m)
	}
}

// TestCookieBeforeHalfOpenLimit: above the cookie threshold, and whenever a
// limit would turn a request away, a request without a valid cookie gets a
// stateless COOKIE answer; a spoofed flood takes no slot beyond the
// threshold, a source that returns cookies is held to its per-source
// limit, and a legitimate initiator still connects.
func TestCookieBeforeHalfOpenLimit(t *testing.T) {
	p, req := dosPair(t, func(b *Config) { b.CookieThreshold = 10; b.MaxHalfOpen = 20 })
	spoofed := netip.MustParseAddr("203.0.113.0")
	cookies := 0
	for i := range 5000 {
		if cookieOfAnswer(flood(t, p, req, nthAddr(spoofed, i), uint64(10_000+i), nil)) != nil {
			cookies++
		}
	}
	if got := p.b.m.halfOpen; got != 10 {
		t.Fatalf("a spoofed flood holds %d half-open IKE SAs, want the cookie threshold 10", got)
	}
	if cookies != 5000-10 {
		t.Fatalf("%d COOKIE answers to 4990 requests above the threshold", cookies)
	}
	// One real source that returns every cookie.
	echo := netip.MustParseAddr("198.51.100.9")
	for i := range 100 {
		spi := uint64(20_000 + i)
		c := cookieOfAnswer(flood(t, p, req, echo, spi, nil))
		if c == nil {
			t.Fatal("no COOKIE demanded above the threshold")
		}
		flood(t, p, req, echo, spi, c)
	}
	if got := p.b.m.halfOpenBySrc[sourceOf(echo)]; got != 5 {
		t.Fatalf("the cookie-echoing source holds %d half-open IKE SAs, want 5", got)
	}
	// A legitimate initiator answers the cookie and connects.
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.queue = p.net.queue[:0]
	p.clk.t = p.clk.t.Add(5 * time.Second)
	p.a.m.tickAll() // A retransmits its IKE_SA_INIT
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 1)

	// The global limit: full below the threshold still asks for a
	// cookie first, and drops only requests that return it.
	q, req2 := dosPair(t, func(b *Config) { b.CookieThreshold = 100; b.MaxHalfOpen = 3 })
	for i := range 3 {
		flood(t, q, req2, nthAddr(spoofed, i), uint64(1+i), nil)
	}
	c := cookieOfAnswer(flood(t, q, req2, addrC, 99, nil))
	if c == nil {
		t.Fatal("a full table dropped a request without demanding a cookie first")
	}
	if m := flood(t, q, req2, addrC, 99, c); m != nil || q.b.m.halfOpen != 3 {
		t.Fatalf("a full table answered %v, half-open %d", m, q.b.m.halfOpen)
	}
}

// TestCookieSecretRotation: the cookie secret is replaced every
// CookieSecretLifetime; a cookie of the previous secret (told by its
// version byte) is accepted for one more lifetime, then refused.
func TestCookieSecretRotation(t *testing.T) {
	p, req := dosPair(t, func(b *Config) { b.CookieThreshold = 1; b.CookieSecretLifetime = time.Minute })
	flood(t, p, req, addrC, 1, nil) // one half-open SA: cookies from now on
	src := netip.MustParseAddr("198.51.100.1")
	old := cookieOfAnswer(flood(t, p, req, src, 2, nil))
	if old == nil {
		t.Fatal("no cookie demanded")
	}
	p.clk.t = p.clk.t.Add(61 * time.Second)
	cur := cookieOfAnswer(flood(t, p, req, src, 2, nil))
	if cur == nil || cur[0] == old[0] {
		t.Fatalf("after a lifetime the cookie's version byte is still %v (was %v): the secret did not rotate", cur, old)
	}
	cur = cookieOfAnswer(flood(t, p, req, src, 6, nil))
	if m := flood(t, p, req, src, 2, old); m == nil || find[*ikewire.KE](m.Payloads) == nil {
		t.Fatalf("a cookie of the previous secret was refused within one lifetime: %v", m)
	}
	// A second rotation retires it.
	old2 := cookieOfAnswer(flood(t, p, req, netip.MustParseAddr("198.51.100.2"), 3, nil))
	p.clk.t = p.clk.t.Add(61 * time.Second)
	cookieOfAnswer(flood(t, p, req, src, 4, nil)) // rotates
	if m := flood(t, p, req, netip.MustParseAddr("198.51.100.2"), 3, old2); m == nil || find[*ikewire.KE](m.Payloads) == nil {
		t.Fatalf("a cookie of the previous secret within its grace lifetime: want it accepted, got %v", m)
	}
	p.clk.t = p.clk.t.Add(61 * time.Second)
	if m := flood(t, p, req, src, 6, cur); cookieOfAnswer(m) == nil {
		t.Fatalf("a cookie two secrets old was accepted: %v", m)
	}
	// After a long quiet time, neither old secret counts.
	fresh := cookieOfAnswer(flood(t, p, req, src, 5, nil))
	p.clk.t = p.clk.t.Add(10 * time.Minute)
	if m := flood(t, p, req, src, 5, fresh); cookieOfAnswer(m) == nil {
		t.Fatalf("a cookie ten lifetimes old was accepted: %v", m)
	}
}

// panicRand panics while on is set, else reads from r.
type panicRand struct {
	on *atomic.Bool
	r  io.Reader
}

func (p panicRand) Read(b []byte) (int, error) {
	if p.on.Load() {
		panic("test: randomness panics")
	}
	return p.r.Read(b)
}

// TestHandlePacketPanicDropsOnlyTheMessage: a panic while a message is
// parsed or admitted (HandlePacket runs on the caller's reader goroutine,
// outside any IKE SA's actor) drops that message, is counted in Panics, and
// leaves the Manager's lock free, so the next request is answered.
func TestHandlePacketPanicDropsOnlyTheMessage(t *testing.T) {
	var on atomic.Bool
	p, req := dosPair(t, func(b *Config) {
		r := b.Rand
		if r == nil {
			r = crand.Reader
		}
		b.Rand = panicRand{on: &on, r: r}
		b.CookieThreshold = -1
	})
	on.Store(true)
	if m := flood(t, p, req, netip.MustParseAddr("198.51.100.7"), 0x1111, nil); m != nil {
		t.Fatalf("an answer to the request whose admission panicked: %v", m)
	}
	on.Store(false)
	if n := p.b.m.Panics(); n != 1 {
		t.Fatalf("Panics() = %d, want 1", n)
	}
	if m := flood(t, p, req, netip.MustParseAddr("198.51.100.8"), 0x2222, nil); m == nil {
		t.Fatal("no answer to the next request: the Manager is stuck")
	}
}
