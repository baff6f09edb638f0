package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/ike/keys"
	"github.com/goipsec/goipsec/transform"
)

// nonceLen is the length of our nonces: at least half the PRF key size and
// 128 bits (RFC 7296, Section 2.10); 32 bytes covers PRF-HMAC-SHA2-512's
// half.
const nonceLen = 32

// checkNonce checks the length of a peer's nonce: 16 to 256 bytes (RFC
// 7296, Section 3.9) and at least half the key size of the negotiated PRF
// prf (Section 2.10). An error wraps errSyntax (INVALID_SYNTAX).
func checkNonce(n []byte, prf iana.PRFID) error {
	least := ikewire.MinNonceLen
	if p, err := transform.NewPRF(prf); err == nil {
		// The preferred key size of the PRFs IKEv2 uses is their output
		// size (RFC 7296, Section 2.13; 16 bytes for AES-XCBC, RFC 4434).
		least = max(least, (p.Size()+1)/2)
	}
	if len(n) < least || len(n) > ikewire.MaxNonceLen {
		return fmt.Errorf("ike: the peer's nonce has %d bytes, want %d to %d (RFC 7296, Sections 2.10 and 3.9): %w", len(n), least, ikewire.MaxNonceLen, errSyntax)
	}
	return nil
}

// initTask is the initiator's IKE_SA_INIT (RFC 7296, Section 1.2).
type initTask struct {
	cookies, keRetries int
}

func (*initTask) exchange() ikewire.ExchangeType { return ikewire.IKE_SA_INIT }

func (t *initTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	if s.ke == nil {
		if s.keID == iana.KENone {
			ps := s.peer.proposals()
			if len(ps) == 0 || len(ps[0].KE) == 0 {
				return nil, fmt.Errorf("ike: peer %q has no key exchange method", s.peer.Name)
			}
			s.keID = ps[0].KE[0]
		}
		ke, err := transform.NewKEInitiator(s.keID, s.rand())
		if err != nil {
			return nil, err
		}
		s.ke = ke
	}
	if s.ni == nil {
		s.ni = s.random(nonceLen)
	}
	var pl []ikewire.Payload
	if s.cookie != nil {
		// RFC 7296, Section 2.6: the COOKIE notification comes first.
		pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyCookie, Data: s.cookie})
	}
	sap := &ikewire.SA{}
	for i, p := range s.peer.proposals() {
		o := ikeOffer(p)
		o.num = uint8(i + 1)
		sap.Proposals = append(sap.Proposals, o.wire())
	}
	pl = append(pl, sap,
		&ikewire.KE{Group: uint16(s.keID), Data: s.ke.Public()},
		&ikewire.Nonce{Data: s.ni})
	pl = append(pl, s.natdPayloads(x.spiI, 0)...)
	// RFC 7383, Section 2.3.
	pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyIKEv2FragmentationSupported})
	if s.peer.usesPubkey() {
		// RFC 7427, Section 4: the hashes we verify signatures with.
		pl = append(pl, sigHashesNotify())
	}
	if hasAddKE(s.peer.proposals()) {
		// RFC 9370, Section 2.2.1: additional key exchanges need
		// IKE_INTERMEDIATE (RFC 9242, Section 3).
		pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyIntermediateExchangeSupported})
	}
	return pl, nil
}

func (t *initTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	if n := findNotify(pl, ikewire.NotifyCookie); n != nil {
		// RFC 7296, Section 2.6: send the request again with the cookie.
		if t.cookies++; t.cookies > 3 || len(n.Data) == 0 || len(n.Data) > 64 {
			s.die(errors.New("ike: the responder keeps asking for a cookie"))
			return false
		}
		s.cookie = bytes.Clone(n.Data)
		return true
	}
	if n := findNotify(pl, ikewire.NotifyInvalidKEPayload); n != nil {
		// RFC 7296, Section 1.2: retry with the method the responder
		// names, if we offered it.
		if len(n.Data) != 2 {
			s.die(notifyErr(n))
			return false
		}
		g := iana.KEID(binary.BigEndian.Uint16(n.Data))
		if t.keRetries++; t.keRetries > 2 || g == s.keID || !offersIKEKE(s.peer.proposals(), g) {
			s.die(notifyErr(n))
			return false
		}
		ke, err := transform.NewKEInitiator(g, s.rand())
		if err != nil {
			s.die(err)
			return false
		}
		s.log.Info("ike: responder asked for another key exchange method", "peer", s.peer.Name, "ke", transform.KEName(g))
		s.keID, s.ke = g, ke
		return true
	}
	if n := errorNotify(pl); n != nil {
		s.die(notifyErr(n))
		return false
	}
	if err := t.complete(s, x, m, pl); err != nil {
		s.die(err)
	}
	return false
}

