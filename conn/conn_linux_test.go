package conn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/internal/benchtest"
	"github.com/goipsec/goipsec/internal/testenv"

	"github.com/goipsec/goipsec/sa"
)

// TestUDPBatchLoopback sends runs of equal-sized datagrams (which Write
// coalesces with UDP_SEGMENT and the kernel may coalesce again with UDP_GRO)
// and checks each arrives whole, in order, with the right sender.
func TestUDPBatchLoopback(t *testing.T) {
	a, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	gso, gro := a.Offloads()
	t.Logf("GSO %v, GRO %v", gso, gro)
	var sent [][]byte
	for i := range 100 {
		n := 1000
		if i%40 == 39 {
			n = 300 // a short one ends a run
		}
		p := bytes.Repeat([]byte{byte(i)}, n)
		sent = append(sent, p)
	}
	if err := a.Write(sent, b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, UDPBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 16+65535)
	}
	sizes := make([]int, len(bufs))
	addrs := make([]netip.AddrPort, len(bufs))
	var got int
	deadline := time.Now().Add(5 * time.Second)
	for got < len(sent) && time.Now().Before(deadline) {
		n, err := b.Read(bufs, sizes, addrs, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if addrs[i] != a.LocalAddr() {
				t.Fatalf("sender %v, want %v", addrs[i], a.LocalAddr())
			}
			if !bytes.Equal(bufs[i][16:16+sizes[i]], sent[got]) {
				t.Fatalf("datagram %d: got %d bytes of %x", got, sizes[i], bufs[i][16])
			}
			got++
		}
	}
	if got != len(sent) {
		t.Fatalf("received %d of %d", got, len(sent))
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := a.Write(sent[:10], b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 10; {
			k, err := b.Read(bufs, sizes, addrs, 16)
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
	b.Close()
	if _, err := b.Read(bufs, sizes, addrs, 16); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
}

// TestRawLoopback sends ESP-protocol packets with our own IPv4 and IPv6
// headers through raw sockets on the loopback and checks the header comes
// back as sent, the DSCP and ECN bits included (the IPv6 header is rebuilt
// with the traffic class of IPV6_TCLASS: RFC 6040, Section 4.2 needs the
// outer ECN field). It needs CAP_NET_RAW.
func TestRawLoopback(t *testing.T) {
	for _, v := range []int{4, 6} {
		r, err := ListenRaw(v, sa.ESP, DefaultMark)
		if errors.Is(err, os.ErrPermission) || err != nil && (bytes.Contains([]byte(err.Error()), []byte("not permitted"))) {
			testenv.Missing(t, "raw sockets need CAP_NET_RAW: "+err.Error())
		}
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var pkt []byte
		if v == 4 {
			pkt = []byte{0x45, 0xb9, 0, 28, 0, 1, 0, 0, 64, 50, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
				0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}
		} else {
			pkt = make([]byte, 48)
			pkt[0], pkt[1] = 0x6b, 0x90 // traffic class 0xb9: DSCP EF, ECT(1)
			pkt[5] = 8
			pkt[6] = 50
			pkt[7] = 64
			pkt[23], pkt[39] = 1, 1 // ::1 -> ::1
			copy(pkt[40:], []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1})
		}
		if err := r.Write([][]byte{pkt}); err != nil {
			t.Fatal(err)
		}
		bufs := [][]byte{make([]byte, 4096)}
		sizes := []int{0}
		for {
			n, err := r.Read(bufs, sizes, 16)
			if err != nil || n != 1 {
				t.Fatal(n, err)
			}
			got := bufs[0][16 : 16+sizes[0]]
			if !bytes.HasSuffix(got, pkt[len(pkt)-8:]) {
				continue // other ESP traffic on the host
			}
			if v == 4 {
				if got[1] != pkt[1] || got[9] != 50 || !bytes.Equal(got[12:20], pkt[12:20]) || len(got) != len(pkt) {
					t.Errorf("IPv4: got %x, sent %x", got, pkt)
				}
			} else if !bytes.Equal(got[4:], pkt[4:]) || r.hdrincl && !bytes.Equal(got[:4], pkt[:4]) {
				// Without IPV6_HDRINCL the kernel wrote traffic class 0.
				t.Errorf("IPv6: got %x, sent %x", got, pkt)
			}
			break
		}
	}
}

// TestWriteFromSource is the socket half of the regression test of issue
// 8's first daemon bug: the NAT-T socket (port 4500) and the IKE socket
// (port 500) are bound to every address, so a datagram leaves with the
// source address the routing table prefers (127.0.0.1 towards 127.0.0.1)
// unless the socket is told another: UDPConn.WriteFrom and IKEConn.WriteTo
// must leave from the address asked for (127.0.0.2, also local on the
// loopback), on a dual-stack and on an IPv4-only socket. IKEConn.WriteTo
// used to lose an IPv4 source in x/net/ipv6's control message.
func TestWriteFromSource(t *testing.T) {
	type writeFrom func(b []byte, from, to netip.AddrPort) error
	for _, bind := range []string{"udp [::]:0", "udp 0.0.0.0:0", "ike"} {
		t.Run(bind, func(t *testing.T) {
			var send writeFrom
			if bind == "ike" {
				k, err := ListenIKE(0, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer k.Close()
				send = k.WriteTo
			} else {
				a, err := ListenUDP(netip.MustParseAddrPort(bind[4:]), 0)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Close()
				send = a.WriteFrom
			}
			b, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			bufs := [][]byte{make([]byte, 2048)}
			sizes, addrs := make([]int, 1), make([]netip.AddrPort, 1)
			recvFrom := func() netip.Addr {
				if _, err := b.Read(bufs, sizes, addrs, 0); err != nil {
					t.Fatal(err)
				}
				return addrs[0].Addr()
			}
			// An unspecified source leaves it to the routing table.
			if err := send([]byte("any"), netip.AddrPortFrom(netip.IPv4Unspecified(), 4500), b.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if got := recvFrom(); got != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("unspecified source: from %v, want the routing table's 127.0.0.1", got)
			}
			src := netip.MustParseAddr("127.0.0.2")
			if err := send([]byte("chosen"), netip.AddrPortFrom(src, 4500), b.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if got := recvFrom(); got != src || string(bufs[0][:sizes[0]]) != "chosen" {
				t.Errorf("%q from %v, want %q from %v", bufs[0][:sizes[0]], got, "chosen", src)
			}
		})
	}
}

// TestRawConcurrentWrites writes from several goroutines at once on one raw
// socket (the data plane's send lanes do) over the loopback and checks that
// every packet arrives and each writer's packets keep their order, for IPv4
// and IPv6, and that a warm Write allocates nothing.
func TestRawConcurrentWrites(t *testing.T) {
	const writers, per = 4, 50
	for _, v := range []int{4, 6} {
		r, err := ListenRaw(v, sa.ESP, DefaultMark)
		if err != nil && bytes.Contains([]byte(err.Error()), []byte("not permitted")) {
			testenv.Missing(t, "raw sockets need CAP_NET_RAW: "+err.Error())
		}
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// A random marker tells this test's packets from other ESP
		// traffic on the loopback.
		marker := uint32(time.Now().UnixNano())
		pkt := func(w, i int) []byte {
			var p []byte
			if v == 4 {
				p = []byte{0x45, 0, 0, 32, 0, 1, 0, 0, 64, 50, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}
			} else {
				p = make([]byte, 40)
				p[0], p[5], p[6], p[7] = 0x60, 12, 50, 64
				p[23], p[39] = 1, 1 // ::1 -> ::1
			}
			return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(p, marker), uint32(w)), uint32(i))
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i += 10 {
					var batch [][]byte
					for j := i; j < i+10; j++ {
						batch = append(batch, pkt(w, j))
					}
					if err := r.Write(batch); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		next := make([]int, writers)
		bufs := make([][]byte, RawBatchSize)
		for i := range bufs {
			bufs[i] = make([]byte, 256)
		}
		sizes := make([]int, len(bufs))
		done := make(chan struct{})
		go func() {
			wg.Wait()
			close(done)
		}()
		for got := 0; got < writers*per; {
			n, err := r.Read(bufs, sizes, 16)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				p := bufs[i][16 : 16+sizes[i]]
				if len(p) < 12 || binary.BigEndian.Uint32(p[len(p)-12:]) != marker {
					continue
				}
				w, seq := int(binary.BigEndian.Uint32(p[len(p)-8:])), int(binary.BigEndian.Uint32(p[len(p)-4:]))
				if w >= writers || seq != next[w] {
					t.Fatalf("IPv%d: writer %d packet %d arrived, want packet %d", v, w, seq, next[w])
				}
				next[w]++
				got++
			}
		}
		<-done
		one := [][]byte{pkt(0, per)}
		if a := testing.AllocsPerRun(100, func() { r.Write(one) }); a != 0 {
			t.Errorf("IPv%d: Write allocates %v times", v, a)
		}
	}
}

// listenUDP opens a UDPConn bound to bind, closed when tb ends.
func listenUDP(tb testing.TB, bind string) *UDPConn {
	tb.Helper()
	u, err := ListenUDP(netip.MustParseAddrPort(bind), 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { u.Close() })
	return u
}

// readBufs returns UDPBatchSize buffers of 64 KiB for Read, with their
// sizes and addresses.
func readBufs() ([][]byte, []int, []netip.AddrPort) {
	bufs := make([][]byte, UDPBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	return bufs, make([]int, len(bufs)), make([]netip.AddrPort, len(bufs))
}

// TestWriteBatchSource is the socket half of the regression test of ESP
// in UDP leaving from the routing table's address instead of the SA's: the
// data plane's batched sends must leave from the address asked for
// (127.0.0.2, also local on the loopback, where the routing table picks
// 127.0.0.1), single datagrams and segmentation-offload runs alike, on a
// dual-stack and on an IPv4-only socket, with offload on and off; an
// unspecified source or one of the other IP version leaves the choice to
// the routing table. A warm send from a source allocates nothing.
func TestWriteBatchSource(t *testing.T) {
	for _, bind := range []string{"[::]:0", "0.0.0.0:0"} {
		for _, gso := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/gso=%v", bind, gso), func(t *testing.T) {
				a, b := listenUDP(t, bind), listenUDP(t, "127.0.0.1:0")
				if on, _ := a.Offloads(); gso && !on {
					testenv.Missing(t, "the kernel has no UDP_SEGMENT")
				}
				a.gso.Store(gso)
				bufs, sizes, addrs := readBufs()
				// recv reads n datagrams and checks their sender and size.
				recv := func(what string, n, size int, from netip.Addr) {
					t.Helper()
					for got := 0; got < n; {
						k, err := b.Read(bufs, sizes, addrs, 0)
						if err != nil {
							t.Fatal(err)
						}
						for i := range k {
							if addrs[i].Addr() != from || sizes[i] != size {
								t.Fatalf("%s: datagram %d: %d bytes from %v, want %d from %v", what, got+i, sizes[i], addrs[i].Addr(), size, from)
							}
						}
						got += k
					}
				}
				one := [][]byte{bytes.Repeat([]byte{1}, 100)}
				run := make([][]byte, 40) // one UDP_SEGMENT send with offload
				for i := range run {
					run[i] = bytes.Repeat([]byte{2}, 1000)
				}
				lo, second := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
				for _, c := range []struct {
					what string
					src  netip.Addr
					want netip.Addr
				}{
					{"zero source", netip.Addr{}, lo},
					{"unspecified source", netip.IPv4Unspecified(), lo},
					{"IPv6 source to an IPv4 peer", netip.IPv6Loopback(), lo},
					{"127.0.0.2", second, second},
					{"IPv4-mapped 127.0.0.2", netip.AddrFrom16(second.As16()), second},
				} {
					if err := a.WriteBatchTOS(one, c.src, 0, b.LocalAddr()); err != nil {
						t.Fatalf("%s: %v", c.what, err)
					}
					recv(c.what+", one datagram", 1, 100, c.want)
					if err := a.WriteBatchTOS(run, c.src, 0, b.LocalAddr()); err != nil {
						t.Fatalf("%s: %v", c.what, err)
					}
					recv(c.what+", a run", len(run), 1000, c.want)
				}
				if on, _ := a.Offloads(); on != gso {
					t.Errorf("segmentation offload %v after the sends, want %v", on, gso)
				}
				allocs := testing.AllocsPerRun(50, func() {
					if err := a.WriteBatchTOS(run, second, 0, b.LocalAddr()); err != nil {
						t.Fatal(err)
					}
					recv("allocation run", len(run), 1000, second)
				})
				if allocs != 0 {
					t.Errorf("%v allocations per batch", allocs)
				}
			})
		}
	}
}

