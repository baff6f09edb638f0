package conn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

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
