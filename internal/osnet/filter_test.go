package osnet

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

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
	lAccept = []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
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
			got := ruleExprs(tt.rule)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ruleExprs(%+v):\n got %s\nwant %s", tt.rule, dump(got), dump(tt.want))
			}
		})
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

// TestFilterNetlink installs the table in a namespace of its own, lists it
// back through the library and, when the nft command is there, through nft's
// own decoder, replaces the rules, and deletes it.
func TestFilterNetlink(t *testing.T) {
	ns := nstest.New(t, "nft")
	var f *Filter
	if err := ns.Do(func() (err error) { f, err = NewFilter("ipsec0"); return err }); err != nil {
		t.Fatalf("NewFilter: %v", err)
	}
	defer f.Close()
	if err := f.Set(filterRules); err != nil {
		t.Fatalf("Set: %v", err)
	}

	// The kernel's copy, parsed back by the library: the exemptions, then
	// the bypass, then one rule per IPv4 and IPv6 pair of the tunnel.
	exemptIn := []string{"iifname", "lo", "esp", "ah", "udp 500", "udp 4500", "nd"}
	policy := [][]expr.Any{
		cat(v4, lMeta(16, 17), lNet(12, nil, []byte{10, 2, 0, 53}), lTh(0, []byte{0, 53}, []byte{0, 53}), lAccept),
		cat(v4, lNet(12, []byte{255, 255, 0, 0}, []byte{10, 2, 0, 0}), lNet(16, []byte{255, 255, 0, 0}, []byte{10, 1, 0, 0}), lDrop),
		cat(v6, lMeta(16, 6),
			lNet(8, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
			lNet(24, []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xfd, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
			lTh(0, []byte{0x03, 0xe8}, []byte{0x07, 0xd0}), lDrop),
	}
	for _, chain := range []string{"input", "forward"} {
		exempt := len(exemptIn)
		if chain == "forward" {
			exempt++ // oifname
		}
		rules := listRules(t, ns, chain)
		if len(rules) != exempt+len(policy) {
			t.Fatalf("chain %s has %d rules, want %d exemptions and %d policy rules", chain, len(rules), exempt, len(policy))
		}
		for i, want := range policy {
			if got := normalize(rules[exempt+i].Exprs); !reflect.DeepEqual(got, want) {
				t.Errorf("chain %s, policy rule %d:\n got %s\nwant %s", chain, i, dump([][]expr.Any{got}), dump([][]expr.Any{want}))
			}
		}
	}

	// nft's rendering, an independent decoder of the same netlink data.
	if _, err := ns.Run("nft", "--version"); err == nil {
		out := ns.MustRun("nft", "list", "table", "inet", FilterTable)
		for _, want := range []string{
			"type filter hook input priority filter; policy accept;",
			"type filter hook forward priority filter; policy accept;",
			`iifname "ipsec0" accept`,
			`oifname "ipsec0" accept`,
			`iifname "lo" accept`,
			"meta l4proto esp accept",
			"meta l4proto ah accept",
			"udp dport 500 accept",
			"udp dport 4500 accept",
			"ip6 hoplimit 255 icmpv6 type 133-136 accept",
			"ip saddr 10.2.0.53 udp sport 53 accept",
			"ip saddr 10.2.0.0/16 ip daddr 10.1.0.0/16 counter packets 0 bytes 0 drop",
			"ip6 saddr fd02::/64 ip6 daddr fd01::/64 tcp sport 1000-2000 counter packets 0 bytes 0 drop",
		} {
			if n := strings.Count(out, want); n == 0 || strings.HasPrefix(want, "type") && n != 1 || want == `oifname "ipsec0" accept` && n != 1 {
				t.Errorf("nft list table inet %s: %q appears %d times:\n%s", FilterTable, want, n, out)
			}
		}
		// The bypass comes before the drop of the same source.
		if strings.Index(out, "10.2.0.53 udp sport 53 accept") > strings.Index(out, "10.2.0.0/16 ip daddr") {
			t.Errorf("the bypass is after the tunnel's drop:\n%s", out)
		}
	} else {
		t.Log("nft command not found: checked through the library only")
	}

	// Set replaces the rules whole.
	if err := f.Set(filterRules[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(listRules(t, ns, "input")); n != len(exemptIn)+1 {
		t.Errorf("after Set with one rule, input has %d rules, want %d", n, len(exemptIn)+1)
	}

	// A second Filter replaces the table of the first (left behind by a
	// daemon that was killed) with the exemptions alone.
	var f2 *Filter
	if err := ns.Do(func() (err error) { f2, err = NewFilter("ipsec0"); return err }); err != nil {
		t.Fatalf("second NewFilter: %v", err)
	}
	if n := len(listRules(t, ns, "input")); n != len(exemptIn) {
		t.Errorf("after a second NewFilter, input has %d rules, want %d", n, len(exemptIn))
	}
	if err := f2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if tableExists(t, ns) {
		t.Errorf("table inet %s still exists after Close", FilterTable)
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
		if _, err := NewFilter(name); err == nil || !strings.HasPrefix(err.Error(), "osnet: ") {
			t.Errorf("NewFilter(%q) = %v, want an osnet error", name, err)
		}
	}
}
