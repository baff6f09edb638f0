package osnet

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/traffic"
)

// The expected expressions below are written out by hand from the header
// layouts (IPv4: RFC 791, Section 3.1, source at 12, destination at 16; IPv6:
// RFC 8200, Section 3, source at 8, destination at 24; ports: RFC 768 and
// RFC 9293, source at 0, destination at 2; ICMP type and code at 0: RFC 792,
// RFC 4443) and the nf_tables constants of linux/netfilter/nf_tables.h and
// linux/netfilter.h (NFPROTO_IPV4 2, NFPROTO_IPV6 10, NFT_META_NFPROTO 15,
// NFT_META_L4PROTO 16, NFT_PAYLOAD_NETWORK_HEADER 1,
// NFT_PAYLOAD_TRANSPORT_HEADER 2).

func lMeta(key uint32, v byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKey(key), Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}}}
}

func lNet(off uint32, mask, data []byte) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: 1, Offset: off, Len: uint32(len(data))}}
	if mask != nil {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(data)), Mask: mask, Xor: make([]byte, len(data))})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data})
}

func lTh(off uint32, lo, hi []byte) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: 2, Offset: off, Len: uint32(len(lo))}}
	if string(lo) == string(hi) {
		return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo})
	}
	return append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: lo, ToData: hi})
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var (
	lDrop   = []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	lAccept = []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}} // a BYPASS returns from spd_in/spd_out
	v4      = lMeta(15, 2)
	v6      = lMeta(15, 10)
)

func TestRuleExprs(t *testing.T) {
	tests := []struct {
		name string
		rule FilterRule
		want [][]expr.Any
	}{
		{
			name: "tunnel",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("10.2.0.0/16"), Local: traffic.MustParseSet("10.1.0.0/16")},
			want: [][]expr.Any{cat(v4, lNet(12, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}), lNet(16, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lDrop)},
		},
		{
			name: "bypass dns from a host",
			rule: FilterRule{Action: FilterAccept, Remote: traffic.MustParseSet("10.2.0.53/32[udp/53]")},
			want: [][]expr.Any{cat(v4, lMeta(16, 17), lNet(12, nil, []byte{10, 2, 0, 53}), lTh(0, []byte{0, 53}, []byte{0, 53}), lAccept)},
		},
		{
			name: "local port range, IPv6, odd prefix length",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("fd02::/17"), Local: traffic.MustParseSet("fd01::1/128[tcp/1000-2000]")},
			want: [][]expr.Any{cat(v6, lMeta(16, 6),
				lNet(8, []byte{255, 255, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
				lNet(24, nil, []byte{0xfd, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
				lTh(2, []byte{0x03, 0xe8}, []byte{0x07, 0xd0}), lDrop)},
		},
		{
			name: "ICMP echo request, any code: the type byte",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("0.0.0.0/0[icmp/8]"), Local: traffic.MustParseSet("10.1.0.0/16")},
			want: [][]expr.Any{cat(v4, lMeta(16, 1), lNet(16, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lTh(0, []byte{8}, []byte{8}), lDrop)},
		},
		{
			name: "ICMP destination unreachable, host unreachable: type and code",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("0.0.0.0/0[icmp/769]")},
			want: [][]expr.Any{cat(v4, lMeta(16, 1), lTh(0, []byte{3, 1}, []byte{3, 1}), lDrop)},
		},
		{
			name: "ICMP on the local side is still type and code at offset 0",
			rule: FilterRule{Action: FilterAccept, Remote: traffic.MustParseSet("10.2.0.0/16"), Local: traffic.MustParseSet("10.1.0.0/16[icmp/0-3]")},
			want: [][]expr.Any{cat(v4, lMeta(16, 1), lNet(12, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}),
				lNet(16, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lTh(0, []byte{0}, []byte{3}), lAccept)},
		},
		{
			name: "empty sets: any address of either family",
			rule: FilterRule{Action: FilterDrop},
			want: [][]expr.Any{cat(v4, lDrop), cat(v6, lDrop)},
		},
		{
			name: "empty local side takes the remote's family only",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("fd02::/64")},
			want: [][]expr.Any{cat(v6, lNet(8, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), lDrop)},
		},
		{
			name: "pairs of different families or protocols are left out",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("10.2.0.0/16[tcp]", "fd02::/64"), Local: traffic.MustParseSet("10.1.0.0/16[udp]", "10.1.0.0/16[tcp/22]")},
			want: [][]expr.Any{cat(v4, lMeta(16, 6), lNet(12, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}),
				lNet(16, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lTh(2, []byte{0, 22}, []byte{0, 22}), lDrop)},
		},
		{
			name: "OPAQUE drops as any port",
			rule: FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("10.9.0.0/16[tcp/opaque]")},
			want: [][]expr.Any{cat(v4, lMeta(16, 6), lNet(12, []byte{255, 255, 0, 0}, []byte{10, 9, 0, 0}), lDrop)},
		},
		{
			name: "OPAQUE never accepts",
			rule: FilterRule{Action: FilterAccept, Remote: traffic.MustParseSet("10.9.0.0/16[tcp/opaque]")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ruleExprs(tt.rule, false)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ruleExprs(%+v):\n got %s\nwant %s", tt.rule, dump(got), dump(tt.want))
			}
		})
	}
}

