package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// Stateful fuzzing of the inbound data path. Each input picks a live SA (ESP
// tunnel or transport, raw or in UDP, or AH; with or without ESN; IPv4 or
// IPv6 outside), brings its replay window to a known state with a few
// authentic packets, then feeds one fuzzed packet that carries the live SPI
// and a sequence number around the window: raw bytes after the live
// header, fully raw bytes, an authentic packet whose inner packet is fuzzed,
// an authentic ESP packet whose whole plaintext (padding, pad length, next
// header) is fuzzed, or a replay of an authentic packet. The packet goes
// through the data plane's own stages (classification, opening, sequential
// checks, TUN write), called in line so that each input is deterministic.
//
// Invariants: nothing panics (the data plane's recovery would hide it, so
// Panics must stay 0); every packet is delivered or counted as a drop; the
// window moves only for sequence numbers that were sealed with the key, and
// an authentic packet that is fresh and inside the window is accepted even
// if its payload is bad (RFC 4303, Section 3.4.3); afterwards a legitimate
// packet, and one that fills a hole the window still covers, pass.

// fuzzWindow is the replay window of the fuzzed SAs: small, so that the
// sequence numbers around it are easy to reach.
const fuzzWindow = 64

// fuzzSPI is the live SPI.
const fuzzSPI = 0x4242

// Fuzzed packet kinds (data[1]).
const (
	fuzzAfterHeader   = iota // live SPI and sequence number, then fuzz
	fuzzRawBytes             // the whole ESP/AH packet (or UDP payload) fuzzed
	fuzzSealedInner          // authentic, with a fuzzed inner packet
	fuzzSealedTrailer        // authentic ESP, plaintext (padding, next header) fuzzed
	fuzzReplay               // an authentic packet of the setup, again
	numFuzzKinds
)

// fuzzSA describes one fuzzed SA (data[0]).
type fuzzSA struct {
	proto sa.Protocol
	mode  sa.Mode
	esn   bool
	udp   bool
	v6    bool
}

func fuzzSAOf(b byte) fuzzSA {
	f := fuzzSA{proto: sa.ESP, mode: sa.Tunnel, esn: b&2 != 0, v6: b&4 != 0}
	if b&1 != 0 {
		f.mode = sa.Transport
	}
	switch (b >> 3) % 3 {
	case 0:
		f.udp = true
	case 2:
		f.proto = sa.AH
	}
	return f
}

func (f fuzzSA) String() string {
	return fmt.Sprintf("%v-%v-esn%v-udp%v-v6%v", f.proto, f.mode, f.esn, f.udp, f.v6)
}

// recordingInbound records what the data plane asks of an inbound engine.
type recordingInbound struct {
	sad.Inbound
	verified []uint64 // sequence numbers Decrypt authenticated
	accepted []uint64 // sequence numbers Accept took into the window
}

func (r *recordingInbound) Decrypt(buf []byte, start, end int) (int, int, uint64, error) {
	s, e, seq, err := r.Inbound.Decrypt(buf, start, end)
	if seq != 0 {
		r.verified = append(r.verified, seq)
	}
	return s, e, seq, err
}

func (r *recordingInbound) Accept(seq uint64) error {
	err := r.Inbound.Accept(seq)
	if err == nil {
		r.accepted = append(r.accepted, seq)
	}
	return err
}

// recordingESP is a recordingInbound around an ESP engine, with the bare
// ESP method the data plane calls (frame.go).
type recordingESP struct{ *recordingInbound }

func (r recordingESP) Mode() sa.Mode { return r.Inbound.(espInbound).Mode() }

func (r recordingESP) DecryptESP(buf []byte, start, end int, src, dst netip.Addr) (int, int, uint8, uint64, error) {
	s, e, nh, seq, err := r.Inbound.(espInbound).DecryptESP(buf, start, end, src, dst)
	if seq != 0 {
		r.verified = append(r.verified, seq)
	}
	return s, e, nh, seq, err
}

// recordingAH is a recordingInbound around an AH engine, with the method
// the data plane calls on a packet it has split (frame.go).
type recordingAH struct{ *recordingInbound }

func (r recordingAH) Mode() sa.Mode { return r.Inbound.(ahInbound).Mode() }

