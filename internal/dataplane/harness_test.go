package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// scenario describes one pair of peers A and B joined by an SA pair.
type scenario struct {
	proto    sa.Protocol
	mode     sa.Mode
	v6       bool // outer and inner family
	encap    sad.Encap
	suite    string // transform name
	batch    int
	workers  int
	extraSPD []spd.Rule                            // evaluated before the PROTECT rule, on both peers
	noSA     bool                                  // do not install SAs
	plainUDP bool                                  // Config.UDP has only conn.UDP's methods: no source, no TOS
	onWrite  func(pkt []byte)                      // if set, both TUN twins call it instead of queueing
	ike      func(pkt []byte, from netip.AddrPort) // Config.IKE of both peers
}

// peer is one side of a test pair.
type peer struct {
	dp     *Dataplane
	tun    *tuntest.Device
	udp    *conntest.UDP
	outer  netip.Addr // outer (gateway) address
	inner  netip.Addr // an address on the protected side
	prefix netip.Prefix
}

type pair struct {
	a, b *peer
	nw   *conntest.Network
	sc   scenario
}

func (sc scenario) String() string {
	fam := "4"
	if sc.v6 {
		fam = "6"
	}
	return fmt.Sprintf("%v-%v-ip%s-encap%v", sc.proto, sc.mode, fam, sc.encap)
}

