package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// dataSizes exercise every padding length of 4- and 16-byte blocks.
var dataSizes = []int{0, 1, 2, 3, 5, 13, 14, 15, 16, 17, 100, 1000}

// checkSealed checks the outer structure of a sealed packet.
func checkSealed(t *testing.T, o *Outbound, orig, sealed []byte, seq uint64) {
	t.Helper()
	n, _, d := ipLength(sealed)
	if d != sa.DropNone || n != len(sealed) {
		t.Fatalf("sealed packet length field %d (%v), packet %d bytes", n, d, len(sealed))
	}
	hdrLen, nhOff, err := packet.TransportSplit(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if sealed[nhOff] != 50 {
		t.Fatalf("next header %d, want 50", sealed[nhOff])
	}
	if sealed[0]>>4 == 4 && packet.Checksum(sealed[:sealed[0]&15*4], 0) != 0 {
		t.Fatal("bad IPv4 header checksum")
	}
	if o.mode == sa.Tunnel {
		var src, dst netip.Addr
		if sealed[0]>>4 == 4 {
			src, dst = netip.AddrFrom4([4]byte(sealed[12:16])), netip.AddrFrom4([4]byte(sealed[16:20]))
			if sealed[8] != 64 {
				t.Fatalf("TTL %d", sealed[8])
			}
		} else {
			src, dst = netip.AddrFrom16([16]byte(sealed[8:24])), netip.AddrFrom16([16]byte(sealed[24:40]))
			if sealed[7] != 64 {
				t.Fatalf("hop limit %d", sealed[7])
			}
		}
		if src != o.cfg.Local || dst != o.cfg.Remote {
			t.Fatalf("outer %v -> %v, want %v -> %v", src, dst, o.cfg.Local, o.cfg.Remote)
		}
	} else {
		// Transport mode keeps the header but for the next header and
		// length fields (and the IPv4 checksum).
		h, oh := bytes.Clone(sealed[:hdrLen]), bytes.Clone(orig[:hdrLen])
		h[nhOff], oh[nhOff] = 0, 0
		if h[0]>>4 == 4 {
			clear(h[2:4])
			clear(oh[2:4])
			clear(h[10:12])
			clear(oh[10:12])
		} else {
			clear(h[4:6])
			clear(oh[4:6])
		}
		if !bytes.Equal(h, oh) {
			t.Fatalf("transport header changed:\n%x\n%x", h, oh)
		}
	}
	esp := sealed[hdrLen:]
	if spi, _ := SPIOf(esp); spi != o.spi {
		t.Fatalf("SPI %08x", spi)
	}
	if got := binary.BigEndian.Uint32(esp[4:]); got != uint32(seq) {
		t.Fatalf("seq %d, want %d", got, uint32(seq))
	}
	if ct := len(esp) - 8 - o.ivLen - o.icvLen; ct%o.bs != 0 || ct%4 != 0 {
		t.Fatalf("ciphertext length %d not aligned to %d", ct, o.bs)
	}
	head, tail := o.Overhead()
	if len(sealed)-len(orig) > head+tail {
		t.Fatalf("grew by %d, more than Overhead %d+%d", len(sealed)-len(orig), head, tail)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, s := range transform.ESPSuites() {
		for _, mode := range []sa.Mode{sa.Tunnel, sa.Transport} {
			for _, outer6 := range []bool{false, true} {
				for _, inner6 := range []bool{false, true} {
					if mode == sa.Transport && inner6 != outer6 {
						continue
					}
					for _, esn := range []bool{false, true} {
						name := fmt.Sprintf("%s/%v/outer%d/inner%d/esn=%v", s.Name, mode, map[bool]int{false: 4, true: 6}[outer6], map[bool]int{false: 4, true: 6}[inner6], esn)
						t.Run(name, func(t *testing.T) {
							c := Config{Mode: mode, ESN: esn, Local: v4a, Remote: v4b}
							if outer6 {
								c.Local, c.Remote = v6a, v6b
							}
							if esn {
								c.StartSeq = 1<<32 - 3 // cross the 2^32 boundary
							}
							o, in := newPair(t, s.Name, c)
							if esn {
								in.Accept(c.StartSeq) // a receiver that has been in use
							}
							for i, n := range dataSizes {
								var pkt []byte
								if mode == sa.Tunnel {
									pkt = innerPacket(inner6, n)
								} else if outer6 {
									pkt = ipv6Packet(v6a, v6b, 58, nil, icmpEcho(128, n))
								} else {
									pkt = ipv4Packet(v4a, v4b, 1, nil, icmpEcho(8, n))
								}
								sealed := seal(t, o, pkt)
								checkSealed(t, o, pkt, sealed, c.StartSeq+uint64(i)+1)
								got, err := open(in, sealed)
								if err != nil {
									t.Fatalf("size %d: Open: %v", n, err)
								}
								if !bytes.Equal(got, pkt) {
									t.Fatalf("size %d: got\n%x\nwant\n%x", n, got, pkt)
								}
							}
							if in.Meter().Packets() != uint64(len(dataSizes)) || o.Meter().Packets() != uint64(len(dataSizes)) {
								t.Fatalf("meters counted %d and %d packets", o.Meter().Packets(), in.Meter().Packets())
							}
							if in.Meter().Bytes() != o.Meter().Bytes() {
								t.Fatalf("meters counted %d and %d bytes", o.Meter().Bytes(), in.Meter().Bytes())
							}
						})
					}
				}
			}
		}
	}
}

// TestTransportHeaders checks that transport mode keeps IPv4 options and
// the IPv6 extension headers that belong before ESP in front of it, and
// moves the final destination options after it (RFC 4303, Section 3.1.1).
func TestTransportHeaders(t *testing.T) {
	udp := make([]byte, 8+37)
	binary.BigEndian.PutUint16(udp[0:], 5000)
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))

	// IPv4 with a Router Alert option (RFC 2113) and NOP, EOL padding.
	opts := []byte{0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00}
	v4 := ipv4Packet(v4a, v4b, 17, opts, udp)

	// IPv6: hop-by-hop (PadN), routing (type 4, segments left 0), then
	// destination options for the final destination, then UDP.
	hbh := []byte{43, 0, 1, 4, 0, 0, 0, 0}
	rt := []byte{60, 0, 4, 0, 0, 0, 0, 0}
	dst := []byte{17, 0, 1, 4, 0, 0, 0, 0}
	ext := append(append(append([]byte{}, hbh...), rt...), dst...)
	v6 := ipv6Packet(v6a, v6b, 0, ext, udp)

	for _, name := range []string{"aes256gcm16", "aes128-sha256", "chacha20poly1305", "null-sha256"} {
		for _, tc := range []struct {
			name    string
			pkt     []byte
			espAt   int // where the ESP header must start
			nhOff   int
			innerNH byte
			unmoved int // bytes before espAt that must be unchanged but for lengths
		}{
			{"ipv4-options", v4, 28, 9, 17, 28},
			{"ipv6-ext", v6, 56, 48, 60, 56},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				o, in := newPair(t, name, Config{Mode: sa.Transport})
				sealed := seal(t, o, tc.pkt)
				checkSealed(t, o, tc.pkt, sealed, 1)
				if sealed[tc.nhOff] != 50 {
					t.Fatalf("byte %d = %d, want 50", tc.nhOff, sealed[tc.nhOff])
				}
				if spi, _ := SPIOf(sealed[tc.espAt:]); spi != testSPI {
					t.Fatalf("no ESP header at %d", tc.espAt)
				}
				got, err := open(in, sealed)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tc.pkt) {
					t.Fatalf("got\n%x\nwant\n%x", got, tc.pkt)
				}
			})
		}
	}
}

