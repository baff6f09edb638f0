// Package conntest is an in-memory network of conn.UDP and conn.Raw twins for
// tests: datagrams written to an address arrive at the endpoint bound to it,
// in order, with back-pressure instead of loss when a receiver falls behind.
// Delivery copies into pooled slots, so it allocates nothing in steady state.
package conntest

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/sa"
)

// SlotSize is the largest datagram or packet the network carries; larger
// ones are silently dropped, as a link with that MTU would.
const SlotSize = 4096

type datagram struct {
	b    [SlotSize]byte
	n    int
	from netip.AddrPort
	tos  uint8 // UDP: the TOS or traffic class it was sent with
}

type rawKey struct {
	addr  netip.Addr
	proto uint8
}

// Network connects twins. The zero value is not usable; call NewNetwork.
type Network struct {
	mu    sync.Mutex
	udp   map[netip.AddrPort]*UDP
	raw   map[rawKey]*Raw
	free  chan *datagram
	alloc int
	max   int
	// Dropped counts datagrams that had no receiver or were too large.
	dropped uint64
}

// NewNetwork returns an empty network that holds at most maxInFlight
// datagrams at a time (writers block beyond that).
func NewNetwork(maxInFlight int) *Network {
	return &Network{
		udp:  make(map[netip.AddrPort]*UDP),
		raw:  make(map[rawKey]*Raw),
		free: make(chan *datagram, maxInFlight),
		max:  maxInFlight,
	}
}

// Dropped returns how many datagrams had no receiver or were too large.
func (nw *Network) Dropped() uint64 {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.dropped
}

func (nw *Network) get(done <-chan struct{}) *datagram {
	select {
	case d := <-nw.free:
		return d
	default:
	}
	nw.mu.Lock()
	if nw.alloc < nw.max {
		nw.alloc++
		nw.mu.Unlock()
		return new(datagram)
	}
	nw.mu.Unlock()
	select {
	case d := <-nw.free:
		return d
	case <-done:
		return nil
	}
}

func (nw *Network) put(d *datagram) {
	select {
	case nw.free <- d:
	default:
	}
}

func (nw *Network) drop() {
	nw.mu.Lock()
	nw.dropped++
	nw.mu.Unlock()
}

type queue struct {
	q         chan *datagram
	closed    chan struct{}
	closeOnce sync.Once
}

func newQueue(n int) queue {
	return queue{q: make(chan *datagram, n), closed: make(chan struct{})}
}

func (q *queue) close() { q.closeOnce.Do(func() { close(q.closed) }) }

// deliver hands d to q, blocking while q is full; it reports false if either
// side closed first.
func (q *queue) deliver(d *datagram, self <-chan struct{}) bool {
	select {
	case q.q <- d:
		return true
	case <-q.closed:
	case <-self:
	}
	return false
}

// read blocks for one datagram, then takes any more that are waiting.
func (nw *Network) read(q *queue, bufs [][]byte, sizes []int, addrs []netip.AddrPort, tos []uint8, offset int) (int, error) {
	var d *datagram
	select {
	case d = <-q.q:
	case <-q.closed:
		return 0, conn.ErrClosed
	}
	n := 0
	for {
		if addrs != nil {
			addrs[n] = d.from
		}
		if tos != nil {
			tos[n] = d.tos
		}
		sizes[n] = copy(bufs[n][offset:], d.b[:d.n])
		nw.put(d)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case d = <-q.q:
		default:
			return n, nil
		}
	}
}

// UDP is a conn.UDP twin bound to one address of a Network.
type UDP struct {
	nw    *Network
	local netip.AddrPort
	batch int
	queue
}

// UDP binds a new endpoint to local. Binding an address twice panics: it is
// a bug in the test.
func (nw *Network) UDP(local netip.AddrPort, batch, queueLen int) *UDP {
	u := &UDP{nw: nw, local: local, batch: batch, queue: newQueue(queueLen)}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if _, ok := nw.udp[local]; ok {
		panic("conntest: address in use: " + local.String())
	}
	nw.udp[local] = u
	return u
}

// Read implements conn.UDP.
func (u *UDP) Read(bufs [][]byte, sizes []int, addrs []netip.AddrPort, offset int) (int, error) {
	return u.nw.read(&u.queue, bufs, sizes, addrs, nil, offset)
}

// ReadTOS is Read that reports the TOS each datagram was sent with (by
// WriteBatchTOS or InjectTOS; 0 otherwise), as conn.UDPConn.ReadTOS.
func (u *UDP) ReadTOS(bufs [][]byte, sizes []int, addrs []netip.AddrPort, tos []uint8, offset int) (int, error) {
	return u.nw.read(&u.queue, bufs, sizes, addrs, tos, offset)
}

// Write implements conn.UDP. Datagrams to an address nobody is bound to are
// dropped, as on a real network.
func (u *UDP) Write(bufs [][]byte, dst netip.AddrPort) error {
	return u.WriteBatchTOS(bufs, netip.Addr{}, 0, dst)
}

