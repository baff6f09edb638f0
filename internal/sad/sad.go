// Package sad is the Security Association Database of RFC 4301,
// Section 4.4.2, as the data plane uses it: inbound SAs found by protocol and
// SPI, outbound SAs found by the SA bundle a PROTECT rule of the SPD names
// (spd.Rule.Ref) and, among the SAs of that bundle (one per peer when a rule
// serves several peers), by the selectors each SA was negotiated for
// (RFC 4301, Section 4.4.2: an SAD entry's selectors).
//
// The database is an immutable snapshot swapped with atomic.Pointer on every
// change, so lookups take no lock and allocate nothing. A snapshot is split
// into 4,096 shards, immutable flat hash tables chosen by a hash of the SPI
// (inbound) or of the Ref (outbound); a change copies the shard it touches
// and the directories above it, not the whole database, so that an install
// costs about n/4096 entries with n SAs installed rather than 2n, and
// bringing up n SAs is no longer quadratic. A lookup is three dependent
// memory reads (directory, slot, SA), which is what it costs when packets
// hit 100,000 SAs and every SA is cold.
//
// The packet engines (esp, ah) sit behind the small interfaces Inbound and
// Outbound, which both packages' SAs satisfy.
package sad

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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
	// Section 3.4.3). Safe for concurrent use: the data plane calls it
	// without a lock of its own, so that the window's is the one lock of
	// an inbound packet.
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
	// SA is the packet engine.
	SA Inbound

	// The state every packet reads, next to the fields above: the lock
	// of Accept and the selectors as Allows reads them (see hotSets).
	mu  sync.Mutex // serializes Accept
	sel hotSets

	// Local and Remote are the SA's traffic selectors: a decapsulated
	// packet's destination must match Local and its source Remote (with
	// protocol and ports), or it is dropped with sa.DropSelector
	// (RFC 4301, Section 5.2, step 4). Empty means any.
	Local, Remote traffic.Set
	// LocalAddr is the outer destination address of the SA's packets:
	// this host's address. The data plane puts it into the synthetic outer
	// header of ESP-in-UDP packets, whose real header the kernel consumed.
	LocalAddr netip.Addr
	// Stats counts the SA's traffic and drops.
	Stats Stats
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
func (s *InboundSA) Allows(info *packet.Info) bool {
	if s.sel.ready {
		return allows(s.sel.b, s.sel.a, info)
	}
	return allows(s.Remote, s.Local, info)
}

// hotSets holds an SA's two selector sets as the per-packet check reads
// them. A set of one selector, the usual case (one subnet or one host), is
// copied into the SA itself when it is installed, so that the check reads
// the SA's memory, not two more allocations that are cache misses of
// their own when packets hit many SAs; longer sets stay where they are.
type hotSets struct {
	a, b  traffic.Set // inbound: Local and Remote; outbound: LocalTS and RemoteTS
	one   [2]traffic.Selector
	ready bool // set before the SA is published, by the first install
}

// init fills h from a and b unless it was filled before (an SA installed
// again, in another database).
func (h *hotSets) init(a, b traffic.Set) {
	if h.ready {
		return
	}
	h.a, h.b = h.inline(0, a), h.inline(1, b)
	h.ready = true
}

func (h *hotSets) inline(i int, set traffic.Set) traffic.Set {
	if len(set) != 1 {
		return set
	}
	h.one[i] = set[0]
	return h.one[i : i+1 : i+1]
}

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
	// SA is the packet engine.
	SA Outbound
	// Encap says how packets travel: over UDP to Remote (address and
	// port), or directly over IP to Remote's address.
	Encap  Encap
	Remote netip.AddrPort
	// LocalAddr is the outer source address of the SA's packets: this
	// host's address that IKE negotiated the SA from (RFC 7296, Section
	// 2.11), or a manual SA's local address. The data plane sends ESP in
	// UDP from it, so that a host with several addresses does not send
	// from the one its routing table prefers (RFC 3948, Section 2.1: the
	// peer knows the SA by its endpoints). The zero Addr leaves the source
	// to the routing table. Raw ESP and AH take theirs from the engine's
	// outer header.
	LocalAddr netip.Addr

	sel hotSets // LocalTS and RemoteTS as Allows reads them

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
	// Stats counts the SA's traffic and drops.
	Stats Stats
}

