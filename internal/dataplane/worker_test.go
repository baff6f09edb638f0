package dataplane

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// gateUDP is a conn.UDP whose Write blocks for one destination until the
// gate opens, and reports every ESP packet's SPI and sequence number.
type gateUDP struct {
	blocked netip.AddrPort
	gate    chan struct{}
	sent    chan [2]uint32 // SPI, sequence number
	closed  chan struct{}
	once    sync.Once
}

func (u *gateUDP) Read([][]byte, []int, []netip.AddrPort, int) (int, error) {
	<-u.closed
	return 0, conn.ErrClosed
}

func (u *gateUDP) Write(bufs [][]byte, dst netip.AddrPort) error {
	if dst == u.blocked {
		select {
		case <-u.gate:
		case <-u.closed:
			return conn.ErrClosed
		}
	}
	for _, b := range bufs {
		u.sent <- [2]uint32{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])} // RFC 4303, Section 2
	}
	return nil
}

func (u *gateUDP) BatchSize() int { return 8 }

func (u *gateUDP) LocalAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 4500)
}

func (u *gateUDP) Close() error { u.once.Do(func() { close(u.closed) }); return nil }

// udpSA is one outbound ESP-in-UDP SA of twoSAs.
type udpSA struct {
	spi, ref uint32
	dst      netip.AddrPort
	from     netip.Addr // sad.OutboundSA.LocalAddr
}

// twoSAs makes dp protect the traffic from 10.1.0.0/16 to 10.2.0.0/16 with
// the bundle of sas[0] and to 10.3.0.0/16 with that of sas[1], installs
// both SAs (aes256gcm16, outer address local) and returns the two remote
// prefixes.
func twoSAs(t *testing.T, dp *Dataplane, local netip.Addr, sas [2]udpSA) [2]netip.Prefix {
	t.Helper()
	nets := [2]netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("10.3.0.0/16")}
	from := netip.MustParsePrefix("10.1.0.0/16")
	snap, err := spd.Compile([]spd.Rule{
		{Name: "first", Local: set(from), Remote: set(nets[0]), Action: spd.Protect, Ref: sas[0].ref},
		{Name: "second", Local: set(from), Remote: set(nets[1]), Action: spd.Protect, Ref: sas[1].ref},
	}, spd.Bypass)
	if err != nil {
		t.Fatal(err)
	}
	dp.SetSPD(snap)
	suite, err := transform.ParseESP("aes256gcm16")
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range sas {
		tr, err := suite.NewESP(key(suite.KeyLen(), byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		o, err := esp.NewOutbound(esp.Config{SPI: x.spi, Transform: tr, Local: local, Remote: x.dst.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		if err := dp.InstallOutbound(&sad.OutboundSA{Protocol: sa.ESP, SPI: x.spi, Ref: x.ref, Encap: sad.EncapUDP,
			Remote: x.dst, LocalAddr: x.from, SA: o}); err != nil {
			t.Fatal(err)
		}
	}
	return nets
}

// TestSendLanesIndependent checks that the send stage does not serialize
// unrelated SAs: while the socket blocks on one SA's destination, another
// SA's packets still leave; once it unblocks, the first SA's packets leave
// in sequence-number order.
func TestSendLanesIndependent(t *testing.T) {
	// Two SAs (bundles 1 and 2) on different lanes.
	spiSlow, spiFast := uint32(0x1001), uint32(0x1002)
	slow := netip.MustParseAddrPort("198.51.100.1:4500")
	fast := netip.MustParseAddrPort("198.51.100.2:4500")
	for h := byte(2); saLane(&sad.OutboundSA{Ref: 1, Remote: slow}) == saLane(&sad.OutboundSA{Ref: 2, Remote: fast}); h++ {
		fast = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, h}), 4500)
	}
	u := &gateUDP{blocked: slow, gate: make(chan struct{}), sent: make(chan [2]uint32, 1024), closed: make(chan struct{})}
	dev := tuntest.New(1500, 8, 1024)
	dp, err := New(Config{TUN: dev, UDP: u, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	nets := twoSAs(t, dp, u.LocalAddr().Addr(), [2]udpSA{{spi: spiSlow, ref: 1, dst: slow}, {spi: spiFast, ref: 2, dst: fast}})
	dp.Start()
	defer dp.Close()

	src := netip.MustParseAddrPort("10.1.0.1:1000")
	pkt := func(net int) []byte {
		return tuntest.UDP(src, netip.AddrPortFrom(nets[net].Addr().Next(), 9), make([]byte, 100))
	}
	const n = 20
	for range n {
		dev.In <- pkt(0) // to the blocked destination
	}
	dev.In <- pkt(1)
	select {
	case got := <-u.sent:
		if got[0] != spiFast {
			t.Fatalf("SPI %#x sent while its destination blocks", got[0])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the unrelated SA's packet waits for the blocked one")
	}
	close(u.gate)
	var next uint32 = 1
	for next <= n {
		select {
		case got := <-u.sent:
			if got[0] != spiSlow {
				t.Fatalf("unexpected SPI %#x", got[0])
			}
			if got[1] != next {
				t.Fatalf("sequence number %d on the wire, want %d (order lost)", got[1], next)
			}
			next++
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d packets of the blocked SA sent after it unblocked", next-1, n)
		}
	}
}

// TestSALaneStableAcrossRekey: the SA that replaces another in a rekey
// (same bundle, same peer, new SPI) sends on the same lane, so that the
// old SA's last packets and the new one's first leave in order; other
// peers of the bundle spread over the lanes.
func TestSALaneStableAcrossRekey(t *testing.T) {
	peer := netip.MustParseAddrPort("198.51.100.7:4500")
	old := &sad.OutboundSA{SPI: 0xc0000001, Ref: 3, Remote: peer}
	for spi := uint32(1); spi < 1000; spi++ {
		if l := saLane(&sad.OutboundSA{SPI: spi, Ref: 3, Remote: peer}); l != saLane(old) {
			t.Fatalf("SPI %#x of the same bundle and peer on lane %d, the old SA on %d", spi, l, saLane(old))
		}
	}
	seen := map[uint8]bool{}
	for h := range 64 {
		seen[saLane(&sad.OutboundSA{Ref: 3, Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, 0, byte(h)}), 500)})] = true
	}
	if len(seen) < sendLanes/2 {
		t.Errorf("64 peers of one bundle use %d of %d lanes", len(seen), sendLanes)
	}
}

