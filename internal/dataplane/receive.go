package dataplane

// The inbound pipeline: ESP and AH from the sockets to cleartext on the TUN
// device. Each socket has its own reader and its own sequential stage.
//
//	readUDP / readRaw (1 goroutine per socket, sequential)
//	    batch Read into pooled 64 KiB buffers at offset headroom;
//	    UDP port 4500: demultiplex (RFC 3948, Section 2): the non-ESP marker
//	    -> Config.IKE; 0xFF -> NAT-keepalive, ignored; else bare ESP, with
//	    the peer's address and the SA's local one as outer addresses;
//	    raw sockets: the IP header is there (the socket rebuilds it for
//	    IPv6); split it once (packet.SplitTransport, kept in the element)
//	    and find ESP or AH behind it;
//	    SAD lookup by (protocol, SPI): none -> sa.DropUnknownSPI;
//	    then the batch goes to the work queue (in chunks) and to this
//	    socket's sequential queue
//	worker (Config.Workers goroutines, parallel)
//	    warm the chunk's SAs, one level of pointers at a time (warm);
//	    open in place (frame.go), with the split made above: the replay
//	    pre-check (lock-free, replay.Window.Check), ICV check, decryption,
//	    padding, and in transport mode the IP header back in front; no
//	    window update
//	writeInbound (1 goroutine per socket, sequential)
//	    waits for each batch's chunks; per packet: the engine's Accept, under
//	    its replay window's lock, the one lock of the packet (the window
//	    moves only for packets whose ICV verified: RFC 4303,
//	    Section 3.4.3) -> decode the inner packet -> inbound selector check
//	    against the SA (RFC 4301, Section 5.2: else sa.DropSelector) ->
//	    one batched TUN Write for the batch (the device coalesces TCP and
//	    UDP flows into super-packets: GRO)
//
// Cleartext where PROTECT applies (RFC 4301, Section 5.2, last step): in this
// design cleartext reaches the data plane only from the TUN device, that is,
// outbound, where every packet goes through the SPD. Inbound cleartext from
// the network is delivered by the kernel straight to its sockets and never
// passes through here: the host firewall drops it (the input and forward
// chains of osnet.Filter, which cmd/ipsecd hands to the daemon), not this
// package.