type inKey struct {
	proto sa.Protocol
	spi   uint32
}

// A table is one half of a snapshot: 4,096 immutable shards in a two-level
// radix of 64 directories of 64, chosen by a hash of the key (the SPI or the
// Ref). Changing one shard copies the shard, its directory and the root,
// 2 KiB of pointers and slice headers, and leaves the rest shared, so that
// an install with 100,000 SAs copies about 25 entries. The zero table is
// empty.
//
// A shard is a flat open-addressing hash table (a slice of slots, a power
// of two at least twice its entries, probed linearly from the key's hash)
// held by value in its directory, so that a lookup reads the directory,
// then one slot, then the SA: three dependent memory reads where a Go map
// per shard took five or six (header, directory, table, group), each a
// cache miss when packets hit 100,000 SAs at random.
type table[K comparable, V any] struct {
	root *[fanout]*[fanout][]slot[K, V]
}

// slot is one entry of a shard; used marks it taken.
type slot[K comparable, V any] struct {
	key  K
	used bool
	val  V
}

const (
	fanoutBits = 6
	fanout     = 1 << fanoutBits
	shards     = fanout * fanout
)

// hashOf spreads key with a multiplicative (Fibonacci) hash, so that the
// sequential SPIs of manual SAs and Refs spread as well as the random SPIs
// of IKE (RFC 7296, Section 3.3.1). The top 12 bits choose the shard, the
// bits below them the first slot probed in it.
func hashOf(key uint32) uint32 { return key * 0x9e3779b1 }

// shardOf returns the shard of key.
func shardOf(key uint32) uint32 { return hashOf(key) >> (32 - 2*fanoutBits) }

// at returns shard i, nil when empty.
func (t table[K, V]) at(i uint32) []slot[K, V] {
	if t.root == nil {
		return nil
	}
	if d := t.root[i>>fanoutBits]; d != nil {
		return d[i&(fanout-1)]
	}
	return nil
}

// get returns the value of key k, whose hash key is h (the SPI or Ref).
func (t table[K, V]) get(h uint32, k K) (v V, ok bool) {
	if t.root == nil {
		return v, false
	}
	x := hashOf(h)
	d := t.root[x>>(32-fanoutBits)]
	if d == nil {
		return v, false
	}
	s := d[(x>>(32-2*fanoutBits))&(fanout-1)]
	if len(s) == 0 {
		return v, false
	}
	// At most half the slots are used: the probe ends at a free one.
	mask := uint32(len(s) - 1)
	for i := x >> 8 & mask; ; i = (i + 1) & mask {
		e := &s[i]
		if !e.used {
			return v, false
		}
		if e.key == k {
			return e.val, true
		}
	}
}

// build returns a shard that holds the entries of x (whose keys hash by
// hkey), nil for none.
func build[K comparable, V any](x *entries[K, V], hkey func(K) uint32) []slot[K, V] {
	if len(x.e) == 0 {
		return nil
	}
	n := 2
	for n < 2*len(x.e) {
		n <<= 1
	}
	s := make([]slot[K, V], n)
	mask := uint32(n - 1)
	for _, e := range x.e {
		i := hashOf(hkey(e.key)) >> 8 & mask
		for s[i].used {
			i = (i + 1) & mask
		}
		s[i] = e
	}
	return s
}

// entries are the entries of one shard while a change edits them: a
// short list (about 25 with 100,000 SAs), searched in order, which costs
// one allocation where a map would cost several and the hashing.
type entries[K comparable, V any] struct{ e []slot[K, V] }

