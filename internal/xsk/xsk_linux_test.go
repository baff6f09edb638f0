//go:build amd64 || arm64

package xsk

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// espLen is the size of the ESP packets the tests send (SPI, sequence
// number and a fixed body; RFC 4303, Section 2), without the IP header.
const espLen = 1400

var (
	senderAddr = netip.MustParseAddr("10.71.0.1")
	xskAddr    = netip.MustParseAddr("10.71.0.2") // ESP for it goes to the XSK
	stackAddr  = netip.MustParseAddr("10.71.0.3") // ESP for it goes to the kernel
)

// pair is two namespaces joined by a veth, veth0 on each side: the sender
// (10.71.0.1) and the receiver (10.71.0.2 and .3), with static neighbour
// entries both ways so that no packet waits for ARP.
type pair struct {
	snd, rcv       *nstest.NS
	sndIdx, rcvIdx int
	sndMAC, rcvMAC net.HardwareAddr
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{snd: nstest.New(t, "xsks"), rcv: nstest.New(t, "xskr")}
	nstest.Link(t, p.snd, "veth0", []string{senderAddr.String() + "/24"},
		p.rcv, "veth0", []string{xskAddr.String() + "/24", stackAddr.String() + "/24"})
	link := func(ns *nstest.NS) (idx int, mac net.HardwareAddr) {
		if err := ns.Do(func() error {
			ifi, err := net.InterfaceByName("veth0")
			if err == nil {
				idx, mac = ifi.Index, ifi.HardwareAddr
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return idx, mac
	}
	p.sndIdx, p.sndMAC = link(p.snd)
	p.rcvIdx, p.rcvMAC = link(p.rcv)
	for _, a := range []netip.Addr{xskAddr, stackAddr} {
		p.snd.MustRun("ip", "neigh", "replace", a.String(), "lladdr", p.rcvMAC.String(), "dev", "veth0", "nud", "permanent")
	}
	p.rcv.MustRun("ip", "neigh", "replace", senderAddr.String(), "lladdr", p.sndMAC.String(), "dev", "veth0", "nud", "permanent")
	return p
}

// in runs f in ns and fails the test on an error.
func in(t *testing.T, ns *nstest.NS, f func() error) {
	t.Helper()
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

// attach loads and attaches the program on the receiver's veth0 with an
// XSK on queue 0 registered, both closed when the test ends.
func (p *pair) attach(t *testing.T, o Options) (*Program, *Socket) {
	t.Helper()
	var prog *Program
	var s *Socket
	in(t, p.rcv, func() error {
		var err error
		if prog, err = Attach(p.rcvIdx, o); err != nil {
			return err
		}
		t.Cleanup(func() { prog.Close() })
		if s, err = Open(p.rcvIdx, Config{}); err != nil {
			return err
		}
		t.Cleanup(func() { s.Close() })
		return prog.Register(0, s)
	})
	return prog, s
}

// espPacket returns an IPv4 ESP packet from src to dst, espLen bytes after
// the header, with the given SPI and sequence number.
func espPacket(src, dst netip.Addr, spi, seq uint32) []byte {
	b := make([]byte, packet.IPv4MinHeaderLen+espLen)
	h := packet.PutIPHeader(b, src, dst, uint8(sa.ESP), espLen, 64, 0)
	binary.BigEndian.PutUint32(b[h:], spi)
	binary.BigEndian.PutUint32(b[h+4:], seq)
	for i := h + 8; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// frame puts an Ethernet header from src to dst in front of an IPv4 packet.
func frame(dst, src net.HardwareAddr, pkt []byte) []byte {
	f := make([]byte, 14+len(pkt))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	copy(f[14:], pkt)
	return f
}

// TestReceiveESP: the program redirects ESP for the chosen address into the
// AF_XDP socket, intact and in order, and passes ESP for another address
// and UDP to the kernel, where a raw socket and a UDP socket get them.
func TestReceiveESP(t *testing.T) {
	p := newPair(t)
	prog, s := p.attach(t, Options{Dst: xskAddr})
	t.Logf("XDP mode %v, zero-copy %v", prog.Mode(), s.ZeroCopy())

	var raw *conn.RawConn
	var udp *conn.UDPConn
	in(t, p.rcv, func() error {
		var err error
		if raw, err = conn.ListenRaw(4, sa.ESP, 0); err != nil {
			return err
		}
		udp, err = conn.ListenUDP(netip.AddrPortFrom(xskAddr, 5001), 0)
		return err
	})
	defer raw.Close()
	defer udp.Close()
	var out *conn.RawConn
	var udpOut *conn.UDPConn
	in(t, p.snd, func() error {
		var err error
		if out, err = conn.ListenRaw(4, sa.ESP, 0); err != nil {
			return err
		}
		udpOut, err = conn.ListenUDP(netip.AddrPortFrom(senderAddr, 0), 0)
		return err
	})
	defer out.Close()
	defer udpOut.Close()

	const n, stackN, udpN = 500, 20, 20
	var bufs [][]byte
	for i := range n {
		bufs = append(bufs, espPacket(senderAddr, xskAddr, 0x1000, uint32(i+1)))
	}
	var stackBufs [][]byte
	for i := range stackN {
		stackBufs = append(stackBufs, espPacket(senderAddr, stackAddr, 0x2000, uint32(i+1)))
	}
	if err := out.Write(bufs); err != nil {
		t.Fatal(err)
	}
	if err := out.Write(stackBufs); err != nil {
		t.Fatal(err)
	}
	var dgrams [][]byte
	for range udpN {
		dgrams = append(dgrams, []byte("not ESP"))
	}
	if err := udpOut.Write(dgrams, netip.AddrPortFrom(xskAddr, 5001)); err != nil {
		t.Fatal(err)
	}

	frames := make([][]byte, 64)
	got := 0
	for deadline := time.Now().Add(10 * time.Second); got < n && time.Now().Before(deadline); {
		k, err := s.Read(frames, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames[:k] {
			ip := f[14:]
			seq := binary.BigEndian.Uint32(ip[24:])
			if ip[9] != 50 || netip.AddrFrom4([4]byte(ip[16:20])) != xskAddr || binary.BigEndian.Uint32(ip[20:]) != 0x1000 {
				t.Fatalf("XSK frame %d is not the ESP for %v: % x", got, xskAddr, f[:min(len(f), 48)])
			}
			if len(f) != 14+len(bufs[0]) || seq != uint32(got+1) || string(ip[28:]) != string(bufs[0][28:]) {
				t.Fatalf("XSK frame %d: %d bytes, sequence number %d, want %d bytes, %d, the body sent", got, len(f), seq, 14+len(bufs[0]), got+1)
			}
			got++
		}
	}
	if got != n {
		t.Fatalf("XSK received %d of %d ESP packets", got, n)
	}

	// The kernel got the rest: ESP for the other address on the raw
	// socket, none for the XSK's address, and the UDP datagrams. A blocked
	// Read ends when its socket closes.
	stop := time.AfterFunc(10*time.Second, func() { raw.Close(); udp.Close() })
	defer stop.Stop()
	rb := make([][]byte, conn.RawBatchSize)
	for i := range rb {
		rb[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(rb))
	rawGot := 0
	for rawGot < stackN {
		k, err := raw.Read(rb, sizes, 0)
		if err != nil {
			t.Fatalf("raw socket after %d of %d packets: %v", rawGot, stackN, err)
		}
		for i := range k {
			if d := netip.AddrFrom4([4]byte(rb[i][16:20])); d != stackAddr {
				t.Fatalf("raw socket received ESP for %v, which the program should have redirected", d)
			}
		}
		rawGot += k
	}
	ub := make([][]byte, udp.BatchSize())
	for i := range ub {
		ub[i] = make([]byte, 65536)
	}
	usizes := make([]int, len(ub))
	addrs := make([]netip.AddrPort, len(ub))
	udpGot := 0
	for udpGot < udpN {
		k, err := udp.Read(ub, usizes, addrs, 0)
		if err != nil {
			t.Fatalf("UDP socket after %d of %d datagrams: %v", udpGot, udpN, err)
		}
		udpGot += k
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Rx_dropped != 0 || st.Rx_invalid_descs != 0 {
		t.Errorf("XSK statistics: %+v", st)
	}
}

// TestFragmentsPass: fragments of an ESP packet for the XSK's address go to
// the kernel, which reassembles them for the raw socket (RFC 4303, Section
// 3.4.1: reassembly before ESP processing), and none reaches the XSK.
func TestFragmentsPass(t *testing.T) {
	p := newPair(t)
	_, s := p.attach(t, Options{Dst: xskAddr})
	var raw, out *conn.RawConn
	in(t, p.rcv, func() (err error) { raw, err = conn.ListenRaw(4, sa.ESP, 0); return err })
	defer raw.Close()
	in(t, p.snd, func() (err error) { out, err = conn.ListenRaw(4, sa.ESP, 0); return err })
	defer out.Close()

	whole := espPacket(senderAddr, xskAddr, 0x3000, 1)
	const split = 1000 // payload bytes in the first fragment, a multiple of 8
	var frags [][]byte
	for _, part := range []struct {
		payload []byte
		off     int
		more    bool
	}{{whole[20 : 20+split], 0, true}, {whole[20+split:], split, false}} {
		f := make([]byte, 20+len(part.payload))
		packet.PutIPHeader(f, senderAddr, xskAddr, uint8(sa.ESP), len(part.payload), 64, 0x4242)
		var flags uint8
		if part.more {
			flags = packet.IPv4FlagMF
		}
		packet.IPv4(f).SetFlagsFragOff(flags, uint16(part.off/8))
		packet.IPv4(f).UpdateChecksum()
		copy(f[20:], part.payload)
		frags = append(frags, f)
	}
	if err := out.Write(frags); err != nil {
		t.Fatal(err)
	}
	stop := time.AfterFunc(10*time.Second, func() { raw.Close() })
	defer stop.Stop()
	rb := [][]byte{make([]byte, 4096)}
	sizes := []int{0}
	if _, err := raw.Read(rb, sizes, 0); err != nil {
		t.Fatalf("raw socket: %v (the reassembled packet did not arrive)", err)
	}
	if got := rb[0][:sizes[0]]; string(got[20:]) != string(whole[20:]) {
		t.Errorf("raw socket got %d bytes, not the reassembled ESP packet of %d", len(got), len(whole))
	}
	frames := make([][]byte, 8)
	if k, err := s.Read(frames, 100*time.Millisecond); err != nil || k != 0 {
		t.Errorf("XSK read %d frames (%v), want none: fragments are for the kernel", k, err)
	}
}

// TestCloseDetaches: the interface shows the program while it is attached
// and not after Close, in either mode, so a test or a run that ends leaves
// no program behind.
func TestCloseDetaches(t *testing.T) {
	p := newPair(t)
	for _, generic := range []bool{false, true} {
		var prog *Program
		in(t, p.rcv, func() (err error) { prog, err = Attach(p.rcvIdx, Options{Generic: generic}); return err })
		t.Cleanup(func() { prog.Close() })
		if out := p.rcv.MustRun("ip", "-d", "link", "show", "dev", "veth0"); !strings.Contains(out, "prog/xdp") {
			t.Fatalf("%v: no XDP program on the interface:\n%s", prog.Mode(), out)
		}
		prog.Close()
		if out := p.rcv.MustRun("ip", "-d", "link", "show", "dev", "veth0"); strings.Contains(out, "prog/xdp") {
			t.Fatalf("%v: the program is still attached after Close:\n%s", prog.Mode(), out)
		}
	}
}
