package traffic

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		in   string
		want Selector
		str  string // canonical String, if different from in
	}{
		{"10.2.0.0/16", Selector{Prefix: p("10.2.0.0/16"), PortHi: 0xffff}, ""},
		{"10.2.3.4/16", Selector{Prefix: p("10.2.0.0/16"), PortHi: 0xffff}, "10.2.0.0/16"},
		{"10.3.0.0/16[tcp/443]", Selector{Prefix: p("10.3.0.0/16"), Proto: 6, PortLo: 443, PortHi: 443}, ""},
		{"10.1.0.1/32[udp]", Selector{Prefix: p("10.1.0.1/32"), Proto: 17, PortHi: 0xffff}, ""},
		{"10.1.0.1", Selector{Prefix: p("10.1.0.1/32"), PortHi: 0xffff}, "10.1.0.1/32"},
		{"2001:db8::1", Selector{Prefix: p("2001:db8::1/128"), PortHi: 0xffff}, "2001:db8::1/128"},
		{"::/0", Selector{Prefix: p("::/0"), PortHi: 0xffff}, ""},
		{"0.0.0.0/0", Selector{Prefix: p("0.0.0.0/0"), PortHi: 0xffff}, ""},
		// RFC 7296, Section 3.13.1: ICMP type in the high byte, code in the low.
		{"0.0.0.0/0[icmp/8]", Selector{Prefix: p("0.0.0.0/0"), Proto: 1, PortLo: 0x0800, PortHi: 0x08ff}, ""},
		{"0.0.0.0/0[icmp/769]", Selector{Prefix: p("0.0.0.0/0"), Proto: 1, PortLo: 0x0301, PortHi: 0x0301}, ""},
		{"0.0.0.0/0[icmp/3-4]", Selector{Prefix: p("0.0.0.0/0"), Proto: 1, PortLo: 0x0300, PortHi: 0x04ff}, ""},
		{"::/0[ipv6-icmp/128]", Selector{Prefix: p("::/0"), Proto: 58, PortLo: 0x8000, PortHi: 0x80ff}, ""},
		{"::/0[icmpv6/135]", Selector{Prefix: p("::/0"), Proto: 58, PortLo: 0x8700, PortHi: 0x87ff}, "::/0[ipv6-icmp/135]"},
		{"0.0.0.0/0[icmp/0-255]", Selector{Prefix: p("0.0.0.0/0"), Proto: 1, PortHi: 0xffff}, "0.0.0.0/0[icmp]"},
		{"10.0.0.0/8[udp/1000-2000]", Selector{Prefix: p("10.0.0.0/8"), Proto: 17, PortLo: 1000, PortHi: 2000}, ""},
		{"10.0.0.0/8[tcp/%any]", Selector{Prefix: p("10.0.0.0/8"), Proto: 6, PortHi: 0xffff}, "10.0.0.0/8[tcp]"},
		{"10.0.0.0/8[17/53]", Selector{Prefix: p("10.0.0.0/8"), Proto: 17, PortLo: 53, PortHi: 53}, "10.0.0.0/8[udp/53]"},
		{"10.0.0.0/8[47]", Selector{Prefix: p("10.0.0.0/8"), Proto: 47, PortHi: 0xffff}, "10.0.0.0/8[gre]"},
		{"10.0.0.0/8[200]", Selector{Prefix: p("10.0.0.0/8"), Proto: 200, PortHi: 0xffff}, ""},
		{"10.0.0.0/8[%any]", Selector{Prefix: p("10.0.0.0/8"), PortHi: 0xffff}, "10.0.0.0/8"},
		{"10.0.0.0/8[tcp/0-65535]", Selector{Prefix: p("10.0.0.0/8"), Proto: 6, PortHi: 0xffff}, "10.0.0.0/8[tcp]"},
		{"10.0.0.0/8[tcp/0]", Selector{Prefix: p("10.0.0.0/8"), Proto: 6}, ""},
		// RFC 4301, Section 4.4.1.1 OPAQUE; RFC 7296, Section 3.13.1 encoding.
		{"10.0.0.0/8[udp/opaque]", Selector{Prefix: p("10.0.0.0/8"), Proto: 17, PortLo: 0xffff, PortHi: 0}, ""},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSelector(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		want := tt.str
		if want == "" {
			want = tt.in
		}
		if s := got.String(); s != want {
			t.Errorf("ParseSelector(%q).String() = %q, want %q", tt.in, s, want)
		}
		if !got.IsValid() {
			t.Errorf("ParseSelector(%q) is not valid", tt.in)
		}
	}
}