// entriesOf returns the entries of shard s, in x, whose list it reuses.
func entriesOf[K comparable, V any](x *entries[K, V], s []slot[K, V]) *entries[K, V] {
	x.e = x.e[:0]
	for _, e := range s {
		if e.used {
			x.e = append(x.e, e)
		}
	}
	return x
}

func (x *entries[K, V]) find(k K) int {
	for i := range x.e {
		if x.e[i].key == k {
			return i
		}
	}
	return -1
}

// get returns the value of k, or the zero V.
func (x *entries[K, V]) get(k K) (v V, ok bool) {
	if i := x.find(k); i >= 0 {
		return x.e[i].val, true
	}
	return v, false
}

// set makes v the value of k.
func (x *entries[K, V]) set(k K, v V) {
	if i := x.find(k); i >= 0 {
		x.e[i].val = v
		return
	}
	x.e = append(x.e, slot[K, V]{key: k, used: true, val: v})
}

// del removes k.
func (x *entries[K, V]) del(k K) {
	if i := x.find(k); i >= 0 {
		x.e = append(x.e[:i], x.e[i+1:]...)
	}
}

// with returns a table whose shard i is s (nil for empty) and whose other
// shards are t's.
func (t table[K, V]) with(i uint32, s []slot[K, V]) table[K, V] {
	root := new([fanout]*[fanout][]slot[K, V])
	if t.root != nil {
		*root = *t.root
	}
	d := new([fanout][]slot[K, V])
	if old := root[i>>fanoutBits]; old != nil {
		*d = *old
	}
	d[i&(fanout-1)] = s
	root[i>>fanoutBits] = d
	return table[K, V]{root}
}

// each calls f for each entry until f returns false.
func (t table[K, V]) each(f func(K, V) bool) {
	if t.root == nil {
		return
	}
	for _, d := range t.root {
		if d == nil {
			continue
		}
		for _, s := range d {
			for _, e := range s {
				if e.used && !f(e.key, e.val) {
					return
				}
			}
		}
	}
}

// editList returns t with the list of key k (whose hash key is h; hkey
// gives that of every key) replaced by f of it, and k removed if the list
// is left empty. f must not modify the list it is given. The other shards
// are shared with t.
func editList[K comparable](t table[K, []entry], h uint32, hkey func(K) uint32, k K, f func([]entry) []entry) table[K, []entry] {
	var x entries[K, []entry]
	i := shardOf(h)
	entriesOf(&x, t.at(i))
	old, _ := x.get(k)
	if l := f(old); len(l) > 0 {
		x.set(k, l)
	} else {
		x.del(k)
	}
	return t.with(i, build(&x, hkey))
}

// Snapshot is an immutable view of the database. Its methods allocate
// nothing and are safe for concurrent use.
type Snapshot struct {
	in  table[inKey, *InboundSA]
	out table[uint32, bundle]
}

// bundle is the outbound SAs of one Ref. A bundle of at most indexMin
// SAs is a list, newest first, that Lookup walks. A larger one, such as
// the road warriors of one connection, each an SA of its own peer for its
// own address, is a crowd: persistent tables that an install or a removal
// changes at the cost of a few entries, not of the bundle's size, and
// that let Lookup read the SAs for the packet's destination rather than
// every peer's SA (RFC 4301, Section 4.4.2: the SAD entry whose selectors
// match the packet).
type bundle struct {
	all   []*OutboundSA // a small bundle; nil for a crowd
	crowd *crowd
}

// A crowd is a large bundle. Its SAs whose remote selectors are all
// single addresses are listed under each of those addresses (hosts), the
// others in rest; every SA is also listed under its protocol and SPI
// (spis), for RemoveOutbound. Each entry carries the SA's generation, so
// that Lookup can tell the newer of a host's SA and a rest SA apart. A
// crowd is immutable: a change returns a new one that shares all but the
// shards it touched (see table).
type crowd struct {
	n     int    // the SAs
	gen   uint64 // the generation of the newest SA
	hosts table[netip.Addr, []entry]
	spis  table[inKey, []entry]
	rest  []entry // newest first
}

