package ike

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"net/netip"
	"reflect"
	"strings"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// Identity is an IKE identity: the ID Type and data of an IDi or IDr
// payload (RFC 7296, Section 3.5). The zero value means "not configured":
// this host's IP address as LocalID; as RemoteID, the IP address the peer
// speaks from (an ID_IPV4_ADDR or ID_IPV6_ADDR equal to the IKE SA's
// remote address).
//
// As a RemoteID an Identity may also be a pattern, as in strongSwan:
// AnyIdentity ("%any") matches any identity; an ID_FQDN or ID_RFC822_ADDR
// whose data starts with "*" matches any identity of that type ending in
// the rest ("*.example.org", "*@example.org"; "*" alone matches all of the
// type); an ID_DER_ASN1_DN with an attribute value "*" ("C=CH, O=Example,
// CN=*") matches any value of that attribute.
type Identity struct {
	Type ikewire.IDType
	Data []byte
}

// idAny is the ID Type of AnyIdentity. It is never sent: it comes from the
// private-use range of the IANA registry of ID Types (201-255), and
// identities of that type from a peer are refused.
const idAny ikewire.IDType = 255

// AnyIdentity returns "%any", the RemoteID that accepts any identity.
func AnyIdentity() Identity { return Identity{Type: idAny} }

// IsAny reports whether id is AnyIdentity.
func (id Identity) IsAny() bool { return id.Type == idAny }

// ParseIdentity parses an identity in strongSwan's syntax: an IP address
// (ID_IPV4_ADDR or ID_IPV6_ADDR), "@host" or a name without "@" (ID_FQDN),
// "user@host" (ID_RFC822_ADDR), "@#hex" (ID_KEY_ID), a distinguished name
// such as "C=CH, O=Example, CN=moon" (ID_DER_ASN1_DN, attributes separated
// by commas, without escapes or multi-valued RDNs). "" gives the zero
// Identity, "%any" AnyIdentity. Patterns (see Identity) are parsed the
// same way; CheckPattern says whether one is well formed.
func ParseIdentity(s string) Identity {
	switch {
	case s == "":
		return Identity{}
	case s == "%any":
		return AnyIdentity()
	case strings.Contains(s, "="):
		if der, err := parseDN(s); err == nil {
			return Identity{Type: ikewire.ID_DER_ASN1_DN, Data: der}
		}
	case strings.HasPrefix(s, "@#"):
		if b, err := hex.DecodeString(s[2:]); err == nil {
			return Identity{Type: ikewire.ID_KEY_ID, Data: b}
		}
	case strings.HasPrefix(s, "@"):
		return Identity{Type: ikewire.ID_FQDN, Data: []byte(s[1:])}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return AddrIdentity(a)
	}
	if strings.Contains(s, "@") {
		return Identity{Type: ikewire.ID_RFC822_ADDR, Data: []byte(s)}
	}
	return Identity{Type: ikewire.ID_FQDN, Data: []byte(s)}
}

// AddrIdentity returns the ID_IPV4_ADDR or ID_IPV6_ADDR identity of a.
func AddrIdentity(a netip.Addr) Identity {
	a = a.Unmap()
	if a.Is4() {
		return Identity{Type: ikewire.ID_IPV4_ADDR, Data: a.AsSlice()}
	}
	return Identity{Type: ikewire.ID_IPV6_ADDR, Data: a.AsSlice()}
}

// IsZero reports whether id is the zero Identity.
func (id Identity) IsZero() bool { return id.Type == 0 && len(id.Data) == 0 }

// IsPattern reports whether id, as a RemoteID, matches other identities
// than itself: AnyIdentity or an identity with a wildcard.
func (id Identity) IsPattern() bool {
	switch id.Type {
	case idAny:
		return true
	case ikewire.ID_FQDN, ikewire.ID_RFC822_ADDR:
		return bytes.HasPrefix(id.Data, []byte("*"))
	case ikewire.ID_DER_ASN1_DN:
		seq, ok := parseRDNs(id.Data)
		if !ok {
			return false
		}
		for _, rdn := range seq {
			for _, at := range rdn {
				if at.Value == "*" {
					return true
				}
			}
		}
	}
	return false
}

