package osnet

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/traffic"
)

// FilterTable is the name of the nftables table (family inet) that a Filter
// owns.
const FilterTable = "goipsec"

// FilterAction is what a FilterRule does with the cleartext packets it
// matches. The zero value is FilterDrop, so that a forgotten action fails
// closed.
type FilterAction uint8

// Filter actions.
const (
	FilterDrop   FilterAction = iota // count and drop: a PROTECT or DISCARD rule
	FilterAccept                     // let through: a BYPASS rule
)

func (a FilterAction) String() string {
	switch a {
	case FilterDrop:
		return "drop"
	case FilterAccept:
		return "accept"
	}
	return fmt.Sprintf("FilterAction(%d)", uint8(a))
}

// FilterRule is one SPD rule seen from the network side: it matches inbound
// cleartext packets whose source lies in Remote and whose destination lies in
// Local (RFC 4301, Section 5.2: for an inbound packet the remote side is the
// source). An empty set means any address of either family.
//
// A selector's protocol restricts the packet's; its ports restrict the
// source port on the remote side and the destination port on the local side;
// for ICMP and ICMPv6 they restrict the type and code (the type in the high
// byte, as in traffic.Selector) on both sides. Pairs of a remote and a local
// selector that no packet can match (different families or protocols) are
// left out. An OPAQUE port range counts as any port in a drop rule and never
// matches in an accept rule, so that it fails closed.
type FilterRule struct {
	Action        FilterAction
	Remote, Local traffic.Set
}

// Filter drops cleartext packets that arrive from the network where a
// PROTECT or DISCARD policy applies, with an nftables table of its own ("inet
// goipsec") and two base chains, input and forward, at filter priority with
// policy accept. The data plane cannot do this itself: it sees only what
// reaches the TUN device and its sockets, and the kernel would deliver a
// cleartext packet with a protected source that arrives on another interface.
//
// Packets that arrive on the TUN device (decapsulated by the data plane, which
// has checked them against the SA's selectors) are never touched, nor are
// those forwarded into it (outbound, for the data plane's SPD), IPsec and IKE
// themselves, loopback traffic and IPv6 neighbour discovery. Safe for
// concurrent use.
type Filter struct {
	tun     string
	conn    *nftables.Conn
	table   *nftables.Table
	input   *nftables.Chain
	forward *nftables.Chain

	mu sync.Mutex // serializes batches on conn
}

// NewFilter creates the table in the calling thread's network namespace,
// replacing one left behind by an earlier run, with the exemptions and no
// policy rules yet: until Set, every packet is accepted. tunName is the name
// of the TUN device. It fails if the kernel has no nf_tables.
func NewFilter(tunName string) (*Filter, error) {
	if tunName == "" || len(tunName) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("osnet: filter: invalid interface name %q", tunName)
	}
	// A lasting connection: its socket, and so the namespace, is fixed
	// now, whichever goroutine calls Set later.
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("osnet: filter: netlink: %w", err)
	}
	f := &Filter{tun: tunName, conn: c}
	f.table = &nftables.Table{Name: FilterTable, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	f.input = &nftables.Chain{Name: "input", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	f.forward = &nftables.Chain{Name: "forward", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}

	// Adding the table first makes the delete succeed whether or not a
	// table of that name exists; the batch is one transaction, so no
	// packet sees the table half built.
	c.AddTable(f.table)
	c.DelTable(f.table)
	c.AddTable(f.table)
	c.AddChain(f.input)
	c.AddChain(f.forward)
	f.addRules(nil)
	if err := c.Flush(); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("osnet: filter: creating table inet %s: %w", FilterTable, err)
	}
	return f, nil
}

// Set replaces the policy rules with rules, in order, in one netlink batch,
// which the kernel applies atomically: on error the previous rules stay.
func (f *Filter) Set(rules []FilterRule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conn.FlushChain(f.input)
	f.conn.FlushChain(f.forward)
	f.addRules(rules)
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("osnet: filter: setting %d rules: %w", len(rules), err)
	}
	return nil
}