// entry is an SA of a crowd and its generation (higher is newer).
type entry struct {
	o   *OutboundSA
	gen uint64
}

// indexMin is the bundle size above which a bundle is a crowd: below it,
// walking the SAs is as fast. A crowd that shrinks to indexMin/2 becomes a
// list again, so that one SA coming and going at the limit does not
// rebuild the bundle each time.
const indexMin = 8

// hostSet reports whether set is not empty and each of its selectors
// holds one address: a packet can match it only if its address is one of
// them (netip.Prefix.Contains compares a single-address prefix by
// equality).
func hostSet(set traffic.Set) bool {
	for _, sel := range set {
		if !sel.Prefix.IsSingleIP() {
			return false
		}
	}
	return len(set) > 0
}

// hostsOf calls f once for each distinct address of the host set set.
func hostsOf(set traffic.Set, f func(netip.Addr)) {
	for j, sel := range set {
		if a := sel.Prefix.Addr(); j == 0 || !set[:j].Contains(a) {
			f(a)
		}
	}
}

// addrHash is the hash key of an address in crowd.hosts.
func addrHash(a netip.Addr) uint32 {
	b := a.As16()
	h := uint32(0)
	for i := 0; i < 16; i += 4 {
		h = (h ^ uint32(b[i])<<24 ^ uint32(b[i+1])<<16 ^ uint32(b[i+2])<<8 ^ uint32(b[i+3])) * 0x85ebca6b
	}
	return h
}

// lookup returns the newest SA of b that allows the packet, or nil.
func (b *bundle) lookup(info *packet.Info) *OutboundSA {
	if b.crowd == nil {
		for _, o := range b.all {
			if o.Allows(info) {
				return o
			}
		}
		return nil
	}
	c := b.crowd
	var best entry
	if l, ok := c.hosts.get(addrHash(info.Dst), info.Dst); ok {
		for _, e := range l {
			if e.o.Allows(info) {
				best = e
				break
			}
		}
	}
	for _, e := range c.rest {
		if best.o != nil && e.gen < best.gen {
			break // older than the match already found
		}
		if e.o.Allows(info) {
			return e.o
		}
	}
	return best.o
}

// each calls f for each SA of b until f returns false.
func (b *bundle) each(f func(entry) bool) {
	if b.crowd == nil {
		for i, o := range b.all {
			if !f(entry{o, uint64(len(b.all) - i)}) {
				return
			}
		}
		return
	}
	b.crowd.spis.each(func(_ inKey, l []entry) bool {
		for _, e := range l {
			if !f(e) {
				return false
			}
		}
		return true
	})
}

// newest returns b's SAs, newest first.
func (b *bundle) newest() []*OutboundSA {
	if b.crowd == nil {
		return b.all
	}
	es := make([]entry, 0, b.crowd.n)
	b.each(func(e entry) bool { es = append(es, e); return true })
	slices.SortFunc(es, func(x, y entry) int { return cmp.Compare(y.gen, x.gen) })
	l := make([]*OutboundSA, len(es))
	for i, e := range es {
		l[i] = e.o
	}
	return l
}

// holder returns an SA of b of another peer than peer whose remote
// selectors overlap remote, or nil (RFC 4301, Section 4.4.3). In a crowd,
// with remote a host set, it reads only the SAs of remote's addresses and
// the SAs that are not host SAs; otherwise it walks them all.
func (b *bundle) holder(peer string, remote traffic.Set) *OutboundSA {
	var found *OutboundSA
	check := func(e entry) bool {
		if e.o.Peer != peer && Overlap(e.o.RemoteTS, remote) {
			found = e.o
			return false
		}
		return true
	}
	if b.crowd == nil || !hostSet(remote) {
		b.each(check)
		return found
	}
	hostsOf(remote, func(a netip.Addr) {
		l, _ := b.crowd.hosts.get(addrHash(a), a)
		for _, e := range l {
			if found != nil || !check(e) {
				return
			}
		}
	})
	for _, e := range b.crowd.rest {
		if found != nil || !check(e) {
			break
		}
	}
	return found
}