// TestWriteBatchForeignSource sends a segmentation-offload run from an
// address that is not local (192.0.2.99 to 127.0.0.1, 2001:db8::99 to ::1;
// IPV6_PKTINFO then fails with EINVAL, an errno that also means "cannot
// segment"): the send fails, and offload stays on for the socket's other
// SAs.
func TestWriteBatchForeignSource(t *testing.T) {
	for _, c := range [][2]string{{"192.0.2.99", "127.0.0.1:9"}, {"2001:db8::99", "[::1]:9"}} {
		a := listenUDP(t, "[::]:0")
		gso, _ := a.Offloads()
		run := [][]byte{make([]byte, 500), make([]byte, 500)}
		err := a.WriteBatchTOS(run, netip.MustParseAddr(c[0]), 0, netip.MustParseAddrPort(c[1]))
		if err == nil {
			t.Fatalf("a send from %s to %s succeeded", c[0], c[1])
		}
		t.Log(err)
		if on, _ := a.Offloads(); on != gso {
			t.Errorf("from %s: segmentation offload %v after a failed send, was %v", c[0], on, gso)
		}
	}
}

// TestSendCmsgSpace checks that a message's control buffer holds the most
// a send puts there: UDP_SEGMENT, IPV6_PKTINFO (or IP_PKTINFO) and
// IPV6_TCLASS (or IP_TOS).
func TestSendCmsgSpace(t *testing.T) {
	if n := unix.CmsgSpace(2) + max(unix.CmsgSpace(unix.SizeofInet6Pktinfo), unix.CmsgSpace(unix.SizeofInet4Pktinfo)) + unix.CmsgSpace(4); n > cmsgSpace {
		t.Fatalf("UDP_SEGMENT, PKTINFO and TOS need %d bytes, cmsgSpace is %d", n, cmsgSpace)
	}
	// The messages parse back as written.
	m := newMmsg(1)
	src := netip.MustParseAddr("127.0.0.2")
	m.prepSend(0, make([]byte, 10), src, netip.MustParseAddrPort("127.0.0.1:9"), true, 1400, 0xb9)
	ctl := m.cmsgs[0][:m.hdrs[0].Hdr.Controllen]
	var seen []string
	for {
		level, typ, data, rest, ok := nextCmsg(ctl)
		if !ok {
			break
		}
		switch {
		case level == unix.SOL_UDP && typ == unix.UDP_SEGMENT:
			seen = append(seen, fmt.Sprintf("UDP_SEGMENT %d", *(*uint16)(unsafe.Pointer(&data[0]))))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO:
			seen = append(seen, fmt.Sprintf("IPV6_PKTINFO %v", netip.AddrFrom16((*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])).Addr).Unmap()))
		case level == unix.IPPROTO_IP && typ == unix.IP_TOS:
			seen = append(seen, fmt.Sprintf("IP_TOS %#x", *(*int32)(unsafe.Pointer(&data[0]))))
		}
		ctl = rest
	}
	if want := []string{"UDP_SEGMENT 1400", "IPV6_PKTINFO 127.0.0.2", "IP_TOS 0xb9"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("control messages %q, want %q", seen, want)
	}
}