// Close deletes the table and closes the netlink socket.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conn.DelTable(f.table)
	err := f.conn.Flush()
	f.conn.CloseLasting()
	if err != nil {
		return fmt.Errorf("osnet: filter: deleting table inet %s: %w", FilterTable, err)
	}
	return nil
}

// addRules queues the rules of both chains: the exemptions, then rules.
func (f *Filter) addRules(rules []FilterRule) {
	for _, ch := range []*nftables.Chain{f.input, f.forward} {
		for _, e := range exemptions(f.tun, ch == f.forward) {
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: e})
		}
		for _, r := range rules {
			for _, e := range ruleExprs(r) {
				f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: e})
			}
		}
	}
}

// reg is the register every expression loads into and compares.
const reg = 1

// rb builds the expressions of one nftables rule: loads into reg, each
// followed by its comparison.
type rb []expr.Any

// meta matches the one-byte meta value key (nfproto, l4proto).
func (b rb) meta(key expr.MetaKey, v byte) rb {
	return append(b, &expr.Meta{Key: key, Register: reg}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{v}})
}

// ifname matches the input (key MetaKeyIIFNAME) or output interface name.
func (b rb) ifname(key expr.MetaKey, name string) rb {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	return append(b, &expr.Meta{Key: key, Register: reg}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data})
}

// payload matches the bytes at off in the header base, ANDed with mask
// when it is not nil, against data.
func (b rb) payload(base expr.PayloadBase, off uint32, mask, data []byte) rb {
	b = append(b, &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: uint32(len(data))})
	if mask != nil {
		b = append(b, &expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: uint32(len(data)), Mask: mask, Xor: make([]byte, len(data))})
	}
	return append(b, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data})
}

// transportRange matches the big-endian value of len(lo) bytes at off in the
// transport header against [lo, hi]. Values compare as byte strings, which
// for big-endian numbers is numeric order.
func (b rb) transportRange(off uint32, lo, hi []byte) rb {
	b = append(b, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: uint32(len(lo))})
	if string(lo) == string(hi) {
		return append(b, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: lo})
	}
	return append(b, &expr.Range{Op: expr.CmpOpEq, Register: reg, FromData: lo, ToData: hi})
}

func (b rb) accept() []expr.Any { return append(b, &expr.Verdict{Kind: expr.VerdictAccept}) }