// same returns the SA of b of the same peer with the same selectors as s,
// which s replaces, or nil.
func (b *bundle) same(s *OutboundSA) *OutboundSA {
	var found *OutboundSA
	check := func(e entry) bool {
		if e.o.Peer == s.Peer && e.o.LocalTS.Equal(s.LocalTS) && e.o.RemoteTS.Equal(s.RemoteTS) {
			found = e.o
			return false
		}
		return true
	}
	switch {
	case b.crowd == nil:
		b.each(check)
	case hostSet(s.RemoteTS):
		a := s.RemoteTS[0].Prefix.Addr()
		l, _ := b.crowd.hosts.get(addrHash(a), a)
		for _, e := range l {
			if !check(e) {
				break
			}
		}
	default:
		for _, e := range b.crowd.rest {
			if !check(e) {
				break
			}
		}
	}
	return found
}

// with returns b with s added as its newest SA and prev (nil for none)
// removed.
func (b bundle) with(s, prev *OutboundSA) bundle {
	if b.crowd == nil {
		l := make([]*OutboundSA, 0, len(b.all)+1)
		l = append(l, s)
		for _, o := range b.all {
			if o != prev {
				l = append(l, o)
			}
		}
		if len(l) <= indexMin {
			return bundle{all: l}
		}
		return crowdOf(l)
	}
	c := b.crowd
	if prev != nil {
		c = c.without(prev)
	}
	return bundle{crowd: c.with(s)}
}

// without returns b with the newest SA of protocol proto and SPI spi
// removed, and that SA (nil if there was none: then b is returned).
func (b bundle) without(proto sa.Protocol, spi uint32) (bundle, *OutboundSA) {
	if b.crowd == nil {
		for i, o := range b.all {
			if o.Protocol == proto && o.SPI == spi {
				return bundle{all: append(b.all[:i:i], b.all[i+1:]...)}, o
			}
		}
		return b, nil
	}
	k := inKey{proto, spi}
	l, _ := b.crowd.spis.get(spi, k)
	if len(l) == 0 {
		return b, nil
	}
	c := b.crowd.without(l[0].o)
	if c.n > indexMin/2 {
		return bundle{crowd: c}, l[0].o
	}
	small := bundle{crowd: c}
	return bundle{all: small.newest()}, l[0].o
}

// crowdOf returns the crowd of the SAs l, newest first.
func crowdOf(l []*OutboundSA) bundle {
	c := &crowd{}
	for i := len(l) - 1; i >= 0; i-- {
		c = c.with(l[i])
	}
	return bundle{crowd: c}
}

// with returns c with s added as its newest SA.
func (c *crowd) with(s *OutboundSA) *crowd {
	n := *c
	n.n++
	n.gen++
	e := entry{s, n.gen}
	n.spis = editList(n.spis, s.SPI, inHash, inKey{s.Protocol, s.SPI}, func(l []entry) []entry {
		return append([]entry{e}, l...)
	})
	if !hostSet(s.RemoteTS) {
		n.rest = append([]entry{e}, c.rest...)
		return &n
	}
	hostsOf(s.RemoteTS, func(a netip.Addr) {
		n.hosts = editList(n.hosts, addrHash(a), addrHash, a, func(l []entry) []entry {
			return append([]entry{e}, l...)
		})
	})
	return &n
}

// without returns c without the SA o, which it holds.
func (c *crowd) without(o *OutboundSA) *crowd {
	n := *c
	n.n--
	drop := func(l []entry) []entry {
		if i := slices.IndexFunc(l, func(e entry) bool { return e.o == o }); i >= 0 {
			return append(l[:i:i], l[i+1:]...)
		}
		return l
	}
	n.spis = editList(n.spis, o.SPI, inHash, inKey{o.Protocol, o.SPI}, drop)
	if !hostSet(o.RemoteTS) {
		n.rest = drop(c.rest)
		return &n
	}
	hostsOf(o.RemoteTS, func(a netip.Addr) {
		n.hosts = editList(n.hosts, addrHash(a), addrHash, a, drop)
	})
	return &n
}