func TestParseSelectorErrors(t *testing.T) {
	tests := []struct{ in, reason string }{
		{"", "missing address"},
		{"dynamic", "dynamic"},
		{"dynamic[tcp/80]", "dynamic"},
		{"10.0.0.1-10.0.0.9", "ranges"},
		{"fe80::1%eth0", "zone"},
		{"10.0.0.0/33", "invalid prefix"},
		{"10.0.0.256", "invalid address"},
		{"example.com", "invalid address"},
		{"10.0.0.0/8[tcp", "brackets"},
		{"10.0.0.0/8[tcp]x", "brackets"},
		{"10.0.0.0/8[[tcp]]", "brackets"},
		{"10.0.0.0/8[foo]", "unknown protocol"},
		{"10.0.0.0/8[256]", "unknown protocol"},
		{"10.0.0.0/8[-1]", "unknown protocol"},
		{"10.0.0.0/8[tcp/http]", "invalid port"},
		{"10.0.0.0/8[tcp/65536]", "invalid port"},
		{"10.0.0.0/8[tcp/080]", "invalid port"},
		{"10.0.0.0/8[tcp/+80]", "invalid port"},
		{"10.0.0.0/8[tcp/2000-1000]", "ends before"},
		{"10.0.0.0/8[tcp/1-2-3]", "invalid port"},
		{"10.0.0.0/8[/80]", "needs a protocol"},
		{"10.0.0.0/8[gre/80]", "has no ports"},
		{"10.0.0.0/8[esp/opaque]", "has no ports"},
	}
	for _, tt := range tests {
		_, err := ParseSelector(tt.in)
		if err == nil {
			t.Errorf("ParseSelector(%q) succeeded, want error", tt.in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "traffic: ") || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ParseSelector(%q) = %q, want a traffic: error containing %q", tt.in, err, tt.reason)
		}
	}
	if _, err := ParseSelector("dynamic"); !errors.Is(err, ErrDynamic) {
		t.Errorf("ParseSelector(dynamic) = %v, want ErrDynamic", err)
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		sel     string
		proto   uint8
		port    uint16
		hasPort bool
		want    bool
	}{
		{"10.0.0.0/8", 6, 80, true, true},
		{"10.0.0.0/8", 50, 0, false, true},
		{"10.0.0.0/8[tcp]", 6, 80, true, true},
		{"10.0.0.0/8[tcp]", 17, 80, true, false},
		{"10.0.0.0/8[tcp]", 6, 0, false, true}, // non-initial fragment, any port
		{"10.0.0.0/8[tcp/443]", 6, 443, true, true},
		{"10.0.0.0/8[tcp/443]", 6, 444, true, false},
		{"10.0.0.0/8[tcp/443]", 6, 443, false, false}, // ports unknown: RFC 4301, Section 7
		{"10.0.0.0/8[udp/1000-2000]", 17, 999, true, false},
		{"10.0.0.0/8[udp/1000-2000]", 17, 1000, true, true},
		{"10.0.0.0/8[udp/1000-2000]", 17, 2000, true, true},
		{"10.0.0.0/8[udp/1000-2000]", 17, 2001, true, false},
		{"10.0.0.0/8[udp/opaque]", 17, 53, true, false},
		{"10.0.0.0/8[udp/opaque]", 17, 0, false, true},
		{"10.0.0.0/8[udp/opaque]", 6, 0, false, false},
		{"0.0.0.0/0[icmp/8]", 1, ICMPPort(8, 0), true, true},
		{"0.0.0.0/0[icmp/8]", 1, ICMPPort(8, 5), true, true},
		{"0.0.0.0/0[icmp/8]", 1, ICMPPort(0, 0), true, false},
		{"0.0.0.0/0[icmp/769]", 1, ICMPPort(3, 1), true, true},
		{"0.0.0.0/0[icmp/769]", 1, ICMPPort(3, 0), true, false},
	}
	for _, tt := range tests {
		s := MustParseSelector(tt.sel)
		if got := s.Matches(tt.proto, tt.port, tt.hasPort); got != tt.want {
			t.Errorf("%s.Matches(%d, %d, %v) = %v, want %v", tt.sel, tt.proto, tt.port, tt.hasPort, got, tt.want)
		}
	}
}

func TestContains(t *testing.T) {
	a := netip.MustParseAddr
	s4 := MustParseSelector("10.1.0.0/16")
	s6 := MustParseSelector("2001:db8::/32")
	if !s4.Contains(a("10.1.255.255")) || s4.Contains(a("10.2.0.0")) {
		t.Error("IPv4 prefix containment wrong")
	}
	if s4.Contains(a("::ffff:10.1.0.1")) {
		t.Error("IPv4 selector contains an IPv4-mapped IPv6 address")
	}
	if !s6.Contains(a("2001:db8:1::1")) || s6.Contains(a("10.1.0.1")) {
		t.Error("IPv6 prefix containment wrong")
	}
	if !Any(false).Contains(a("192.0.2.1")) || Any(false).Contains(a("::1")) || !Any(true).Contains(a("::1")) {
		t.Error("Any wrong")
	}
	if h := Host(a("192.0.2.1")); h.String() != "192.0.2.1/32" || !h.Contains(a("192.0.2.1")) {
		t.Errorf("Host = %s", h)
	}
}

