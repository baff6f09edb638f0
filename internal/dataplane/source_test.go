package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// TestESPInUDPFromSALocalAddr is the data plane half of the regression test
// of ESP in UDP leaving from the routing table's address instead of the
// SA's (the socket half is conn's TestWriteBatchSource, the namespace
// one e2e's TestESPInUDPFromLocalAddrs): two SAs on one send lane to one
// peer, one with LocalAddr 192.0.2.11 (the host's second address), one
// without, their packets interleaved in the same TUN batches. Each SA's
// datagrams must arrive from its own source: the lane must not put them
// into one send.
func TestESPInUDPFromSALocalAddr(t *testing.T) {
	nw := conntest.NewNetwork(1024)
	bound := netip.MustParseAddrPort("192.0.2.1:4500")
	second := netip.MustParseAddr("192.0.2.11")
	peer := netip.MustParseAddrPort("198.51.100.2:4500")
	u := nw.UDP(bound, 8, 256)
	rx := nw.UDP(peer, 64, 256)
	defer rx.Close()
	dev := tuntest.New(1500, 8, 256)
	dp, err := New(Config{TUN: dev, UDP: u, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	refs := [2]uint32{1, 2}
	for saLane(&sad.OutboundSA{Ref: refs[0], Remote: peer}) != saLane(&sad.OutboundSA{Ref: refs[1], Remote: peer}) {
		refs[1]++
	}
	nets := twoSAs(t, dp, bound.Addr(), [2]udpSA{{spi: 0x1001, ref: refs[0], dst: peer, from: second}, {spi: 0x1002, ref: refs[1], dst: peer}})
	want := map[uint32]netip.AddrPort{ // SPI -> sender the peer sees
		0x1001: netip.AddrPortFrom(second, bound.Port()),
		0x1002: bound,
	}
	const n = 64
	for i := range n {
		dst := nets[i%2].Addr().Next()
		dev.In <- tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:1000"), netip.AddrPortFrom(dst, 9), make([]byte, 100))
	}
	dp.Start()
	defer dp.Close()
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes, addrs := make([]int, len(bufs)), make([]netip.AddrPort, len(bufs))
	got := map[uint32]int{}
	deadline := time.AfterFunc(10*time.Second, func() { rx.Close() })
	defer deadline.Stop()
	for total := 0; total < n; {
		k, err := rx.Read(bufs, sizes, addrs, 0)
		if err != nil {
			t.Fatalf("%d of %d datagrams arrived (%v); stats %+v", total, n, err, dp.Stats())
		}
		for i := range k {
			spi := binary.BigEndian.Uint32(bufs[i]) // RFC 4303, Section 2
			if addrs[i] != want[spi] {
				t.Errorf("SPI %#x: datagram from %v, want %v", spi, addrs[i], want[spi])
			}
			got[spi]++
		}
		total += k
	}
	if got[0x1001] != n/2 || got[0x1002] != n/2 {
		t.Errorf("datagrams by SPI %v, want %d each", got, n/2)
	}
}
