// Package sad is the Security Association Database of RFC 4301,
// Section 4.4.2, as the data plane uses it: inbound SAs found by protocol and
// SPI, outbound SAs found by the SA bundle a PROTECT rule of the SPD names
// (spd.Rule.Ref) and, among the SAs of that bundle (one per peer when a rule
// serves several peers), by the selectors each SA was negotiated for
// (RFC 4301, Section 4.4.2: an SAD entry's selectors).
//
// The database is an immutable snapshot swapped with atomic.Pointer on every
// change, so lookups take no lock and allocate nothing. A snapshot is split
// into 4,096 shards, immutable maps chosen by a hash of the SPI (inbound) or
// of the Ref (outbound); a change copies the shard it touches and 1 KiB of
// shard pointers, not the whole database, so that an install costs about
// n/4096 map entries with n SAs installed rather than 2n, and bringing up n
// SAs is no longer quadratic.
//
// The packet engines (esp, ah) sit behind the small interfaces Inbound and
// Outbound, which both packages' SAs satisfy.
package sad

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// Inbound is the receiving half of an SA: *esp.Inbound or *ah.Inbound.
type Inbound interface {
	// Decrypt verifies and decapsulates the IP packet buf[start:end] (outer
	// header, then ESP or AH) in place and returns the bounds of the inner
	// packet. seq is non-zero exactly when the ICV verified; it must then be
	// passed to Accept even if err is not nil. Safe for concurrent use.
	Decrypt(buf []byte, start, end int) (nstart, nend int, seq uint64, err error)
	// Accept moves the replay window to include seq (RFC 4303,
	// Section 3.4.3). The SAD serializes calls per SA.
	Accept(seq uint64) error
}

// Outbound is the sending half of an SA: *esp.Outbound or *ah.Outbound.
type Outbound interface {
	// Overhead returns the worst-case room Seal needs before and after the
	// packet.
	Overhead() (head, tail int)
	// NextSeq hands out the next sequence number.
	NextSeq() (uint64, error)
	// SealSeq protects the IP packet buf[start:end] in place and returns the
	// bounds of the resulting IP packet (outer header included).
	SealSeq(buf []byte, start, end int, seq uint64) (nstart, nend int, err error)
}

// Encap is how an outbound SA's packets travel.
type Encap uint8

// Encapsulations.
const (
	// EncapNone sends ESP or AH directly over IP (protocol 50 or 51)
	// through a raw socket.
	EncapNone Encap = iota
	// EncapUDP sends ESP in UDP (RFC 3948), normally to port 4500.
	EncapUDP
)

func (e Encap) String() string {
	if e == EncapUDP {
		return "udp"
	}
	return "none"
}

// Stats are an SA's counters. All methods are safe for concurrent use.
type Stats struct {
	// Packets and Bytes count packets that passed every check (inbound) or
	// were sealed (outbound), and the bytes of the inner packets.
	Packets, Bytes atomic.Uint64
	// Drops counts the packets of this SA that were dropped, by reason.
	Drops sa.DropCounters
}

// Add counts one packet of n bytes.
func (s *Stats) Add(n int) {
	s.Packets.Add(1)
	s.Bytes.Add(uint64(n))
}

// InboundSA is one inbound SA in the database. Set the exported fields before
// Install; they must not change afterwards.
type InboundSA struct {
	// Protocol and SPI identify the SA on the wire (RFC 4301,
	// Section 4.1: the SPI alone suffices for unicast SAs).
	Protocol sa.Protocol
	SPI      uint32
	// Mode is the SA's mode, for reporting.
	Mode sa.Mode
	// Local and Remote are the SA's traffic selectors: a decapsulated
	// packet's destination must match Local and its source Remote (with
	// protocol and ports), or it is dropped with sa.DropSelector
	// (RFC 4301, Section 5.2, step 4). Empty means any.
	Local, Remote traffic.Set
	// LocalAddr is the outer destination address of the SA's packets:
	// this host's address. The data plane puts it into the synthetic outer
	// header of ESP-in-UDP packets, whose real header the kernel consumed.
	LocalAddr netip.Addr
	// SA is the packet engine.
	SA Inbound
	// Stats counts the SA's traffic and drops.
	Stats Stats

	mu sync.Mutex // serializes Accept
}

