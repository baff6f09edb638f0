package ike

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/ike/keys"
)

// authTask is the initiator's IKE_AUTH with a pre-shared key or a
// certificate (RFC 7296, Sections 1.2 and 2.15; RFC 7427), creating the first CHILD SA when cr.cfg is set.
type authTask struct {
	cr childReq
}

func (*authTask) exchange() ikewire.ExchangeType { return ikewire.IKE_AUTH }

// localIdentity returns the configured identity, else the subject of
// this host's certificate when it authenticates with one, else the outer
// address. A distinguished name equal to the certificate's subject is sent
// in the certificate's own encoding, so that peers comparing octets match.
func (s *session) localIdentity() Identity {
	var cert *x509.Certificate
	if s.peer != nil && s.peer.LocalAuth == AuthPubkey && len(s.peer.LocalCerts) > 0 {
		cert = s.peer.LocalCerts[0]
	}
	if s.peer != nil && !s.peer.LocalID.IsZero() && !s.peer.LocalID.IsAny() {
		if cert != nil && s.peer.LocalID.Type == ikewire.ID_DER_ASN1_DN && dnEqual(s.peer.LocalID.Data, cert.RawSubject) {
			return Identity{Type: ikewire.ID_DER_ASN1_DN, Data: cert.RawSubject}
		}
		return s.peer.LocalID
	}
	if cert != nil {
		return Identity{Type: ikewire.ID_DER_ASN1_DN, Data: cert.RawSubject}
	}
	return AddrIdentity(s.local.Addr())
}

// psk returns the pre-shared key of the two identities, nil if none.
func (s *session) psk(local, remote Identity) []byte {
	if s.peer == nil || s.peer.PSK == nil {
		return nil
	}
	return s.peer.PSK(local, remote)
}

// authData returns AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"),
// <SignedOctets>) for the side whose first message was msg (RFC 7296,
// Section 2.15), with intAuth appended after IKE_INTERMEDIATE exchanges
// (RFC 9242, Section 3.3.2).
func authData(x *ikeSA, psk, msg, nonce []byte, initiator bool, id ikewire.Identification, intAuth [][]byte) []byte {
	return keys.PSKAuth(x.prf, psk, keys.SignedOctets(msg, nonce, x.keys.MACedID(initiator, id.Body()), intAuth...))
}

func (t *authTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	if s.addKENext < len(s.addKEs()) {
		return nil, errors.New("ike: IKE_AUTH before the additional key exchanges completed")
	}
	// RFC 9242, Section 3.3.2: the Message ID of IKE_AUTH is signed.
	s.authMID = x.nextID
	s.localID = s.localIdentity()
	idi := &ikewire.IDi{Identification: s.localID.payload()}
	// The pre-shared key is looked up with the identity the responder
	// must have: a zero RemoteID means its IP address.
	remote := s.peer.RemoteID
	if remote.IsZero() {
		remote = AddrIdentity(s.remote.Addr())
	}
	auth, err := s.authPayload(x, s.initReq, s.nr, true, idi.Identification, remote)
	if err != nil {
		return nil, err
	}
	pl := []ikewire.Payload{idi}
	if s.peer.LocalAuth == AuthPubkey {
		// RFC 7296, Section 3.6: our certificate chain.
		pl = append(pl, s.peer.certPayloads()...)
	}
	if !s.m.hasOtherSA(s) {
		// RFC 7296, Section 2.4: no other IKE SA with this peer exists.
		pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyInitialContact})
	}
	// RFC 7296, Section 3.7: the CAs we trust for the responder's
	// certificate.
	pl = append(pl, certReqs(s.peer)...)
	if !s.peer.RemoteID.IsZero() && !s.peer.RemoteID.IsPattern() {
		// RFC 7296, Section 2.15: IDr names the responder we want; a
		// pattern names none.
		pl = append(pl, &ikewire.IDr{Identification: s.peer.RemoteID.payload()})
	}
	pl = append(pl, auth)
	if t.cr.cfg != nil {
		// RFC 7296, Section 1.2: the first CHILD SA comes without KE.
		cpl, err := t.cr.request(s, false)
		if err != nil {
			return nil, err
		}
		pl = append(pl, cpl...)
	}
	return pl, nil
}

func (t *authTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	if findNotify(pl, ikewire.NotifyAuthenticationFailed) != nil {
		s.authFailed(fmt.Errorf("%w: the peer said AUTHENTICATION_FAILED", ErrAuthFailed))
		return false
	}
	idr, auth := find[*ikewire.IDr](pl), find[*ikewire.Auth](pl)
	if idr == nil || auth == nil {
		if n := errorNotify(pl); n != nil {
			s.die(notifyErr(n))
		} else {
			s.die(fmt.Errorf("ike: IKE_AUTH response without IDr or AUTH: %w", errSyntax))
		}
		return false
	}
	remote := identityOf(idr.Identification)
	if err := checkSuite(s.peer, x); err != nil {
		// The initiator chose the suite with this peer's proposals
		// (checkIKEAnswer), so this holds; checked all the same.
		s.sendAuthFailed(x)
		s.authFailed(err)
		return false
	}
	if matchRemoteID(s.peer.RemoteID, remote, s.remote.Addr()) == matchNone {
		want := s.peer.RemoteID.String()
		if s.peer.RemoteID.IsZero() {
			want = "its address " + s.remote.Addr().String()
		}
		s.sendAuthFailed(x)
		s.authFailed(fmt.Errorf("%w: the peer is %s, not %s", ErrAuthFailed, remote, want))
		return false
	}
	if err := s.verifyAuth(x, auth, pl, s.initResp, s.ni, false, idr.Identification, remote); err != nil {
		s.sendAuthFailed(x)
		s.authFailed(err)
		return false
	}
	s.remoteID = remote
	if err := s.uniqueness(remote, false); err != nil {
		s.sendAuthFailed(x)
		s.authFailed(err)
		return false
	}
	s.establish()
	if t.cr.cfg != nil {
		if err := t.cr.complete(s, x, pl, s.ni, s.nr, false); err != nil {
			s.childFailed(&t.cr, err)
		}
	}
	s.endHandshake()
	return false
}

