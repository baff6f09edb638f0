package dataplane

// The outbound pipeline: cleartext from the TUN device to ESP/AH on a socket.
//
//	readTUN (1 goroutine, sequential)
//	    batch Read from the TUN device into pooled buffers at offset headroom
//	    (the device splits TSO/USO super-packets into MTU-sized packets);
//	    per packet: packet.Decode -> SPD Lookup (sa.Outbound) ->
//	        DISCARD: count sa.DropPolicy
//	        BYPASS:  mark for sending in the clear
//	        PROTECT: SAD lookup by the rule's Ref and the packet's selectors
//	                 (one SA per peer) -> no SA: stage the packet
//	                 and send one Acquire per policy (sa.DropNoSA when the
//	                 stage is full) -> NextSeq, in order per SA
//	    then the batch goes, in this order, to the work queue (in chunks)
//	    and to the queue of each send lane it has packets for (worker.go)
//	worker (Config.Workers goroutines, parallel)
//	    warm the chunk's SAs, one level of pointers at a time (warm);
//	    seal each PROTECT packet in place (frame.go): bare ESP from the
//	    engine, then for raw ESP the outer IP header (tunnel mode) or the
//	    packet's own header's length (transport mode); AH: the outer IP
//	    header (tunnel mode), then SealAH inserts AH behind the header the
//	    split describes; headers go into the headroom, padding and ICV into
//	    the tailroom
//	sendLane (sendLanes goroutines, one per lane of SAs hashed by bundle and peer;
//	each sequential, batch order = sequence order)
//	    waits for each batch's chunks; takes its lane's packets; groups
//	    consecutive ones by destination, source and transport; ESP in UDP:
//	    the bare ESP packets (the kernel writes the IP and UDP headers) go to
//	    UDP.WriteBatchTOS with the SA's local address as the source, which
//	    coalesces them into one UDP_SEGMENT send; ESP/AH over IP and
//	    BYPASS: whole IP packets to the raw socket of their IP version
//	    (IP_HDRINCL); then the batch returns to the pool.
//
// Sequence numbers are assigned before the parallel stage and each lane sends
// in batch order, so each SA's packets go out in sequence order, as
// wireguard-go keeps its nonces in order per peer; SAs on other lanes do not
// wait for them.

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

var errClosed = os.ErrClosed

func isClosed(err error) bool {
	return closedErr(err) || errors.Is(err, net.ErrClosed)
}

