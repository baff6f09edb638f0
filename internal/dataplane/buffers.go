package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

// headroom is the room in front of every packet: enough for the outer IPv6
// header, a UDP header, the ESP header and the largest IV (40+8+8+16), or an
// outer IPv6 header and AH with the largest ICV (40+12+64), and for the
// virtio-net header the TUN device writes in front of the packets it is
// given (tun.Offset). Raw IPv6 receive rebuilds a 40-byte header in it too.
const headroom = 160

// tailroom is the room behind a packet: the largest ESP padding (255), the
// trailer (2) and ICV (64).
const tailroom = 512

// What an element carries through the pipeline.
const (
	kindNone    uint8 = iota // nothing to do: dropped, staged or consumed
	kindProtect              // outbound: seal with out, then send
	kindBypass               // outbound: send in the clear
	kindOpen                 // inbound: open with in, then write to the TUN
)

// elem is one packet in flight. Its buffer is allocated once and reused; the
// packet is buf[start:end].
type elem struct {
	buf        []byte
	start, end int
	kind       uint8
	lane       uint8 // outbound: the send lane (worker.go)
	drop       sa.Drop
	seq        uint64
	inner      int // length of the inner packet, for the SA's byte counter
	out        *sad.OutboundSA
	in         *sad.InboundSA
	from       netip.AddrPort
	// sp is the parsed view of the packet's IP header, made once where
	// the packet enters (packet.Decode outbound, packet.SplitTransport for
	// raw inbound packets) and handed to the engines; its zero value
	// (Version 0) marks an inbound packet without an IP header: ESP in UDP.
	sp packet.Split
	// dst is the outer destination of ESP in UDP (the SA's local address),
	// whose header the kernel consumed; from is its source.
	dst netip.Addr
	// tos is, for ESP in UDP, the TOS or traffic class byte of the outer
	// header the kernel writes (outbound: the inner header's in tunnel
	// mode, else 0) or consumed (inbound: from conn.UDPConn.ReadTOS, 0
	// when the socket reports none).
	tos uint8
}

// batch is the unit the pipeline moves: what one Read returned. Workers
// process it in chunks; done is waited on by the sequential stage, which
// runs once every chunk is through (wireguard-go's per-element lock, per
// batch).
type batch struct {
	elems []*elem
	n     int
	// restaged marks a batch of staged packets sent again once their SA
	// exists: the SPD counted their hits the first time.
	restaged bool
	done     sync.WaitGroup
	// pending counts the send lanes that have yet to send their part of an
	// outbound batch; the last returns it to the pool.
	pending atomic.Int32

	// Scratch for the I/O calls, sized for the whole batch.
	bufs  [][]byte
	sizes []int
	addrs []netip.AddrPort
	tos   []uint8
	out   [][]byte // sender: a run of packets to one destination
}

// pool is a bounded free list of batches whose buffers are bufSize bytes.
// Batches are made on first use, up to max; after that get blocks until one
// is put back, which is the pipeline's back-pressure.
type pool struct {
	free    chan *batch
	mu      sync.Mutex
	made    int
	max     int
	size    int // packets per batch
	bufSize int
}

func newPool(max, size, bufSize int) *pool {
	return &pool{free: make(chan *batch, max), max: max, size: size, bufSize: bufSize}
}

func (p *pool) get(done <-chan struct{}) *batch {
	select {
	case b := <-p.free:
		return b
	default:
	}
	p.mu.Lock()
	if p.made < p.max {
		p.made++
		p.mu.Unlock()
		return p.newBatch()
	}
	p.mu.Unlock()
	select {
	case b := <-p.free:
		return b
	case <-done:
		return nil
	}
}

func (p *pool) put(b *batch) {
	b.n, b.restaged = 0, false
	for _, e := range b.elems {
		e.kind, e.drop, e.out, e.in, e.seq, e.sp = kindNone, sa.DropNone, nil, nil, 0, packet.Split{}
	}
	select {
	case p.free <- b:
	default: // cannot happen: at most max batches exist
	}
}

func (p *pool) newBatch() *batch {
	b := &batch{
		elems: make([]*elem, p.size),
		bufs:  make([][]byte, p.size),
		sizes: make([]int, p.size),
		addrs: make([]netip.AddrPort, p.size),
		tos:   make([]uint8, p.size),
		out:   make([][]byte, 0, p.size),
	}
	for i := range b.elems {
		b.elems[i] = &elem{buf: make([]byte, p.bufSize)}
	}
	return b
}

// ioBufs points b.bufs at the whole of each element's buffer, for Read with
// offset headroom.
func (b *batch) ioBufs() [][]byte {
	for i, e := range b.elems {
		b.bufs[i] = e.buf
	}
	return b.bufs
}

// inboundBufSize is the buffer size of inbound elements: the TUN device
// coalesces written packets into the first buffer of a flow up to its
// capacity (GRO), so inbound buffers hold a whole super-packet.
const inboundBufSize = headroom + tun.MaxSegmentSize + tailroom

// outboundBufSize returns the buffer size of outbound elements for a device
// MTU: the device splits super-packets into MTU-sized packets on Read.
func outboundBufSize(mtu int) int {
	if mtu <= 0 || mtu > tun.MaxSegmentSize {
		mtu = tun.MaxSegmentSize
	}
	// Room for TFC padding (RFC 4303, Section 2.7) up to the MTU as well.
	return headroom + mtu + tailroom + min(mtu, 4096)
}