// TestRuleExprsOutbound checks the outbound direction: the local side is
// the source, the remote side the destination, with their ports.
func TestRuleExprsOutbound(t *testing.T) {
	r := FilterRule{Action: FilterDrop, Remote: traffic.MustParseSet("10.2.0.0/16[tcp/443]"), Local: traffic.MustParseSet("10.1.0.5/32")}
	want := [][]expr.Any{cat(v4, lMeta(16, 6), lNet(12, nil, []byte{10, 1, 0, 5}), lNet(16, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}),
		lTh(2, []byte{1, 187}, []byte{1, 187}), lDrop)}
	if got := ruleExprs(r, true); !reflect.DeepEqual(got, want) {
		t.Errorf("ruleExprs(%+v, out):\n got %s\nwant %s", r, dump(got), dump(want))
	}
}

func dump(rules [][]expr.Any) string {
	var b strings.Builder
	for _, r := range rules {
		b.WriteString("\n  [")
		for _, e := range r {
			fmt.Fprintf(&b, " %T%+v", e, e)
		}
		b.WriteString(" ]")
	}
	return b.String()
}

// filterRules are the rules of the netlink test: a bypass, then a tunnel.
var filterRules = []FilterRule{
	{Action: FilterAccept, Remote: traffic.MustParseSet("10.2.0.53/32[udp/53]")},
	{Action: FilterDrop, Remote: traffic.MustParseSet("10.2.0.0/16", "fd02::/64[tcp/1000-2000]"), Local: traffic.MustParseSet("10.1.0.0/16", "fd01::/64")},
}

// testMark is the daemon's firewall mark in these tests (conn.DefaultMark).
const testMark = 0x1b5

