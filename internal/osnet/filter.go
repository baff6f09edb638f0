package osnet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/iana"
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
// source), and outbound packets from Local to Remote (Section 5.1). An empty
// set means any address of either family.
//
// A selector's protocol restricts the packet's; its ports restrict the
// remote side's port (source inbound, destination outbound) and the local
// side's (destination inbound, source outbound);
// for ICMP and ICMPv6 they restrict the type and code (the type in the high
// byte, as in traffic.Selector) on both sides. Pairs of a remote and a local
// selector that no packet can match (different families or protocols) are
// left out. An OPAQUE port range counts as any port in a drop rule and never
// matches in an accept rule, so that it fails closed.
type FilterRule struct {
	Action        FilterAction
	Remote, Local traffic.Set
}

// Filter enforces the SPD on cleartext packets in the host's firewall, with
// an nftables table of its own ("inet goipsec"), so that protected traffic
// never crosses the network in the clear, whether or not the daemon runs:
//
//   - chain input (hook input) drops cleartext packets for this host whose
//     source lies in a PROTECT or DISCARD rule's remote selectors (RFC 4301,
//     Section 5.2). The data plane cannot do this itself: it sees only what
//     reaches the TUN device and its sockets.
//   - chain output (hook output) drops packets of this host that match a
//     PROTECT or DISCARD rule outbound (source in the local selectors,
//     destination in the remote ones) and would leave through any
//     interface other than the TUN device without the daemon's firewall
//     mark (RFC 4301, Section 5.1): the daemon's own encrypted packets
//     carry the mark. The routes hold such packets already (see Router);
//     the chain holds them when routes are wrong.
//   - chain forward (hook forward) applies both checks to routed packets
//     that neither arrive from nor leave through the TUN device.
//
// The policy lives in two regular chains, spd_in and spd_out, that the base
// chains jump to; a BYPASS rule returns from them, so that a forwarded
// packet passes both directions' checks. All base chains have policy accept:
// what no rule names is not the SPD's business (its default is BYPASS).
//
// Exempt, before the policy: packets that arrive on the TUN device
// (decapsulated by the data plane, which has checked them against the SA's
// selectors) or are routed into it (outbound, for the data plane's SPD);
// loopback; IPv6 neighbour discovery; in the input chain only, IPsec and IKE
// themselves (ESP, AH, UDP 500 and 4500): the input hook sees only packets
// addressed to this host, and IPsec packets for another host get no
// exemption (RFC 4301, Section 5.2, step 3a concerns packets addressed to
// this IPsec implementation). Safe for concurrent use.
//
// The table outlives the Filter and the process: Close keeps it (the policy
// stays in force while no daemon runs) and Clear removes it.
type Filter struct {
	tun  string
	mark uint32
	conn *nftables.Conn

	mu sync.Mutex // serializes batches on conn
}

// Chain names of the table.
const (
	chainInput   = "input"
	chainOutput  = "output"
	chainForward = "forward"
	chainSPDIn   = "spd_in"
	chainSPDOut  = "spd_out"
)

// NewFilter opens the netlink connection of a Filter in the calling
// thread's network namespace. It changes nothing: a table left behind by an
// earlier run stays in force, as it was, until the first Set replaces it
// atomically, so a restarted daemon never opens what the old one closed.
// tunName is the name of the TUN device, mark the firewall mark of the
// daemon's own sockets. It fails if the kernel has no nf_tables.
func NewFilter(tunName string, mark uint32) (*Filter, error) {
	if tunName == "" || len(tunName) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("osnet: filter: invalid interface name %q", tunName)
	}
	// A lasting connection: its socket, and so the namespace, is fixed
	// now, whichever goroutine calls Set later.
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(bigReadBuffer))
	if err != nil {
		return nil, fmt.Errorf("osnet: filter: netlink: %w", err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("osnet: filter: nf_tables: %w", err)
	}
	return &Filter{tun: tunName, mark: mark, conn: c}, nil
}

func filterTable() *nftables.Table {
	return &nftables.Table{Name: FilterTable, Family: nftables.TableFamilyINet}
}

// Set makes the table enforce rules, in order, in one netlink batch, which
// the kernel applies as one transaction: on error the previous table stays.
//
// The table's chains are kept and only their rules replaced (every rule of
// the table deleted, the chains created where missing, the new rules
// added), so the base chains stay registered on their hooks throughout. A
// packet is evaluated against one generation of the rules of the base
// chain it crosses and the chains it jumps to, so it sees the old rules or
// the new ones, never neither. Deleting and re-creating the table instead
// (as Set did) registers the new base chains next to the old ones, and a
// packet crossing both while the transaction commits could find each of
// them empty in the generation it saw, pass both accept policies and leave
// in the clear (TestFilterSetNoAcceptAllWindow caught one datagram of
// 40,253). Only if the kernel refuses to keep the chains, because a table of
// that name has chains of another hook or priority (left by another
// version), is the table replaced whole.
func (f *Filter) Set(rules []FilterRule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := filterTable()
	f.conn.AddTable(t)
	f.conn.FlushTable(t)
	f.addChains(t, rules)
	if err := f.conn.Flush(); err == nil {
		return nil
	}
	// Adding the table first makes the delete succeed whether or not a
	// table of that name exists.
	f.conn.AddTable(t)
	f.conn.DelTable(t)
	f.conn.AddTable(t)
	f.addChains(t, rules)
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("osnet: filter: setting %d rules: %w", len(rules), err)
	}
	return nil
}