// readTUN is the outbound pipeline's first stage.
func (d *Dataplane) readTUN() {
	defer d.readers.Done()
	failures := 0
	for {
		b := d.outPool.get(d.done)
		if b == nil {
			return
		}
		var n int
		var err error
		if !d.guard(siteTUNRead, func() { n, err = d.cfg.TUN.Read(b.ioBufs(), b.sizes, headroom) }) {
			d.outPool.put(b)
			d.pause()
			continue
		}
		if err != nil && n == 0 {
			d.outPool.put(b)
			if isClosed(err) {
				return
			}
			select {
			case <-d.done:
				return
			default:
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				d.drops.Add(sa.DropTooBig)
				continue
			}
			// A bad virtio header or similar: count it and go on, but do
			// not spin on a broken device.
			d.drops.Add(sa.DropMalformed)
			failures++
			if failures%1000 == 1 {
				d.log.Warn("dataplane: TUN read failed", "err", err, "failures", failures)
			}
			if failures > 10 {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		failures = 0
		for i := 0; i < n; i++ {
			e := b.elems[i]
			e.start, e.end = headroom, headroom+b.sizes[i]
		}
		b.n = n
		d.counters.tunRead.Add(uint64(n))

		d.outMu.Lock()
		if d.closed {
			d.outMu.Unlock()
			d.outPool.put(b)
			return
		}
		d.classifyOutbound(b)
		d.queueOutbound(b)
		d.outMu.Unlock()
	}
}

// classifyOutbound applies the SPD and the SAD to the packets of b and
// assigns sequence numbers. The caller holds outMu.
func (d *Dataplane) classifyOutbound(b *batch) {
	for i := 0; i < b.n; {
		i = d.classifyOutboundFrom(b, i)
	}
}

// classifyOutboundFrom classifies b's packets from the one at from on. A
// panic drops the packet it happened on and returns the index of the next.
func (d *Dataplane) classifyOutboundFrom(b *batch, from int) (i int) {
	defer func() { d.recoverElem(siteClassifyOut, recover(), b, &i, d.lostCounted) }()
	pol := d.spd.Load()
	db := d.sad.Load()
	var info packet.Info
	for i = from; i < b.n; i++ {
		e := b.elems[i]
		e.kind, e.drop, e.out, e.in = kindNone, sa.DropNone, nil, nil
		pkt := e.buf[e.start:e.end]
		if err := packet.Decode(pkt, &info); err != nil {
			e.drop = asDrop(err)
			d.dropElem(e)
			continue
		}
		e.end = e.start + info.TotalLen // trim link padding
		e.sp = info.Split               // the engines' view: parsed once
		if !info.Dst.IsGlobalUnicast() && !info.Dst.IsLoopback() {
			// Multicast and link-local traffic that the kernel sends on
			// the TUN device itself (router solicitations, MLD) has no
			// peer to be protected for, and sending it on in the clear
			// would route it straight back into the device.
			e.drop = sa.DropPolicy
			d.dropElem(e)
			continue
		}
		if pol == nil {
			e.drop = sa.DropPolicy
			d.dropElem(e)
			continue
		}
		var rule *spd.Rule
		if b.restaged {
			_, rule = pol.Match(sa.Outbound, &info)
		} else {
			_, rule = pol.Lookup(sa.Outbound, &info)
		}
		switch rule.Action {
		case spd.Bypass:
			e.kind = kindBypass
			continue
		case spd.Protect:
		default:
			e.drop = sa.DropPolicy
			d.dropElem(e)
			continue
		}
		o := db.Lookup(rule.Ref, &info)
		if o == nil {
			if d.cfg.StageLen < 0 || !d.stagePacket(rule, e.buf[e.start:e.end], &info) {
				e.drop = sa.DropNoSA
				d.dropElem(e)
			}
			continue
		}
		e.out = o
		head, tail := o.SA.Overhead()
		if head > e.start || e.end+tail > len(e.buf) {
			e.drop = sa.DropTooBig
			d.dropElem(e)
			continue
		}
		seq, err := o.SA.NextSeq()
		if err != nil {
			e.drop = asDrop(err)
			d.dropElem(e)
			continue
		}
		e.seq = seq
		e.kind = kindProtect
	}
	return i
}

// route is where a sealed or bypassed packet goes.
type route struct {
	udp bool
	dst netip.AddrPort
	src netip.Addr // ESP in UDP: the SA's local address (zero: the routing table's)
	tos uint8      // ESP in UDP: the outer TOS (elem.tos); a change ends a run
	raw int        // 4 or 6 when !udp
}

// sourceUDP is a UDP socket that sends a batch from a chosen local address
// with a chosen TOS or traffic class: conn.UDPConn (IP_PKTINFO,
// IPV6_PKTINFO, IP_TOS, IPV6_TCLASS) and its twin conntest.UDP. A zero src
// leaves the source to the socket, a zero tos the TOS.
type sourceUDP interface {
	WriteBatchTOS(bufs [][]byte, src netip.Addr, tos uint8, dst netip.AddrPort) error
}

// sendBatch sends lane l's packets of b.
func (d *Dataplane) sendBatch(l *lane, b *batch) {
	var cur route
	run := l.out[:0]
	flush := func() {
		if len(run) > 0 {
			d.send(cur, run)
			run = run[:0]
		}
	}
	var sealed, bypassed uint64
	for _, e := range b.elems[:b.n] {
		if e.lane != l.id {
			continue
		}
		var r route
		var pkt []byte
		switch e.kind {
		case kindProtect:
			p, rt, ok := d.outerRoute(e)
			if !ok {
				d.dropElem(e)
				continue
			}
			pkt, r = p, rt
			sealed++
			e.out.Stats.Add(e.inner)
		case kindBypass:
			pkt = e.buf[e.start:e.end]
			r = route{raw: int(pkt[0] >> 4)}
			if d.rawFor(r.raw) == nil {
				e.drop = sa.DropUnsupported
				d.dropElem(e)
				continue
			}
			bypassed++
		default:
			continue
		}
		if r != cur || len(run) == cap(run) {
			flush()
			cur = r
		}
		run = append(run, pkt)
	}
	flush()
	l.out = run[:0]
	d.counters.sealed.Add(sealed)
	d.counters.bypassed.Add(bypassed)
}

// outerRoute returns the bytes to hand to the socket for a sealed packet and
// where they go. For ESP in UDP that is the bare ESP packet: the kernel
// builds the IP and UDP headers (RFC 3948, Section 2.1), from the SA's local
// address, as raw ESP's outer header is: the NAT-T socket is bound to every
// address, and the routing table's choice on a host with several would
// not be the endpoint the SA was negotiated between (RFC 7296, Section
// 2.11), which the peer may take for a NAT mapping change.
func (d *Dataplane) outerRoute(e *elem) ([]byte, route, bool) {
	pkt := e.buf[e.start:e.end]
	o := e.out
	if o.Encap == sad.EncapUDP {
		if d.cfg.UDP == nil {
			e.drop = sa.DropUnsupported
			return nil, route{}, false
		}
		return pkt, route{udp: true, dst: o.Remote, src: o.LocalAddr, tos: e.tos}, true
	}
	v := int(pkt[0] >> 4)
	if d.rawFor(v) == nil {
		e.drop = sa.DropUnsupported
		return nil, route{}, false
	}
	return pkt, route{raw: v}, true
}

func (d *Dataplane) rawFor(version int) interface{ Write([][]byte) error } {
	switch {
	case version == 4 && d.raw4 != nil:
		return d.raw4
	case version == 6 && d.raw6 != nil:
		return d.raw6
	}
	return nil
}

func (d *Dataplane) send(r route, pkts [][]byte) {
	var err error
	if r.udp {
		if d.udpFrom != nil {
			err = d.udpFrom.WriteBatchTOS(pkts, r.src, r.tos, r.dst)
		} else {
			err = d.cfg.UDP.Write(pkts, r.dst)
		}
	} else {
		err = d.rawFor(r.raw).Write(pkts)
	}
	if err != nil {
		if n := d.counters.sendErrors.Add(1); n%1000 == 1 && !isClosed(err) {
			d.log.Warn("dataplane: send failed", "err", err, "failures", n)
		}
	}
}
