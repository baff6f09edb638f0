package policy

import (
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// PAD is the Peer Authorization Database of RFC 4301, Section 4.4.3,
// compiled from the connections: for each connection, which peer identity
// (or any) at which addresses may authenticate, how, and which selectors it
// may claim for its side of each child's CHILD SAs. It is immutable.
type PAD struct {
	Entries []PADEntry
}

// PADEntry is the authorization of the peers of one connection.
type PADEntry struct {
	// Conn is the connection's name (ike.Peer.Name).
	Conn string
	// RemoteID is the identity the peer must authenticate as, matched by
	// ike.Identity.Authorizes: the zero value (an empty remote.id) means
	// the peer's own IP address, ike.AnyIdentity (%any) any identity, and
	// a pattern (*.example.org) what it matches.
	RemoteID ike.Identity
	// RemoteAddrs are the addresses the peer may use; empty means any.
	RemoteAddrs []netip.Prefix
	// RemoteAuth is how the peer must authenticate.
	RemoteAuth ike.AuthMethod
	// Children are what the peer may claim, per child.
	Children []PADChild
}

// PADChild is what a peer may claim for one child.
type PADChild struct {
	Name string
	// RemoteTS are the selectors the peer may claim; empty means the
	// peer's own address only.
	RemoteTS traffic.Set
	// Transport limits RemoteTS to the peer's own address: a transport
	// mode SA protects the traffic of the IKE peer itself (RFC 4301,
	// Section 4.4.3.2 binds a peer to the address it authenticated from).
	Transport bool
}

func compilePAD(peers []ike.Peer) *PAD {
	pad := &PAD{}
	for _, p := range peers {
		e := PADEntry{Conn: p.Name, RemoteID: p.RemoteID, RemoteAddrs: p.RemoteAddrs, RemoteAuth: p.RemoteAuth}
		for _, ch := range p.Children {
			e.Children = append(e.Children, PADChild{Name: ch.Name, RemoteTS: ch.RemoteTS, Transport: ch.Mode == sa.Transport})
		}
		pad.Entries = append(pad.Entries, e)
	}
	return pad
}

// Authorize returns the part of claimed, the selectors a peer authenticated
// as id from addr claims for its side of a CHILD SA of child of connection
// conn, that its PAD entry lets it have; an error if nothing.
func (p *PAD) Authorize(conn string, id ike.Identity, addr netip.Addr, child string, claimed traffic.Set) (traffic.Set, error) {
	var e *PADEntry
	for i := range p.Entries {
		if p.Entries[i].Conn == conn {
			e = &p.Entries[i]
		}
	}
	if e == nil {
		return nil, fmt.Errorf("policy: no PAD entry for connection %q", conn)
	}
	if !e.RemoteID.Authorizes(id, addr) {
		return nil, fmt.Errorf("policy: connection %q does not authorize identity %s", conn, id)
	}
	if !addrIn(e.RemoteAddrs, addr) {
		return nil, fmt.Errorf("policy: connection %q does not authorize address %v", conn, addr)
	}
	var ch *PADChild
	for i := range e.Children {
		if e.Children[i].Name == child {
			ch = &e.Children[i]
		}
	}
	if ch == nil {
		return nil, fmt.Errorf("policy: connection %q has no child %q", conn, child)
	}
	allowed, self := ch.RemoteTS, traffic.Set{traffic.Host(addr.Unmap())}
	switch {
	case len(allowed) == 0:
		allowed = self
	case ch.Transport:
		allowed = allowed.Intersect(self)
	}
	got := claimed.Intersect(allowed)
	if len(got) == 0 {
		return nil, fmt.Errorf("policy: %s may not claim %v (child %s/%s allows %v)", id, claimed, conn, child, allowed)
	}
	return got, nil
}

func addrIn(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}