// Accept passes seq to the engine's Accept, one call at a time. The lock is
// released even if the engine panics, which the data plane recovers from.
func (s *InboundSA) Accept(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.SA.Accept(seq)
}

// Allows reports whether the decapsulated packet described by info is
// within the SA's selectors: RFC 4301, Section 5.2, step 4 (the inbound
// check after IPsec processing). ICMP and ICMPv6 compare type and code in
// place of the port (RFC 7296, Section 3.13.1).
func (s *InboundSA) Allows(info *packet.Info) bool { return allows(s.Remote, s.Local, info) }

// allows reports whether the packet's source matches src and its
// destination dst (empty sets match anything).
func allows(src, dst traffic.Set, info *packet.Info) bool {
	sport, dport, has := info.SrcPort, info.DstPort, info.HasPorts
	if info.HasICMP {
		// The "port" of an ICMP message is type and code on both sides.
		sport = traffic.ICMPPort(info.ICMPType, info.ICMPCode)
		dport, has = sport, true
	}
	return match(src, info.Src, info.Proto, sport, has) && match(dst, info.Dst, info.Proto, dport, has)
}

func match(set traffic.Set, a netip.Addr, proto uint8, port uint16, has bool) bool {
	return len(set) == 0 || set.Matches(a, proto, port, has)
}

// OutboundSA is one outbound SA in the database. Set the exported fields
// before Install; they must not change afterwards.
type OutboundSA struct {
	// Protocol and SPI identify the SA on the wire.
	Protocol sa.Protocol
	SPI      uint32
	// Mode is the SA's mode, for reporting.
	Mode sa.Mode
	// Ref is the SA bundle (the spd.Rule.Ref of the PROTECT rules) whose
	// packets this SA carries.
	Ref uint32
	// LocalTS and RemoteTS are the selectors the SA was negotiated for: it
	// carries the packets of bundle Ref whose source matches LocalTS and
	// whose destination matches RemoteTS (RFC 4301, Section 4.4.2). Empty
	// means any.
	LocalTS, RemoteTS traffic.Set
	// Peer names the peer that holds the SA's keys (for IKE, the
	// connection, the peer's authenticated identity and its address); it
	// is empty for manual SAs. Under one Ref, SAs of different peers must
	// not claim overlapping RemoteTS: InstallOutbound refuses that.
	Peer string
	// Encap says how packets travel: over UDP to Remote (address and
	// port), or directly over IP to Remote's address.
	Encap  Encap
	Remote netip.AddrPort
	// SA is the packet engine.
	SA Outbound
	// Stats counts the SA's traffic and drops.
	Stats Stats
}

type inKey struct {
	proto sa.Protocol
	spi   uint32
}

// A table is one half of a snapshot: 4,096 immutable shards (maps) in a
// two-level radix of 64 directories of 64, chosen by a hash of the key (the
// SPI or the Ref). Changing one shard copies the shard, its directory and
// the root, 1 KiB of pointers, and leaves the rest shared, so that an
// install with 100,000 SAs copies about 25 entries. The zero table is empty.
type table[K comparable, V any] struct {
	root *[fanout]*[fanout]map[K]V
}

const (
	fanoutBits = 6
	fanout     = 1 << fanoutBits
	shards     = fanout * fanout
)

// shardOf spreads key over the shards with a multiplicative (Fibonacci)
// hash, so that the sequential SPIs of manual SAs and Refs spread as well
// as the random SPIs of IKE (RFC 7296, Section 3.3.1).
func shardOf(key uint32) uint32 { return (key * 0x9e3779b1) >> (32 - 2*fanoutBits) }

// at returns shard i, nil when empty.
func (t table[K, V]) at(i uint32) map[K]V {
	if t.root == nil {
		return nil
	}
	if d := t.root[i>>fanoutBits]; d != nil {
		return d[i&(fanout-1)]
	}
	return nil
}

// with returns a table whose shard i is m (nil for empty) and whose other
// shards are t's.
func (t table[K, V]) with(i uint32, m map[K]V) table[K, V] {
	root := new([fanout]*[fanout]map[K]V)
	if t.root != nil {
		*root = *t.root
	}
	d := new([fanout]map[K]V)
	if old := root[i>>fanoutBits]; old != nil {
		*d = *old
	}
	d[i&(fanout-1)] = m
	root[i>>fanoutBits] = d
	return table[K, V]{root}
}

