package ah

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// TestRoundTrip seals and opens every variant with every AH suite, with and
// without ESN, and checks that Open gives back exactly the packet sealed.
func TestRoundTrip(t *testing.T) {
	for _, s := range suites(t) {
		for _, v := range variants {
			for _, esn := range []bool{false, true} {
				name := s.Name + "/" + v.name
				if esn {
					name += "/esn"
				}
				t.Run(name, func(t *testing.T) {
					o, in := pair(t, v.config(integ(t, s), esn))
					for i := range 3 {
						p := v.pkt()
						p[len(p)-1] = byte(i)
						ah := seal(t, o, p)
						if got, want := len(ah)-len(p), o.ahLen(ahV6(v))+outerLen(v); got != want {
							t.Fatalf("sealed packet grew by %d bytes, want %d", got, want)
						}
						got, err := open(in, ah)
						if err != nil {
							t.Fatalf("Open packet %d: %v", i, err)
						}
						if !bytes.Equal(got, p) {
							t.Fatalf("Open packet %d:\n got % x\nwant % x", i, got, p)
						}
					}
					if n := o.Meter().Packets(); n != 3 {
						t.Errorf("outbound meter: %d packets, want 3", n)
					}
					if n := in.Meter().Packets(); n != 3 {
						t.Errorf("inbound meter: %d packets, want 3", n)
					}
					if ob, ib := o.Meter().Bytes(), in.Meter().Bytes(); ob != ib || ob != 3*uint64(len(v.pkt())) {
						t.Errorf("meters count %d and %d bytes, want %d", ob, ib, 3*len(v.pkt()))
					}
				})
			}
		}
	}
}

// ahV6 reports whether the AH header of variant v is aligned for IPv6.
func ahV6(v variant) bool {
	if v.mode == sa.Tunnel {
		return v.outer6
	}
	return v.pkt()[0]>>4 == 6
}

// outerLen returns the tunnel-mode outer header length of v.
func outerLen(v variant) int {
	switch {
	case v.mode == sa.Transport:
		return 0
	case v.outer6:
		return 40
	}
	return 20
}

// TestAHLength checks the AH header length of every suite against RFC 4302,
// Section 2.6: 12 fixed bytes plus the ICV (RFC 2404, Section 2; RFC 4868,
// Section 2.1.1; RFC 3566, Section 4.1), padded to 4 bytes on IPv4 and to 8
// bytes on IPv6.
func TestAHLength(t *testing.T) {
	want := map[string][2]int{ // IPv4, IPv6
		"sha1":    {24, 24},
		"sha256":  {28, 32},
		"sha384":  {36, 40},
		"sha512":  {44, 48},
		"aesxcbc": {24, 24},
	}
	for _, s := range suites(t) {
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("no expected length for suite %s", s.Name)
			continue
		}
		for i, v6 := range []bool{false, true} {
			c := Config{Mode: sa.Transport, Integrity: integ(t, s)}
			o, in := pair(t, c)
			var p []byte
			if v6 {
				p = ipv6Pkt(addr6A, addr6B, 17, nil, payload(40))
			} else {
				p = ipv4Pkt(addrA, addrB, 17, nil, payload(40))
			}
			ah := seal(t, o, p)
			off := 20
			if v6 {
				off = 40
			}
			if got := (int(ah[off+1]) + 2) * 4; got != w[i] {
				t.Errorf("%s v6=%v: AH length %d, want %d", s.Name, v6, got, w[i])
			}
			if got := len(ah) - len(p); got != w[i] {
				t.Errorf("%s v6=%v: packet grew by %d, want %d", s.Name, v6, got, w[i])
			}
			// The padding is sent as zeros (RFC 4302, Section 3.3.3.2.1
			// leaves its value to the sender).
			icvEnd := off + 12 + integ(t, s).ICVLen()
			if pad := ah[icvEnd : off+w[i]]; !bytes.Equal(pad, make([]byte, len(pad))) {
				t.Errorf("%s v6=%v: padding % x", s.Name, v6, pad)
			}
			if _, err := open(in, ah); err != nil {
				t.Errorf("%s v6=%v: Open: %v", s.Name, v6, err)
			}
			if head, _ := o.Overhead(); head != w[1] {
				t.Errorf("%s: transport Overhead %d, want %d", s.Name, head, w[1])
			}
		}
	}
}