func (t *initTask) complete(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) error {
	sap, ke, nonce := find[*ikewire.SA](pl), find[*ikewire.KE](pl), find[*ikewire.Nonce](pl)
	if sap == nil || ke == nil || nonce == nil || m.SPIr == 0 {
		return fmt.Errorf("ike: IKE_SA_INIT response lacks SA, KE, Nonce or SPIr: %w", errSyntax)
	}
	suite, _, err := checkIKEAnswer(s.peer.proposals(), sap)
	if err != nil {
		return err
	}
	if suite.ke != s.keID || iana.KEID(ke.Group) != s.keID {
		return fmt.Errorf("ike: the responder answered with key exchange method %d, not %d", ke.Group, s.keID)
	}
	if err := checkNonce(nonce.Data, suite.prf); err != nil {
		return err
	}
	gir, err := s.ke.Finish(ke.Data)
	if err != nil {
		return fmt.Errorf("ike: the responder's key exchange data: %w", err)
	}
	s.nr = bytes.Clone(nonce.Data)
	x.spiR = m.SPIr
	s.initResp = m.Raw
	s.checkNATD(&m.Header, pl)
	s.fragOK = findNotify(pl, ikewire.NotifyIKEv2FragmentationSupported) != nil
	s.sigHashes = parseSigHashes(pl)
	if suite.hasAddKE() && findNotify(pl, ikewire.NotifyIntermediateExchangeSupported) == nil {
		// RFC 9370, Section 2.2.1: the additional key exchanges run in
		// IKE_INTERMEDIATE, which the responder must support.
		return fmt.Errorf("ike: the responder chose additional key exchanges without INTERMEDIATE_EXCHANGE_SUPPORTED: %w", errSyntax)
	}
	if err := s.deriveKeys(x, suite, gir); err != nil {
		return err
	}
	clear(gir)
	s.ke = nil
	s.queueIntermediate()
	if s.natLocal || s.natRemote || s.peer.Encap {
		// RFC 7296, Section 2.23: after IKE_SA_INIT, move to port 4500.
		s.local = netip.AddrPortFrom(s.local.Addr(), s.cfg.NATTPort)
		s.remote = netip.AddrPortFrom(s.remote.Addr(), s.cfg.NATTPort)
		s.natt = true
	}
	return nil
}

func (t *initTask) abort(s *session)            {}
func (t *initTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }
func (t *initTask) moved(s *session)            { t.abort(s) }

// deriveKeys computes SKEYSEED and the IKE SA's keys (RFC 7296, Section
// 2.14).
func (s *session) deriveKeys(x *ikeSA, suite ikeSuite, gir []byte) error {
	seed, err := keys.NewSKEYSEED(suite.prf, s.ni, s.nr, gir)
	if err != nil {
		return err
	}
	k, err := seed.Derive(suite.keys(), s.ni, s.nr, spi64Bytes(x.spiI), spi64Bytes(x.spiR))
	if err != nil {
		return err
	}
	return x.setKeys(k, suite)
}