// BenchmarkWriteSource measures what the source address costs a send: a
// batch of datagrams of 1,400 bytes to a loopback socket (which another
// goroutine drains) through Write (the routing table's source) and through
// WriteBatchTOS with 127.0.0.2 (IP_PKTINFO beside UDP_SEGMENT), one run
// after the other in each round of -count. Batches of 64 go out as one
// segmentation-offload send, batches of 1 as a plain one.
func BenchmarkWriteSource(b *testing.B) {
	for _, n := range []int{1, 64} {
		for _, src := range []string{"routing", "pktinfo"} {
			b.Run(fmt.Sprintf("batch=%d/%s", n, src), func(b *testing.B) {
				a, r := listenUDP(b, "[::]:0"), listenUDP(b, "127.0.0.1:0")
				done := make(chan struct{})
				go func() {
					defer close(done)
					bufs, sizes, addrs := readBufs()
					for {
						if _, err := r.Read(bufs, sizes, addrs, 0); err != nil {
							return
						}
					}
				}()
				defer func() { r.Close(); <-done }()
				batch := make([][]byte, n)
				for i := range batch {
					batch[i] = make([]byte, 1400)
				}
				var from netip.Addr
				if src == "pktinfo" {
					from = netip.MustParseAddr("127.0.0.2")
				}
				b.SetBytes(int64(n * 1400))
				b.ReportAllocs()
				for b.Loop() {
					if err := a.WriteBatchTOS(batch, from, 0, r.LocalAddr()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestWriteTOS checks that the TOS or traffic class WriteBatchTOS sends is
// the one ReadTOS reports, for IPv4, IPv6, an IPv4 destination of a
// dual-stack socket (which takes IP_TOS, not IPV6_TCLASS) and a dual-stack
// receiver (which reports IP_TOS), with batches of one datagram and of 16
// equal ones, with segmentation offload (one UDP_SEGMENT send, which the
// receiver's UDP_GRO keeps coalesced on loopback: every segment reports
// the value) and without; that a datagram sent with Write reports 0; and
// that a send and receive with a TOS allocate nothing.
func TestWriteTOS(t *testing.T) {
	for _, c := range []struct{ name, from, to, dst string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "[::1]:0", "[::1]:0", "::1"},
		{"dual-stack", "[::]:0", "127.0.0.1:0", "127.0.0.1"},
		{"dual-stack-receiver", "127.0.0.1:0", "[::]:0", "127.0.0.1"},
	} {
		for _, gso := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/gso=%v", c.name, gso), func(t *testing.T) {
				a, r := listenUDP(t, c.from), listenUDP(t, c.to)
				if on, _ := a.Offloads(); gso && !on {
					t.Skip("no segmentation offload")
				}
				a.gso.Store(gso)
				if !r.tos {
					t.Fatal("IP_RECVTOS or IPV6_RECVTCLASS refused")
				}
				dst := netip.AddrPortFrom(netip.MustParseAddr(c.dst), r.LocalAddr().Port())
				bufs, sizes, addrs := readBufs()
				tos := make([]uint8, len(bufs))
				recv := func(n int, want uint8) (reads int) {
					t.Helper()
					for got := 0; got < n; reads++ {
						k, err := r.ReadTOS(bufs, sizes, addrs, tos, 0)
						if err != nil {
							t.Fatal(err)
						}
						for i := range k {
							if sizes[i] != 1000 || tos[i] != want {
								t.Fatalf("batch of %d: datagram of %d bytes with TOS %#x, want 1000 and %#x", n, sizes[i], tos[i], want)
							}
						}
						got += k
					}
					return reads
				}
				for _, n := range []int{1, 16} {
					out := make([][]byte, n)
					for i := range out {
						out[i] = make([]byte, 1000)
					}
					for _, want := range []uint8{0x03, 0xb8 | 0x02, 0x01, 0} {
						var err error
						if want == 0 {
							err = a.Write(out, dst)
						} else {
							err = a.WriteBatchTOS(out, netip.Addr{}, want, dst)
						}
						if err != nil {
							t.Fatal(err)
						}
						if reads := recv(n, want); gso && n > 1 && reads > 1 {
							t.Logf("batch of %d, TOS %#x: %d reads, not coalesced", n, want, reads)
						}
					}
					allocs := testing.AllocsPerRun(50, func() {
						if err := a.WriteBatchTOS(out, netip.Addr{}, 0x02, dst); err != nil {
							t.Fatal(err)
						}
						recv(n, 0x02)
					})
					if allocs != 0 {
						t.Errorf("batch of %d: %v allocations", n, allocs)
					}
				}
			})
		}
	}
}

// BenchmarkWriteTOS compares, interleaved in one run (benchtest.OldNew),
// a send without a TOS (WriteBatchTOS with tos 0: the path as it was before
// WriteBatchTOS, no IP_TOS message) with one of constant TOS ECT(0)
// (WriteBatchTOS, IP_TOS beside UDP_SEGMENT), for batches of 1 and 64
// datagrams of 1,400 bytes to a loopback socket that another goroutine
// drains. Before timing, it sends 64 datagrams each way to a receiver with
// UDP_GRO and reports how many reads they took (old-reads, new-reads): 1
// when the 64 left as one segmentation-offload send and stayed coalesced.
func BenchmarkWriteTOS(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			a, r := listenUDP(b, "[::]:0"), listenUDP(b, "127.0.0.1:0")
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = make([]byte, 1400)
			}
			old := func(int) error { return a.WriteBatchTOS(batch, netip.Addr{}, 0, r.LocalAddr()) }
			tos := func(int) error { return a.WriteBatchTOS(batch, netip.Addr{}, 0x02, r.LocalAddr()) }
			bufs, sizes, addrs := readBufs()
			run := make([][]byte, 64)
			for i := range run {
				run[i] = make([]byte, 1400)
			}
			for _, c := range []struct {
				metric string
				tos    uint8
			}{{"old-reads", 0}, {"new-reads", 0x02}} {
				if err := a.WriteBatchTOS(run, netip.Addr{}, c.tos, r.LocalAddr()); err != nil {
					b.Fatal(err)
				}
				reads := 0
				for got := 0; got < len(run); reads++ {
					k, err := r.Read(bufs, sizes, addrs, 0)
					if err != nil {
						b.Fatal(err)
					}
					got += k
				}
				defer b.ReportMetric(float64(reads), c.metric) // after b.Loop, which clears metrics
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := r.Read(bufs, sizes, addrs, 0); err != nil {
						return
					}
				}
			}()
			defer func() { r.Close(); <-done }()
			benchtest.OldNew(b, 8, 0, nil, old, tos)
		})
	}
}