// TestFilterNetlink installs the table in a namespace of its own, lists it
// back through the library and, when the nft command is there, through nft's
// own decoder, replaces the rules, and deletes it.
func TestFilterNetlink(t *testing.T) {
	ns := nstest.New(t, "nft")
	f := newFilter(t, ns)
	defer f.Clear()
	if tableExists(t, ns) {
		t.Fatalf("NewFilter created table inet %s before Set", FilterTable)
	}
	if err := f.Set(filterRules); err != nil {
		t.Fatalf("Set: %v", err)
	}

	// The kernel's copy, parsed back by the library: the bypass, then one
	// rule per IPv4 and IPv6 pair of the tunnel, in each direction.
	policyIn := [][]expr.Any{
		cat(v4, lMeta(16, 17), lNet(12, nil, []byte{10, 2, 0, 53}), lTh(0, []byte{0, 53}, []byte{0, 53}), lAccept),
		cat(v4, lNet(12, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}), lNet(16, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lDrop),
		cat(v6, lMeta(16, 6),
			lNet(8, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
			lNet(24, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
			lTh(0, []byte{0x03, 0xe8}, []byte{0x07, 0xd0}), lDrop),
	}
	policyOut := [][]expr.Any{
		cat(v4, lMeta(16, 17), lNet(16, nil, []byte{10, 2, 0, 53}), lTh(2, []byte{0, 53}, []byte{0, 53}), lAccept),
		cat(v4, lNet(12, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lNet(16, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}), lDrop),
		cat(v6, lMeta(16, 6),
			lNet(8, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
			lNet(24, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
			lTh(2, []byte{0x03, 0xe8}, []byte{0x07, 0xd0}), lDrop),
	}
	for chain, want := range map[string][][]expr.Any{"spd_in": policyIn, "spd_out": policyOut} {
		rules := listRules(t, ns, chain)
		if len(rules) != len(want) {
			t.Fatalf("chain %s has %d rules, want %d", chain, len(rules), len(want))
		}
		for i := range want {
			if got := normalize(rules[i].Exprs); !reflect.DeepEqual(got, want[i]) {
				t.Errorf("chain %s, rule %d:\n got %s\nwant %s", chain, i, dump([][]expr.Any{got}), dump([][]expr.Any{want[i]}))
			}
		}
	}
	// Exemptions, then the jumps into the policy.
	for chain, n := range map[string]int{"input": 7 + 1, "output": 4 + 1, "forward": 2 + 2} {
		if got := len(listRules(t, ns, chain)); got != n {
			t.Errorf("chain %s has %d rules, want %d", chain, got, n)
		}
	}

	// nft's rendering, an independent decoder of the same netlink data.
	if _, err := ns.Run("nft", "--version"); err == nil {
		out := ns.MustRun("nft", "list", "table", "inet", FilterTable)
		for _, want := range []string{
			"type filter hook input priority filter; policy accept;",
			"type filter hook forward priority filter; policy accept;",
			"type filter hook output priority filter; policy accept;",
			`iifname "ipsec0" accept`,
			`oifname "ipsec0" accept`,
			`iifname "lo" accept`,
			`oifname "lo" accept`,
			"meta mark 0x000001b5 accept",
			"meta l4proto esp accept",
			"meta l4proto ah accept",
			"udp dport 500 accept",
			"udp dport 4500 accept",
			"ip6 hoplimit 255 icmpv6 type 133-136 accept",
			"jump spd_in",
			"jump spd_out",
			"ip saddr 10.2.0.53 udp sport 53 return",
			"ip daddr 10.2.0.53 udp dport 53 return",
			"ip saddr 10.2.0.0/16 ip daddr 10.1.0.0/16 counter packets 0 bytes 0 drop",
			"ip saddr 10.1.0.0/16 ip daddr 10.2.0.0/16 counter packets 0 bytes 0 drop",
			"ip6 saddr fd02::/64 ip6 daddr fd01::/64 tcp sport 1000-2000 counter packets 0 bytes 0 drop",
			"ip6 saddr fd01::/64 ip6 daddr fd02::/64 tcp dport 1000-2000 counter packets 0 bytes 0 drop",
		} {
			if n := strings.Count(out, want); n == 0 || strings.HasPrefix(want, "type") && n != 1 {
				t.Errorf("nft list table inet %s: %q appears %d times:\n%s", FilterTable, want, n, out)
			}
		}
		// The bypass comes before the drop of the same source.
		if strings.Index(out, "10.2.0.53 udp sport 53 return") > strings.Index(out, "10.2.0.0/16 ip daddr") {
			t.Errorf("the bypass is after the tunnel's drop:\n%s", out)
		}
	} else {
		t.Log("nft command not found: checked through the library only")
	}

	// Set replaces the rules whole.
	if err := f.Set(filterRules[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(listRules(t, ns, "spd_in")); n != 1 {
		t.Errorf("after Set with one rule, spd_in has %d rules, want 1", n)
	}
	if err := f.Clear(); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	if tableExists(t, ns) {
		t.Errorf("table inet %s still exists after Clear", FilterTable)
	}
}

func newFilter(t *testing.T, ns *nstest.NS) *Filter {
	t.Helper()
	var f *Filter
	if err := ns.Do(func() (err error) { f, err = NewFilter("ipsec0", testMark); return err }); err != nil {
		t.Fatalf("NewFilter: %v", err)
	}
	return f
}

// TestNewFilterAdoptsLeftoverTable: a daemon that stops (or is killed)
// leaves its table in force, and a new Filter neither removes nor opens it
// up until its first Set, which replaces it in one transaction.
func TestNewFilterAdoptsLeftoverTable(t *testing.T) {
	ns := nstest.New(t, "adopt")
	f := newFilter(t, ns)
	if err := f.Set(filterRules); err != nil {
		t.Fatal(err)
	}
	before := listRules(t, ns, "spd_in")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, ns) {
		t.Fatalf("Close removed table inet %s: the policy must stay in force", FilterTable)
	}
	f2 := newFilter(t, ns)
	defer f2.Clear()
	after := listRules(t, ns, "spd_in")
	if len(after) != len(before) || len(before) == 0 {
		t.Fatalf("after a second NewFilter spd_in has %d rules, before %d: the leftover table was changed", len(after), len(before))
	}
	for _, chain := range []string{"input", "output", "forward"} {
		if n := len(listRules(t, ns, chain)); n == 0 {
			t.Errorf("after a second NewFilter chain %s is empty", chain)
		}
	}
	// The first Set replaces the table whole: one rule fewer, no other
	// state in between that the test could see.
	if err := f2.Set(filterRules[1:]); err != nil {
		t.Fatal(err)
	}
	if n := len(listRules(t, ns, "spd_in")); n != len(before)-1 {
		t.Errorf("after Set spd_in has %d rules, want %d", n, len(before)-1)
	}
}

// TestFilterSetNoAcceptAllWindow replaces the table 200 times while a
// second namespace sends cleartext datagrams from a protected source as fast
// as it can: not one is delivered, so no replacement has an open moment. (A
// listing is no witness: a netlink dump may span two generations.)
func TestFilterSetNoAcceptAllWindow(t *testing.T) {
	a := nstest.New(t, "atomic-a")
	b := nstest.New(t, "atomic-b")
	nstest.Link(t, a, "eth0", []string{"192.0.2.1/24"}, b, "eth0", []string{"192.0.2.2/24"})
	a.AddLoopbackAddr("10.1.0.1")
	b.AddLoopbackAddr("10.2.0.1")
	b.MustRun("ip", "route", "add", "10.1.0.0/16", "via", "192.0.2.1")
	a.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0")

	rx, tx := udpPair(t, a, netip.MustParseAddrPort("10.1.0.1:7000"), b, netip.MustParseAddrPort("10.2.0.1:0"))
	// Without the table the datagram arrives: the network works.
	tx.Write([]byte("before"))
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, err := rx.Read(buf); err != nil {
		t.Fatalf("no datagram before the filter: %v", err)
	}

	f := newFilter(t, a)
	defer f.Clear()
	if err := f.Set(filterRules); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	sent := make(chan int)
	go func() {
		n := 0
		for ; n < 1_000_000; n++ {
			select {
			case <-stop:
				sent <- n
				return
			default:
			}
			tx.Write([]byte("spoof"))
		}
		sent <- n
	}()
	var err error
	for i := range 200 {
		if err = f.Set(filterRules[i%2:]); err != nil {
			break
		}
	}
	close(stop)
	n := <-sent
	if err != nil {
		t.Fatal(err)
	}
	rx.SetReadDeadline(time.Now().Add(time.Second))
	got := 0
	for {
		if _, err := rx.Read(buf); err != nil {
			break
		}
		got++
	}
	t.Logf("%d cleartext datagrams sent during 200 replacements, %d delivered", n, got)
	if got != 0 {
		t.Errorf("%d of %d datagrams from a protected source were delivered while the table was replaced", got, n)
	}
}

// TestForwardChainNoIPsecExemption: ESP, AH and IKE between two other hosts
// are checked against the SPD like any forwarded packet; only the input
// chain, which sees packets addressed to this host, exempts them.
func TestForwardChainNoIPsecExemption(t *testing.T) {
	ns := nstest.New(t, "fwd")
	f := newFilter(t, ns)
	defer f.Clear()
	if err := f.Set(filterRules); err != nil {
		t.Fatal(err)
	}
	l4 := func(rules []*nftables.Rule) map[byte]bool {
		seen := make(map[byte]bool)
		for _, r := range rules {
			for i, e := range r.Exprs {
				if m, ok := e.(*expr.Meta); ok && m.Key == expr.MetaKeyL4PROTO && i+1 < len(r.Exprs) {
					if c, ok := r.Exprs[i+1].(*expr.Cmp); ok && len(c.Data) == 1 {
						seen[c.Data[0]] = true
					}
				}
			}
		}
		return seen
	}
	fwd := l4(listRules(t, ns, "forward"))
	for _, p := range []byte{traffic.ProtoESP, traffic.ProtoAH, traffic.ProtoUDP} {
		if fwd[p] {
			t.Errorf("the forward chain has an exemption for protocol %d", p)
		}
	}
	in := l4(listRules(t, ns, "input"))
	for _, p := range []byte{traffic.ProtoESP, traffic.ProtoAH, traffic.ProtoUDP} {
		if !in[p] {
			t.Errorf("the input chain has no exemption for protocol %d", p)
		}
	}
}

func listRules(t *testing.T, ns *nstest.NS, chain string) []*nftables.Rule {
	t.Helper()
	var rules []*nftables.Rule
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		rules, err = c.GetRules(&nftables.Table{Name: FilterTable, Family: nftables.TableFamilyINet}, &nftables.Chain{Name: chain})
		return err
	}); err != nil {
		t.Fatalf("listing chain %s: %v", chain, err)
	}
	return rules
}

func tableExists(t *testing.T, ns *nstest.NS) bool {
	t.Helper()
	var tables []*nftables.Table
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == FilterTable {
			return true
		}
	}
	return false
}

// normalize clears what the kernel adds when it hands rules back (counter
// values) so they compare with what was sent.
func normalize(e []expr.Any) []expr.Any {
	out := make([]expr.Any, len(e))
	for i, x := range e {
		if _, ok := x.(*expr.Counter); ok {
			x = &expr.Counter{}
		}
		out[i] = x
	}
	return out
}

func TestNewFilterName(t *testing.T) {
	for _, name := range []string{"", "a-name-that-is-too-long"} {
		if _, err := NewFilter(name, testMark); err == nil || !strings.HasPrefix(err.Error(), "osnet: ") {
			t.Errorf("NewFilter(%q) = %v, want an osnet error", name, err)
		}
	}
}

// TestFilterOutputChainDropsCleartext: with the routes wrong (the main table
// sends the protected network out of eth0), the output chain still drops
// the host's cleartext for it, IPv4 and IPv6, unless the packet carries the
// daemon's mark.
func TestFilterOutputChainDropsCleartext(t *testing.T) {
	a := nstest.New(t, "out-a")
	b := nstest.New(t, "out-b")
	nstest.Link(t, a, "eth0", []string{"192.0.2.1/24", "2001:db8::1/64"}, b, "eth0", []string{"192.0.2.2/24", "2001:db8::2/64"})
	a.AddLoopbackAddr("10.1.0.1")
	a.AddLoopbackAddr("fd01::1")
	b.AddLoopbackAddr("10.2.0.1")
	b.AddLoopbackAddr("fd02::1")
	a.MustRun("ip", "route", "add", "10.2.0.0/16", "via", "192.0.2.2")
	a.MustRun("ip", "-6", "route", "add", "fd02::/64", "via", "2001:db8::2")
	b.MustRun("ip", "route", "add", "10.1.0.0/16", "via", "192.0.2.1")
	b.MustRun("ip", "-6", "route", "add", "fd01::/64", "via", "2001:db8::1")

	echos := func() string { // b's received echo requests, IPv4 and IPv6
		out := b.MustRun("cat", "/proc/net/snmp", "/proc/net/snmp6")
		var v4, v6 string
		lines := strings.Split(out, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "Icmp: ") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "Icmp: ") && v4 == "" {
				names, vals := strings.Fields(l), strings.Fields(lines[i+1])
				for j, n := range names {
					if n == "InEchos" && j < len(vals) {
						v4 = vals[j]
					}
				}
			}
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Icmp6InEchos" {
				v6 = f[1]
			}
		}
		return v4 + "/" + v6
	}
	ping := func(src, dst string, mark bool) {
		args := []string{"-n", "-c", "2", "-i", "0.2", "-W", "1", "-I", src, dst}
		if mark {
			args = append([]string{"-m", "437"}, args...) // testMark, in decimal for ping
		}
		a.Run("ping", args...) // no reply either way: b's answer is cleartext too
	}
	// The network works before the filter.
	before := echos()
	ping("10.1.0.1", "10.2.0.1", false)
	ping("fd01::1", "fd02::1", false)
	if echos() == before {
		t.Fatalf("no echo request reached b before the filter: the test network is broken")
	}

	f := newFilter(t, a)
	defer f.Clear()
	rules := []FilterRule{{Action: FilterDrop, Remote: traffic.MustParseSet("10.2.0.0/16", "fd02::/64"), Local: traffic.MustParseSet("10.1.0.0/16", "fd01::/64")}}
	if err := f.Set(rules); err != nil {
		t.Fatal(err)
	}
	before = echos()
	ping("10.1.0.1", "10.2.0.1", false)
	ping("fd01::1", "fd02::1", false)
	if after := echos(); after != before {
		t.Errorf("cleartext echo requests from a protected source left the host: b's InEchos/Icmp6InEchos went from %s to %s", before, after)
	}
	// The daemon's mark passes.
	ping("10.1.0.1", "10.2.0.1", true)
	ping("fd01::1", "fd02::1", true)
	if after := echos(); strings.Split(after, "/")[0] == strings.Split(before, "/")[0] || strings.Split(after, "/")[1] == strings.Split(before, "/")[1] {
		t.Errorf("packets with the daemon's mark were dropped: b's InEchos/Icmp6InEchos went from %s to %s", before, after)
	}
}