func TestSet(t *testing.T) {
	set := MustParseSet("10.2.0.0/16", "10.3.0.0/16[tcp/443]")
	a := netip.MustParseAddr
	if !set.Matches(a("10.2.1.1"), 17, 53, true) {
		t.Error("first selector should match")
	}
	if !set.Matches(a("10.3.1.1"), 6, 443, true) || set.Matches(a("10.3.1.1"), 6, 80, true) {
		t.Error("second selector port check wrong")
	}
	if !set.Contains(a("10.3.0.1")) || set.Contains(a("10.4.0.1")) {
		t.Error("Contains wrong")
	}
	if got := set.String(); got != "10.2.0.0/16, 10.3.0.0/16[tcp/443]" {
		t.Errorf("String = %q", got)
	}
	if !set.Equal(MustParseSet("10.2.0.0/16", "10.3.0.0/16[tcp/443]")) || set.Equal(set[:1]) {
		t.Error("Equal wrong")
	}
	if err := set.Validate(); err != nil {
		t.Error(err)
	}
	if err := (Set{{}}).Validate(); err == nil {
		t.Error("zero selector validated")
	}
	if _, err := ParseSet([]string{"10.0.0.0/8", "dynamic"}); !errors.Is(err, ErrDynamic) {
		t.Errorf("ParseSet = %v", err)
	}
}

func TestTextMarshal(t *testing.T) {
	s := MustParseSelector("10.3.0.0/16[tcp/443]")
	b, err := s.MarshalText()
	if err != nil || string(b) != "10.3.0.0/16[tcp/443]" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var back Selector
	if err := back.UnmarshalText(b); err != nil || back != s {
		t.Fatalf("UnmarshalText = %v, %v", back, err)
	}
	if _, err := (Selector{}).MarshalText(); err == nil {
		t.Error("zero selector marshalled")
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"10.2.0.0/16", "10.3.0.0/16[tcp/443]", "10.1.0.1/32[udp]", "0.0.0.0/0[icmp/8]",
		"10.0.0.0/8[udp/1000-2000]", "10.0.0.0/8[tcp/%any]", "::/0", "10.1.0.1",
		"dynamic", "::/0[ipv6-icmp/34560-34815]", "0.0.0.0/0[icmp/769-1024]", "1.2.3.4[tcp/opaque]",
		"fe80::1%eth0/64", "10.0.0.0/8[17/53]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSelector(in)
		if err != nil {
			return
		}
		if !s.IsValid() {
			t.Fatalf("ParseSelector(%q) = %+v, not valid", in, s)
		}
		str := s.String()
		back, err := ParseSelector(str)
		if err != nil {
			t.Fatalf("ParseSelector(%q).String() = %q does not parse: %v", in, str, err)
		}
		if back != s {
			t.Fatalf("round trip %q -> %q -> %+v, want %+v", in, str, back, s)
		}
		if back.String() != str {
			t.Fatalf("String not stable: %q -> %q", str, back.String())
		}
	})
}

// TestSetOverlaps checks that Overlaps says what a non-empty Intersect
// says, for prefixes, protocols, port ranges and OPAQUE, without
// allocating.
func TestSetOverlaps(t *testing.T) {
	sets := [][]string{
		{"10.1.0.0/16"},
		{"10.1.2.3/32"},
		{"10.2.0.0/16"},
		{"10.1.0.0/16[tcp/80]"},
		{"10.1.0.0/16[udp/53]"},
		{"10.1.0.0/16[tcp/1000-2000]"},
		{"10.1.0.0/16[tcp/2001-3000]"},
		{"10.1.0.0/16[tcp/opaque]"},
		{"10.2.0.0/16", "10.1.5.0/24[tcp]"},
		{"0.0.0.0/0"},
		{"::/0"},
	}
	for _, a := range sets {
		for _, b := range sets {
			x, y := MustParseSet(a...), MustParseSet(b...)
			if got, want := x.Overlaps(y), len(x.Intersect(y)) > 0; got != want {
				t.Errorf("%v overlaps %v: %v, Intersect says %v", x, y, got, want)
			}
		}
	}
	x, y := MustParseSet("10.1.0.0/16[tcp/1000-2000]"), MustParseSet("10.2.0.0/16", "10.1.7.0/24[tcp/2000]")
	if n := testing.AllocsPerRun(100, func() { x.Overlaps(y) }); n != 0 {
		t.Errorf("Overlaps allocates %v times", n)
	}
}