import (
	"encoding/binary"
	"net/netip"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

// IP protocol numbers.
const (
	protoESP = iana.ProtoESP
	protoAH  = iana.ProtoAH
)

// startInbound starts a reader and its sequential stage.
func (d *Dataplane) startInbound(batchSize int, read func(*batch) bool) {
	if batchSize <= 0 {
		batchSize = 1
	}
	p := newPool(d.workers+2, batchSize, inboundBufSize)
	q := make(chan *batch, d.workers+2)
	d.inSeqs = append(d.inSeqs, q)
	d.readers.Add(1)
	go func() {
		defer d.readers.Done()
		for {
			b := p.get(d.done)
			if b == nil {
				return
			}
			more := true
			if !d.guard(siteSocketRead, func() { more = read(b) }) {
				p.put(b)
				d.pause()
				continue
			}
			if !more {
				p.put(b)
				return
			}
			if b.n == 0 {
				p.put(b)
				continue
			}
			d.dispatch(b)
			q <- b
		}
	}()
	d.stages.Add(1)
	go func() {
		defer d.stages.Done()
		for b := range q {
			b.done.Wait()
			d.guard(siteTUNWrite, func() { d.writeInbound(b) })
			p.put(b)
		}
	}()
}

// readUDP fills b from the UDP socket and classifies the datagrams. It
// returns false when the socket is closed. Elements that need no decryption
// are left with kind kindNone.
func (d *Dataplane) readUDP(b *batch) bool {
	var n int
	var err error
	if d.udpTOS != nil {
		n, err = d.udpTOS.ReadTOS(b.ioBufs(), b.sizes, b.addrs, b.tos, headroom)
	} else {
		n, err = d.cfg.UDP.Read(b.ioBufs(), b.sizes, b.addrs, headroom)
		clear(b.tos[:n]) // Not-ECT, as if the outer header had TOS 0
	}
	if err != nil && n == 0 {
		return d.readFailed(err)
	}
	for i := 0; i < n; {
		i = d.classifyUDP(b, n, i)
	}
	b.n = n
	return true
}

// classifyUDP classifies the datagrams of b from the one at from on, up to n.
// A panic drops the datagram it happened on and returns the index of the
// next.
func (d *Dataplane) classifyUDP(b *batch, n, from int) (i int) {
	defer func() { d.recoverElem(siteClassifyIn, recover(), b, &i, d.lostCounted) }()
	db := d.sad.Load()
	local := d.cfg.UDP.LocalAddr().Addr()
	for i = from; i < n; i++ {
		e := b.elems[i]
		e.kind, e.drop, e.in, e.out = kindNone, sa.DropNone, nil, nil
		p := e.buf[headroom : headroom+b.sizes[i]]
		from := b.addrs[i]
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		switch esp.ClassifyUDP(p) {
		case esp.UDPKeepalive:
			d.counters.keepalive.Add(1)
			continue
		case esp.UDPIKE:
			d.counters.ike.Add(1)
			if d.cfg.IKE != nil {
				d.cfg.IKE(p, from) // with the non-ESP marker (RFC 3948, Section 2.2): its owner strips it
			} else {
				d.drops.Add(sa.DropUnsupported)
			}
			continue
		case esp.UDPESP:
		default:
			e.drop = sa.DropTruncated
			d.dropElem(e)
			continue
		}
		in := db.Inbound(sa.ESP, binary.BigEndian.Uint32(p))
		if in == nil {
			e.drop = sa.DropUnknownSPI
			d.dropElem(e)
			continue
		}
		e.in = in
		// No IP header: the engine opens bare ESP. The outer destination
		// is the SA's local address (transport mode puts it on the
		// decapsulated packet), else the socket's.
		dst := in.LocalAddr
		if !dst.IsValid() || dst.Is4() != from.Addr().Is4() {
			dst = local
		}
		if from.Addr().Is4() && !dst.Is4() {
			dst = netip.IPv4Unspecified()
		} else if from.Addr().Is6() && !dst.Is6() {
			dst = netip.IPv6Unspecified()
		}
		e.start, e.end, e.dst = headroom, headroom+len(p), dst
		e.from, e.tos = from, b.tos[i]
		e.kind = kindOpen
	}
	return i
}

// readRaw fills b from a raw socket and classifies the packets.
func (d *Dataplane) readRaw(r conn.Raw, b *batch) bool {
	n, err := r.Read(b.ioBufs(), b.sizes, headroom)
	if err != nil && n == 0 {
		return d.readFailed(err)
	}
	for i := 0; i < n; {
		i = d.classifyRaw(b, n, i)
	}
	b.n = n
	return true
}

// classifyRaw classifies the packets of b from the one at from on, up to n.
// A panic drops the packet it happened on and returns the index of the next.
func (d *Dataplane) classifyRaw(b *batch, n, from int) (i int) {
	defer func() { d.recoverElem(siteClassifyIn, recover(), b, &i, d.lostCounted) }()
	db := d.sad.Load()
	for i = from; i < n; i++ {
		e := b.elems[i]
		e.kind, e.drop, e.in, e.out = kindNone, sa.DropNone, nil, nil
		e.start, e.end = headroom, headroom+b.sizes[i]
		pkt := e.buf[e.start:e.end]
		err := packet.SplitTransport(pkt, &e.sp) // the engines' view: parsed once
		hl, nho := e.sp.HdrLen, e.sp.NextHdrOff
		if err != nil || hl+8 > e.sp.TotalLen {
			e.drop = sa.DropTruncated
			if err != nil {
				e.drop = asDrop(err)
			}
			d.dropElem(e)
			continue
		}
		var proto sa.Protocol
		var spi uint32
		switch pkt[nho] {
		case protoESP:
			proto, spi = sa.ESP, binary.BigEndian.Uint32(pkt[hl:])
		case protoAH:
			proto, spi = sa.AH, binary.BigEndian.Uint32(pkt[hl+4:]) // RFC 4302, Section 2
		default:
			e.drop = sa.DropMalformed
			d.dropElem(e)
			continue
		}
		in := db.Inbound(proto, spi)
		if in == nil {
			e.drop = sa.DropUnknownSPI
			d.dropElem(e)
			continue
		}
		e.in = in
		e.kind = kindOpen
	}
	return i
}

// readFailed decides whether a reader goes on after err.
func (d *Dataplane) readFailed(err error) bool {
	select {
	case <-d.done:
		return false
	default:
	}
	if isClosed(err) {
		return false
	}
	if n := d.counters.readErrors.Add(1); n%1000 == 1 {
		d.log.Warn("dataplane: socket read failed", "err", err, "failures", n)
	}
	return true
}

// writeInbound is the inbound sequential stage for one batch.
func (d *Dataplane) writeInbound(b *batch) {
	out := b.out[:0]
	var opened uint64
	for i := 0; i < b.n; {
		i = d.checkInbound(b, i, &out, &opened)
	}
	d.counters.opened.Add(opened)
	if len(out) > 0 {
		if _, err := d.cfg.TUN.Write(out, tun.Offset); err != nil {
			if n := d.counters.writeErrors.Add(1); n%1000 == 1 && !isClosed(err) {
				d.log.Warn("dataplane: TUN write failed", "err", err, "failures", n)
			}
		} else {
			d.counters.tunWritten.Add(uint64(len(out)))
		}
	}
	for i := range out {
		out[i] = nil
	}
	b.out = out[:0]
}

// checkInbound runs the sequential checks on the opened packets of b from
// the one at from on, appending those to deliver to out. A panic drops the
// packet it happened on and returns the index of the next.
func (d *Dataplane) checkInbound(b *batch, from int, out *[][]byte, opened *uint64) (i int) {
	defer func() { d.recoverElem(siteInboundCheck, recover(), b, &i, d.lostCounted) }()
	var info packet.Info
	for i = from; i < b.n; i++ {
		e := b.elems[i]
		if e.in == nil {
			continue // IKE, keepalive, or already counted
		}
		if e.seq != 0 {
			// The ICV verified: the window moves even if the payload
			// turned out bad (RFC 4303, Section 3.4.3). The engine's
			// replay window serializes itself (the stages of several
			// sockets may share an SA), so the SAD's per-SA lock
			// (sad.InboundSA.Accept) would be a second lock per packet.
			if err := e.in.SA.Accept(e.seq); err != nil && e.drop == sa.DropNone {
				e.drop = sa.DropReplay
			}
		}
		if e.drop != sa.DropNone {
			d.dropElem(e)
			continue
		}
		if e.kind != kindOpen {
			continue
		}
		pkt := e.buf[e.start:e.end]
		if err := packet.Decode(pkt, &info); err != nil {
			e.drop = asDrop(err)
			d.dropElem(e)
			continue
		}
		if !e.in.Allows(&info) {
			e.drop = sa.DropSelector
			d.dropElem(e)
			continue
		}
		e.in.Stats.Add(len(pkt))
		*opened++
		// The device writes its virtio-net header in front of the packet
		// and may coalesce later packets behind it, up to the buffer's end.
		*out = append(*out, e.buf[e.start-tun.Offset:e.end])
	}
	return i
}

// tosUDP is a UDP socket that reports the TOS or traffic class each
// datagram arrived with: conn.UDPConn (IP_TOS, IPV6_TCLASS) and its twin
// conntest.UDP. A socket without it reads as Not-ECT outer headers.
type tosUDP interface {
	ReadTOS(bufs [][]byte, sizes []int, addrs []netip.AddrPort, tos []uint8, offset int) (int, error)
}