// TestKnownAnswer checks sealed packets against an ICV computed here with
// crypto/hmac over a copy of the packet massaged by hand, following RFC
// 4302, Section 3.3.3 field by field, independently of the package's code.
func TestKnownAnswer(t *testing.T) {
	t.Run("ipv4-options-sha256", func(t *testing.T) {
		s, err := transform.ParseAH("sha256")
		if err != nil {
			t.Fatal(err)
		}
		key := testKey(32, 0x11)
		i, err := s.NewAH(key)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := pair(t, Config{Mode: sa.Transport, Integrity: i, SPI: 0x01020304, StartSeq: 41})
		p := ipv4Pkt(addrA, addrB, 17, v4Options, payload(64))
		got := seal(t, o, p)

		// Expected packet: header (60 bytes with options), AH of 28 bytes
		// (RFC 4302, Section 2.2: Payload Len 28/4-2 = 5), payload.
		want := append([]byte(nil), p[:60]...)
		binary.BigEndian.PutUint16(want[2:], uint16(len(p)+28))
		want[9] = 51
		want[10], want[11] = 0, 0
		binary.BigEndian.PutUint16(want[10:], csum(want[:60]))
		want = append(want, 17, 5, 0, 0, 1, 2, 3, 4, 0, 0, 0, 42)
		want = append(want, make([]byte, 16)...)
		want = append(want, p[60:]...)

		// Massage: TOS, flags+offset, TTL, checksum (Section 3.3.3.1.1.1);
		// Record Route at 21..31 and Time Stamp at 48..59 zeroed whole
		// (Appendix A1); NOP, Security and Router Alert kept; ICV zero.
		m := append([]byte(nil), want...)
		for _, j := range []int{1, 6, 7, 8, 10, 11} {
			m[j] = 0
		}
		clear(m[21:32])
		clear(m[48:60])
		mac := hmac.New(sha256.New, key)
		mac.Write(m)
		copy(want[72:88], mac.Sum(nil)[:16]) // RFC 4868, Section 2.6: 128-bit truncation
		if !bytes.Equal(got, want) {
			t.Fatalf("sealed:\n got % x\nwant % x", got, want)
		}
	})
	t.Run("ipv6-hbh-sha256-esn", func(t *testing.T) {
		s, err := transform.ParseAH("sha256")
		if err != nil {
			t.Fatal(err)
		}
		key := testKey(32, 0x22)
		i, err := s.NewAH(key)
		if err != nil {
			t.Fatal(err)
		}
		// ESN: sequence number 2^32+5; the high half 1 is appended to the
		// ICV input (RFC 4302, Section 3.3.3.2.1 and Appendix B).
		o, _ := pair(t, Config{Mode: sa.Transport, Integrity: i, SPI: 0xa0b0c0d0, ESN: true, StartSeq: 1<<32 + 4})
		p := ipv6Pkt(addr6A, addr6B, 0, v6HopByHop(17), payload(48))
		got := seal(t, o, p)

		// Expected: base header, Hop-by-Hop (next header now 51), AH of
		// 32 bytes: 12 + 16-byte ICV + 4 bytes of padding for 64-bit
		// alignment (Section 2.6), Payload Len 32/4-2 = 6.
		want := append([]byte(nil), p[:56]...)
		binary.BigEndian.PutUint16(want[4:], uint16(len(p)-40+32))
		want[40] = 51
		want = append(want, 17, 6, 0, 0, 0xa0, 0xb0, 0xc0, 0xd0, 0, 0, 0, 5)
		want = append(want, make([]byte, 20)...)
		want = append(want, p[56:]...)

		// Massage: traffic class, flow label, hop limit (Section
		// 3.3.3.1.2.1); the data of option 0x3e, which has the
		// may-change bit (Section 3.3.3.1.2.2), at 48..51.
		m := append([]byte(nil), want...)
		m[0] = 0x60
		m[1], m[2], m[3] = 0, 0, 0
		m[7] = 0
		clear(m[48:52])
		mac := hmac.New(sha256.New, key)
		mac.Write(m)
		mac.Write([]byte{0, 0, 0, 1})
		copy(want[68:84], mac.Sum(nil)[:16])
		if !bytes.Equal(got, want) {
			t.Fatalf("sealed:\n got % x\nwant % x", got, want)
		}
	})
	t.Run("tunnel-ipv4-sha1", func(t *testing.T) {
		s, err := transform.ParseAH("sha1")
		if err != nil {
			t.Fatal(err)
		}
		key := testKey(20, 0x33)
		i, err := s.NewAH(key)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := pair(t, Config{Integrity: i, SPI: 0x1001, Local: addrA, Remote: addrB, TTL: 33})
		inner := ipv4Pkt(in4S, in4D, 17, nil, payload(30))
		got := seal(t, o, inner)

		// Outer header: RFC 791 layout, TOS and DF copied from the inner
		// header (RFC 4301, Section 5.1.2.1), ID = low bits of seq 1.
		want := make([]byte, 20)
		want[0] = 0x45
		want[1] = 0xb8
		binary.BigEndian.PutUint16(want[2:], uint16(20+24+len(inner)))
		binary.BigEndian.PutUint16(want[4:], 1)
		want[6] = 0x40
		want[8] = 33
		want[9] = 51
		a, b := addrA.As4(), addrB.As4()
		copy(want[12:], a[:])
		copy(want[16:], b[:])
		binary.BigEndian.PutUint16(want[10:], csum(want))
		want = append(want, 4, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 1)
		want = append(want, make([]byte, 12)...)
		want = append(want, inner...)
		m := append([]byte(nil), want...)
		for _, j := range []int{1, 6, 7, 8, 10, 11} {
			m[j] = 0
		}
		mac := hmac.New(sha1.New, key)
		mac.Write(m)
		copy(want[32:44], mac.Sum(nil)[:12]) // RFC 2404, Section 2: 96 bits
		if !bytes.Equal(got, want) {
			t.Fatalf("sealed:\n got % x\nwant % x", got, want)
		}
	})
}