// CheckPattern returns an error if id holds a wildcard that Matches does
// not implement: in an FQDN or e-mail identity "*" may only come first
// (once), in a distinguished name only as a whole attribute value, and
// nowhere in other types.
func (id Identity) CheckPattern() error {
	n := bytes.Count(id.Data, []byte("*"))
	switch id.Type {
	case idAny:
		return nil
	case ikewire.ID_FQDN, ikewire.ID_RFC822_ADDR:
		if n == 0 || (n == 1 && id.Data[0] == '*') {
			return nil
		}
	case ikewire.ID_DER_ASN1_DN:
		seq, ok := parseRDNs(id.Data)
		if !ok {
			return fmt.Errorf("ike: identity %x: invalid distinguished name", id.Data)
		}
		for _, rdn := range seq {
			for _, at := range rdn {
				if v, ok := at.Value.(string); ok && v != "*" && strings.Contains(v, "*") {
					return fmt.Errorf("ike: identity %s: a wildcard must be a whole attribute value, as in CN=*", id)
				}
			}
		}
		return nil
	default:
		if n == 0 {
			return nil
		}
		return fmt.Errorf("ike: identity %s: identities of type %d take no wildcard", id, id.Type)
	}
	return fmt.Errorf("ike: identity %s: \"*\" may only start an FQDN or e-mail pattern, as in *.example.org or *@example.org", id)
}

// Matches reports whether the peer's identity got matches id used as a
// RemoteID: equal to it, or matched by its wildcards (see Identity). The
// zero id matches nothing here; see matchRemoteID.
func (id Identity) Matches(got Identity) bool {
	if got.Type == idAny {
		return false // never a peer's identity
	}
	switch {
	case id.IsAny():
		return true
	case id.Equal(got):
		return true
	case id.Type != got.Type || !id.IsPattern():
		return false
	case id.Type == ikewire.ID_DER_ASN1_DN:
		return dnMatch(id.Data, got.Data)
	}
	// RFC 7296, Section 3.5 leaves matching to policy; this is
	// strongSwan's: a leading "*" matches any prefix, ignoring case.
	suffix := id.Data[1:]
	return len(got.Data) >= len(suffix) && strings.EqualFold(string(got.Data[len(got.Data)-len(suffix):]), string(suffix))
}

// Authorizes reports whether id, used as a RemoteID, accepts the peer's
// identity got when the peer speaks from addr: the zero id accepts only the
// peer's own IP address as its identity, AnyIdentity any identity, a pattern
// what it matches, any other id only itself. The policy agent's PAD uses it.
func (id Identity) Authorizes(got Identity, addr netip.Addr) bool {
	return matchRemoteID(id, got, addr) != matchNone
}

// Match ranks of matchRemoteID, best last.
const (
	matchNone = iota
	matchAny
	matchPattern
	matchExact
)

// matchRemoteID ranks how the peer's identity got, speaking from addr,
// matches a configured RemoteID want: exactly (an equal identity, or for a
// zero want the peer's own IP address), by a pattern, by "%any", or not.
func matchRemoteID(want, got Identity, addr netip.Addr) int {
	switch {
	case got.Type == idAny:
		return matchNone
	case want.IsZero():
		if got.Equal(AddrIdentity(addr)) {
			return matchExact
		}
		return matchNone
	case want.IsAny():
		return matchAny
	case want.Equal(got):
		return matchExact
	case want.Matches(got):
		return matchPattern
	}
	return matchNone
}

// Equal reports whether id and o are the same identity. Distinguished
// names are compared attribute by attribute, ignoring the ASN.1 string
// types and the case of values (RFC 5280, Section 7.1).
func (id Identity) Equal(o Identity) bool {
	if id.Type == ikewire.ID_DER_ASN1_DN && o.Type == ikewire.ID_DER_ASN1_DN {
		return dnEqual(id.Data, o.Data)
	}
	return id.Type == o.Type && bytes.Equal(id.Data, o.Data)
}

// String returns the identity in ParseIdentity's syntax.
func (id Identity) String() string {
	switch id.Type {
	case 0, idAny:
		return "%any"
	case ikewire.ID_IPV4_ADDR, ikewire.ID_IPV6_ADDR:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case ikewire.ID_FQDN, ikewire.ID_RFC822_ADDR:
		return string(id.Data)
	case ikewire.ID_KEY_ID:
		return "@#" + hex.EncodeToString(id.Data)
	case ikewire.ID_DER_ASN1_DN:
		if s, ok := dnString(id.Data); ok {
			return s
		}
	}
	return fmt.Sprintf("id%d:%x", id.Type, id.Data)
}

