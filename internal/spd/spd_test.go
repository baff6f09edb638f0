package spd

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

func set(ss ...string) traffic.Set { return traffic.MustParseSet(ss...) }

// info builds the packet.Info that packet.Decode would produce.
func info(src, dst string, proto uint8, sport, dport uint16) *packet.Info {
	i := &packet.Info{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, Version: 4}
	if i.Src.Is6() {
		i.Version = 6
	}
	switch proto {
	case traffic.ProtoTCP, traffic.ProtoUDP, traffic.ProtoSCTP:
		i.HasPorts, i.SrcPort, i.DstPort = true, sport, dport
	case traffic.ProtoICMP, traffic.ProtoICMPv6:
		i.HasICMP, i.ICMPType, i.ICMPCode = true, uint8(sport), uint8(dport)
	}
	return i
}

// nonFirstFragment strips what a non-first fragment does not carry.
func nonFirstFragment(i *packet.Info) *packet.Info {
	i.HasPorts, i.HasICMP, i.SrcPort, i.DstPort, i.ICMPType, i.ICMPCode = false, false, 0, 0, 0, 0
	i.IsFragment = true
	return i
}

// The rules of the example in INTERFACES.md, plus a few more.
func exampleRules() []Rule {
	return []Rule{
		{Name: "dns", Remote: set("10.2.0.53/32[udp/53]"), Action: Bypass},
		{Name: "site-b/net", Local: set("10.1.0.0/16"), Remote: set("10.2.0.0/16", "10.3.0.0/16[tcp/443]"), Action: Protect, Ref: 7},
		{Name: "lab", Local: set("10.1.0.0/16"), Remote: set("10.4.0.0/16"), Action: Protect, Ref: 9},
		{Name: "ping", Local: set("10.1.0.0/16"), Remote: set("10.5.0.0/16[icmp/8]"), Action: Protect, Ref: 10},
		{Name: "frag", Local: set("10.1.0.0/16[udp/opaque]"), Remote: set("10.6.0.0/16[udp/opaque]"), Action: Protect, Ref: 11},
		{Name: "v6", Local: set("2001:db8:1::/48"), Remote: set("2001:db8:2::/48[tcp/22]"), Action: Protect, Ref: 12},
		{Name: "block", Remote: set("10.0.0.0/8", "::/0"), Action: Discard},
	}
}

func TestLookup(t *testing.T) {
	s, err := Compile(exampleRules(), Bypass)
	if err != nil {
		t.Fatal(err)
	}
	const (
		tcp  = traffic.ProtoTCP
		udp  = traffic.ProtoUDP
		icmp = traffic.ProtoICMP
	)
	tests := []struct {
		name string
		dir  Direction
		pkt  *packet.Info
		want string
	}{
		{"dns bypass", sa.Outbound, info("10.1.0.5", "10.2.0.53", udp, 40000, 53), "dns"},
		{"dns tcp protected", sa.Outbound, info("10.1.0.5", "10.2.0.53", tcp, 40000, 53), "site-b/net"},
		{"dns inbound reply", sa.Inbound, info("10.2.0.53", "10.1.0.5", udp, 53, 40000), "dns"},
		{"net out", sa.Outbound, info("10.1.0.5", "10.2.9.9", tcp, 1234, 80), "site-b/net"},
		{"net in", sa.Inbound, info("10.2.9.9", "10.1.0.5", tcp, 80, 1234), "site-b/net"},
		{"net in reversed addresses", sa.Inbound, info("10.1.0.5", "10.2.9.9", tcp, 80, 1234), "block"},
		{"tcp 443", sa.Outbound, info("10.1.0.5", "10.3.0.1", tcp, 1234, 443), "site-b/net"},
		{"tcp 443 in", sa.Inbound, info("10.3.0.1", "10.1.0.5", tcp, 443, 1234), "site-b/net"},
		{"tcp 80 to 10.3", sa.Outbound, info("10.1.0.5", "10.3.0.1", tcp, 1234, 80), "block"},
		{"udp 443 to 10.3", sa.Outbound, info("10.1.0.5", "10.3.0.1", udp, 1234, 443), "block"},
		{"lab", sa.Outbound, info("10.1.0.5", "10.4.0.1", 47, 0, 0), "lab"},
		{"other source", sa.Outbound, info("192.168.0.1", "10.4.0.1", udp, 1, 2), "block"},
		{"not covered", sa.Outbound, info("192.168.0.1", "192.168.0.2", udp, 1, 2), "default"},
		{"echo request", sa.Outbound, info("10.1.0.5", "10.5.0.1", icmp, 8, 0), "ping"},
		{"echo reply", sa.Outbound, info("10.1.0.5", "10.5.0.1", icmp, 0, 0), "block"},
		{"udp to 10.6", sa.Outbound, info("10.1.0.5", "10.6.0.1", udp, 1, 2), "block"},
		{"udp fragment to 10.6", sa.Outbound, nonFirstFragment(info("10.1.0.5", "10.6.0.1", udp, 1, 2)), "frag"},
		{"tcp fragment to 10.3", sa.Outbound, nonFirstFragment(info("10.1.0.5", "10.3.0.1", tcp, 1, 443)), "block"},
		{"tcp fragment to 10.2", sa.Outbound, nonFirstFragment(info("10.1.0.5", "10.2.0.1", tcp, 1, 443)), "site-b/net"},
		{"dns fragment", sa.Outbound, nonFirstFragment(info("10.1.0.5", "10.2.0.53", udp, 1, 53)), "site-b/net"},
		{"ssh v6", sa.Outbound, info("2001:db8:1::1", "2001:db8:2::1", tcp, 5000, 22), "v6"},
		{"ssh v6 in", sa.Inbound, info("2001:db8:2::1", "2001:db8:1::1", tcp, 22, 5000), "v6"},
		{"http v6", sa.Outbound, info("2001:db8:1::1", "2001:db8:2::1", tcp, 5000, 80), "block"},
		{"4in6 not v4", sa.Outbound, info("::ffff:10.1.0.5", "::ffff:10.4.0.1", udp, 1, 2), "block"},
	}
	for _, tt := range tests {
		idx, r := s.Lookup(tt.dir, tt.pkt)
		if r.Name != tt.want {
			t.Errorf("%s: Lookup = %d %q, want %q", tt.name, idx, r.Name, tt.want)
			continue
		}
		if (idx < 0) != (tt.want == "default") || idx >= 0 && s.Rules()[idx].Name != tt.want {
			t.Errorf("%s: index %d does not name rule %q", tt.name, idx, tt.want)
		}
		steps := s.Explain(tt.dir, tt.pkt)
		last := steps[len(steps)-1]
		if last.Name != tt.want || !last.Matched || last.Index != idx {
			t.Errorf("%s: Explain ends with %+v, want %q", tt.name, last, tt.want)
		}
		for _, st := range steps[:len(steps)-1] {
			if st.Matched || st.Reason == "" {
				t.Errorf("%s: Explain step %+v", tt.name, st)
			}
		}
	}
}