// addChains queues the chains of rules and their rules on f's connection.
func (f *Filter) addChains(t *nftables.Table, rules []FilterRule) {
	for _, c := range f.chains(t, rules) {
		f.conn.AddChain(c.chain)
		for _, e := range c.rules {
			f.conn.AddRule(&nftables.Rule{Table: t, Chain: c.chain, Exprs: e})
		}
	}
}

// chainRules is a chain and its rules, in the order they are created:
// regular chains before the base chains that jump to them.
type chainRules struct {
	chain *nftables.Chain
	rules [][]expr.Any
}

func (f *Filter) chains(t *nftables.Table, rules []FilterRule) []chainRules {
	accept := nftables.ChainPolicyAccept
	base := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	}
	var in, out [][]expr.Any
	for _, r := range rules {
		in = append(in, ruleExprs(r, false)...)
		out = append(out, ruleExprs(r, true)...)
	}
	jumpIn := rb{}.jump(chainSPDIn)
	jumpOut := rb{}.jump(chainSPDOut)
	return []chainRules{
		{&nftables.Chain{Name: chainSPDIn, Table: t}, in},
		{&nftables.Chain{Name: chainSPDOut, Table: t}, out},
		{base(chainInput, nftables.ChainHookInput), append(inputExemptions(f.tun), jumpIn)},
		{base(chainOutput, nftables.ChainHookOutput), append(outputExemptions(f.tun, f.mark), jumpOut)},
		{base(chainForward, nftables.ChainHookForward), append(forwardExemptions(f.tun), jumpIn, jumpOut)},
	}
}

// Close closes the netlink socket and keeps the table: the policy stays in
// force after the daemon stops.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conn.CloseLasting()
	return nil
}

// filterReadBuffer is the netlink receive buffer of the filter's socket:
// the kernel acknowledges each rule of a batch, and with the default
// buffer a batch of a few hundred rules (200 CHILD SAs) overflows it
// (ENOBUFS), which left the firewall unset and its socket unusable.
const filterReadBuffer = 8 << 20

// bigReadBuffer sets the receive buffer to filterReadBuffer, past
// net.core.rmem_max when privileged (SO_RCVBUFFORCE), else up to it.
func bigReadBuffer(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return c.SetReadBuffer(filterReadBuffer)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, filterReadBuffer)
	}); err != nil || serr != nil {
		return c.SetReadBuffer(filterReadBuffer)
	}
	return nil
}

// Clear deletes the table and closes the netlink socket.
func (f *Filter) Clear() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := deleteTable(f.conn)
	f.conn.CloseLasting()
	return err
}

// DeleteFilter deletes the table that a Filter (of this process or of an
// earlier one) left in the calling thread's network namespace. A missing
// table is not an error.
func DeleteFilter() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("osnet: filter: netlink: %w", err)
	}
	return deleteTable(c)
}

func deleteTable(c *nftables.Conn) error {
	t := filterTable()
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("osnet: filter: deleting table inet %s: %w", FilterTable, err)
	}
	return nil
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

// ret ends the regular chain's evaluation and goes on in the chain that
// jumped to it: a BYPASS rule in spd_in or spd_out.
func (b rb) ret() []expr.Any { return append(b, &expr.Verdict{Kind: expr.VerdictReturn}) }