// outcome is what a one-bit change at some offset of a sealed packet must
// lead to.
type outcome uint8

const (
	expectBadICV outcome = iota // immutable: the ICV must fail
	expectOK                    // mutable: zeroed for the ICV, so it opens
	expectError                 // structural: some drop, not necessarily bad_icv
	dontCare                    // e.g. an option type byte: either may be right
)

// classify returns, for each byte of the sealed packet p (AH at ahOff), what
// flipping its lowest bit must do, from RFC 4302, Section 3.3.3.1 and
// Appendix A.
func classify(p []byte, ahOff int) []outcome {
	oc := make([]outcome, len(p))
	if p[0]>>4 == 4 {
		for _, j := range []int{1, 8, 10, 11} { // TOS, TTL, checksum
			oc[j] = expectOK
		}
		// IHL, total length, a fragment offset, protocol.
		for _, j := range []int{0, 2, 3, 6, 7, 9} {
			oc[j] = expectError
		}
		for i := 20; i < ahOff; {
			t := p[i]
			if t == 0 {
				break
			}
			if t == 1 {
				i++
				continue
			}
			l := int(p[i+1])
			oc[i], oc[i+1] = dontCare, dontCare
			if t != 130 && t != 133 && t != 134 && t != 148 && t != 149 {
				for j := i + 2; j < i+l; j++ {
					oc[j] = expectOK
				}
			}
			i += l
		}
	} else {
		for _, j := range []int{0, 1, 2, 3, 7} { // traffic class, flow label, hop limit
			oc[j] = expectOK
		}
		oc[4], oc[5], oc[6] = expectError, expectError, expectError
		nh, off := p[6], 40
		for off < ahOff {
			oc[off], oc[off+1] = expectError, expectError // next header, length
			end := off + (int(p[off+1])+1)*8
			if nh == 43 {
				oc[off+3] = expectError // Segments Left
			} else {
				for i := off + 2; i < end; {
					if p[i] == 0 {
						i++
						continue
					}
					l := int(p[i+1])
					oc[i], oc[i+1] = dontCare, dontCare
					if p[i]&0x20 != 0 {
						for j := i + 2; j < i+2+l; j++ {
							oc[j] = expectOK
						}
					}
					i += 2 + l
				}
			}
			nh, off = p[off], end
		}
	}
	oc[ahOff+1] = expectError // Payload Len
	for j := ahOff + 4; j < ahOff+8; j++ {
		oc[j] = expectError // SPI: unknown_spi
	}
	return oc
}

// ahOffset returns the offset of the AH header in p, walking extension
// headers the test's own way.
func ahOffset(p []byte) int {
	if p[0]>>4 == 4 {
		return int(p[0]&15) * 4
	}
	nh, off := p[6], 40
	for nh != 51 {
		nh, off = p[off], off+(int(p[off+1])+1)*8
	}
	return off
}