// each calls f for each non-empty shard.
func (t table[K, V]) each(f func(map[K]V)) {
	if t.root == nil {
		return
	}
	for _, d := range t.root {
		if d == nil {
			continue
		}
		for _, m := range d {
			if m != nil {
				f(m)
			}
		}
	}
}

// Snapshot is an immutable view of the database. Its methods allocate
// nothing and are safe for concurrent use.
type Snapshot struct {
	in  table[inKey, *InboundSA]
	out table[uint32, []*OutboundSA] // newest first
}

// Inbound returns the inbound SA for (proto, spi), or nil.
func (s *Snapshot) Inbound(proto sa.Protocol, spi uint32) *InboundSA {
	return s.in.at(shardOf(spi))[inKey{proto, spi}]
}

// Outbound returns the newest outbound SA of bundle ref, or nil. A bundle
// that serves several peers has several; the data plane uses Lookup.
func (s *Snapshot) Outbound(ref uint32) *OutboundSA {
	if l := s.OutboundsOf(ref); len(l) > 0 {
		return l[0]
	}
	return nil
}

// Lookup returns the outbound SA of bundle ref whose selectors match the
// packet described by info, the newest first, or nil when none does (RFC
// 4301, Section 5.1.1: the SAD entry that matches the packet's selectors).
// ICMP and ICMPv6 compare type and code in place of the port, as
// InboundSA.Allows does. It allocates nothing.
func (s *Snapshot) Lookup(ref uint32, info *packet.Info) *OutboundSA {
	for _, o := range s.OutboundsOf(ref) {
		if o.Allows(info) {
			return o
		}
	}
	return nil
}

// Allows reports whether the outbound packet described by info is within
// the SA's selectors: its source in LocalTS and its destination in
// RemoteTS.
func (o *OutboundSA) Allows(info *packet.Info) bool { return allows(o.LocalTS, o.RemoteTS, info) }

// InboundSAs calls f for each inbound SA, in no particular order.
func (s *Snapshot) InboundSAs(f func(*InboundSA)) {
	s.in.each(func(m map[inKey]*InboundSA) {
		for _, v := range m {
			f(v)
		}
	})
}

// OutboundSAs calls f for each outbound SA, in no particular order.
func (s *Snapshot) OutboundSAs(f func(*OutboundSA)) {
	s.out.each(func(m map[uint32][]*OutboundSA) {
		for _, l := range m {
			for _, v := range l {
				f(v)
			}
		}
	})
}

// OutboundsOf returns the outbound SAs of bundle ref, newest first. The
// caller must not modify the slice.
func (s *Snapshot) OutboundsOf(ref uint32) []*OutboundSA { return s.out.at(shardOf(ref))[ref] }

// DB is the database. The zero value is empty and ready to use; a DB must
// not be copied after first use. Lookups (Load) are safe from any goroutine
// at any time; changes are serialized internally.
type DB struct {
	mu   sync.Mutex // serializes writers
	snap atomic.Pointer[Snapshot]
}

var empty = &Snapshot{}

// Load returns the current snapshot. It never returns nil.
func (db *DB) Load() *Snapshot {
	if s := db.snap.Load(); s != nil {
		return s
	}
	return empty
}

// Errors of Install.
var (
	ErrExists  = errors.New("sad: an SA with this protocol and SPI is already installed")
	ErrInvalid = errors.New("sad: invalid SA")
	// ErrOverlap means that another peer's outbound SA of the same bundle
	// already claims some of the remote selectors: RFC 4301, Section
	// 4.4.3, a peer may not take traffic that belongs to another.
	ErrOverlap = errors.New("sad: the remote selectors overlap another peer's SA of the same policy")
)

// change runs f on a copy of the shard of key in one half of the snapshot
// (half returns it: the inbound or the outbound table) and, if f succeeds,
// publishes a snapshot with that copy in place of the shard. The other
// shards are shared with the old snapshot.
func change[K comparable, V any](db *DB, half func(*Snapshot) *table[K, V], key uint32, f func(map[K]V) error) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	next := *db.Load()
	t, i := half(&next), shardOf(key)
	m := maps.Clone(t.at(i))
	if m == nil {
		m = make(map[K]V, 1)
	}
	if err := f(m); err != nil {
		return err
	}
	if len(m) == 0 {
		m = nil
	}
	*t = t.with(i, m)
	db.snap.Store(&next)
	return nil
}