func inHash(k inKey) uint32     { return k.spi }
func outHash(ref uint32) uint32 { return ref }

// Inbound returns the inbound SA for (proto, spi), or nil.
func (s *Snapshot) Inbound(proto sa.Protocol, spi uint32) *InboundSA {
	v, _ := s.in.get(spi, inKey{proto, spi})
	return v
}

// Outbound returns the newest outbound SA of bundle ref, or nil. A bundle
// that serves several peers has several; the data plane uses Lookup.
func (s *Snapshot) Outbound(ref uint32) *OutboundSA {
	b, _ := s.out.get(ref, ref)
	var newest entry
	b.each(func(e entry) bool {
		if e.gen > newest.gen {
			newest = e
		}
		return true
	})
	return newest.o
}

// Lookup returns the outbound SA of bundle ref whose selectors match the
// packet described by info, the newest first, or nil when none does (RFC
// 4301, Section 5.1.1: the SAD entry that matches the packet's selectors).
// ICMP and ICMPv6 compare type and code in place of the port, as
// InboundSA.Allows does. It allocates nothing.
func (s *Snapshot) Lookup(ref uint32, info *packet.Info) *OutboundSA {
	b, _ := s.out.get(ref, ref)
	return b.lookup(info)
}

// Allows reports whether the outbound packet described by info is within
// the SA's selectors: its source in LocalTS and its destination in
// RemoteTS.
func (o *OutboundSA) Allows(info *packet.Info) bool {
	if o.sel.ready {
		return allows(o.sel.a, o.sel.b, info)
	}
	return allows(o.LocalTS, o.RemoteTS, info)
}

// InboundSAs calls f for each inbound SA, in no particular order.
func (s *Snapshot) InboundSAs(f func(*InboundSA)) {
	s.in.each(func(_ inKey, v *InboundSA) bool { f(v); return true })
}

// OutboundSAs calls f for each outbound SA, in no particular order.
func (s *Snapshot) OutboundSAs(f func(*OutboundSA)) {
	s.out.each(func(_ uint32, b bundle) bool {
		b.each(func(e entry) bool { f(e.o); return true })
		return true
	})
}

// OutboundsOf returns the outbound SAs of bundle ref, newest first. The
// caller must not modify the slice. For a bundle of many SAs it builds
// the list, which costs their number: the data plane uses Lookup, IKE's
// checks Holder and Covers.
func (s *Snapshot) OutboundsOf(ref uint32) []*OutboundSA {
	b, _ := s.out.get(ref, ref)
	return b.newest()
}

// Holder returns an outbound SA of bundle ref of another peer than peer
// whose remote selectors overlap remote, or nil when remote is free for
// peer (RFC 4301, Section 4.4.3: a peer may not claim the traffic of
// another). When remote is a set of single addresses it reads only the
// SAs for those addresses and the SAs of the bundle for more than
// single addresses, whatever the number of peers.
func (s *Snapshot) Holder(ref uint32, peer string, remote traffic.Set) *OutboundSA {
	b, _ := s.out.get(ref, ref)
	return b.holder(peer, remote)
}

// Covers reports whether bundle ref has an outbound SA whose remote
// selectors contain the address a (for any protocol and port).
func (s *Snapshot) Covers(ref uint32, a netip.Addr) bool {
	b, _ := s.out.get(ref, ref)
	if b.crowd != nil {
		if l, _ := b.crowd.hosts.get(addrHash(a), a); len(l) > 0 {
			return true
		}
		for _, e := range b.crowd.rest {
			if e.o.RemoteTS.Contains(a) {
				return true
			}
		}
		return false
	}
	for _, o := range b.all {
		if o.RemoteTS.Contains(a) {
			return true
		}
	}
	return false
}