func (id Identity) payload() ikewire.Identification {
	return ikewire.Identification{IDType: id.Type, Data: id.Data}
}

func identityOf(p ikewire.Identification) Identity {
	return Identity{Type: p.IDType, Data: bytes.Clone(p.Data)}
}

// dnAttrs are the attribute names of distinguished names in strongSwan's
// syntax and their object identifiers (RFC 4519, RFC 5280 Appendix A).
var dnAttrs = []struct {
	name string
	oid  asn1.ObjectIdentifier
}{
	{"C", asn1.ObjectIdentifier{2, 5, 4, 6}},
	{"ST", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"L", asn1.ObjectIdentifier{2, 5, 4, 7}},
	{"O", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}},
	{"CN", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"SN", asn1.ObjectIdentifier{2, 5, 4, 4}},
	{"serialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"T", asn1.ObjectIdentifier{2, 5, 4, 12}},
	{"G", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"E", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
	{"DC", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}},
	{"UID", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}},
}

// parseDN encodes "C=CH, O=Example, CN=moon" as the DER RDNSequence of an
// ID_DER_ASN1_DN identity (RFC 7296, Section 3.5), one attribute per RDN
// in the order written. Printable values become PrintableString, others
// UTF8String.
func parseDN(s string) ([]byte, error) {
	var seq pkix.RDNSequence
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("ike: invalid distinguished name %q", s)
		}
		var oid asn1.ObjectIdentifier
		for _, a := range dnAttrs {
			if strings.EqualFold(a.name, k) || (a.name == "E" && strings.EqualFold(k, "emailAddress")) {
				oid = a.oid
			}
		}
		if oid == nil {
			return nil, fmt.Errorf("ike: unknown attribute %q in distinguished name", k)
		}
		seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: v}})
	}
	return asn1.Marshal(seq)
}

// parseRDNs decodes a DER RDNSequence, refusing trailing data.
func parseRDNs(der []byte) (pkix.RDNSequence, bool) {
	var seq pkix.RDNSequence
	rest, err := asn1.Unmarshal(der, &seq)
	return seq, err == nil && len(rest) == 0
}

// dnEqual compares two DER distinguished names RDN by RDN: the attribute
// types must be equal, string values equal ignoring case and string type
// (RFC 5280, Section 7.1), other values identical.
func dnEqual(a, b []byte) bool { return bytes.Equal(a, b) || dnCompare(a, b, false) }

// dnMatch matches the DN pattern p, whose attribute values "*" match any
// value, against the DN got; other attributes compare as in dnEqual.
func dnMatch(p, got []byte) bool { return dnCompare(p, got, true) }

func dnCompare(a, b []byte, wild bool) bool {
	x, ok1 := parseRDNs(a)
	y, ok2 := parseRDNs(b)
	if !ok1 || !ok2 || len(x) != len(y) {
		return false
	}
	for i := range x {
		if len(x[i]) != len(y[i]) {
			return false
		}
		for j := range x[i] {
			p, q := x[i][j], y[i][j]
			if !p.Type.Equal(q.Type) {
				return false
			}
			if wild && p.Value == "*" {
				continue
			}
			ps, ok1 := p.Value.(string)
			qs, ok2 := q.Value.(string)
			switch {
			case ok1 && ok2:
				if !strings.EqualFold(ps, qs) {
					return false
				}
			case ok1 != ok2 || !reflect.DeepEqual(p.Value, q.Value):
				return false
			}
		}
	}
	return true
}

// dnString writes a DER distinguished name in strongSwan's order and
// syntax, "C=CH, O=Example, CN=moon".
func dnString(der []byte) (string, bool) {
	seq, ok := parseRDNs(der)
	if !ok {
		return "", false
	}
	var parts []string
	for _, rdn := range seq {
		for _, at := range rdn {
			name := at.Type.String()
			for _, a := range dnAttrs {
				if a.oid.Equal(at.Type) {
					name = a.name
				}
			}
			parts = append(parts, fmt.Sprintf("%s=%v", name, at.Value))
		}
	}
	return strings.Join(parts, ", "), true
}