func inbound(s *Snapshot) *table[inKey, *InboundSA]      { return &s.in }
func outbound(s *Snapshot) *table[uint32, []*OutboundSA] { return &s.out }

// InstallInbound adds an inbound SA. It fails with ErrExists if the
// (protocol, SPI) pair is taken.
func (db *DB) InstallInbound(s *InboundSA) error {
	if s == nil || s.SA == nil || s.SPI == 0 || (s.Protocol != sa.ESP && s.Protocol != sa.AH) {
		return fmt.Errorf("%w: inbound SA needs an engine, ESP or AH, and a non-zero SPI", ErrInvalid)
	}
	return change(db, inbound, s.SPI, func(in map[inKey]*InboundSA) error {
		k := inKey{s.Protocol, s.SPI}
		if _, ok := in[k]; ok {
			return fmt.Errorf("%w: %v %08x", ErrExists, s.Protocol, s.SPI)
		}
		in[k] = s
		return nil
	})
}

// InstallOutbound adds s to the outbound SAs of bundle s.Ref. An SA of the
// same Peer with the same selectors is replaced and returned (that is how
// a rekeyed SA takes over: RFC 7296, Section 2.8); the SAs of other peers
// stay. It fails with ErrOverlap if an SA of another peer in the bundle
// claims remote selectors that overlap s.RemoteTS (RFC 4301, Section
// 4.4.3).
func (db *DB) InstallOutbound(s *OutboundSA) (prev *OutboundSA, err error) {
	if s == nil || s.SA == nil || (s.Protocol != sa.ESP && s.Protocol != sa.AH) {
		return nil, fmt.Errorf("%w: outbound SA needs an engine and ESP or AH", ErrInvalid)
	}
	if !s.Remote.Addr().IsValid() {
		return nil, fmt.Errorf("%w: outbound SA needs a remote address", ErrInvalid)
	}
	if s.Encap == EncapUDP && s.Protocol != sa.ESP {
		return nil, fmt.Errorf("%w: only ESP travels in UDP (RFC 3948)", ErrInvalid)
	}
	err = change(db, outbound, s.Ref, func(out map[uint32][]*OutboundSA) error {
		l := []*OutboundSA{s}
		for _, o := range out[s.Ref] {
			switch {
			case o.Peer == s.Peer && o.LocalTS.Equal(s.LocalTS) && o.RemoteTS.Equal(s.RemoteTS):
				prev = o
			case o.Peer != s.Peer && Overlap(o.RemoteTS, s.RemoteTS):
				return fmt.Errorf("%w: %s claims %v, %s holds %v", ErrOverlap, s.Peer, s.RemoteTS, o.Peer, o.RemoteTS)
			default:
				l = append(l, o)
			}
		}
		out[s.Ref] = l
		return nil
	})
	return prev, err
}

// Overlap reports whether some traffic matches both a and b; an empty set
// means any traffic.
func Overlap(a, b traffic.Set) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	return a.Overlaps(b)
}

// RemoveInbound deletes the inbound SA (proto, spi) and returns it, or nil
// if there was none.
func (db *DB) RemoveInbound(proto sa.Protocol, spi uint32) (removed *InboundSA) {
	change(db, inbound, spi, func(in map[inKey]*InboundSA) error {
		k := inKey{proto, spi}
		removed = in[k]
		delete(in, k)
		return nil
	})
	return removed
}

// RemoveOutbound deletes the outbound SA of bundle ref whose protocol and
// SPI are (proto, spi) (so that deleting an old SA after a rekey leaves its
// successor alone, and one peer's SA leaves the others') and returns it,
// or nil.
func (db *DB) RemoveOutbound(ref uint32, proto sa.Protocol, spi uint32) (removed *OutboundSA) {
	change(db, outbound, ref, func(out map[uint32][]*OutboundSA) error {
		var l []*OutboundSA
		for _, s := range out[ref] {
			if removed == nil && s.Protocol == proto && s.SPI == spi {
				removed = s
				continue
			}
			l = append(l, s)
		}
		if len(l) == 0 {
			delete(out, ref)
		} else {
			out[ref] = l
		}
		return nil
	})
	return removed
}