// DB is the database. The zero value is empty and ready to use; a DB must
// not be copied after first use. Lookups (Load) are safe from any goroutine
// at any time; changes are serialized internally.
type DB struct {
	mu   sync.Mutex // serializes writers
	snap atomic.Pointer[Snapshot]

	// The lists that changes edit, reused (under mu) so that a change
	// allocates only what the new snapshot keeps.
	inEdit  entries[inKey, *InboundSA]
	outEdit entries[uint32, bundle]
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

// change runs f on the entries of the shard of key in one half of the
// snapshot (half returns it and the hash key of its keys: the inbound or
// the outbound table) and, if f succeeds, publishes a snapshot with a new
// shard built from them in place of the old. The other shards are shared
// with the old snapshot.
func change[K comparable, V any](db *DB, half func(*DB, *Snapshot) (*table[K, V], func(K) uint32, *entries[K, V]), key uint32, f func(*entries[K, V]) error) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	next := *db.Load()
	t, hkey, x := half(db, &next)
	i := shardOf(key)
	entriesOf(x, t.at(i))
	defer clear(x.e[:cap(x.e)]) // keep no SA alive through the reused list
	if err := f(x); err != nil {
		return err
	}
	*t = t.with(i, build(x, hkey))
	db.snap.Store(&next)
	return nil
}

func inbound(db *DB, s *Snapshot) (*table[inKey, *InboundSA], func(inKey) uint32, *entries[inKey, *InboundSA]) {
	return &s.in, inHash, &db.inEdit
}

func outbound(db *DB, s *Snapshot) (*table[uint32, bundle], func(uint32) uint32, *entries[uint32, bundle]) {
	return &s.out, outHash, &db.outEdit
}

// InstallInbound adds an inbound SA. It fails with ErrExists if the
// (protocol, SPI) pair is taken.
func (db *DB) InstallInbound(s *InboundSA) error {
	if s == nil || s.SA == nil || s.SPI == 0 || (s.Protocol != sa.ESP && s.Protocol != sa.AH) {
		return fmt.Errorf("%w: inbound SA needs an engine, ESP or AH, and a non-zero SPI", ErrInvalid)
	}
	return change(db, inbound, s.SPI, func(in *entries[inKey, *InboundSA]) error {
		k := inKey{s.Protocol, s.SPI}
		if _, ok := in.get(k); ok {
			return fmt.Errorf("%w: %v %08x", ErrExists, s.Protocol, s.SPI)
		}
		s.sel.init(s.Local, s.Remote)
		in.set(k, s)
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
	err = change(db, outbound, s.Ref, func(out *entries[uint32, bundle]) error {
		old, _ := out.get(s.Ref)
		if o := old.holder(s.Peer, s.RemoteTS); o != nil {
			return fmt.Errorf("%w: %s claims %v, %s holds %v", ErrOverlap, s.Peer, s.RemoteTS, o.Peer, o.RemoteTS)
		}
		prev = old.same(s)
		s.sel.init(s.LocalTS, s.RemoteTS)
		out.set(s.Ref, old.with(s, prev))
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
	change(db, inbound, spi, func(in *entries[inKey, *InboundSA]) error {
		k := inKey{proto, spi}
		removed, _ = in.get(k)
		in.del(k)
		return nil
	})
	return removed
}

// RemoveOutbound deletes the outbound SA of bundle ref whose protocol and
// SPI are (proto, spi) (so that deleting an old SA after a rekey leaves its
// successor alone, and one peer's SA leaves the others') and returns it,
// or nil.
func (db *DB) RemoveOutbound(ref uint32, proto sa.Protocol, spi uint32) (removed *OutboundSA) {
	change(db, outbound, ref, func(out *entries[uint32, bundle]) error {
		old, _ := out.get(ref)
		b, o := old.without(proto, spi)
		removed = o
		switch {
		case o == nil:
		case len(b.all) == 0 && b.crowd == nil:
			out.del(ref)
		default:
			out.set(ref, b)
		}
		return nil
	})
	return removed
}