// TestForwardIPsecLookalikeDropped: a router R protects 10.1.0.0/16 (behind
// eth0) from 10.2.0.0/16 (behind eth1). A host of 10.2.0.0/16 sends UDP to
// port 4500 of a host of 10.1.0.0/16, which looks like ESP in UDP or IKE
// but is not addressed to R: R's forward chain drops it like any cleartext
// from a protected source. Before the filter, R forwards it.
func TestForwardIPsecLookalikeDropped(t *testing.T) {
	r := nstest.New(t, "fwd-r")
	y := nstest.New(t, "fwd-y") // 10.1.0.9, protected side
	x := nstest.New(t, "fwd-x") // 10.2.0.9, remote side
	nstest.Link(t, r, "eth0", []string{"10.1.0.1/16"}, y, "eth0", []string{"10.1.0.9/16"})
	nstest.Link(t, r, "eth1", []string{"10.2.0.1/16"}, x, "eth0", []string{"10.2.0.9/16"})
	r.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	y.MustRun("ip", "route", "add", "default", "via", "10.1.0.1")
	x.MustRun("ip", "route", "add", "default", "via", "10.2.0.1")

	rx, tx := udpPair(t, y, netip.MustParseAddrPort("10.1.0.9:4500"), x, netip.MustParseAddrPort("10.2.0.9:4500"))
	buf := make([]byte, 64)
	tx.Write([]byte("before"))
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rx.Read(buf); err != nil {
		t.Fatalf("R did not forward the datagram before the filter: %v", err)
	}

	var f *Filter
	if err := r.Do(func() (err error) { f, err = NewFilter("ipsec0", testMark); return err }); err != nil {
		t.Fatal(err)
	}
	defer f.Clear()
	if err := f.Set([]FilterRule{{Action: FilterDrop, Remote: traffic.MustParseSet("10.2.0.0/16"), Local: traffic.MustParseSet("10.1.0.0/16")}}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		tx.Write([]byte("after"))
	}
	rx.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := rx.Read(buf); err == nil {
		t.Errorf("R forwarded %q from a protected source to UDP port 4500 of another host", buf[:n])
	}
}