// tamperCase is one SA configuration for the tamper and truncation tests.
type tamperCase struct {
	name string
	c    Config
	pkt  []byte
}

func tamperCases() []tamperCase {
	return []tamperCase{
		{"tunnel4", Config{Mode: sa.Tunnel, Local: v4a, Remote: v4b}, innerPacket(false, 3)},
		{"tunnel6", Config{Mode: sa.Tunnel, Local: v6a, Remote: v6b, ESN: true}, innerPacket(true, 3)},
		{"transport4", Config{Mode: sa.Transport}, ipv4Packet(v4a, v4b, 1, nil, icmpEcho(8, 3))},
		{"transport6", Config{Mode: sa.Transport, ESN: true}, ipv6Packet(v6a, v6b, 58, nil, icmpEcho(128, 3))},
	}
}

// unprotected reports whether byte i of the outer IP header hdr is a field
// that ESP does not protect, so that changing it (by XOR with x) need not
// make Open fail. ESP covers nothing of the outer header (RFC 4303,
// Section 3.1): in IPv4 these are the TOS byte (DSCP, ECN), the
// identification, the DF flag and the reserved flag, the TTL, the header
// checksum (which the IP layer, not ESP, verifies) and the addresses; in IPv6
// the traffic class, the flow label, the hop limit and the addresses. Every
// other outer field (version, IHL, total or payload length, MF and fragment
// offset, protocol or next header) makes Open fail. In transport mode the
// changed fields show up in the reconstructed packet, as they would without
// IPsec.
func unprotected(hdr []byte, i int, x byte) bool {
	if hdr[0]>>4 == 4 {
		switch {
		case i == 1, i == 4, i == 5, i == 8, i == 10, i == 11, i >= 12 && i < 20:
			return true
		case i == 6:
			return x&0x3f == 0 // reserved and DF bits; not MF or offset
		}
		return false
	}
	switch {
	case i == 0:
		return x&0xf0 == 0 // traffic class, not the version
	case i >= 1 && i <= 3, i == 7, i >= 8 && i < 40:
		return true
	}
	return false
}

