package ike

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// Identity is an IKE identity: the ID Type and data of an IDi or IDr
// payload (RFC 7296, Section 3.5). The zero value means "not configured":
// this host's IP address as LocalID, any identity as RemoteID.
type Identity struct {
	Type ikewire.IDType
	Data []byte
}

// ParseIdentity parses an identity in strongSwan's syntax: an IP address
// (ID_IPV4_ADDR or ID_IPV6_ADDR), "@host" or a name without "@" (ID_FQDN),
// "user@host" (ID_RFC822_ADDR), "@#hex" (ID_KEY_ID); "" and "%any" give
// the zero Identity. Distinguished names are not implemented: they parse
// as ID_FQDN, which a strongSwan peer configured with a DN will not match.
func ParseIdentity(s string) Identity {
	switch {
	case s == "" || s == "%any":
		return Identity{}
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

// Equal reports whether id and o are the same identity.
func (id Identity) Equal(o Identity) bool {
	return id.Type == o.Type && bytes.Equal(id.Data, o.Data)
}

// String returns the identity in ParseIdentity's syntax.
func (id Identity) String() string {
	switch id.Type {
	case 0:
		return "%any"
	case ikewire.ID_IPV4_ADDR, ikewire.ID_IPV6_ADDR:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case ikewire.ID_FQDN, ikewire.ID_RFC822_ADDR:
		return string(id.Data)
	case ikewire.ID_KEY_ID:
		return "@#" + hex.EncodeToString(id.Data)
	}
	return fmt.Sprintf("id%d:%x", id.Type, id.Data)
}

func (id Identity) payload() ikewire.Identification {
	return ikewire.Identification{IDType: id.Type, Data: id.Data}
}

func identityOf(p ikewire.Identification) Identity {
	return Identity{Type: p.IDType, Data: bytes.Clone(p.Data)}
}