// TestMutability flips one bit at every offset of sealed packets of every
// variant and suite: mutable fields must not matter, immutable ones must
// fail the ICV, and structural ones must be dropped.
func TestMutability(t *testing.T) {
	for _, s := range suites(t) {
		for _, v := range variants {
			t.Run(s.Name+"/"+v.name, func(t *testing.T) {
				c := v.config(integ(t, s), false)
				c.StartSeq = 5 // flipping bit 0 of seq 6 gives 7, not 0
				o, _ := pair(t, c)
				p := seal(t, o, v.pkt())
				oc := classify(p, ahOffset(p))
				for j := range p {
					q := append([]byte(nil), p...)
					q[j] ^= 1
					_, in := pair(t, c)
					_, err := open(in, q)
					switch oc[j] {
					case expectOK:
						if err != nil {
							t.Errorf("offset %d (mutable): %v", j, err)
						}
					case expectBadICV:
						if err != sa.DropBadICV {
							t.Errorf("offset %d (immutable): %v, want %v", j, err, sa.DropBadICV)
						}
					case expectError:
						var d sa.Drop
						if !errors.As(err, &d) {
							t.Errorf("offset %d (structural): %v, want a drop", j, err)
						}
					}
				}
			})
		}
	}
}

// TestMutableFieldsChanged changes whole mutable fields the way routers do
// (RFC 4302, Section 3.3.3.1) and checks that the packet still opens. The
// ECN field becomes ECT(1), not CE: in tunnel mode CE over the Not-ECT
// inner packet is dropped (RFC 6040, Section 4.2; dataplane.TestEngineWrappersECN).
func TestMutableFieldsChanged(t *testing.T) {
	i := integ(t, suites(t)[1])
	v4 := func(p []byte) {
		p[1] = 0xfd // DSCP 63, ECN ECT(1)
		p[6] &^= 0x40
		p[8] = 1
		ihl := int(p[0]&15) * 4
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], csum(p[:ihl]))
	}
	v6 := func(p []byte) {
		p[0], p[1], p[2], p[3] = 0x6f, 0xdf, 0xff, 0xff // traffic class 0xfd
		p[7] = 1
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			o, in := pair(t, v.config(i, true))
			p := v.pkt()
			q := seal(t, o, p)
			if q[0]>>4 == 4 {
				v4(q)
				if v.name == "transport/4opts" {
					// Record Route and Time Stamp filled in.
					copy(q[24:32], []byte{203, 0, 113, 1, 203, 0, 113, 2})
					q[23] = 12
					copy(q[52:60], []byte{1, 2, 3, 4, 5, 6, 7, 8})
					q[50] = 13
					q[10], q[11] = 0, 0
					binary.BigEndian.PutUint16(q[10:], csum(q[:60]))
				}
			} else {
				v6(q)
				if v.name == "transport/6ext" {
					copy(q[48:52], []byte{1, 2, 3, 4}) // option 0x3e data, Hop-by-Hop
					copy(q[64:68], []byte{5, 6, 7, 8}) // option 0x3e data, Destination Options
				}
			}
			got, err := open(in, q)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if v.mode == sa.Tunnel && !bytes.Equal(got, p) {
				t.Fatalf("inner packet changed")
			}
		})
	}
}

// TestSourceRoute seals a packet with a Loose Source Route, lets two
// routers process it (RFC 791, Section 3.1), and checks that it opens: the
// sender computed the ICV with the final destination in the destination
// field (RFC 4302, Section 3.3.3.1.1.1).
func TestSourceRoute(t *testing.T) {
	for _, typ := range []byte{131, 137} {
		o, in := pair(t, Config{Mode: sa.Transport, Integrity: integ(t, suites(t)[1])})
		r2, b := addrR2.As4(), addrB.As4()
		opts := cat([]byte{1, typ, 11, 4}, r2[:], b[:]) // NOP, route [R2, B]
		p := ipv4Pkt(addrA, addrR1, 6, opts, payload(20))
		q := seal(t, o, p)
		// Unrouted, the pointer says the route is not complete.
		if _, err := pair2open(t, o, q); err != nil {
			t.Fatalf("type %d, before routing: %v", typ, err)
		}
		for _, hop := range []netip.Addr{addrR1, addrR2} {
			ptr := int(q[23])
			a := hop.As4()
			copy(q[16:20], q[20+1+ptr-1:20+1+ptr+3]) // next address becomes the destination
			copy(q[20+1+ptr-1:], a[:])               // recorded: this router's address
			q[23] += 4
			q[8]--
			q[10], q[11] = 0, 0
			binary.BigEndian.PutUint16(q[10:], csum(q[:32]))
		}
		if !bytes.Equal(q[16:20], b[:]) {
			t.Fatalf("routing simulation: destination % x", q[16:20])
		}
		if _, err := open(in, q); err != nil {
			t.Fatalf("type %d, after routing: %v", typ, err)
		}
	}
}