func key(n int, seed byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

// newPair builds two data planes over one in-memory network.
func newPair(t testing.TB, sc scenario) *pair {
	t.Helper()
	if sc.batch == 0 {
		sc.batch = 32
	}
	if sc.workers == 0 {
		sc.workers = 2
	}
	if sc.suite == "" {
		if sc.proto == sa.AH {
			sc.suite = "sha256"
		} else {
			sc.suite = "aes256gcm16"
		}
	}
	nw := conntest.NewNetwork(4096)
	p := &pair{nw: nw, sc: sc}
	mk := func(outer, inner string, pfx string) *peer {
		return &peer{outer: netip.MustParseAddr(outer), inner: netip.MustParseAddr(inner), prefix: netip.MustParsePrefix(pfx)}
	}
	if sc.v6 {
		p.a = mk("2001:db8::1", "2001:db8:a::1", "2001:db8:a::/48")
		p.b = mk("2001:db8::2", "2001:db8:b::1", "2001:db8:b::/48")
	} else {
		p.a = mk("192.0.2.1", "10.1.0.1", "10.1.0.0/16")
		p.b = mk("198.51.100.2", "10.2.0.1", "10.2.0.0/16")
	}
	if sc.mode == sa.Transport {
		// Host to host: the protected addresses are the hosts' own.
		for _, x := range []*peer{p.a, p.b} {
			x.inner = x.outer
			x.prefix = netip.PrefixFrom(x.outer, x.outer.BitLen())
		}
	}
	for _, x := range []*peer{p.a, p.b} {
		x.tun = tuntest.New(1500, sc.batch, 1024)
		x.tun.OnWrite = sc.onWrite
		x.udp = nw.UDP(netip.AddrPortFrom(x.outer, 4500), sc.batch, 1024)
		raws := nw.Raw(x.outer, 50, sc.batch, 1024)
		rawa := nw.Raw(x.outer, 51, sc.batch, 1024)
		var udp conn.UDP = x.udp
		if sc.plainUDP {
			udp = struct{ conn.UDP }{x.udp}
		}
		dp, err := New(Config{TUN: x.tun, UDP: udp, Raw: []conn.Raw{raws, rawa}, Workers: sc.workers, IKE: sc.ike})
		if err != nil {
			t.Fatal(err)
		}
		x.dp = dp
	}
	p.setSPD(t, p.a, p.b)
	p.setSPD(t, p.b, p.a)
	if !sc.noSA {
		p.installSAs(t, p.a, p.b, 0x1000, 0x2000)
		p.installSAs(t, p.b, p.a, 0x2000, 0x1000)
	}
	for _, x := range []*peer{p.a, p.b} {
		x.dp.Start()
		t.Cleanup(func() { x.dp.Close() })
	}
	return p
}

const ref = 7

func set(p netip.Prefix) traffic.Set { return traffic.Set{{Prefix: p, PortHi: 0xffff}} }

func (p *pair) setSPD(t testing.TB, self, other *peer) {
	rules := append([]spd.Rule(nil), p.sc.extraSPD...)
	rules = append(rules, spd.Rule{
		Name: "net", Local: set(self.prefix), Remote: set(other.prefix),
		Action: spd.Protect, Ref: ref,
	})
	snap, err := spd.Compile(rules, spd.Bypass)
	if err != nil {
		t.Fatal(err)
	}
	self.dp.SetSPD(snap)
}

// installSAs installs self's outbound SA (spiOut) and inbound SA (spiIn).
func (p *pair) installSAs(t testing.TB, self, other *peer, spiOut, spiIn uint32) {
	t.Helper()
	sc := p.sc
	// The key of a direction is shared by its sender and receiver.
	kOut, kIn := byte(spiOut), byte(spiIn)
	var out sad.Outbound
	var in sad.Inbound
	switch sc.proto {
	case sa.ESP:
		s, err := transform.ParseESP(sc.suite)
		if err != nil {
			t.Fatal(err)
		}
		to, err := s.NewESP(key(s.KeyLen(), kOut))
		if err != nil {
			t.Fatal(err)
		}
		ti, err := s.NewESP(key(s.KeyLen(), kIn))
		if err != nil {
			t.Fatal(err)
		}
		o, err := esp.NewOutbound(esp.Config{SPI: spiOut, Mode: sc.mode, Transform: to, Local: self.outer, Remote: other.outer, OnEvent: self.dp.OnSAEvent})
		if err != nil {
			t.Fatal(err)
		}
		i, err := esp.NewInbound(esp.Config{SPI: spiIn, Mode: sc.mode, Transform: ti, EncapUDP: sc.encap == sad.EncapUDP, OnEvent: self.dp.OnSAEvent})
		if err != nil {
			t.Fatal(err)
		}
		out, in = o, i
	case sa.AH:
		s, err := transform.ParseAH(sc.suite)
		if err != nil {
			t.Fatal(err)
		}
		to, err := s.NewAH(key(s.KeyLen(), kOut))
		if err != nil {
			t.Fatal(err)
		}
		ti, err := s.NewAH(key(s.KeyLen(), kIn))
		if err != nil {
			t.Fatal(err)
		}
		o, err := ah.NewOutbound(ah.Config{SPI: spiOut, Mode: sc.mode, Integrity: to, Local: self.outer, Remote: other.outer})
		if err != nil {
			t.Fatal(err)
		}
		i, err := ah.NewInbound(ah.Config{SPI: spiIn, Mode: sc.mode, Integrity: ti})
		if err != nil {
			t.Fatal(err)
		}
		out, in = o, i
	}
	port := uint16(0)
	if sc.encap == sad.EncapUDP {
		port = 4500
	}
	if err := self.dp.InstallInbound(&sad.InboundSA{
		Protocol: sc.proto, SPI: spiIn, Mode: sc.mode,
		Local: set(self.prefix), Remote: set(other.prefix),
		LocalAddr: self.outer, SA: in,
	}); err != nil {
		t.Fatal(err)
	}
	if err := self.dp.InstallOutbound(&sad.OutboundSA{
		Protocol: sc.proto, SPI: spiOut, Mode: sc.mode, Ref: ref,
		Encap: sc.encap, Remote: netip.AddrPortFrom(other.outer, port), LocalAddr: self.outer, SA: out,
	}); err != nil {
		t.Fatal(err)
	}
}

// udpPacket returns a UDP packet from x's inner address to y's.
func udpPacket(x, y *peer, sport uint16, payload []byte) []byte {
	return tuntest.UDP(netip.AddrPortFrom(x.inner, sport), netip.AddrPortFrom(y.inner, 9), payload)
}

// expect reads one packet from x's TUN and compares it with want.
func expect(t testing.TB, x *peer, want []byte) {
	t.Helper()
	select {
	case got := <-x.tun.Out:
		if !bytes.Equal(got, want) {
			t.Fatalf("delivered packet differs:\n got %x\nwant %x", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no packet delivered; stats %+v", x.dp.Stats())
	}
}

func expectNothing(t testing.TB, x *peer, wait time.Duration) {
	t.Helper()
	select {
	case got := <-x.tun.Out:
		t.Fatalf("unexpected packet delivered: %x", got)
	case <-time.After(wait):
	}
}
