package policy

import (
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/traffic"
)

const cfgText = `
policies:
  - {name: dns, remote_ts: ["10.2.0.53/32[udp/53]"], action: bypass}
  - {name: never, remote_ts: [10.9.0.0/16], action: discard}
manual_sas:
  - name: lab
    protocol: esp
    mode: tunnel
    local_addr: 192.0.2.1
    remote_addr: 192.0.2.2
    local_ts: [10.1.0.0/16]
    remote_ts: [10.2.0.0/16]
    spi_out: 0x1001
    spi_in: 0x2001
    algorithm: aes128gcm16
    key_out: 0x0102030405060708090a0b0c0d0e0f1011121314
    key_in: 0x1102030405060708090a0b0c0d0e0f1011121314
  - name: host
    protocol: ah
    mode: transport
    encap: none
    local_addr: 192.0.2.1
    remote_addr: 192.0.2.3
    spi_out: 0x3001
    spi_in: 0x4001
    algorithm: sha256
    key_out: 0x0102030405060708090a0b0c0d0e0f100102030405060708090a0b0c0d0e0f10
    key_in: 0x1102030405060708090a0b0c0d0e0f100102030405060708090a0b0c0d0e0f10
`

func TestCompile(t *testing.T) {
	c, err := config.Parse("test.yaml", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("192.0.2.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []struct {
		name   string
		action spd.Action
	}{{"dns", spd.Bypass}, {"never", spd.Discard}, {"lab", spd.Protect}, {"host", spd.Protect}}
	if len(s.Rules) != len(wantRules) {
		t.Fatalf("rules: %+v", s.Rules)
	}
	for i, w := range wantRules {
		if s.Rules[i].Name != w.name || s.Rules[i].Action != w.action {
			t.Errorf("rule %d = %s/%v, want %s/%v", i, s.Rules[i].Name, s.Rules[i].Action, w.name, w.action)
		}
	}
	if s.Rules[2].Ref == s.Rules[3].Ref || s.Rules[2].Ref == 0 {
		t.Errorf("manual SAs share a Ref: %d, %d", s.Rules[2].Ref, s.Rules[3].Ref)
	}
	if m, ok := s.ManualByName("host"); !ok || m.Ref != s.Rules[3].Ref {
		t.Errorf("ManualByName(host) = %+v, %v", m, ok)
	}
	want := []Route{
		{Dst: netip.MustParsePrefix("10.9.0.0/16")},
		{Dst: netip.MustParsePrefix("10.2.0.0/16"), Src: netip.MustParseAddr("10.1.0.1")},
		{Dst: netip.MustParsePrefix("192.0.2.3/32"), Src: netip.MustParseAddr("192.0.2.1")},
	}
	if len(s.Routes) != len(want) {
		t.Fatalf("routes %v, want %v", s.Routes, want)
	}
	for i := range want {
		if s.Routes[i] != want[i] {
			t.Errorf("route %d = %v, want %v", i, s.Routes[i], want[i])
		}
	}
	if s.SPD.Default() != spd.Bypass {
		t.Errorf("default action %v, want bypass", s.SPD.Default())
	}

	again, _ := Compile(c, nil, nil)
	for i := range s.Manual {
		if !s.Manual[i].Equal(again.Manual[i]) {
			t.Errorf("manual SA %d not equal to itself after recompiling", i)
		}
	}
	changed := again.Manual[0]
	changed.SPIIn++
	if s.Manual[0].Equal(changed) {
		t.Error("a changed SPI compares equal")
	}
}

// TestFilter checks the firewall rules of cfgText: every SPD rule in order
// (RFC 4301, Section 5.2: cleartext where PROTECT applies is dropped), and
// trailing BYPASS rules left out.
func TestFilter(t *testing.T) {
	c, err := config.Parse("test.yaml", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	anyAddr := traffic.Set(nil)
	want := []FilterRule{
		{FilterAccept, traffic.MustParseSet("10.2.0.53/32[udp/53]"), anyAddr},
		{FilterDrop, traffic.MustParseSet("10.9.0.0/16"), anyAddr},
		{FilterDrop, traffic.MustParseSet("10.2.0.0/16"), traffic.MustParseSet("10.1.0.0/16")},
		{FilterDrop, traffic.MustParseSet("192.0.2.3/32"), traffic.MustParseSet("192.0.2.1/32")},
	}
	if len(s.Filter) != len(want) {
		t.Fatalf("filter %+v, want %+v", s.Filter, want)
	}
	for i := range want {
		if g := s.Filter[i]; g.Action != want[i].Action || !g.Remote.Equal(want[i].Remote) || !g.Local.Equal(want[i].Local) {
			t.Errorf("filter rule %d = %+v, want %+v", i, g, want[i])
		}
	}

	// A bypass after the last discard changes nothing; bypass rules
	// alone leave nothing to filter.
	c, err = config.Parse("test.yaml", []byte(`
policies:
  - {name: dns, remote_ts: ["10.2.0.53/32[udp/53]"], action: bypass}
  - {name: never, remote_ts: [10.9.0.0/16], action: discard}
  - {name: late, remote_ts: [10.8.0.0/16], action: bypass}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s, err = Compile(c, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(s.Filter) != 2 || s.Filter[1].Action != FilterDrop || !s.Filter[1].Remote.Equal(traffic.MustParseSet("10.9.0.0/16")) {
		t.Errorf("filter %+v, want the dns bypass and the discard only", s.Filter)
	}
	c.Policies = c.Policies[:1]
	if s, err = Compile(c, nil, nil); err != nil {
		t.Fatal(err)
	}
	if s.Filter != nil {
		t.Errorf("filter for bypass rules only: %+v, want none", s.Filter)
	}
}