// pair2open opens q with a fresh inbound SA that shares o's key.
func pair2open(t *testing.T, o *Outbound, q []byte) ([]byte, error) {
	in, err := NewInbound(Config{SPI: o.spi, Mode: o.mode, Integrity: o.integ, ESN: o.esn})
	if err != nil {
		t.Fatal(err)
	}
	return open(in, q)
}

// TestTruncated opens every prefix of sealed packets, as they are and with
// the IP length fields made to match: all must be dropped without a panic.
func TestTruncated(t *testing.T) {
	for _, s := range suites(t) {
		for _, v := range variants {
			c := v.config(integ(t, s), true)
			o, _ := pair(t, c)
			p := seal(t, o, v.pkt())
			for n := range len(p) {
				for _, fix := range []bool{false, true} {
					q := append([]byte(nil), p[:n]...)
					if fix && n >= 40 {
						if q[0]>>4 == 4 {
							binary.BigEndian.PutUint16(q[2:], uint16(n))
						} else {
							binary.BigEndian.PutUint16(q[4:], uint16(n-40))
						}
					}
					_, in := pair(t, c)
					if _, err := open(in, q); err == nil {
						t.Fatalf("%s/%s: prefix of %d bytes (fixed %v) opened", s.Name, v.name, n, fix)
					}
				}
			}
		}
	}
}

