package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/transform"
)

// ikePeers translates the configuration's connections into the engine's peers.
func ikePeers(cfg *config.Config, refs func(conn, child string) uint32) ([]ike.Peer, error) {
	var peers []ike.Peer
	for _, c := range cfg.Connections {
		p := ike.Peer{Name: c.Name, Encap: c.Encap, DPDDelay: c.DPDDelay, DPDTimeout: c.DPDTimeout,
			DPDAction: ikeAction(c.DPDAction), CloseAction: ikeAction(c.CloseAction), Unique: ikeUnique(c.Unique),
			RekeyTime: orOff(c.RekeyTime), OverTime: orOff(c.OverTime), RandTime: orOff(c.RandTime), ReauthTime: c.ReauthTime}
		var err error
		if p.LocalAddrs, err = prefixes(c.LocalAddrs); err != nil {
			return nil, fmt.Errorf("policy: connection %s: local_addrs: %w", c.Name, err)
		}
		if p.RemoteAddrs, err = prefixes(c.RemoteAddrs); err != nil {
			return nil, fmt.Errorf("policy: connection %s: remote_addrs: %w", c.Name, err)
		}
		// config.Parse parsed the proposals; "default" is the built-in list.
		for _, prop := range c.Proposals {
			if prop.Default {
				p.Proposals = append(p.Proposals, transform.DefaultIKEProposals()...)
				continue
			}
			p.Proposals = append(p.Proposals, prop.Parsed)
		}
		p.LocalID, p.RemoteID = ike.ParseIdentity(c.Local.ID), ike.ParseIdentity(c.Remote.ID)
		if c.Local.Method == config.AuthPSK || c.Remote.Method == config.AuthPSK {
			p.PSK = pskLookup(cfg.Secrets)
		}
		if err := pubkeyAuth(&p, c); err != nil {
			return nil, fmt.Errorf("policy: connection %s: %w", c.Name, err)
		}
		if cfg.GroupConnection(c.Name) && c.Local.ID == "" && p.LocalAuth == ike.AuthPubkey {
			// A group's peers know a host by its address (the PAD binds
			// the identity to the address it speaks from, RFC 4301,
			// Section 4.4.3.2), so the host's identity is the first IP
			// address in its certificate's subjectAltName, not its
			// subject: one policy file then serves every host.
			for _, ip := range p.LocalCerts[0].IPAddresses {
				if a, ok := netip.AddrFromSlice(ip); ok {
					p.LocalID = ike.AddrIdentity(a.Unmap())
					break
				}
			}
		}
		for _, ch := range c.Children {
			cc := ike.ChildConfig{Name: ch.Name, Ref: refs(c.Name, ch.Name), Mode: ch.Mode, LocalTS: ch.LocalTS, RemoteTS: ch.RemoteTS,
				Protocol: ch.Protocol, ReplayWindow: ch.ReplayWindow,
				RekeyTime: orOff(ch.RekeyTime), LifeTime: orOff(ch.LifeTime), RandTime: orOff(ch.RandTime),
				RekeyBytes: ch.RekeyBytes, LifeBytes: ch.LifeBytes, RekeyPackets: ch.RekeyPackets, LifePackets: ch.LifePackets}
			switch ch.StartAction {
			case config.StartTrap:
				cc.StartAction = ike.StartTrap
			case config.StartStart:
				cc.StartAction = ike.StartStart
			}
			for _, prop := range ch.Proposals {
				if prop.Default {
					cc.Proposals = append(cc.Proposals, transform.DefaultESPProposals()...)
					continue
				}
				cc.Proposals = append(cc.Proposals, prop.Parsed)
			}
			p.Children = append(p.Children, cc)
		}
		peers = append(peers, p)
	}
	return peers, nil
}

// orOff translates a lifetime of the configuration, where Parse filled
// the defaults and 0 means off (as in swanctl.conf), into the engine's,
// where 0 means the default and a negative value off.
func orOff(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func ikeAction(a config.Action) ike.Action {
	switch a {
	case config.ActionTrap:
		return ike.ActionTrap
	case config.ActionStart:
		return ike.ActionStart
	}
	return ike.ActionClear
}

func ikeUnique(u config.Unique) ike.Unique {
	switch u {
	case config.UniqueNever:
		return ike.UniqueNever
	case config.UniqueKeep:
		return ike.UniqueKeep
	case config.UniqueReplace:
		return ike.UniqueReplace
	}
	return ike.UniqueNo
}

func prefixes(addrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, a := range addrs {
		switch {
		case a == "%any" || a == "":
			continue
		case strings.Contains(a, "/"):
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, err
			}
			out = append(out, p.Masked())
		default:
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("%q: DNS names are not implemented; give an IP address", a)
			}
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return out, nil
}

// pskLookup finds the shared secret for a pair of identities, the way
// swanctl.conf's secrets.ike entries name them, but exactly: an entry
// matches only if its ids name both the local and the remote identity (one
// id suffices when the two are the same identity). An entry with one id of
// two different identities, or none, matches nothing: a key for any
// identity would let a peer that knows it authenticate as any other (RFC
// 7296, Section 2.15 ties the key to the pair). The first entry that
// matches wins. The ids are parsed once and indexed by identity, so that
// a responder with thousands of entries finds one in constant time.
func pskLookup(s config.Secrets) func(local, remote ike.Identity) []byte {
	ids := make([][]ike.Identity, len(s.IKE))
	byID := map[string][]int{} // entries naming an identity (not a DN), in file order
	for i, sec := range s.IKE {
		for _, str := range sec.IDs {
			id := ike.ParseIdentity(str)
			ids[i] = append(ids[i], id)
			if k, ok := pskKey(id); ok {
				if l := byID[k]; len(l) == 0 || l[len(l)-1] != i {
					byID[k] = append(l, i)
				}
			}
		}
	}
	names := func(i int, id ike.Identity) bool {
		for _, x := range ids[i] {
			if x.Equal(id) {
				return true
			}
		}
		return false
	}
	return func(local, remote ike.Identity) []byte {
		k, ok := pskKey(remote)
		if !ok {
			// Distinguished names are equal by meaning, not encoding:
			// every entry is a candidate.
			for i := range ids {
				if names(i, local) && names(i, remote) {
					return s.IKE[i].Secret.Bytes()
				}
			}
			return nil
		}
		for _, i := range byID[k] {
			if names(i, local) {
				return s.IKE[i].Secret.Bytes()
			}
		}
		return nil
	}
}

// dnType is the identity type of a distinguished name (ID_DER_ASN1_DN,
// RFC 7296, Section 3.5).
var dnType = ike.ParseIdentity("CN=x").Type

// pskKey returns the index key of id: its type and bytes, which Equal
// compares exactly for every type but distinguished names (false).
func pskKey(id ike.Identity) (string, bool) {
	if id.Type == dnType {
		return "", false
	}
	return string(rune(id.Type)) + string(id.Data), true
}