// respondInit answers an IKE_SA_INIT request (RFC 7296, Section 1.2). The
// Manager checked the cookie; errors answer without keeping state.
func (s *session) respondInit(x *ikeSA, m *ikewire.Message, from, to netip.AddrPort) {
	pl := m.Payloads
	sap, ke, nonce := find[*ikewire.SA](pl), find[*ikewire.KE](pl), find[*ikewire.Nonce](pl)
	if sap == nil || ke == nil || nonce == nil {
		// RFC 7296, Section 2.21.1: a malformed IKE_SA_INIT is dropped.
		s.die(nil)
		return
	}
	s.local, s.remote = to, from
	var suite ikeSuite
	var num uint8
	var keOK, ok bool
	for _, p := range s.cands {
		if suite, num, keOK, ok = selectIKE(p.proposals(), sap.Proposals, iana.KEID(ke.Group)); ok {
			s.peer = p
			break
		}
	}
	if !ok {
		s.log.Info("ike: no acceptable IKE proposal", "from", from,
			"offered", offeredText(sap.Proposals), "configured", peersConfiguredText(s.cands))
		s.initError(m, from, to, ikewire.NotifyNoProposalChosen, nil)
		return
	}
	if err := checkNonce(nonce.Data, suite.prf); err != nil {
		s.log.Info("ike: refusing IKE_SA_INIT", "from", from, "err", err)
		s.initError(m, from, to, ikewire.NotifyInvalidSyntax, nil)
		return
	}
	interOK := findNotify(pl, ikewire.NotifyIntermediateExchangeSupported) != nil
	if suite.hasAddKE() && !interOK {
		// RFC 9370, Section 2.2.1: additional key exchanges run in
		// IKE_INTERMEDIATE, which the initiator did not announce.
		s.log.Info("ike: additional key exchanges chosen without INTERMEDIATE_EXCHANGE_SUPPORTED", "from", from)
		s.initError(m, from, to, ikewire.NotifyNoProposalChosen, nil)
		return
	}
	if !keOK {
		// RFC 7296, Section 1.2: name the method we want.
		s.initError(m, from, to, ikewire.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(suite.ke)))
		return
	}
	ours, gir, err := transform.KERespond(suite.ke, ke.Data, s.rand())
	if err != nil {
		// RFC 6989, Section 2: invalid public values are refused.
		s.log.Info("ike: invalid key exchange data", "from", from, "err", err)
		s.initError(m, from, to, ikewire.NotifyInvalidSyntax, nil)
		return
	}
	s.keID = suite.ke
	s.ni = bytes.Clone(nonce.Data)
	s.nr = s.random(nonceLen)
	s.checkNATD(&m.Header, pl)
	s.fragOK = findNotify(pl, ikewire.NotifyIKEv2FragmentationSupported) != nil
	resp := []ikewire.Payload{
		&ikewire.SA{Proposals: []ikewire.Proposal{suite.wire(num, nil)}},
		&ikewire.KE{Group: uint16(suite.ke), Data: ours},
		&ikewire.Nonce{Data: s.nr},
	}
	resp = append(resp, s.natdPayloads(x.spiI, x.spiR)...)
	if s.fragOK {
		resp = append(resp, &ikewire.Notify{Type: ikewire.NotifyIKEv2FragmentationSupported})
	}
	if interOK {
		// RFC 9242, Section 3.
		resp = append(resp, &ikewire.Notify{Type: ikewire.NotifyIntermediateExchangeSupported})
	}
	s.sigHashes = parseSigHashes(pl)
	if s.sigHashes != nil || anyPubkey(s.cands) {
		// RFC 7427, Section 4.
		resp = append(resp, sigHashesNotify())
	}
	// RFC 7296, Section 3.7: the CAs we trust for the initiator's
	// certificate.
	resp = append(resp, certReqs(s.cands...)...)
	if err := s.deriveKeys(x, suite, gir); err != nil {
		s.log.Warn("ike: deriving keys", "err", err)
		s.die(nil)
		return
	}
	clear(gir)
	s.initReq = m.Raw
	pkts, err := s.seal(x, ikewire.IKE_SA_INIT, 0, true, resp)
	if err != nil {
		s.die(nil)
		return
	}
	s.initResp = pkts[0]
	x.cached = newResponse(0, ikewire.IKE_SA_INIT, pkts, m.Raw, from)
	x.peerID = 1
	s.transmit(pkts, to, from)
}

// initError answers an IKE_SA_INIT request with an error notification and
// no SPIr, and ends the session: nothing is kept (RFC 7296, Section 2.6).
func (s *session) initError(m *ikewire.Message, from, to netip.AddrPort, t ikewire.NotifyType, data []byte) {
	if b, err := initErrorMessage(&m.Header, t, data); err == nil {
		s.transmit([][]byte{b}, to, from)
	}
	s.die(nil)
}

func initErrorMessage(h *ikewire.Header, t ikewire.NotifyType, data []byte) ([]byte, error) {
	r := &ikewire.Message{
		Header:   ikewire.Header{SPIi: h.SPIi, Exchange: ikewire.IKE_SA_INIT, Flags: ikewire.FlagResponse, MessageID: 0},
		Payloads: []ikewire.Payload{&ikewire.Notify{Type: t, Data: data}},
	}
	return r.Marshal()
}