// TestReplay checks duplicates, packets left of the window, and that a
// forged high sequence number does not move the window.
func TestReplay(t *testing.T) {
	v := variants[0]
	c := v.config(integ(t, suites(t)[1]), false)
	c.ReplayWindow = 64
	o, in := pair(t, c)
	var pkts [][]byte
	for range 200 {
		pkts = append(pkts, seal(t, o, v.pkt()))
	}
	if _, err := open(in, pkts[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := open(in, pkts[0]); err != sa.DropReplay {
		t.Fatalf("duplicate: %v, want replay", err)
	}
	// Forge seq 100000 onto packet 2: the ICV fails and the window, which
	// only moves after the ICV verified (RFC 4302, Section 3.4.3), stays.
	f := append([]byte(nil), pkts[1]...)
	binary.BigEndian.PutUint32(f[20+8:], 100000)
	if _, err := open(in, f); err != sa.DropBadICV {
		t.Fatalf("forged: %v, want bad_icv", err)
	}
	if _, err := open(in, pkts[1]); err != nil {
		t.Fatalf("packet 2 after a forged high seq: %v", err)
	}
	if _, err := open(in, pkts[199]); err != nil {
		t.Fatal(err)
	}
	if _, err := open(in, pkts[2]); err != sa.DropReplay {
		t.Fatalf("left of the window: %v, want replay", err)
	}
	if _, err := open(in, pkts[150]); err != nil {
		t.Fatalf("inside the window: %v", err)
	}
	// Decrypt does not move the window; Accept does, once.
	buf, s, e := place(pkts[160], 0)
	_, _, seq, err := in.Decrypt(buf, s, e)
	if err != nil || seq != 161 {
		t.Fatalf("Decrypt: seq %d, %v", seq, err)
	}
	buf, s, e = place(pkts[160], 0)
	if _, _, seq2, err := in.Decrypt(buf, s, e); err != nil || seq2 != 161 {
		t.Fatalf("second Decrypt: seq %d, %v", seq2, err)
	}
	if err := in.Accept(seq); err != nil {
		t.Fatal(err)
	}
	if err := in.Accept(seq); err != sa.DropReplay {
		t.Fatalf("second Accept: %v", err)
	}
}

// TestSeqExhaustion checks that sequence numbers never cycle (RFC 4302,
// Section 3.3.2) and the soft and hard LimitSeq events.
func TestSeqExhaustion(t *testing.T) {
	for _, esn := range []bool{false, true} {
		var mu sync.Mutex
		var events []sa.Event
		last := uint64(math.MaxUint32)
		if esn {
			last = math.MaxUint64
		}
		c := variants[0].config(integ(t, suites(t)[0]), esn)
		c.StartSeq = last - 3
		c.SeqSoftMargin = 2
		c.OnEvent = func(e sa.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
		o, _ := pair(t, c)
		for i, want := range []uint64{last - 2, last - 1, last} {
			seq, err := o.NextSeq()
			if err != nil || seq != want {
				t.Fatalf("esn=%v NextSeq %d: %d, %v; want %d", esn, i, seq, err, want)
			}
		}
		for range 3 {
			if _, err := o.NextSeq(); err != sa.DropSeqExhausted {
				t.Fatalf("esn=%v: after the last: %v", esn, err)
			}
			buf, s, e := place(variants[0].pkt(), 0)
			if _, _, err := o.Seal(buf, s, e); err != sa.DropSeqExhausted {
				t.Fatalf("esn=%v: Seal after the last: %v", esn, err)
			}
		}
		want := []sa.Event{
			{Protocol: sa.AH, SPI: testSPI, Direction: sa.Outbound, Hard: false, Kind: sa.LimitSeq},
			{Protocol: sa.AH, SPI: testSPI, Direction: sa.Outbound, Hard: true, Kind: sa.LimitSeq},
		}
		if len(events) != 2 || events[0] != want[0] || events[1] != want[1] {
			t.Fatalf("esn=%v events %v, want %v", esn, events, want)
		}
		if !esn {
			buf, s, e := place(variants[0].pkt(), 0)
			if _, _, err := o.SealSeq(buf, s, e, 1<<32); err != sa.DropSeqExhausted {
				t.Fatalf("SealSeq(2^32) without ESN: %v", err)
			}
		}
	}
	if _, err := NewOutbound(Config{SPI: 1, Mode: sa.Transport, Integrity: integ(t, suites(t)[0]), StartSeq: 1 << 32}); err == nil {
		t.Fatal("StartSeq 2^32 without ESN accepted")
	}
}

// TestESNCrossing seals packets across 2^32 with ESN and opens them: the
// receiver infers the high half, which the ICV covers.
func TestESNCrossing(t *testing.T) {
	for _, s := range suites(t) {
		for _, v := range []variant{variants[0], variants[7]} {
			c := v.config(integ(t, s), true)
			c.ReplayWindow = 64
			// The first number must lie left of the window's left edge
			// when the window is fresh (RFC 4303, Appendix A2.2, case B).
			c.StartSeq = 1<<32 - 100
			o, in := pair(t, c)
			for i := range 150 {
				want := c.StartSeq + uint64(i) + 1
				q := seal(t, o, v.pkt())
				buf, st, e := place(q, 0)
				_, _, seq, err := in.Decrypt(buf, st, e)
				if err != nil || seq != want {
					t.Fatalf("%s/%s: packet %d: seq %d, %v; want %d", s.Name, v.name, i, seq, err, want)
				}
				if err := in.Accept(seq); err != nil {
					t.Fatal(err)
				}
			}
			// Without ESN on the receiver, the high half is not in the
			// ICV and a packet past 2^32 fails.
			c.ESN = false
			c.StartSeq = 0
			_, in32 := pair(t, c)
			c.ESN = true
			if _, err := open(in32, seal(t, o, v.pkt())); err != sa.DropBadICV {
				t.Fatalf("%s/%s: ESN packet opened without ESN: %v", s.Name, v.name, err)
			}
		}
	}
}

// TestLimits checks hard packet and byte limits and their events.
func TestLimits(t *testing.T) {
	var events []sa.Event
	c := variants[4].config(integ(t, suites(t)[1]), false)
	c.Limits = sa.Limits{Soft: sa.Lifetime{Packets: 2}, Hard: sa.Lifetime{Packets: 3}}
	c.OnEvent = func(e sa.Event) { events = append(events, e) }
	o, in := pair(t, c)
	var pkts [][]byte
	for range 3 {
		pkts = append(pkts, seal(t, o, variants[4].pkt()))
	}
	buf, s, e := place(variants[4].pkt(), 0)
	if _, _, err := o.Seal(buf, s, e); err != sa.DropExpired {
		t.Fatalf("Seal after the hard limit: %v", err)
	}
	for _, p := range pkts {
		if _, err := open(in, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := open(in, pkts[0]); err != sa.DropExpired {
		t.Fatalf("Open after the hard limit: %v", err)
	}
	if len(events) != 4 {
		t.Fatalf("events: %v", events)
	}
	// Time limits are checked per packet.
	now := time.Unix(1000, 0)
	c = variants[4].config(integ(t, suites(t)[1]), false)
	c.Limits = sa.Limits{Hard: sa.Lifetime{Time: time.Minute}}
	c.Now = func() time.Time { return now }
	o, _ = pair(t, c)
	seal(t, o, variants[4].pkt())
	now = now.Add(time.Hour)
	buf, s, e = place(variants[4].pkt(), 0)
	if _, _, err := o.Seal(buf, s, e); err != sa.DropExpired {
		t.Fatalf("Seal after the hard time limit: %v", err)
	}
}

// TestWrongSA checks SPI, mode and ICV length mismatches.
func TestWrongSA(t *testing.T) {
	sts := suites(t)
	tun := variants[0]
	c := tun.config(integ(t, sts[1]), false)
	o, _ := pair(t, c)
	p := seal(t, o, tun.pkt())

	c2 := c
	c2.SPI = 0x999
	_, in := pair(t, c2)
	if _, err := open(in, p); err != sa.DropUnknownSPI {
		t.Errorf("other SPI: %v", err)
	}
	c3 := c
	c3.Integrity = integ(t, sts[0]) // sha1: AH length 24, not 28
	_, in = pair(t, c3)
	if _, err := open(in, p); err != sa.DropMalformed {
		t.Errorf("other ICV length: %v", err)
	}
	c4 := c
	c4.Integrity, _ = sts[1].NewAH(testKey(sts[1].KeyLen(), 0x77))
	_, in = pair(t, c4)
	if _, err := open(in, p); err != sa.DropBadICV {
		t.Errorf("other key: %v", err)
	}
	// A transport-mode packet on a tunnel-mode SA: authentic, but next
	// header 17 is not an IP packet (RFC 4302, Section 3.1.2).
	ct := variants[4].config(c.Integrity, false)
	ot, _ := pair(t, ct)
	q := seal(t, ot, variants[4].pkt())
	_, in = pair(t, c)
	buf, s, e := place(q, 0)
	_, _, seq, err := in.Decrypt(buf, s, e)
	if err != sa.DropBadNextHeader || seq != 1 {
		t.Errorf("transport packet on a tunnel SA: seq %d, %v", seq, err)
	}
	if err := in.Accept(seq); err != nil {
		t.Errorf("Accept: %v", err)
	}
	if _, err := open(in, q); err != sa.DropReplay {
		t.Errorf("its replay: %v", err)
	}
}

// TestSealErrors checks Seal's refusals.
func TestSealErrors(t *testing.T) {
	i := integ(t, suites(t)[1])
	ot, _ := pair(t, variants[4].config(i, false))
	otun, _ := pair(t, variants[0].config(i, false))
	p := variants[4].pkt()
	frag := append([]byte(nil), p...)
	frag[6] = 0x20 // MF
	frag6 := ipv6Pkt(addr6A, addr6B, 44, []byte{17, 0, 0, 1, 0, 0, 0, 1}, payload(24))
	route := ipv6Pkt(addr6A, addr6B, 43, []byte{17, 2, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}, payload(24))
	badOpt := ipv4Pkt(addrA, addrB, 17, []byte{7, 9, 4, 0}, payload(8))
	// A Hop-by-Hop header of 264 bytes: PadN of 255 and of 3 bytes.
	bigExt := cat([]byte{17, 32, 1, 255}, make([]byte, 255), []byte{1, 3, 0, 0, 0})
	big6 := ipv6Pkt(addr6A, addr6B, 0, bigExt, payload(8))
	for _, tc := range []struct {
		name     string
		o        *Outbound
		pkt      []byte
		headroom int
		want     sa.Drop
	}{
		{"headroom", ot, p, 27, sa.DropTooBig},
		{"tunnel headroom", otun, p, 47, sa.DropTooBig},
		{"not IP", ot, []byte{0x55, 1, 2, 3}, 64, sa.DropMalformed},
		{"empty", otun, nil, 64, sa.DropMalformed},
		{"length mismatch", ot, append(append([]byte(nil), p...), 0), 64, sa.DropMalformed},
		{"IPv4 fragment", ot, frag, 64, sa.DropMalformed},
		{"IPv6 fragment", ot, frag6, 64, sa.DropMalformed},
		{"routing header with segments left", ot, route, 64, sa.DropUnsupported},
		{"bad IPv4 option", ot, badOpt, 64, sa.DropMalformed},
		{"extension headers over 256 bytes", ot, big6, 64, sa.DropUnsupported},
	} {
		buf := make([]byte, tc.headroom+len(tc.pkt))
		copy(buf[tc.headroom:], tc.pkt)
		if _, _, err := tc.o.Seal(buf, tc.headroom, len(buf)); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Tunnel mode carries fragments.
	buf, s, e := place(frag, 0)
	if _, _, err := otun.Seal(buf, s, e); err != nil {
		t.Errorf("tunnel fragment: %v", err)
	}
	if _, _, err := ot.Seal(p, 10, 5); err != sa.DropMalformed {
		t.Errorf("bad bounds: %v", err)
	}
}

// TestConfig checks NewOutbound's and NewInbound's validation and
// Overhead.
func TestConfig(t *testing.T) {
	i := integ(t, suites(t)[1])
	for _, c := range []Config{
		{Mode: sa.Transport, Integrity: i},                          // SPI 0
		{SPI: 1, Mode: 7, Integrity: i},                             // mode
		{SPI: 1, Mode: sa.Transport},                                // no integrity
		{SPI: 1, Integrity: i},                                      // tunnel without addresses
		{SPI: 1, Integrity: i, Local: addrA, Remote: addr6B},        // families differ
		{SPI: 1, Mode: sa.Transport, Integrity: i, ReplayWindow: 3}, // window too small (inbound)
	} {
		_, e1 := NewOutbound(c)
		_, e2 := NewInbound(c)
		if e1 == nil && e2 == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	o, _ := pair(t, Config{Integrity: i, Local: addrA, Remote: addrB})
	if h, tl := o.Overhead(); h != 48 || tl != 0 {
		t.Errorf("IPv4 tunnel Overhead %d, %d; want 48, 0", h, tl)
	}
	o, _ = pair(t, Config{Integrity: i, Local: addr6A, Remote: addr6B})
	if h, tl := o.Overhead(); h != 72 || tl != 0 {
		t.Errorf("IPv6 tunnel Overhead %d, %d; want 72, 0", h, tl)
	}
	if o.SPI() != testSPI {
		t.Errorf("SPI %x", o.SPI())
	}
	// IPv4-mapped tunnel addresses are IPv4.
	o, _ = pair(t, Config{Integrity: i, Local: netip.AddrFrom16(addrA.As16()), Remote: addrB})
	if h, _ := o.Overhead(); h != 48 {
		t.Errorf("mapped IPv4 tunnel Overhead %d", h)
	}
}

func TestSPIOf(t *testing.T) {
	h := []byte{4, 4, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}
	if spi, ok := SPIOf(h); !ok || spi != 0xdeadbeef {
		t.Errorf("SPIOf: %x, %v", spi, ok)
	}
	if _, ok := SPIOf(h[:11]); ok {
		t.Error("SPIOf of 11 bytes")
	}
	if _, ok := SPIOf(make([]byte, 12)); ok {
		t.Error("SPIOf of SPI 0")
	}
}

// TestMalformedCorpus opens the AH packet of tcpdump's
// heapoverflow-ip_demux_print.pcap (CVE-2016-7974): it must be dropped.
func TestMalformedCorpus(t *testing.T) {
	pkts := malformedSeeds(t)
	if len(pkts) == 0 {
		t.Fatal("no IP packet in the capture")
	}
	for _, p := range pkts {
		for _, v := range variants {
			c := v.config(integ(t, suites(t)[1]), false)
			c.SPI = 0x30303030
			_, in := pair(t, c)
			var d sa.Drop
			if _, err := open(in, p); !errors.As(err, &d) {
				t.Errorf("%s: %v, want a drop", v.name, err)
			}
		}
	}
}

// TestConcurrent seals and opens from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	v := variants[7]
	o, in := pair(t, v.config(integ(t, suites(t)[1]), true))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				buf, s, e := place(v.pkt(), 0)
				ns, ne, err := o.Seal(buf, s, e)
				if err != nil {
					t.Error(err)
					return
				}
				if _, _, err := in.Open(buf, ns, ne); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if in.Meter().Packets() != 200 {
		t.Errorf("opened %d packets", in.Meter().Packets())
	}
}

// TestZeroAllocs checks that Seal and Open allocate nothing.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	for _, s := range suites(t) {
		for _, v := range variants {
			o, in := pair(t, v.config(integ(t, s), true))
			p := v.pkt()
			buf, st, e := place(p, 0)
			// Warm up the transforms' pools.
			for range 3 {
				copy(buf[st:], p)
				ns, ne, _ := o.Seal(buf, st, e)
				in.Open(buf, ns, ne)
			}
			var err error
			n := testing.AllocsPerRun(200, func() {
				copy(buf[st:], p)
				var ns, ne int
				ns, ne, err = o.Seal(buf, st, e)
				if err == nil {
					_, _, err = in.Open(buf, ns, ne)
				}
			})
			if err != nil {
				t.Fatalf("%s/%s: %v", s.Name, v.name, err)
			}
			if n != 0 {
				t.Errorf("%s/%s: %v allocations per Seal+Open", s.Name, v.name, n)
			}
		}
	}
}