func (b rb) drop() []expr.Any {
	return append(b, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// exemptions are the rules that come before the policy in each chain.
func exemptions(tun string, forward bool) [][]expr.Any {
	out := [][]expr.Any{
		// Decapsulated packets: the data plane has checked their inner
		// addresses against the SA's selectors (RFC 4301, Section 5.2,
		// step 4).
		rb{}.ifname(expr.MetaKeyIIFNAME, tun).accept(),
	}
	if forward {
		// Packets routed into the TUN device are outbound: the data plane
		// applies the SPD to them.
		out = append(out, rb{}.ifname(expr.MetaKeyOIFNAME, tun).accept())
	}
	udp := rb{}.meta(expr.MetaKeyL4PROTO, traffic.ProtoUDP)
	return append(out,
		// The host talking to itself: no policy covers loopback, and
		// 0.0.0.0/0 on both sides must not cut it off.
		rb{}.ifname(expr.MetaKeyIIFNAME, "lo").accept(),
		// IPsec-protected packets go to the SAD, not to the SPD-I
		// (RFC 4301, Section 5.2, step 3a): the data plane's raw sockets
		// (ESP, AH) ...
		rb{}.meta(expr.MetaKeyL4PROTO, traffic.ProtoESP).accept(),
		rb{}.meta(expr.MetaKeyL4PROTO, traffic.ProtoAH).accept(),
		// ... and its UDP sockets: IKE on 500 and 4500, ESP in UDP on 4500
		// (RFC 7296, Section 2.23; RFC 3948, Section 2.2).
		slices.Clone(udp).transportRange(2, be16(500), be16(500)).accept(),
		slices.Clone(udp).transportRange(2, be16(4500), be16(4500)).accept(),
		// IPv6 neighbour discovery (types 133-136): without it the peer's
		// link-layer address, and so the IPsec traffic, is unreachable.
		// Hop limit 255 proves the sender is on the link (RFC 4861,
		// Sections 6.1 and 7.1).
		rb{}.meta(expr.MetaKeyNFPROTO, unix.NFPROTO_IPV6).meta(expr.MetaKeyL4PROTO, traffic.ProtoICMPv6).
			payload(expr.PayloadBaseNetworkHeader, 7, nil, []byte{255}).
			transportRange(0, []byte{133}, []byte{136}).accept(),
	)
}

// ruleExprs builds the nftables rules of r: one per pair of a remote and a
// local selector that some packet can match, in order.
func ruleExprs(r FilterRule) [][]expr.Any {
	var out [][]expr.Any
	for _, rs := range expand(r.Remote) {
		for _, ls := range expand(r.Local) {
			if e, ok := pairExprs(rs, ls, r.Action); ok {
				out = append(out, e)
			}
		}
	}
	return out
}

// expand returns set, or for an empty set the selectors of all IPv4 and all
// IPv6 addresses.
func expand(set traffic.Set) traffic.Set {
	if len(set) == 0 {
		return traffic.Set{traffic.Any(false), traffic.Any(true)}
	}
	return set
}

// pairExprs builds the rule for packets from remote to local. It reports
// false when no packet matches both (different families or protocols), and
// for an accept rule with an OPAQUE selector: OPAQUE matches only packets
// whose ports are unknown (RFC 4301, Section 4.4.1.1), such as non-initial
// fragments, which this filter does not single out. Leaving such an accept
// out fails closed; a drop rule treats OPAQUE as any port, a superset, for
// the same reason.
func pairExprs(remote, local traffic.Selector, action FilterAction) ([]expr.Any, bool) {
	if remote.Is6() != local.Is6() {
		return nil, false
	}
	proto := remote.Proto
	if local.Proto != 0 {
		if proto != 0 && proto != local.Proto {
			return nil, false
		}
		proto = local.Proto
	}
	if action != FilterDrop && (remote.Opaque() || local.Opaque()) {
		return nil, false
	}
	// Source and destination address offsets: RFC 791, Section 3.1 and
	// RFC 8200, Section 3.
	nfproto, srcOff, dstOff := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16)
	if remote.Is6() {
		nfproto, srcOff, dstOff = unix.NFPROTO_IPV6, 8, 24
	}
	b := rb{}.meta(expr.MetaKeyNFPROTO, nfproto)
	if proto != 0 {
		b = b.meta(expr.MetaKeyL4PROTO, proto)
	}
	b = b.prefix(remote.Prefix, srcOff).prefix(local.Prefix, dstOff)
	// Inbound, the remote side is the source (RFC 4301, Section 5.2).
	b = b.ports(remote, 0).ports(local, 2)
	if action == FilterDrop {
		return b.drop(), true
	}
	return b.accept(), true
}

// prefix matches the address at off in the network header against p, with
// a mask unless p is a single address; /0 needs no test.
func (b rb) prefix(p netip.Prefix, off uint32) rb {
	bits := p.Bits()
	if bits <= 0 {
		return b
	}
	a := p.Masked().Addr().AsSlice()
	if bits == len(a)*8 {
		return b.payload(expr.PayloadBaseNetworkHeader, off, nil, a)
	}
	mask := make([]byte, len(a))
	for i := range mask {
		n := min(bits, 8)
		mask[i] = byte(0xff << (8 - n))
		bits -= n
	}
	return b.payload(expr.PayloadBaseNetworkHeader, off, mask, a)
}

// ports matches s's port range: the 16-bit port at off in the transport
// header (0: source, 2: destination), or for ICMP and ICMPv6 the type and
// code at offset 0 on either side (RFC 7296, Section 3.13.1), the type alone
// when the range covers every code of its types.
func (b rb) ports(s traffic.Selector, off uint32) rb {
	if s.AnyPort() || s.Opaque() {
		return b
	}
	lo, hi := s.PortLo, s.PortHi
	if traffic.IsICMP(s.Proto) {
		if lo&0xff == 0 && hi&0xff == 0xff {
			return b.transportRange(0, []byte{byte(lo >> 8)}, []byte{byte(hi >> 8)})
		}
		off = 0
	}
	return b.transportRange(off, be16(lo), be16(hi))
}