// TestTamper changes every byte of sealed packets, in every way, and checks
// that Open rejects each change but those to unprotected outer fields.
func TestTamper(t *testing.T) {
	for _, s := range transform.ESPSuites() {
		for _, tc := range tamperCases() {
			t.Run(s.Name+"/"+tc.name, func(t *testing.T) {
				o, in := newPair(t, s.Name, tc.c)
				sealed := seal(t, o, tc.pkt)
				hdrLen, _, err := packet.TransportSplit(sealed)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, len(sealed))
				for i := range sealed {
					for x := 1; x < 256; x++ {
						copy(buf, sealed)
						buf[i] ^= byte(x)
						_, _, err := in.Open(buf, 0, len(buf))
						if i < hdrLen && unprotected(sealed, i, byte(x)) {
							// An outer CE over the Not-ECT inner packet is
							// dropped after the ICV check (RFC 6040,
							// Section 4.2; dataplane.TestEngineWrappersECN).
							if err != nil && !(err == sa.DropECN && packet.TOS(buf)&packet.ECNMask == packet.ECNCE) {
								t.Fatalf("byte %d ^ %#x (unprotected outer field): %v", i, x, err)
							}
							// The window moved: start again.
							_, in = newPair(t, s.Name, tc.c)
							continue
						}
						if err == nil {
							t.Fatalf("byte %d ^ %#x accepted", i, x)
						}
						if _, ok := err.(sa.Drop); !ok {
							t.Fatalf("byte %d: error %T is not an sa.Drop", i, err)
						}
					}
				}
				// The untouched packet still opens: nothing moved the window.
				if _, err := open(in, sealed); err != nil {
					t.Fatalf("genuine packet after tampering: %v", err)
				}
			})
		}
	}
}