// udpPair opens a UDP socket in rxNS listening on at and one in txNS bound
// to from and connected to at; both close when the test ends.
func udpPair(t *testing.T, rxNS *nstest.NS, at netip.AddrPort, txNS *nstest.NS, from netip.AddrPort) (rx, tx *net.UDPConn) {
	t.Helper()
	if err := rxNS.Do(func() (err error) { rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(at)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	if err := txNS.Do(func() (err error) {
		tx, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(from), net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	return rx, tx
}

// TestFilterSetManyRules sets the rules of 200 CHILD SAs in one batch and
// then replaces them: the kernel acknowledges each rule, and with the
// default netlink receive buffer the acknowledgements overflowed it
// (ENOBUFS), leaving the firewall unset and the socket unusable, so that
// the daemon hung at exit in Clear.
func TestFilterSetManyRules(t *testing.T) {
	ns := nstest.New(t, "nftmany")
	f := newFilter(t, ns)
	defer f.Clear()
	var rules []FilterRule
	for n := 1; n <= 50; n++ {
		for c := 1; c <= 4; c++ {
			rules = append(rules, FilterRule{Action: FilterDrop,
				Remote: traffic.MustParseSet(fmt.Sprintf("10.2.%d.%d/32", n, c)),
				Local:  traffic.MustParseSet(fmt.Sprintf("10.1.%d.%d/32", n, c))})
		}
	}
	for i := range 2 {
		if err := f.Set(rules); err != nil {
			t.Fatalf("Set %d of %d rules: %v", i+1, len(rules), err)
		}
	}
	if err := f.Clear(); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	if tableExists(t, ns) {
		t.Fatalf("table inet %s left after Clear", FilterTable)
	}
}

// ruleHandles returns the lowest and highest handle of the rules of the
// table's chains. A table numbers its chains and rules from one counter
// that starts again when the table is created, so rules added later to the
// same table have higher handles than every rule before them.
func ruleHandles(t *testing.T, ns *nstest.NS) (lo, hi uint64) {
	t.Helper()
	for _, chain := range []string{chainSPDIn, chainSPDOut, chainInput, chainOutput, chainForward} {
		for _, r := range listRules(t, ns, chain) {
			if lo == 0 || r.Handle < lo {
				lo = r.Handle
			}
			hi = max(hi, r.Handle)
		}
	}
	return lo, hi
}

// TestFilterSetKeepsChains: Set replaces the rules and keeps the table and
// its chains, so the base chains stay on their hooks (no second set of base
// chains that a packet could cross in the wrong generation); a table of the
// same name whose base chain sits on another priority is replaced whole.
func TestFilterSetKeepsChains(t *testing.T) {
	ns := nstest.New(t, "keep")
	f := newFilter(t, ns)
	defer f.Clear()
	if err := f.Set(filterRules); err != nil {
		t.Fatal(err)
	}
	_, hi := ruleHandles(t, ns)
	if err := f.Set(filterRules[1:]); err != nil {
		t.Fatal(err)
	}
	lo, _ := ruleHandles(t, ns)
	if lo <= hi {
		t.Errorf("rule handles start at %d after the second Set, at or below the first Set's %d: the table was created again", lo, hi)
	}
	if n := len(listRules(t, ns, chainSPDIn)); n == 0 || n != len(listRules(t, ns, chainSPDOut)) {
		t.Errorf("spd_in has %d rules after the second Set", n)
	}

	// Another layout: the input chain on another priority.
	if err := f.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := c.AddTable(filterTable())
		prio, accept := nftables.ChainPriority(10), nftables.ChainPolicyAccept
		c.AddChain(&nftables.Chain{Name: chainInput, Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: &prio, Policy: &accept})
		return c.Flush()
	}); err != nil {
		t.Fatal(err)
	}
	f = newFilter(t, ns)
	if err := f.Set(filterRules); err != nil {
		t.Fatalf("Set over a table of another layout: %v", err)
	}
	if n := len(listRules(t, ns, chainSPDIn)); n == 0 {
		t.Error("no spd_in rules after replacing a table of another layout")
	}
	if n := len(listRules(t, ns, chainInput)); n == 0 {
		t.Error("no input rules after replacing a table of another layout")
	}
}