// WriteBatchTOS is Write from the local address src with the TOS or
// traffic class tos, as conn.UDPConn.WriteBatchTOS: the datagrams arrive
// from src and this endpoint's port, and the receiver's ReadTOS reports
// tos. A zero or unspecified src sends from the bound address. The twin
// does not check that src is one of "this host's" addresses.
func (u *UDP) WriteBatchTOS(bufs [][]byte, src netip.Addr, tos uint8, dst netip.AddrPort) error {
	from := u.local
	if src.IsValid() && !src.IsUnspecified() {
		from = netip.AddrPortFrom(src.Unmap(), u.local.Port())
	}
	u.nw.mu.Lock()
	peer := u.nw.udp[dst]
	u.nw.mu.Unlock()
	for _, b := range bufs {
		if peer == nil || len(b) > SlotSize {
			u.nw.drop()
			continue
		}
		d := u.nw.get(u.closed)
		if d == nil {
			return conn.ErrClosed
		}
		d.n = copy(d.b[:], b)
		d.from, d.tos = from, tos
		if !peer.deliver(d, u.closed) {
			u.nw.put(d)
			select {
			case <-u.closed:
				return conn.ErrClosed
			default:
				u.nw.drop()
			}
		}
	}
	return nil
}

// Inject delivers payload to this endpoint as if from sent it, for tests
// that play an attacker. It blocks while the endpoint's queue is full.
func (u *UDP) Inject(payload []byte, from netip.AddrPort) {
	u.InjectTOS(payload, from, 0)
}

// InjectTOS is Inject of a datagram whose IP header had the TOS or traffic
// class tos, for tests of what a router on the way may set (ECN).
func (u *UDP) InjectTOS(payload []byte, from netip.AddrPort, tos uint8) {
	d := u.nw.get(u.closed)
	if d == nil {
		return
	}
	d.n = copy(d.b[:], payload)
	d.from, d.tos = from, tos
	if !u.deliver(d, nil) {
		u.nw.put(d)
	}
}

// BatchSize implements conn.UDP.
func (u *UDP) BatchSize() int { return u.batch }

// LocalAddr implements conn.UDP.
func (u *UDP) LocalAddr() netip.AddrPort { return u.local }

// Close implements conn.UDP and unbinds the address.
func (u *UDP) Close() error {
	u.nw.mu.Lock()
	if u.nw.udp[u.local] == u {
		delete(u.nw.udp, u.local)
	}
	u.nw.mu.Unlock()
	u.close()
	return nil
}

// Raw is a conn.Raw twin bound to one address and protocol of a Network.
// Protocol 0 receives every packet to its address that no endpoint of the
// packet's own protocol takes, like a sniffer; tests use it to watch BYPASS
// traffic.
type Raw struct {
	nw    *Network
	addr  netip.Addr
	proto uint8
	batch int
	queue
}

// Raw binds a new raw endpoint to addr for protocol proto (0: any).
func (nw *Network) Raw(addr netip.Addr, proto uint8, batch, queueLen int) *Raw {
	r := &Raw{nw: nw, addr: addr, proto: proto, batch: batch, queue: newQueue(queueLen)}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	k := rawKey{addr, proto}
	if _, ok := nw.raw[k]; ok {
		panic("conntest: raw address in use: " + addr.String())
	}
	nw.raw[k] = r
	return r
}

// Read implements conn.Raw.
func (r *Raw) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return r.nw.read(&r.queue, bufs, sizes, nil, nil, offset)
}

// Write implements conn.Raw: each packet goes to the endpoint bound to the
// destination address and protocol in its header.
func (r *Raw) Write(bufs [][]byte) error {
	for _, b := range bufs {
		dst, proto, ok := header(b)
		if !ok || len(b) > SlotSize {
			r.nw.drop()
			continue
		}
		r.nw.mu.Lock()
		peer := r.nw.raw[rawKey{dst, proto}]
		if peer == nil {
			peer = r.nw.raw[rawKey{dst, 0}]
		}
		r.nw.mu.Unlock()
		if peer == nil {
			r.nw.drop()
			continue
		}
		d := r.nw.get(r.closed)
		if d == nil {
			return conn.ErrClosed
		}
		d.n = copy(d.b[:], b)
		if !peer.deliver(d, r.closed) {
			r.nw.put(d)
			r.nw.drop()
		}
	}
	return nil
}

// header returns the destination and protocol (next header) of an IP packet.
func header(b []byte) (netip.Addr, uint8, bool) {
	if len(b) >= 20 && b[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(b[16:20])), b[9], true
	}
	if len(b) >= 40 && b[0]>>4 == 6 && int(binary.BigEndian.Uint16(b[4:]))+40 <= len(b) {
		return netip.AddrFrom16([16]byte(b[24:40])), b[6], true
	}
	return netip.Addr{}, 0, false
}

// BatchSize implements conn.Raw.
func (r *Raw) BatchSize() int { return r.batch }

// Version implements conn.Raw.
func (r *Raw) Version() int {
	if r.addr.Is4() {
		return 4
	}
	return 6
}

// Protocol implements conn.Raw.
func (r *Raw) Protocol() sa.Protocol { return sa.Protocol(r.proto) }

// Close implements conn.Raw and unbinds the endpoint.
func (r *Raw) Close() error {
	r.nw.mu.Lock()
	k := rawKey{r.addr, r.proto}
	if r.nw.raw[k] == r {
		delete(r.nw.raw, k)
	}
	r.nw.mu.Unlock()
	r.close()
	return nil
}

var (
	_ conn.UDP = (*UDP)(nil)
	_ conn.Raw = (*Raw)(nil)
)