func (r recordingAH) DecryptAH(buf []byte, start, end int, sp *packet.Split) (int, int, uint8, uint64, error) {
	s, e, nh, seq, err := r.Inbound.(ahInbound).DecryptAH(buf, start, end, sp)
	if seq != 0 {
		r.verified = append(r.verified, seq)
	}
	return s, e, nh, seq, err
}

// fuzzRig is one data plane with one live inbound SA and the peer's sealer.
type fuzzRig struct {
	t         *testing.T
	f         fuzzSA
	d         *Dataplane
	log       bytes.Buffer
	b         *batch
	in        *recordingInbound
	out       sad.Outbound  // the peer's outbound SA with the same key
	espTr     transform.ESP // its transform, for hand-built packets
	local     netip.Addr    // this host (outer)
	remote    netip.Addr    // the peer (outer)
	innerL    netip.Addr    // protected addresses (tunnel mode)
	innerR    netip.Addr
	sealed    map[uint64]bool // sequence numbers sealed with the key
	setup     [][]byte        // the setup packets, as fed
	delivered int
	top       uint64 // the highest sequence number of the setup
}

func newFuzzRig(t *testing.T, f fuzzSA) *fuzzRig {
	r := &fuzzRig{t: t, f: f, sealed: make(map[uint64]bool)}
	r.local, r.remote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	r.innerL, r.innerR = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	if f.v6 {
		r.local, r.remote = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		r.innerL, r.innerR = netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1")
	}
	lpfx, rpfx := netip.PrefixFrom(r.innerL, r.innerL.BitLen()-8), netip.PrefixFrom(r.innerR, r.innerR.BitLen()-8)
	if f.mode == sa.Transport {
		r.innerL, r.innerR = r.local, r.remote
		lpfx, rpfx = netip.PrefixFrom(r.local, r.local.BitLen()), netip.PrefixFrom(r.remote, r.remote.BitLen())
	}
	dev := tuntest.New(1500, 1, 1)
	dev.OnWrite = func([]byte) { r.delivered++ }
	nw := conntest.NewNetwork(4)
	d, err := New(Config{TUN: dev, UDP: nw.UDP(netip.AddrPortFrom(r.local, 4500), 1, 1), Workers: 1,
		Logger: slog.New(slog.NewTextHandler(&r.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	r.b = newPool(1, 1, inboundBufSize).newBatch()

	k := key(64, 0x40)
	var in sad.Inbound
	switch f.proto {
	case sa.ESP:
		s, err := transform.ParseESP("aes128gcm16")
		if err != nil {
			t.Fatal(err)
		}
		tin, _ := s.NewESP(k[:s.KeyLen()])
		tout, _ := s.NewESP(k[:s.KeyLen()])
		r.espTr = tout
		in, err = esp.NewInbound(esp.Config{SPI: fuzzSPI, Mode: f.mode, Transform: tin, ESN: f.esn, ReplayWindow: fuzzWindow, EncapUDP: f.udp})
		if err != nil {
			t.Fatal(err)
		}
		r.out, err = esp.NewOutbound(esp.Config{SPI: fuzzSPI, Mode: f.mode, Transform: tout, ESN: f.esn, Local: r.remote, Remote: r.local})
		if err != nil {
			t.Fatal(err)
		}
	case sa.AH:
		s, err := transform.ParseAH("sha256")
		if err != nil {
			t.Fatal(err)
		}
		tin, _ := s.NewAH(k[:s.KeyLen()])
		tout, _ := s.NewAH(k[:s.KeyLen()])
		in, err = ah.NewInbound(ah.Config{SPI: fuzzSPI, Mode: f.mode, Integrity: tin, ESN: f.esn, ReplayWindow: fuzzWindow})
		if err != nil {
			t.Fatal(err)
		}
		r.out, err = ah.NewOutbound(ah.Config{SPI: fuzzSPI, Mode: f.mode, Integrity: tout, ESN: f.esn, Local: r.remote, Remote: r.local})
		if err != nil {
			t.Fatal(err)
		}
	}
	r.in = &recordingInbound{Inbound: in}
	var engine sad.Inbound = r.in
	if f.proto == sa.ESP {
		engine = recordingESP{r.in}
	} else {
		engine = recordingAH{r.in}
	}
	if err := d.InstallInbound(&sad.InboundSA{Protocol: f.proto, SPI: fuzzSPI, Mode: f.mode,
		Local: set(lpfx), Remote: set(rpfx), LocalAddr: r.local, SA: engine}); err != nil {
		t.Fatal(err)
	}

	// The window's state: top T, with T-1 and T-3 missing (holes) and the
	// rest of the setup inside. With ESN, T sits just below 2^32, so that
	// the numbers right of the window cross into the next high half.
	r.top = 1000
	if f.esn {
		r.top = 1<<32 - 3
	}
	for _, s := range []uint64{r.top - fuzzWindow + 1, r.top - 10, r.top - 2, r.top} {
		pkt := r.seal(s, r.legit(s))
		r.setup = append(r.setup, pkt)
		if !r.feed(pkt) {
			t.Fatalf("%v: setup packet %d not delivered; stats %+v\n%s", f, s, d.Stats(), r.log.String())
		}
	}
	return r
}

// legit returns a valid inner packet for sequence number s.
func (r *fuzzRig) legit(s uint64) []byte {
	return tuntest.UDP(netip.AddrPortFrom(r.innerR, 1000), netip.AddrPortFrom(r.innerL, 9), binary.BigEndian.AppendUint64(nil, s))
}

// seal returns the packet the peer sends for the inner packet pkt with
// sequence number s, as it reaches this host: the whole IP packet, or the
// UDP payload (RFC 3948) with UDP encapsulation. nil if the sealer refuses
// pkt.
func (r *fuzzRig) seal(s uint64, pkt []byte) []byte {
	buf := make([]byte, headroom+len(pkt)+tailroom)
	copy(buf[headroom:], pkt)
	start, end, err := r.out.SealSeq(buf, headroom, headroom+len(pkt), s)
	if err != nil {
		return nil
	}
	r.sealed[s] = true
	return r.wire(buf[start:end])
}

// wire strips the outer IP header of ip for UDP encapsulation.
func (r *fuzzRig) wire(ip []byte) []byte {
	if !r.f.udp {
		return ip
	}
	hl, _, err := packet.TransportSplit(ip)
	if err != nil {
		r.t.Fatalf("sealed packet: %v", err)
	}
	return ip[hl:]
}

// outer returns payload behind an outer IP header from the peer to this
// host with protocol proto, or payload itself with UDP encapsulation.
func (r *fuzzRig) outer(proto uint8, payload []byte) []byte {
	if r.f.udp {
		return payload
	}
	if r.f.v6 {
		b := make([]byte, packet.IPv6HeaderLen+len(payload))
		packet.PutIPv6Header(b, r.remote, r.local, proto, len(payload), 64)
		copy(b[packet.IPv6HeaderLen:], payload)
		return b
	}
	b := make([]byte, packet.IPv4MinHeaderLen+len(payload))
	packet.PutIPv4Header(b, r.remote, r.local, proto, len(b), 64, 0)
	copy(b[packet.IPv4MinHeaderLen:], payload)
	return b
}

// sealTrailer builds an authentic ESP packet with sequence number s whose
// plaintext (payload, padding, pad length, next header) is pt, padded with
// zeros to the cipher's block size.
func (r *fuzzRig) sealTrailer(s uint64, pt []byte) []byte {
	tr := r.espTr
	n := len(pt)
	if n < 2 {
		n = 2
	}
	if bs := tr.BlockSize(); n%bs != 0 {
		n += bs - n%bs
	}
	b := make([]byte, esp.HeaderLen+tr.IVLen()+n+tr.ICVLen())
	binary.BigEndian.PutUint32(b, fuzzSPI)
	binary.BigEndian.PutUint32(b[4:], uint32(s))
	copy(b[esp.HeaderLen+tr.IVLen():], pt)
	tr.Seal(b, s, r.f.esn)
	r.sealed[s] = true
	return r.outer(protoESP, b)
}

// feed runs one packet through the inbound stages and reports whether it
// was delivered. It checks that the packet was delivered or counted as a
// drop, and that nothing panicked.
func (r *fuzzRig) feed(pkt []byte) bool {
	t, d, b := r.t, r.d, r.b
	if len(pkt) > len(b.elems[0].buf)-headroom-tailroom {
		pkt = pkt[:len(b.elems[0].buf)-headroom-tailroom]
	}
	before := r.accounted()
	delivered := r.delivered
	e := b.elems[0]
	copy(e.buf[headroom:], pkt)
	b.sizes[0] = len(pkt)
	b.addrs[0] = netip.AddrPortFrom(r.remote, 4500)
	if r.f.udp {
		d.classifyUDP(b, 1, 0)
	} else {
		d.classifyRaw(b, 1, 0)
	}
	b.n = 1
	d.eachElem(siteWorker, b, 0, 1, d.work1, d.lostWork)
	d.writeInbound(b)
	b.n = 0
	e.kind, e.drop, e.out, e.in, e.seq = kindNone, sa.DropNone, nil, nil, 0
	if n := d.Panics(); n != 0 {
		t.Fatalf("%v: the data plane panicked on %x:\n%s", r.f, pkt, r.log.String())
	}
	if got := r.accounted() - before; got != 1 {
		t.Fatalf("%v: one packet, %d delivered or counted; stats %+v", r.f, got, d.Stats())
	}
	return r.delivered > delivered
}

// accounted is the number of packets delivered, counted as drops, or
// consumed as keepalives.
func (r *fuzzRig) accounted() int {
	n := uint64(r.delivered) + r.d.counters.keepalive.Load()
	for i := range r.d.drops {
		n += r.d.drops[i].Load()
	}
	return int(n)
}

// fuzzSeq picks the sequence number of the fuzzed packet around the window
// of top T: the position (sel) plus a small offset.
func fuzzSeq(f fuzzSA, top uint64, sel byte, off int8) uint64 {
	var s uint64
	switch sel % 8 {
	case 0:
		s = top - fuzzWindow // just left of the window
	case 1:
		s = top - fuzzWindow + 1 // the left edge
	case 2:
		s = top - 1 // a hole
	case 3:
		s = top // the right edge: a duplicate
	case 4:
		s = top + 1
	case 5:
		s = top + fuzzWindow
	case 6:
		s = top + 1<<31 // far right
	case 7:
		s = top + 1<<32 // the next high half (ESN), or wrapped
	}
	s += uint64(int64(off))
	if !f.esn {
		s = uint64(uint32(s))
	}
	return s
}

func FuzzInboundLiveSA(f *testing.F) {
	for sa := range byte(24) {
		for kind := range byte(numFuzzKinds) {
			for sel := range byte(8) {
				f.Add([]byte{sa, kind, sel, 0, 0x45, 0, 1, 2, 3})
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 {
			return
		}
		fs := fuzzSAOf(data[0] % 24)
		kind := data[1] % numFuzzKinds
		if kind == fuzzSealedTrailer && fs.proto != sa.ESP {
			kind = fuzzSealedInner
		}
		r := newFuzzRig(t, fs)
		seq := fuzzSeq(fs, r.top, data[2], int8(data[3]))
		rest := data[4:]

		var pkt []byte
		switch kind {
		case fuzzAfterHeader:
			h := make([]byte, 0, 12+len(rest))
			if fs.proto == sa.AH {
				// Next header, payload length, reserved: RFC 4302, Section 2.
				if len(rest) >= 2 {
					h = append(h, rest[0], rest[1], 0, 0)
					rest = rest[2:]
				} else {
					h = append(h, 4, 4, 0, 0)
				}
			}
			h = binary.BigEndian.AppendUint32(h, fuzzSPI)
			h = binary.BigEndian.AppendUint32(h, uint32(seq))
			pkt = r.outer(uint8(fs.proto), append(h, rest...))
		case fuzzRawBytes:
			pkt = r.outer(uint8(fs.proto), rest)
		case fuzzSealedInner:
			inner := rest
			if len(rest) > 0 && rest[0]&1 == 0 {
				// A valid header with fuzzed protocol and payload, inside
				// or outside the selectors.
				src, dst := r.innerR, r.innerL
				if rest[0]&2 != 0 {
					src = dst
				}
				proto := uint8(17)
				if len(rest) > 1 {
					proto = rest[1]
				}
				inner = tuntest.IP(src, dst, proto, rest)
			}
			pkt = r.seal(seq, inner)
			if pkt == nil {
				// The sealer refuses what is not an IP packet: send the
				// fuzz after the live header instead.
				pkt = r.outer(uint8(fs.proto), append(binary.BigEndian.AppendUint64(nil, uint64(fuzzSPI)<<32|uint64(uint32(seq))), rest...))
			}
		case fuzzSealedTrailer:
			pkt = r.sealTrailer(seq, rest)
		case fuzzReplay:
			pkt = r.setup[int(data[2])%len(r.setup)]
		}
		r.feed(pkt)

		// Only authentic sequence numbers reach the window.
		for _, s := range r.in.verified {
			if !r.sealed[s] {
				t.Fatalf("%v: Decrypt verified sequence number %d, which was never sealed", fs, s)
			}
		}
		top := uint64(0)
		seen := make(map[uint64]bool)
		for _, s := range r.in.accepted {
			if !r.sealed[s] || seen[s] {
				t.Fatalf("%v: the window took sequence number %d (sealed %v, twice %v)", fs, s, r.sealed[s], seen[s])
			}
			seen[s] = true
			top = max(top, s)
		}
		// An authentic, fresh packet within reach of the window moves it,
		// whatever its payload (RFC 4303, Section 3.4.3).
		if (kind == fuzzSealedInner || kind == fuzzSealedTrailer) && r.sealed[seq] &&
			seq > r.top-fuzzWindow && seq <= r.top+fuzzWindow && seq != r.top && !seen[seq] && seq != r.top-fuzzWindow+1 && seq != r.top-10 && seq != r.top-2 {
			t.Fatalf("%v: authentic fresh sequence number %d (top %d) not accepted; stats %+v", fs, seq, r.top, r.d.Stats())
		}

		// A legitimate packet still passes, and so does one that fills a
		// hole the window still covers.
		next := top + 1
		for r.sealed[next] {
			next++
		}
		if next <= sa.MaxSeq(fs.esn) {
			if !r.feed(r.seal(next, r.legit(next))) {
				t.Fatalf("%v: legitimate packet %d dropped after the fuzz input; stats %+v", fs, next, r.d.Stats())
			}
			top = next
		}
		hole := r.top - 1
		if !seen[hole] && hole+fuzzWindow > top {
			if !r.feed(r.seal(hole, r.legit(hole))) {
				t.Fatalf("%v: packet %d for a hole in the window (top %d) dropped; stats %+v", fs, hole, top, r.d.Stats())
			}
		}
	})
}

// TestInboundGarbageLiveSPIUnderTraffic sends thousands of forged ESP
// packets that carry the live SPI and sequence numbers around the replay
// window to a running data plane while legitimate traffic flows through the
// same SA: every legitimate packet arrives, nothing panics, and every forged
// packet is counted as a drop.
func TestInboundGarbageLiveSPIUnderTraffic(t *testing.T) {
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP, workers: 2})
	const rounds, perRound = 200, 25
	rnd := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 { // xorshift: deterministic and cheap
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return rnd
	}
	from := netip.AddrPortFrom(p.a.outer, 4500)
	forged := make([]byte, 8+8+64+16)
	for i := 1; i <= rounds; i++ {
		for range perRound {
			// B's inbound SPI, a sequence number near the legitimate
			// ones (left of, inside or right of the window), junk after.
			binary.BigEndian.PutUint32(forged, 0x1000)
			binary.BigEndian.PutUint32(forged[4:], uint32(int64(i)+int64(next()%2200)-1100))
			r := next()
			for j := 8; j < len(forged); j++ {
				forged[j] = byte(r >> (j % 8 * 8))
			}
			n := 8 + int(next()%uint64(len(forged)-8))
			p.b.udp.Inject(forged[:n], from)
		}
		pkt := udpPacket(p.a, p.b, uint16(i), []byte("legitimate traffic under a flood of forgeries"))
		p.a.tun.In <- pkt
		expect(t, p.b, pkt)
	}
	dropped := func() uint64 {
		var n uint64
		for _, v := range p.b.dp.Stats().Drops {
			n += v
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for dropped() < rounds*perRound && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := p.b.dp.Stats()
	if got := dropped(); got != rounds*perRound || st.Opened != rounds {
		t.Errorf("%d forged packets, %d drops (%v); %d legitimate, %d opened", rounds*perRound, got, st.Drops, rounds, st.Opened)
	}
	if n := p.b.dp.Panics(); n != 0 {
		t.Errorf("Panics() = %d", n)
	}
	t.Logf("drops: %v", st.Drops)
}