func (b rb) jump(chain string) []expr.Any {
	return append(b, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

// mark matches the packet's firewall mark.
func (b rb) mark(m uint32) rb {
	data := binary.NativeEndian.AppendUint32(nil, m)
	return append(b, &expr.Meta{Key: expr.MetaKeyMARK, Register: reg}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data})
}

func (b rb) drop() []expr.Any {
	return append(b, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// inputExemptions are the rules of the input chain before the policy.
func inputExemptions(tun string) [][]expr.Any {
	udp := rb{}.meta(expr.MetaKeyL4PROTO, traffic.ProtoUDP)
	return [][]expr.Any{
		// Decapsulated packets: the data plane has checked their inner
		// addresses against the SA's selectors (RFC 4301, Section 5.2,
		// step 4).
		rb{}.ifname(expr.MetaKeyIIFNAME, tun).accept(),
		// The host talking to itself: no policy covers loopback, and
		// 0.0.0.0/0 on both sides must not cut it off.
		rb{}.ifname(expr.MetaKeyIIFNAME, "lo").accept(),
		// IPsec-protected packets addressed to this host go to the SAD,
		// not to the SPD-I (RFC 4301, Section 5.2, step 3a): the data
		// plane's raw sockets (ESP, AH) ...
		rb{}.meta(expr.MetaKeyL4PROTO, traffic.ProtoESP).accept(),
		rb{}.meta(expr.MetaKeyL4PROTO, traffic.ProtoAH).accept(),
		// ... and its UDP sockets: IKE on 500 and 4500, ESP in UDP on 4500
		// (RFC 7296, Section 2.23; RFC 3948, Section 2.2).
		slices.Clone(udp).transportRange(2, be16(iana.PortIKE), be16(iana.PortIKE)).accept(),
		slices.Clone(udp).transportRange(2, be16(iana.PortNATT), be16(iana.PortNATT)).accept(),
		ndExemption(),
	}
}

// outputExemptions are the rules of the output chain before the policy.
func outputExemptions(tun string, mark uint32) [][]expr.Any {
	return [][]expr.Any{
		// The daemon's own packets (ESP, AH, IKE) carry its mark: they are
		// the protected form of the traffic.
		rb{}.mark(mark).accept(),
		// Routed into the TUN device: the data plane applies the SPD.
		rb{}.ifname(expr.MetaKeyOIFNAME, tun).accept(),
		rb{}.ifname(expr.MetaKeyOIFNAME, "lo").accept(),
		ndExemption(),
	}
}

// forwardExemptions are the rules of the forward chain before the policy.
// There is no IPsec or IKE exemption: ESP, AH or UDP 500 and 4500 between
// two other hosts is checked against the SPD like any packet.
func forwardExemptions(tun string) [][]expr.Any {
	return [][]expr.Any{
		rb{}.ifname(expr.MetaKeyIIFNAME, tun).accept(),
		// Packets routed into the TUN device are outbound: the data plane
		// applies the SPD to them.
		rb{}.ifname(expr.MetaKeyOIFNAME, tun).accept(),
	}
}

// ndExemption accepts IPv6 neighbour discovery (types 133-136): without it
// the peer's link-layer address, and so the IPsec traffic, is unreachable.
// Hop limit 255 proves the sender is on the link (RFC 4861, Sections 6.1 and
// 7.1).
func ndExemption() []expr.Any {
	return rb{}.meta(expr.MetaKeyNFPROTO, unix.NFPROTO_IPV6).meta(expr.MetaKeyL4PROTO, traffic.ProtoICMPv6).
		payload(expr.PayloadBaseNetworkHeader, 7, nil, []byte{255}).
		transportRange(0, []byte{133}, []byte{136}).accept()
}

// ruleExprs builds the nftables rules of r: one per pair of a remote and a
// local selector that some packet can match, in order. Inbound (out false)
// the remote side is the packet's source; outbound, its destination (RFC
// 4301, Section 5.2).
func ruleExprs(r FilterRule, out bool) [][]expr.Any {
	var rules [][]expr.Any
	for _, rs := range expand(r.Remote) {
		for _, ls := range expand(r.Local) {
			src, dst := rs, ls
			if out {
				src, dst = ls, rs
			}
			if e, ok := pairExprs(src, dst, r.Action); ok {
				rules = append(rules, e)
			}
		}
	}
	return rules
}

// expand returns set, or for an empty set the selectors of all IPv4 and all
// IPv6 addresses.
func expand(set traffic.Set) traffic.Set {
	if len(set) == 0 {
		return traffic.Set{traffic.Any(false), traffic.Any(true)}
	}
	return set
}

// pairExprs builds the rule for packets from src to dst (the remote and
// local selectors inbound, the local and remote ones outbound). It reports
// false when no packet matches both (different families or protocols), and
// for an accept rule with an OPAQUE selector: OPAQUE matches only packets
// whose ports are unknown (RFC 4301, Section 4.4.1.1), such as non-initial
// fragments, which this filter does not single out. Leaving such an accept
// out fails closed; a drop rule treats OPAQUE as any port, a superset, for
// the same reason. An accept rule returns from its regular chain (see
// Filter).
func pairExprs(src, dst traffic.Selector, action FilterAction) ([]expr.Any, bool) {
	if src.Is6() != dst.Is6() {
		return nil, false
	}
	proto := src.Proto
	if dst.Proto != 0 {
		if proto != 0 && proto != dst.Proto {
			return nil, false
		}
		proto = dst.Proto
	}
	if action != FilterDrop && (src.Opaque() || dst.Opaque()) {
		return nil, false
	}
	// Source and destination address offsets: RFC 791, Section 3.1 and
	// RFC 8200, Section 3.
	nfproto, srcOff, dstOff := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16)
	if src.Is6() {
		nfproto, srcOff, dstOff = unix.NFPROTO_IPV6, 8, 24
	}
	b := rb{}.meta(expr.MetaKeyNFPROTO, nfproto)
	if proto != 0 {
		b = b.meta(expr.MetaKeyL4PROTO, proto)
	}
	b = b.prefix(src.Prefix, srcOff).prefix(dst.Prefix, dstOff)
	b = b.ports(src, 0).ports(dst, 2)
	if action == FilterDrop {
		return b.drop(), true
	}
	return b.ret(), true
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