func TestFirstMatchWins(t *testing.T) {
	rules := []Rule{
		{Name: "a", Remote: set("10.0.0.0/8"), Action: Discard},
		{Name: "b", Remote: set("10.1.0.0/16"), Action: Bypass},
	}
	s, err := Compile(rules, Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, r := s.Lookup(sa.Outbound, info("192.0.2.1", "10.1.0.1", 6, 1, 2)); r.Name != "a" {
		t.Errorf("got %q, want the first rule", r.Name)
	}
	// Reordered, the more specific rule wins.
	rules[0], rules[1] = rules[1], rules[0]
	s, _ = Compile(rules, Discard)
	if _, r := s.Lookup(sa.Outbound, info("192.0.2.1", "10.1.0.1", 6, 1, 2)); r.Name != "b" {
		t.Errorf("got %q, want b", r.Name)
	}
}

func TestEmptyAndDefault(t *testing.T) {
	for _, def := range []Action{Bypass, Discard} {
		s, err := Compile(nil, def)
		if err != nil {
			t.Fatal(err)
		}
		idx, r := s.Lookup(sa.Outbound, info("10.0.0.1", "10.0.0.2", 17, 1, 2))
		if idx != -1 || r.Action != def || s.Default() != def {
			t.Errorf("default %v: Lookup = %d %v", def, idx, r.Action)
		}
		if s.Hits(-1) != 1 || s.Hits(s.Len()) != 1 {
			t.Errorf("default hits = %d", s.Hits(-1))
		}
	}
	// An empty rule matches everything.
	s, _ := Compile([]Rule{{Name: "all", Action: Protect, Ref: 1}}, Bypass)
	if _, r := s.Lookup(sa.Inbound, info("2001:db8::1", "2001:db8::2", 58, 1, 0)); r.Name != "all" {
		t.Errorf("empty rule did not match: %q", r.Name)
	}
}

func TestHits(t *testing.T) {
	s, _ := Compile(exampleRules(), Bypass)
	for range 3 {
		s.Lookup(sa.Outbound, info("10.1.0.5", "10.2.0.53", 17, 40000, 53))
	}
	s.Lookup(sa.Outbound, info("10.1.0.5", "10.4.0.1", 17, 1, 2))
	s.Explain(sa.Outbound, info("10.1.0.5", "10.4.0.1", 17, 1, 2)) // counts nothing
	if s.Hits(0) != 3 || s.Hits(1) != 0 || s.Hits(2) != 1 || s.Hits(-1) != 0 || s.Hits(100) != 0 {
		t.Errorf("hits = %d %d %d %d", s.Hits(0), s.Hits(1), s.Hits(2), s.Hits(-1))
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		rules []Rule
		def   Action
		want  string
	}{
		{nil, Protect, "default action cannot be protect"},
		{nil, 7, "invalid default action"},
		{[]Rule{{Name: "x", Action: 9}}, Bypass, "invalid action"},
		{[]Rule{{Name: "x", Local: traffic.Set{{}}}}, Bypass, "local"},
		{[]Rule{{Name: "x", Remote: traffic.Set{{Prefix: netip.MustParsePrefix("10.0.0.1/8")}}}}, Bypass, "remote"},
		{[]Rule{{Name: "x", Local: set("10.0.0.0/8"), Remote: set("::/0")}}, Bypass, "never matches"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.rules, tt.def)
		if err == nil || !strings.HasPrefix(err.Error(), "spd: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%+v) = %v, want %q", tt.rules, err, tt.want)
		}
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	rules := exampleRules()
	s, _ := Compile(rules, Bypass)
	rules[1].Remote[0] = traffic.MustParseSelector("0.0.0.0/0")
	rules[1].Name = "changed"
	if got := s.Rules()[1]; got.Name != "site-b/net" || got.Remote[0].String() != "10.2.0.0/16" {
		t.Errorf("snapshot changed with its input: %+v", got)
	}
	out := s.Rules()
	out[1].Remote[0] = traffic.MustParseSelector("0.0.0.0/0")
	if got := s.Rules()[1]; got.Remote[0].String() != "10.2.0.0/16" {
		t.Errorf("snapshot changed through Rules(): %+v", got)
	}
}

func TestExplainReasons(t *testing.T) {
	s, _ := Compile(exampleRules(), Bypass)
	steps := s.Explain(sa.Outbound, info("10.1.0.5", "10.3.0.1", 6, 1234, 80))
	got := fmt.Sprint(steps[1])
	if !strings.Contains(got, "10.3.0.0/16[tcp/443]: port out of range") || !strings.Contains(got, "10.2.0.0/16: address not in prefix") {
		t.Errorf("step 1 = %s", got)
	}
	steps = s.Explain(sa.Outbound, nonFirstFragment(info("10.1.0.5", "10.3.0.1", 6, 1234, 443)))
	if got := steps[1].Reason; !strings.Contains(got, "ports unknown") || !strings.Contains(got, "RFC 4301, Section 7") {
		t.Errorf("fragment reason = %s", got)
	}
	steps = s.Explain(sa.Outbound, info("192.0.2.1", "192.0.2.2", 17, 1, 2))
	if last := steps[len(steps)-1]; last.Index != -1 || last.Action != Bypass {
		t.Errorf("last = %+v", last)
	}
	if len(steps) != len(exampleRules())+1 {
		t.Errorf("%d steps, want every rule and the default", len(steps))
	}
}

// TestLookupDecoded runs Lookup on packets decoded by package packet, so the
// two agree on what the fields mean.
func TestLookupDecoded(t *testing.T) {
	s, _ := Compile(exampleRules(), Bypass)
	// IPv4, UDP 10.1.0.5:40000 -> 10.2.0.53:53, RFC 791 and RFC 768 layouts.
	udp := []byte{
		0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0,
		10, 1, 0, 5, 10, 2, 0, 53,
		0x9c, 0x40, 0, 53, 0, 8, 0, 0,
	}
	h := packet.IPv4(udp)
	h.UpdateChecksum()
	var pi packet.Info
	if err := packet.Decode(udp, &pi); err != nil {
		t.Fatal(err)
	}
	if _, r := s.Lookup(sa.Outbound, &pi); r.Name != "dns" {
		t.Errorf("decoded UDP packet hit %q, want dns", r.Name)
	}
	// The same bytes as a non-first fragment (offset 8 bytes): no ports.
	udp[6], udp[7] = 0, 1
	h.UpdateChecksum()
	pi = packet.Info{}
	if err := packet.Decode(udp, &pi); err != nil {
		t.Fatal(err)
	}
	if _, r := s.Lookup(sa.Outbound, &pi); r.Name != "site-b/net" {
		t.Errorf("decoded fragment hit %q, want site-b/net", r.Name)
	}
}

func TestLookupAllocs(t *testing.T) {
	s, _ := Compile(exampleRules(), Bypass)
	pkts := []*packet.Info{
		info("10.1.0.5", "10.2.0.53", 17, 40000, 53),
		info("2001:db8:1::1", "2001:db8:2::1", 6, 5000, 22),
		info("192.0.2.1", "192.0.2.2", 1, 8, 0),
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, p := range pkts {
			s.Lookup(sa.Outbound, p)
			s.Lookup(sa.Inbound, p)
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per run", allocs)
	}
}

// benchRules returns n rules of which only the last matches the benchmark's
// packet, so that Lookup scans them all.
func benchRules(n int) []Rule {
	rules := make([]Rule, n)
	for i := range rules {
		rules[i] = Rule{
			Name:   fmt.Sprint("r", i),
			Local:  set(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)),
			Remote: set(fmt.Sprintf("172.16.%d.0/24[tcp/443]", i%256), "2001:db8::/32"),
			Action: Protect,
			Ref:    uint32(i),
		}
	}
	last := n - 1
	rules[last].Local = set(fmt.Sprintf("10.%d.%d.0/24", last/256, last%256))
	return rules
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprint(n, "rules"), func(b *testing.B) {
			s, err := Compile(benchRules(n), Bypass)
			if err != nil {
				b.Fatal(err)
			}
			last := n - 1
			p := info(fmt.Sprintf("10.%d.%d.7", last/256, last%256), fmt.Sprintf("172.16.%d.9", last%256), 6, 5555, 443)
			if idx, _ := s.Lookup(sa.Outbound, p); idx != last {
				b.Fatalf("benchmark packet hits %d, want %d", idx, last)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Lookup(sa.Outbound, p)
			}
		})
	}
}

