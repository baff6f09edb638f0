package ike

import (
	"testing"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/traffic"
)

func rng(proto uint8, lo, hi uint16, start, end string) tsRange {
	return tsRange{proto: proto, startPort: lo, endPort: hi, start: mustAddr(start), end: mustAddr(end)}
}

func TestIntersect(t *testing.T) {
	for _, tc := range []struct {
		a, b, want tsRange
		ok         bool
	}{
		// Address ranges overlap in part.
		{rng(0, 0, 65535, "10.0.0.0", "10.0.255.255"), rng(0, 0, 65535, "10.0.128.0", "10.1.0.255"), rng(0, 0, 65535, "10.0.128.0", "10.0.255.255"), true},
		// Protocol 0 means any: the specific one wins.
		{rng(0, 0, 65535, "10.0.0.0", "10.0.0.255"), rng(6, 443, 443, "10.0.0.7", "10.0.0.7"), rng(6, 443, 443, "10.0.0.7", "10.0.0.7"), true},
		// Port ranges intersect.
		{rng(17, 1000, 2000, "10.0.0.0", "10.0.0.255"), rng(17, 1500, 3000, "10.0.0.0", "10.0.0.255"), rng(17, 1500, 2000, "10.0.0.0", "10.0.0.255"), true},
		// OPAQUE (RFC 7296, Section 3.13.1) with any port stays OPAQUE.
		{rng(17, 65535, 0, "10.0.0.0", "10.0.0.255"), rng(17, 0, 65535, "10.0.0.0", "10.0.0.255"), rng(17, 65535, 0, "10.0.0.0", "10.0.0.255"), true},
		// Disjoint: protocols, ports, addresses, families.
		{rng(6, 0, 65535, "10.0.0.0", "10.0.0.255"), rng(17, 0, 65535, "10.0.0.0", "10.0.0.255"), tsRange{}, false},
		{rng(6, 1, 10, "10.0.0.0", "10.0.0.255"), rng(6, 11, 20, "10.0.0.0", "10.0.0.255"), tsRange{}, false},
		{rng(0, 0, 65535, "10.0.0.0", "10.0.0.255"), rng(0, 0, 65535, "10.0.1.0", "10.0.1.255"), tsRange{}, false},
		{rng(0, 0, 65535, "10.0.0.0", "10.0.0.255"), rng(0, 0, 65535, "::", "ffff::"), tsRange{}, false},
		{rng(6, 65535, 0, "10.0.0.0", "10.0.0.255"), rng(6, 80, 80, "10.0.0.0", "10.0.0.255"), tsRange{}, false},
	} {
		got, ok := intersect(tc.a, tc.b)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("intersect(%v, %v) = %v, %v; want %v, %v", tc.a, tc.b, got, ok, tc.want, tc.ok)
		}
	}
}

func TestToSet(t *testing.T) {
	for _, tc := range []struct {
		r    tsRange
		want []string
	}{
		{rng(0, 0, 65535, "10.0.0.0", "10.0.255.255"), []string{"10.0.0.0/16"}},
		// 10.0.0.1 - 10.0.0.6 = .1/32 .2/31 .4/31 .6/32.
		{rng(0, 0, 65535, "10.0.0.1", "10.0.0.6"), []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{rng(6, 443, 443, "0.0.0.0", "255.255.255.255"), []string{"0.0.0.0/0[tcp/443]"}},
		{rng(0, 0, 65535, "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"), []string{"2001:db8::/64"}},
		{rng(0, 0, 65535, "255.255.255.254", "255.255.255.255"), []string{"255.255.255.254/31"}},
	} {
		got := toSet([]tsRange{tc.r})
		if want := traffic.MustParseSet(tc.want...); !got.Equal(want) {
			t.Errorf("toSet(%v) = %v, want %v", tc.r, got, want)
		}
	}
}

func TestNarrowDropsContained(t *testing.T) {
	// RFC 7296, Section 2.9: the trigger host and the subnet are proposed;
	// the answer keeps the subnet.
	prop := []tsRange{rng(1, 0, 65535, "10.1.0.5", "10.1.0.5"), rng(0, 0, 65535, "10.1.0.0", "10.1.255.255")}
	conf := fromSet(traffic.MustParseSet("10.1.0.0/16"))
	got := narrow(prop, conf)
	if len(got) != 1 || got[0] != prop[1] {
		t.Fatalf("narrow = %v", got)
	}
}

func TestSelectIKE(t *testing.T) {
	ours := mustIKE(t, "aes256gcm16-prfsha256-ecp256", "aes128-sha256-modp3072")
	// A strongSwan-like offer: AEAD proposal first, then a CBC one.
	theirs := []ikewire.Proposal{}
	for i, p := range mustIKE(t, "aes128gcm16-chacha20poly1305-prfsha384-x25519", "aes256-aes128-sha384-sha256-prfsha256-modp3072-ecp256") {
		o := ikeOffer(p)
		o.num = uint8(i + 1)
		theirs = append(theirs, o.wire())
	}
	s, num, keOK, ok := selectIKE(ours, theirs, iana.KEMODP3072)
	if !ok || num != 2 || !keOK || s.encr.ID != iana.EncrAESCBC || s.encr.KeyBits != 128 || s.integ != iana.IntegHMACSHA2_256 || s.prf != iana.PRFHMACSHA2_256 || s.ke != iana.KEMODP3072 {
		t.Fatalf("selected %+v num %d keOK %v ok %v", s, num, keOK, ok)
	}
	// With an x25519 KE payload, no proposal takes it: INVALID_KE_PAYLOAD
	// names our preferred acceptable method.
	s, _, keOK, ok = selectIKE(ours, theirs, iana.KECurve25519)
	if !ok || keOK || s.ke != iana.KEMODP3072 {
		t.Fatalf("selected %+v keOK %v ok %v", s, keOK, ok)
	}
	// Nothing in common.
	if _, _, _, ok := selectIKE(mustIKE(t, "chacha20poly1305-prfsha512-ecp521"), theirs, iana.KEECP521); ok {
		t.Fatal("matched without a common key exchange method")
	}
	// A proposal that requires an additional key exchange (RFC 9370)
	// cannot be chosen.
	p := theirs[1]
	p.Transforms = append(p.Transforms, ikewire.Transform{Type: ikewire.TransformADDKE1, ID: uint16(iana.KEMLKEM768)})
	if _, _, _, ok := selectIKE(ours[1:], []ikewire.Proposal{p}, iana.KEMODP3072); ok {
		t.Fatal("chose a proposal with a required additional key exchange")
	}
}

func TestParseIdentity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		typ  ikewire.IDType
		data string
	}{
		{"192.0.2.1", ikewire.ID_IPV4_ADDR, "\xc0\x00\x02\x01"},
		{"moon.strongswan.org", ikewire.ID_FQDN, "moon.strongswan.org"},
		{"@moon", ikewire.ID_FQDN, "moon"},
		{"carol@strongswan.org", ikewire.ID_RFC822_ADDR, "carol@strongswan.org"},
		{"@#0102", ikewire.ID_KEY_ID, "\x01\x02"},
		{"%any", idAny, ""},
		{"", 0, ""},
		{"*.example.org", ikewire.ID_FQDN, "*.example.org"},
		{"*@example.org", ikewire.ID_RFC822_ADDR, "*@example.org"},
	} {
		id := ParseIdentity(tc.in)
		if id.Type != tc.typ || string(id.Data) != tc.data {
			t.Errorf("ParseIdentity(%q) = %v %q", tc.in, id.Type, id.Data)
		}
	}
}