func (t *authTask) abort(s *session)            { t.cr.release(s) }
func (t *authTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }
func (t *authTask) moved(s *session)            { t.abort(s) }

// checkSuite refuses an IKE SA whose suite, chosen in IKE_SA_INIT, p's
// proposals do not allow: the responder may have chosen it with the
// proposals of another peer that shares p's addresses.
func checkSuite(p *Peer, x *ikeSA) error {
	if ikeSuiteAllowed(p.proposals(), x.suite) {
		return nil
	}
	return fmt.Errorf("%w: the IKE SA's suite %s is not allowed by the proposals of peer %q", ErrAuthFailed, x.suite, p.Name)
}

// authFailed ends the IKE SA after a failed authentication: nothing was
// installed (RFC 7296, Section 2.21.2).
func (s *session) authFailed(err error) {
	s.log.Warn("ike: authentication failed", "peer", s.peerName(), "remote", s.remote, "err", err)
	s.emit(EventAuthFailed, "", nil, err)
	s.die(err)
}

// sendAuthFailed tells the responder that its authentication failed, in
// an INFORMATIONAL request that is not retransmitted, so that it removes
// what it installed (RFC 7296, Section 2.21.2).
func (s *session) sendAuthFailed(x *ikeSA) {
	pkts, err := s.seal(x, ikewire.INFORMATIONAL, x.nextID, false, []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyAuthenticationFailed}})
	if err == nil {
		x.nextID++
		s.transmit(pkts, s.local, s.remote)
	}
}

func (s *session) peerName() string {
	if s.peer == nil {
		return ""
	}
	return s.peer.Name
}

// respondAuth is the responder's IKE_AUTH: it selects the peer by the
// initiator's identity, verifies AUTH, answers with its own and creates
// the first CHILD SA.
func (s *session) respondAuth(x *ikeSA, pl []ikewire.Payload, from, to netip.AddrPort) ([]ikewire.Payload, func()) {
	idi, auth := find[*ikewire.IDi](pl), find[*ikewire.Auth](pl)
	if idi == nil || auth == nil {
		// Without AUTH the initiator wants EAP (RFC 7296, Section 2.16),
		// which is not implemented.
		err := fmt.Errorf("ike: IKE_AUTH request without IDi or AUTH (EAP is not implemented): %w", errSyntax)
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidSyntax}}, func() { s.die(err) }
	}
	fail := func(err error) ([]ikewire.Payload, func()) {
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyAuthenticationFailed}}, func() { s.authFailed(err) }
	}
	remote := identityOf(idi.Identification)
	var wantLocal Identity
	if idr := find[*ikewire.IDr](pl); idr != nil {
		wantLocal = identityOf(idr.Identification)
	}
	peer := s.selectPeer(remote, wantLocal, from.Addr())
	if peer == nil {
		return fail(fmt.Errorf("%w: no peer configuration for identity %s", ErrAuthFailed, remote))
	}
	if err := checkSuite(peer, x); err != nil {
		return fail(err)
	}
	s.peer = peer
	s.localID = s.localIdentity()
	if err := s.verifyAuth(x, auth, pl, s.initReq, s.nr, true, idi.Identification, remote); err != nil {
		return fail(err)
	}
	s.remoteID = remote
	if err := s.uniqueness(remote, findNotify(pl, ikewire.NotifyInitialContact) != nil); err != nil {
		return fail(err)
	}
	idr := &ikewire.IDr{Identification: s.localID.payload()}
	ourAuth, err := s.authPayload(x, s.initResp, s.ni, false, idr.Identification, remote)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrAuthFailed, err))
	}
	resp := []ikewire.Payload{idr}
	if s.peer.LocalAuth == AuthPubkey {
		resp = append(resp, s.peer.certPayloads()...)
	}
	resp = append(resp, ourAuth)
	s.establish()
	if find[*ikewire.SA](pl) != nil {
		cpl, _, nt, data := s.acceptChild(x, pl, nil, false, s.ni, s.nr, nil)
		if nt != 0 {
			resp = append(resp, &ikewire.Notify{Type: nt, Data: data})
		} else {
			resp = append(resp, cpl...)
		}
	}
	s.endHandshake()
	return resp, nil
}

// selectPeer chooses among the address-matching peers one whose RemoteID
// matches the initiator's identity, remote, speaking from addr, and whose
// LocalID is the identity the initiator asked for, if it asked: an exact
// RemoteID first (a zero RemoteID is exactly the peer's IP address), then
// a pattern, then "%any", each in configuration order.
func (s *session) selectPeer(remote, wantLocal Identity, addr netip.Addr) *Peer {
	var best *Peer
	rank := matchNone
	for _, p := range s.cands {
		if !wantLocal.IsZero() && !p.LocalID.IsZero() && !p.LocalID.IsAny() && !p.LocalID.Equal(wantLocal) {
			continue
		}
		if r := matchRemoteID(p.RemoteID, remote, addr); r > rank {
			best, rank = p, r
		}
	}
	return best
}