// naive is the SPD written the obvious way, with netip and traffic.Set, to
// check the compiled masks of Lookup against.
func naive(rules []Rule, dir Direction, p *packet.Info) int {
	la, ra := p.Src, p.Dst
	lport, rport := p.SrcPort, p.DstPort
	if dir == sa.Inbound {
		la, ra, lport, rport = ra, la, rport, lport
	}
	has := p.HasPorts
	if p.HasICMP {
		lport = traffic.ICMPPort(p.ICMPType, p.ICMPCode)
		rport, has = lport, true
	}
	side := func(set traffic.Set, a netip.Addr, port uint16) bool {
		return len(set) == 0 || set.Matches(a, p.Proto, port, has)
	}
	for i, r := range rules {
		if side(r.Local, la, lport) && side(r.Remote, ra, rport) {
			return i
		}
	}
	return -1
}

func TestLookupMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for i := 2; i < 16; i++ {
				b[i] = byte(rng.IntN(4)) // few distinct values, so prefixes hit
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(4))})
	}
	protos := []uint8{0, 6, 17, 1, 58, 47}
	sel := func() traffic.Selector {
		v6 := rng.IntN(3) == 0
		a := addr(v6)
		s := traffic.Selector{Prefix: netip.PrefixFrom(a, rng.IntN(a.BitLen()+1)).Masked(), PortHi: 0xffff}
		s.Proto = protos[rng.IntN(len(protos))]
		if s.Proto != 0 && s.Proto != 47 {
			switch rng.IntN(4) {
			case 1:
				s.PortLo = uint16(rng.IntN(8))
				s.PortHi = s.PortLo + uint16(rng.IntN(4))
			case 2:
				s.PortLo, s.PortHi = 0xffff, 0 // OPAQUE
			}
		}
		return s
	}
	for round := 0; round < 100; round++ {
		rules := make([]Rule, 1+rng.IntN(20))
		for i := range rules {
			rules[i].Name = fmt.Sprint(i)
			rules[i].Action = Protect
			for range rng.IntN(3) {
				rules[i].Local = append(rules[i].Local, sel())
			}
			for range rng.IntN(3) {
				rules[i].Remote = append(rules[i].Remote, sel())
			}
			if !families(rules[i].Local, rules[i].Remote) {
				rules[i].Remote = nil
			}
		}
		s, err := Compile(rules, Bypass)
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			v6 := rng.IntN(3) == 0
			p := &packet.Info{Src: addr(v6), Dst: addr(v6), Proto: protos[1+rng.IntN(len(protos)-1)]}
			switch {
			case p.Proto == 6 || p.Proto == 17:
				if rng.IntN(4) != 0 {
					p.HasPorts, p.SrcPort, p.DstPort = true, uint16(rng.IntN(10)), uint16(rng.IntN(10))
				}
			case p.Proto == 1 && !v6 || p.Proto == 58 && v6:
				if rng.IntN(4) != 0 {
					p.HasICMP, p.ICMPType, p.ICMPCode = true, uint8(rng.IntN(3)), uint8(rng.IntN(3))
				}
			}
			for _, dir := range []Direction{sa.Outbound, sa.Inbound} {
				want := naive(rules, dir, p)
				if got, _ := s.Lookup(dir, p); got != want {
					t.Fatalf("rules %v, packet %+v, %v: Lookup = %d, naive = %d", rules, p, dir, got, want)
				}
				steps := s.Explain(dir, p)
				if last := steps[len(steps)-1]; last.Index != want {
					t.Fatalf("Explain ends at %d, want %d", last.Index, want)
				}
			}
		}
	}
}