// TestTruncate cuts sealed packets to every shorter length, with and without
// the IP length fields adjusted to match.
func TestTruncate(t *testing.T) {
	for _, s := range transform.ESPSuites() {
		for _, tc := range tamperCases() {
			t.Run(s.Name+"/"+tc.name, func(t *testing.T) {
				o, in := newPair(t, s.Name, tc.c)
				sealed := seal(t, o, tc.pkt)
				hdrLen, _, _ := packet.TransportSplit(sealed)
				for n := range len(sealed) {
					buf := bytes.Clone(sealed[:n])
					_, _, err := in.Open(buf, 0, n)
					if n < len(sealed) && err == nil {
						t.Fatalf("truncated to %d accepted", n)
					}
					wantDrop(t, err, sa.DropTruncated)
					if n < hdrLen {
						continue
					}
					// The IP layer sees a consistent, shorter packet.
					buf = bytes.Clone(sealed[:n])
					_ = packet.SetLength(buf, n)
					_, _, err = in.Open(buf, 0, n)
					if err == nil {
						t.Fatalf("truncated to %d with fixed length accepted", n)
					}
					if _, ok := err.(sa.Drop); !ok {
						t.Fatalf("error %T is not an sa.Drop", err)
					}
				}
				if _, err := open(in, sealed); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestReplay(t *testing.T) {
	o, in := newPair(t, "aes128gcm16", Config{ReplayWindow: 64})
	var pkts [][]byte
	for range 100 {
		pkts = append(pkts, seal(t, o, innerPacket(false, 10)))
	}
	if _, err := open(in, pkts[0]); err != nil {
		t.Fatal(err)
	}
	_, err := open(in, pkts[0])
	wantDrop(t, err, sa.DropReplay)
	if _, err := open(in, pkts[99]); err != nil { // seq 100
		t.Fatal(err)
	}
	_, err = open(in, pkts[99])
	wantDrop(t, err, sa.DropReplay)
	// Window of 64 ending at 100: 37..100. Seq 36 and below are left of it.
	for _, seq := range []int{2, 30, 36} {
		_, err = open(in, pkts[seq-1])
		wantDrop(t, err, sa.DropReplay)
	}
	for _, seq := range []int{37, 50, 99} {
		if _, err := open(in, pkts[seq-1]); err != nil {
			t.Fatalf("seq %d inside the window: %v", seq, err)
		}
	}
	_, err = open(in, pkts[49])
	wantDrop(t, err, sa.DropReplay)
}

// TestDecryptAccept runs the two stages separately, as the data plane does:
// two copies of a packet both decrypt, and only the first is accepted.
func TestDecryptAccept(t *testing.T) {
	o, in := newPair(t, "aes256gcm16", Config{})
	pkt := innerPacket(false, 20)
	sealed := seal(t, o, pkt)
	a, b := bytes.Clone(sealed), bytes.Clone(sealed)
	as, ae, seqA, errA := in.Decrypt(a, 0, len(a))
	_, _, seqB, errB := in.Decrypt(b, 0, len(b))
	if errA != nil || errB != nil || seqA != 1 || seqB != 1 {
		t.Fatalf("Decrypt: %v %v %d %d", errA, errB, seqA, seqB)
	}
	if !bytes.Equal(a[as:ae], pkt) {
		t.Fatal("Decrypt result differs")
	}
	if err := in.Accept(seqA); err != nil {
		t.Fatal(err)
	}
	wantDrop(t, in.Accept(seqB), sa.DropReplay)
}

// TestForgedHighSeq checks that a packet with a bad ICV does not move the
// window (RFC 4303, Section 3.4.3).
func TestForgedHighSeq(t *testing.T) {
	for _, name := range []string{"aes128gcm16", "aes256-sha512", "chacha20poly1305", "aes128gmac"} {
		t.Run(name, func(t *testing.T) {
			o, in := newPair(t, name, Config{ReplayWindow: 64})
			low := seal(t, o, innerPacket(false, 10)) // seq 1
			// Another Outbound of the same SA (same key and SPI), far ahead.
			far, _ := newPair(t, name, Config{ReplayWindow: 64, StartSeq: 100000})
			high := seal(t, far, innerPacket(false, 10)) // seq 100001
			forged := bytes.Clone(high)
			forged[len(forged)-1] ^= 1
			_, err := open(in, forged)
			wantDrop(t, err, sa.DropBadICV)
			if _, err := open(in, low); err != nil {
				t.Fatalf("genuine low packet after a forged high one: %v", err)
			}
			if _, err := open(in, high); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnknownSPI(t *testing.T) {
	o, _ := newPair(t, "aes128gcm16", Config{SPI: 7})
	_, in := newPair(t, "aes128gcm16", Config{SPI: 8})
	_, err := open(in, seal(t, o, innerPacket(false, 1)))
	wantDrop(t, err, sa.DropUnknownSPI)
}

// events collects limit events.
type events struct{ list []sa.Event }

func (e *events) add(ev sa.Event) { e.list = append(e.list, ev) }

func (e *events) count(hard bool, kind sa.LimitKind) int {
	n := 0
	for _, ev := range e.list {
		if ev.Hard == hard && ev.Kind == kind {
			n++
		}
	}
	return n
}

func TestSeqExhaustion(t *testing.T) {
	var ev events
	o, in := newPair(t, "aes128gcm16", Config{StartSeq: 1<<32 - 3, OnEvent: ev.add})
	in.Accept(1<<32 - 10)
	for _, want := range []uint64{1<<32 - 2, 1<<32 - 1} {
		sealed := seal(t, o, innerPacket(false, 1))
		if got := binary.BigEndian.Uint32(sealed[24:]); uint64(got) != want {
			t.Fatalf("seq %d, want %d", got, want)
		}
		if _, err := open(in, sealed); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		buf, s, e := place(innerPacket(false, 1))
		_, _, err := o.Seal(buf, s, e)
		wantDrop(t, err, sa.DropSeqExhausted)
		_, err = o.NextSeq()
		wantDrop(t, err, sa.DropSeqExhausted)
	}
	if ev.count(true, sa.LimitSeq) != 1 || ev.count(false, sa.LimitSeq) != 1 || len(ev.list) != 2 {
		t.Fatalf("events %v", ev.list)
	}
	if o.LastSeq() != 1<<32-1 {
		t.Fatalf("LastSeq %d", o.LastSeq())
	}
	if o.Meter().Alive() {
		t.Fatal("meter alive after exhaustion")
	}
	// SealSeq refuses numbers beyond the space, too.
	buf, s, e := place(innerPacket(false, 1))
	_, _, err := o.SealSeq(buf, s, e, 1<<32)
	wantDrop(t, err, sa.DropSeqExhausted)
}

// TestESNBoundary crosses 2^32 with ESN: the receiver infers the high half,
// also for packets that arrive out of order around the boundary.
func TestESNBoundary(t *testing.T) {
	var ev events
	o, in := newPair(t, "aes256gcm16", Config{ESN: true, StartSeq: 1<<32 - 5, OnEvent: ev.add})
	in.Accept(1<<32 - 5)
	var pkts [][]byte
	for range 10 {
		pkts = append(pkts, seal(t, o, innerPacket(false, 8)))
	}
	// Deliver 1<<32+2 .. first, then those before the boundary.
	order := []int{0, 1, 7, 5, 2, 3, 4, 6, 9, 8}
	for _, i := range order {
		if _, err := open(in, pkts[i]); err != nil {
			t.Fatalf("packet %d (seq %#x): %v", i, uint64(1<<32-4+i), err)
		}
	}
	if in.window.Top() != 1<<32+5 {
		t.Fatalf("top %#x", in.window.Top())
	}
	for _, p := range pkts {
		_, err := open(in, p)
		wantDrop(t, err, sa.DropReplay)
	}
	if len(ev.list) != 0 {
		t.Fatalf("events %v", ev.list)
	}
	// Without ESN on the receiver, the ICV (which covers the high half)
	// fails for the packets past the boundary.
	_, in32 := newPair(t, "aes256gcm16", Config{})
	_, err := open(in32, pkts[6])
	wantDrop(t, err, sa.DropBadICV)
}

func TestESNEnd(t *testing.T) {
	var ev events
	o, _ := newPair(t, "chacha20poly1305", Config{ESN: true, StartSeq: 1<<64 - 3, OnEvent: ev.add})
	for _, want := range []uint64{1<<64 - 2, 1<<64 - 1} {
		seq, err := o.NextSeq()
		if err != nil || seq != want {
			t.Fatalf("NextSeq %d, %v; want %d", seq, err, want)
		}
		buf, s, e := place(innerPacket(false, 1))
		if _, _, err := o.SealSeq(buf, s, e, seq); err != nil {
			t.Fatal(err)
		}
	}
	_, err := o.NextSeq()
	wantDrop(t, err, sa.DropSeqExhausted)
	_, err = o.NextSeq()
	wantDrop(t, err, sa.DropSeqExhausted)
	if ev.count(true, sa.LimitSeq) != 1 || ev.count(false, sa.LimitSeq) != 1 {
		t.Fatalf("events %v", ev.list)
	}
}

func TestSeqSoftMargin(t *testing.T) {
	var ev events
	o, _ := newPair(t, "aes128gcm16", Config{StartSeq: 1<<32 - 1 - 12, SeqSoftMargin: 10, OnEvent: ev.add})
	// 12 numbers left: the soft event fires when fewer than 10 remain,
	// after the third.
	for i := 1; i <= 5; i++ {
		if _, err := o.NextSeq(); err != nil {
			t.Fatal(err)
		}
		want := 0
		if i >= 3 {
			want = 1
		}
		if got := ev.count(false, sa.LimitSeq); got != want {
			t.Fatalf("after %d numbers: %d soft events", i, got)
		}
	}
}

func TestLimits(t *testing.T) {
	pkt := innerPacket(false, 72) // 100 bytes
	t.Run("packets", func(t *testing.T) {
		var eo, ei events
		lim := sa.Limits{Soft: sa.Lifetime{Packets: 3}, Hard: sa.Lifetime{Packets: 5}}
		o, _ := newPair(t, "aes128gcm16", Config{Limits: lim, OnEvent: eo.add})
		_, in := newPair(t, "aes128gcm16", Config{Limits: lim, OnEvent: ei.add})
		var sealed [][]byte
		for i := 1; i <= 8; i++ {
			buf, s, e := place(pkt)
			ns, ne, err := o.Seal(buf, s, e)
			if i <= 5 {
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				sealed = append(sealed, bytes.Clone(buf[:cap(buf)][ns:ne]))
			} else {
				wantDrop(t, err, sa.DropExpired)
			}
		}
		if eo.count(false, sa.LimitPackets) != 1 || eo.count(true, sa.LimitPackets) != 1 || len(eo.list) != 2 {
			t.Fatalf("outbound events %v", eo.list)
		}
		if o.Meter().Packets() != 5 || o.Meter().Bytes() != 500 {
			t.Fatalf("outbound meter %d packets %d bytes", o.Meter().Packets(), o.Meter().Bytes())
		}
		for i, p := range sealed {
			_, err := open(in, p)
			if i < 5 && err != nil {
				t.Fatal(err)
			}
		}
		// The inbound SA is dead now.
		o2, _ := newPair(t, "aes128gcm16", Config{StartSeq: 10})
		_, err := open(in, seal(t, o2, pkt))
		wantDrop(t, err, sa.DropExpired)
		if ei.count(false, sa.LimitPackets) != 1 || ei.count(true, sa.LimitPackets) != 1 || len(ei.list) != 2 {
			t.Fatalf("inbound events %v", ei.list)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		var eo events
		lim := sa.Limits{Soft: sa.Lifetime{Bytes: 250}, Hard: sa.Lifetime{Bytes: 450}}
		o, _ := newPair(t, "aes256-sha256", Config{Limits: lim, OnEvent: eo.add})
		for i := 1; i <= 7; i++ {
			buf, s, e := place(pkt)
			_, _, err := o.Seal(buf, s, e)
			switch {
			case i <= 5 && err != nil: // the 5th crosses 450 and is the last
				t.Fatalf("packet %d: %v", i, err)
			case i > 5:
				wantDrop(t, err, sa.DropExpired)
			}
			wantSoft := 0
			if i >= 3 {
				wantSoft = 1
			}
			if eo.count(false, sa.LimitBytes) != wantSoft {
				t.Fatalf("after packet %d: events %v", i, eo.list)
			}
		}
		if eo.count(true, sa.LimitBytes) != 1 || len(eo.list) != 2 {
			t.Fatalf("events %v", eo.list)
		}
	})
}

func TestTimeLimits(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	clock := func() time.Time { return now }
	var eo, ei events
	lim := sa.Limits{Soft: sa.Lifetime{Time: time.Minute}, Hard: sa.Lifetime{Time: 2 * time.Minute}}
	o, _ := newPair(t, "aes128gcm16", Config{Limits: lim, OnEvent: eo.add, Now: clock})
	_, in := newPair(t, "aes128gcm16", Config{Limits: lim, OnEvent: ei.add, Now: clock})
	pkt := innerPacket(false, 10)
	step := func(at time.Duration, wantErr bool, soft, hard int) {
		t.Helper()
		now = base.Add(at)
		buf, s, e := place(pkt)
		ns, ne, err := o.Seal(buf, s, e)
		if wantErr {
			wantDrop(t, err, sa.DropExpired)
		} else {
			if err != nil {
				t.Fatalf("at %v: Seal: %v", at, err)
			}
			if _, err := open(in, buf[:cap(buf)][ns:ne]); err != nil {
				t.Fatalf("at %v: Open: %v", at, err)
			}
		}
		for _, ev := range []*events{&eo, &ei} {
			if ev.count(false, sa.LimitTime) != soft || ev.count(true, sa.LimitTime) != hard {
				t.Fatalf("at %v: events %v", at, ev.list)
			}
		}
	}
	step(0, false, 0, 0)
	step(59*time.Second, false, 0, 0)
	step(61*time.Second, false, 1, 0)
	step(90*time.Second, false, 1, 0)
	now = base.Add(121 * time.Second)
	buf, s, e := place(pkt)
	_, _, err := o.Seal(buf, s, e)
	wantDrop(t, err, sa.DropExpired)
	o2, _ := newPair(t, "aes128gcm16", Config{StartSeq: 100})
	_, err = open(in, seal(t, o2, pkt))
	wantDrop(t, err, sa.DropExpired)
	step(200*time.Second, true, 1, 1)
}

// TestTrailerChecks builds packets by hand whose ICV is valid but whose
// decrypted trailer is not, and checks the drop reason and that the window
// moved (the sequence number was authentic).
func TestTrailerChecks(t *testing.T) {
	for _, name := range []string{"aes128gcm16", "aes128-sha1", "chacha20poly1305", "aes256gmac", "null-sha256"} {
		s := mustSuite(t, name)
		key := testKey(s.KeyLen(), 1)
		tr := mustESP(t, s, key)
		bs := tr.BlockSize()
		inner := innerPacket(false, 6) // 34 bytes
		align := func(b []byte, nh byte) []byte {
			return withTrailer(b, padLen(len(b), bs), nh)
		}
		cases := []struct {
			name  string
			mode  sa.Mode
			plain []byte
			want  sa.Drop
		}{
			{"good", sa.Tunnel, align(inner, 4), sa.DropNone},
			{"dummy", sa.Tunnel, align(make([]byte, 10), 59), sa.DropTFCDummy},
			{"dummy-transport", sa.Transport, align(make([]byte, 10), 59), sa.DropTFCDummy},
			{"tcp-in-tunnel", sa.Tunnel, align(inner, 6), sa.DropBadNextHeader},
			{"ipv6-nh-ipv4-inner", sa.Tunnel, align(inner, 41), sa.DropMalformed},
			{"inner-longer", sa.Tunnel, align(inner[:30], 4), sa.DropMalformed},
		}
		// A wrong pad byte, and a pad length beyond the payload.
		p := withTrailer(inner, padLen(len(inner), bs)+bs, 4)
		p[len(inner)+1] ^= 0x10
		cases = append(cases, struct {
			name  string
			mode  sa.Mode
			plain []byte
			want  sa.Drop
		}{"pad-byte", sa.Tunnel, p, sa.DropBadPadding})
		p = align(inner, 4)
		p[len(p)-2] = byte(len(p) - 1)
		cases = append(cases, struct {
			name  string
			mode  sa.Mode
			plain []byte
			want  sa.Drop
		}{"pad-length", sa.Tunnel, p, sa.DropBadPadding})
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				ci := Config{SPI: testSPI, Mode: tc.mode, Transform: mustESP(t, s, key)}
				in, err := NewInbound(ci)
				if err != nil {
					t.Fatal(err)
				}
				pkt := sealRaw(tr, testSPI, 3, false, tc.plain)
				got, err := open(in, pkt)
				if tc.want == sa.DropNone {
					if err != nil || !bytes.Equal(got, inner) {
						t.Fatalf("Open: %v", err)
					}
				} else {
					wantDrop(t, err, tc.want)
				}
				// Authentic: the window moved (RFC 4303, Section 3.4.3).
				_, err = open(in, pkt)
				wantDrop(t, err, sa.DropReplay)
				if tc.want != sa.DropNone && in.Meter().Packets() != 0 {
					t.Fatal("dropped packet counted")
				}
			})
		}
	}
}

// TestTFCPad checks TFC padding (RFC 4303, Section 2.7): the sender pads
// short inner packets and the receiver trims them by their IP length.
func TestTFCPad(t *testing.T) {
	for _, name := range []string{"aes256gcm16", "aes128-sha256"} {
		for _, inner6 := range []bool{false, true} {
			o, in := newPair(t, name, Config{TFCPadTo: 300})
			head, tail := o.Overhead()
			for _, n := range []int{0, 100, 260, 400} {
				pkt := innerPacket(inner6, n)
				sealed := seal(t, o, pkt)
				minLen := 20 + head - 20 + max(300, len(pkt)) + 2 + o.icvLen
				if len(sealed) < minLen || len(sealed) > 20+len(pkt)+head-20+tail {
					t.Fatalf("%d-byte inner: sealed %d bytes, want at least %d", len(pkt), len(sealed), minLen)
				}
				got, err := open(in, sealed)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pkt) {
					t.Fatalf("got %x", got)
				}
			}
		}
	}
	if _, err := NewOutbound(Config{SPI: 1, Mode: sa.Transport, TFCPadTo: 100, Transform: mustESP(t, mustSuite(t, "aes128gcm16"), testKey(20, 0))}); err == nil {
		t.Fatal("TFC padding accepted in transport mode")
	}
}

func TestTooBig(t *testing.T) {
	o, _ := newPair(t, "aes128-sha256", Config{})
	pkt := innerPacket(false, 100)
	head, tail := o.Overhead()
	for _, room := range [][2]int{{head - 1, tail}, {head, 1}, {0, 0}} {
		buf := make([]byte, room[0]+len(pkt), room[0]+len(pkt)+room[1])
		copy(buf[room[0]:], pkt)
		_, _, err := o.Seal(buf, room[0], room[0]+len(pkt))
		wantDrop(t, err, sa.DropTooBig)
	}
	// Exactly Overhead is enough.
	buf := make([]byte, head+len(pkt), head+len(pkt)+tail)
	copy(buf[head:], pkt)
	if _, _, err := o.Seal(buf, head, head+len(pkt)); err != nil {
		t.Fatal(err)
	}
	// The outer IPv4 packet would exceed 65535 bytes.
	big := make([]byte, 65535)
	copy(big, ipv4Packet(v4c, v4d, 17, nil, nil))
	binary.BigEndian.PutUint16(big[2:], 65535)
	buf, s, e := place(big)
	_, _, err := o.Seal(buf, s, e)
	wantDrop(t, err, sa.DropTooBig)
}

func TestSealMalformed(t *testing.T) {
	o, _ := newPair(t, "aes128gcm16", Config{})
	ot, _ := newPair(t, "aes128gcm16", Config{Mode: sa.Transport})
	good := innerPacket(false, 10)
	short := bytes.Clone(good)
	binary.BigEndian.PutUint16(short[2:], uint16(len(good)+1))
	frag := ipv4Packet(v4a, v4b, 1, nil, icmpEcho(8, 10))
	frag[6] = 0x20 // MF
	frag6 := ipv6Packet(v6a, v6b, 44, []byte{58, 0, 0, 1, 0, 0, 0, 1}, icmpEcho(128, 8))
	for _, tc := range []struct {
		name string
		o    *Outbound
		pkt  []byte
	}{
		{"empty", o, nil},
		{"version5", o, append([]byte{0x50}, good[1:]...)},
		{"length-mismatch", o, short},
		{"trailing-bytes", o, append(bytes.Clone(good), 0)},
		{"fragment4", ot, frag},
		{"fragment6", ot, frag6},
	} {
		buf, s, e := place(tc.pkt)
		_, _, err := tc.o.Seal(buf, s, e)
		if err == nil {
			t.Fatalf("%s: sealed", tc.name)
		}
		wantDrop(t, err, sa.DropMalformed)
	}
	_, _, err := o.Seal(make([]byte, 10), 5, 4)
	wantDrop(t, err, sa.DropMalformed)
}

// TestEncapUDP checks the NAT-T transport-mode checksum fix-up (RFC 3948,
// Section 3.1.2): a NAT rewrote the source address, and Open recomputes the
// UDP checksum over the new pseudo-header.
func TestEncapUDP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		src, dst, nat := v4a, v4b, netip.MustParseAddr("203.0.113.9")
		if v6 {
			src, dst, nat = v6a, v6b, netip.MustParseAddr("2001:db8:ffff::9")
		}
		udp := make([]byte, 8+21)
		binary.BigEndian.PutUint16(udp[0:], 1234)
		binary.BigEndian.PutUint16(udp[2:], 53)
		binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
		for i := 8; i < len(udp); i++ {
			udp[i] = byte(i)
		}
		binary.BigEndian.PutUint16(udp[6:], packet.Checksum(udp, packet.PseudoHeaderSum(src, dst, 17, len(udp))))
		var pkt []byte
		if v6 {
			pkt = ipv6Packet(src, dst, 17, nil, udp)
		} else {
			pkt = ipv4Packet(src, dst, 17, nil, udp)
		}
		for _, encap := range []bool{false, true} {
			o, in := newPair(t, "aes128gcm16", Config{Mode: sa.Transport, EncapUDP: encap})
			sealed := seal(t, o, pkt)
			// The NAT rewrites the source address (and, for IPv4, the
			// header checksum, which Open recomputes anyway).
			if v6 {
				a := nat.As16()
				copy(sealed[8:24], a[:])
			} else {
				a := nat.As4()
				copy(sealed[12:16], a[:])
			}
			got, err := open(in, sealed)
			if err != nil {
				t.Fatal(err)
			}
			l4 := got[len(got)-len(udp):]
			ok := packet.Checksum(l4, packet.PseudoHeaderSum(nat, dst, 17, len(l4))) == 0
			if ok != encap {
				t.Fatalf("v6=%v EncapUDP=%v: checksum valid over the NAT address: %v", v6, encap, ok)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tr := mustESP(t, mustSuite(t, "aes128gcm16"), testKey(20, 0))
	for _, tc := range []struct {
		name string
		c    Config
		out  bool
	}{
		{"no-transform", Config{SPI: 1}, false},
		{"spi0", Config{Transform: tr}, false},
		{"bad-mode", Config{SPI: 1, Transform: tr, Mode: 7}, false},
		{"tfc-negative", Config{SPI: 1, Transform: tr, TFCPadTo: -1}, false},
		{"window-too-small", Config{SPI: 1, Transform: tr, ReplayWindow: 8}, false},
		{"no-addresses", Config{SPI: 1, Transform: tr}, true},
		{"mixed-families", Config{SPI: 1, Transform: tr, Local: v4a, Remote: v6b}, true},
		{"start-beyond-32", Config{SPI: 1, Transform: tr, Local: v4a, Remote: v4b, StartSeq: 1 << 32}, true},
	} {
		var err error
		if tc.out {
			_, err = NewOutbound(tc.c)
		} else {
			_, err = NewInbound(tc.c)
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		} else if !strings.HasPrefix(err.Error(), "esp: ") {
			t.Errorf("%s: error %q does not start with the package name", tc.name, err)
		}
	}
	if _, err := NewOutbound(Config{SPI: 1, Transform: tr, Mode: sa.Transport}); err != nil {
		t.Errorf("transport mode without addresses: %v", err)
	}
	if _, err := NewOutbound(Config{SPI: 1, Transform: tr, Local: netip.MustParseAddr("::ffff:192.0.2.1"), Remote: v4b}); err != nil {
		t.Errorf("4-in-6 mapped Local: %v", err)
	}
}

func TestSPIOf(t *testing.T) {
	if spi, ok := SPIOf([]byte{1, 2, 3, 4, 0, 0, 0, 1}); !ok || spi != 0x01020304 {
		t.Fatal(spi, ok)
	}
	for _, b := range [][]byte{nil, {1, 2, 3, 4, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 1}} {
		if _, ok := SPIOf(b); ok {
			t.Fatalf("SPIOf(%x) ok", b)
		}
	}
}

// TestZeroAllocs checks that Seal and Open allocate nothing per packet.
func TestZeroAllocs(t *testing.T) {
	for _, name := range []string{"aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128gmac", "aes128-sha256", "aes256-sha512", "aes128ctr-sha1", "null-aesxcbc"} {
		for _, mode := range []sa.Mode{sa.Tunnel, sa.Transport} {
			for _, v6 := range []bool{false, true} {
				o, in := newPair(t, name, Config{Mode: mode, Local: v6a, Remote: v6b, ESN: v6, EncapUDP: true})
				var pkt []byte
				switch {
				case mode == sa.Tunnel:
					pkt = innerPacket(v6, 1000)
				case v6:
					pkt = ipv6Packet(v6a, v6b, 58, nil, icmpEcho(128, 1000))
				default:
					pkt = ipv4Packet(v4a, v4b, 1, nil, icmpEcho(8, 1000))
				}
				buf, s, e := place(pkt)
				var failed error
				allocs := testing.AllocsPerRun(200, func() {
					copy(buf[s:e], pkt)
					ns, ne, err := o.Seal(buf, s, e)
					if err != nil {
						failed = err
						return
					}
					if _, _, err := in.Open(buf[:cap(buf)], ns, ne); err != nil {
						failed = err
					}
				})
				if failed != nil {
					t.Fatalf("%s %v v6=%v: %v", name, mode, v6, failed)
				}
				if allocs != 0 {
					t.Errorf("%s %v v6=%v: %v allocations per Seal+Open", name, mode, v6, allocs)
				}
			}
		}
	}
}

// TestSAStateOneAllocation checks the layout of the per-SA cost work of
// issue 9: an SA's engine, meter and replay window (inbound) or sequence
// counter (outbound) are one allocation, so that a packet on a cold SA
// reads adjacent cache lines rather than following pointers.
func TestSAStateOneAllocation(t *testing.T) {
	tr := mustESP(t, mustSuite(t, "aes256gcm16"), testKey(36, 1))
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if n := testing.AllocsPerRun(100, func() { NewInbound(Config{SPI: 1, Transform: tr}) }); n != 1 {
		t.Errorf("NewInbound: %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { NewOutbound(Config{SPI: 1, Transform: tr, Local: local, Remote: remote}) }); n != 1 {
		t.Errorf("NewOutbound: %v allocations, want 1", n)
	}
}

// TestWarm checks that Warm, which the data plane calls on a batch's SAs
// before it opens or seals their packets, allocates nothing, counts no
// packet and leaves the SA working: the replay window does not move, the
// meter does not count.
func TestWarm(t *testing.T) {
	o, in := newPair(t, "aes256gcm16", Config{Mode: sa.Tunnel})
	pkt := innerPacket(false, 100)
	if n := testing.AllocsPerRun(100, func() {
		for level := range 4 {
			o.Warm(level)
			in.Warm(level)
		}
	}); n != 0 {
		t.Errorf("Warm: %v allocations, want 0", n)
	}
	if o.Meter().Packets() != 0 || in.Meter().Packets() != 0 || in.window.Top() != 0 {
		t.Fatal("Warm counted a packet or moved the window")
	}
	got, err := open(in, seal(t, o, pkt))
	if err != nil || !bytes.Equal(got, pkt) {
		t.Fatalf("round trip after Warm: %v", err)
	}
}