// TestLaneOf checks that consecutive SPIs (manual SAs) spread over all the
// send lanes.
func TestLaneOf(t *testing.T) {
	seen := map[uint8]bool{}
	for spi := uint32(0x1000); spi < 0x1000+8*sendLanes; spi++ {
		l := laneOf(spi)
		if l >= sendLanes {
			t.Fatalf("laneOf(%#x) = %d, want < %d", spi, l, sendLanes)
		}
		seen[l] = true
	}
	if len(seen) != sendLanes {
		t.Errorf("%d consecutive SPIs use %d of %d lanes", 8*sendLanes, len(seen), sendLanes)
	}
}

// countingEngine is an inbound and outbound engine double that counts the
// calls of Warm; its packet methods are not used.
type countingEngine struct {
	sad.Inbound
	sad.Outbound
	warmed int
}

func (c *countingEngine) Warm(level int) int { c.warmed++; return level }

// TestWarmOncePerSA checks warm, which a worker runs over its chunk before
// the packet work: it warms the engine of every SA the chunk opens or
// seals with, once per run of consecutive packets of one SA, and skips
// packets with nothing to open or seal (IKE, keepalives, drops, bypass) and
// engines that cannot warm.
func TestWarmOncePerSA(t *testing.T) {
	a, b := new(countingEngine), new(countingEngine)
	inA, inB := &sad.InboundSA{SA: a}, &sad.InboundSA{SA: b}
	outA := &sad.OutboundSA{SA: a}
	cold := &sad.InboundSA{SA: &panicInbound{}}
	elems := []*elem{
		{kind: kindOpen, in: inA}, {kind: kindOpen, in: inA}, {kind: kindOpen, in: inA},
		{kind: kindNone, in: inB}, // classified away
		{kind: kindOpen, in: inB}, {kind: kindOpen, in: inA},
		{kind: kindOpen, in: cold}, {kind: kindOpen},
		{kind: kindProtect, out: outA}, {kind: kindProtect, out: outA}, {kind: kindBypass},
	}
	warm(elems)
	if a.warmed != 3*warmLevels || b.warmed != warmLevels {
		t.Errorf("warmed A %d and B %d times, want %d (two runs inbound, one outbound, each level) and %d", a.warmed, b.warmed, 3*warmLevels, warmLevels)
	}
	if !raceEnabled {
		if n := testing.AllocsPerRun(100, func() { warm(elems) }); n != 0 {
			t.Errorf("warm: %v allocations, want 0", n)
		}
	}
}
