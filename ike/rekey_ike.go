package ike

// Simultaneous IKE SA rekeying (RFC 7296, Sections 2.8.2 and 2.25.2). Each
// side answers the other's request as usual while its own is in flight;
// the answer's new IKE SA waits in peerIKE. Once our rekey completes, the
// rekey holding the lowest of the four nonces is redundant: its initiator
// deletes the IKE SA it created, the other initiator deletes the old one,
// and the CHILD SAs (which belong to the session) go on under the winner.
// Should the peer's rekey complete first and it refuse ours (we were then
// closing nothing: it is closing the old IKE SA), or delete the old IKE SA
// before our response arrives, we take the peer's IKE SA and forget ours.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/transform"
)

// ikeSAs returns every IKE SA of the session, nil ones included.
func (s *session) ikeSAs() []*ikeSA {
	xs := []*ikeSA{s.sa, s.old, s.redundant, nil}
	if s.peerIKE != nil {
		xs[3] = s.peerIKE.nx
	}
	return xs
}

// resolveIKECollision decides between our completed rekey of x, which
// created nx with nonces ni and nr, and the peer's in s.peerIKE. It returns
// true when ours lost: the session then runs on the peer's IKE SA and
// deletes nx; otherwise the caller moves to nx and deletes x.
func (s *session) resolveIKECollision(x, nx *ikeSA, ni, nr []byte) bool {
	c := s.peerIKE
	s.peerIKE = nil
	if lowestNonce([2][]byte{ni, nr}, c.nonces()) {
		s.log.Info("ike: IKE SA rekey collision lost", "peer", s.peerName())
		s.switchIKE(x, c.nx)
		s.redundant, s.redundantUntil = nx, s.now().Add(staleTimeout)
		s.startRequest(nx, &deleteIKETask{redundant: true})
		return true
	}
	s.log.Info("ike: IKE SA rekey collision won", "peer", s.peerName())
	// The peer deletes the IKE SA of its rekey.
	s.redundant, s.redundantUntil = c.nx, s.now().Add(staleTimeout)
	return false
}

// adoptPeerIKE moves the session to the peer's new IKE SA of a collision
// whose other half, ours, will not complete.
func (s *session) adoptPeerIKE() {
	c := s.peerIKE
	if c == nil {
		return
	}
	s.peerIKE = nil
	x := s.sa
	s.switchIKE(x, c.nx)
}

// dropPeerIKE forgets the peer's rekey of a collision that it lost
// before ours completed.
func (s *session) dropPeerIKE() {
	if c := s.peerIKE; c != nil {
		s.peerIKE = nil
		s.forgetIKE(c.nx)
	}
}

// rekeyDelete returns what to do, once the answer is sent, about the
// peer's Delete of x when x is an IKE SA of a rekey; nil when the peer
// closes the IKE SA itself.
func (s *session) rekeyDelete(x *ikeSA) func() {
	switch {
	case x == s.old:
		// The rekeyed IKE SA's initiator deletes the old one (RFC 7296,
		// Section 1.3.2); the session goes on.
		return s.retireOld
	case x == s.redundant:
		// The loser of a simultaneous rekey deletes the IKE SA its rekey
		// created (RFC 7296, Section 2.8.2).
		return s.forgetRedundant
	case s.peerIKE != nil && x == s.peerIKE.nx:
		// The peer's rekey lost the collision before ours completed
		// (RFC 7296, Section 2.8.2).
		return s.dropPeerIKE
	case x == s.sa && s.peerIKE != nil:
		// The peer's rekey, which we answered, completed first and it
		// deletes the old IKE SA: take its new one and forget our own
		// rekey (RFC 7296, Section 2.25.2).
		return func() {
			s.adoptPeerIKE()
			s.retireOld()
		}
	}
	return nil
}

// forgetRedundant forgets the IKE SA of the rekey that lost a collision.
func (s *session) forgetRedundant() {
	x := s.redundant
	if x == nil {
		return
	}
	s.redundant, s.redundantUntil = nil, time.Time{}
	s.forgetIKE(x)
}

// forgetIKE stops routing x's messages here and destroys its keys.
func (s *session) forgetIKE(x *ikeSA) {
	s.ops = append(s.ops, op{kind: opUnregister, spi: x.ourSPI()})
	if x.active != nil {
		x.active.t.abort(s)
		x.active = nil
	}
	if x.keys != nil {
		x.keys.Destroy()
	}
}

// retireOld forgets the IKE SA that a rekey replaced.
func (s *session) retireOld() {
	if s.old == nil {
		return
	}
	s.ops = append(s.ops, op{kind: opUnregister, spi: s.old.ourSPI()})
	if a := s.old.active; a != nil {
		// RFC 7296, Section 2.8: the CHILD SAs moved to the new IKE SA;
		// the task in flight on the old one starts again there or
		// ends (moved).
		a.t.moved(s)
		s.old.active = nil
	}
	if r := s.responder; r != nil && r.on() == s.old {
		// The peer's CHILD SA waiting for IKE_FOLLOWUP_KE on the old IKE
		// SA: the peer asks again on the new one.
		s.dropResponder()
	}
	if s.old.keys != nil {
		s.old.keys.Destroy()
	}
	s.old = nil
}

// ikeRekeyTask rekeys the IKE SA with CREATE_CHILD_SA (RFC 7296, Section
// 1.3.2): a new IKE SA with new SPIs and keys from the old SK_d and a new
// key exchange takes over the CHILD SAs, then the old one is deleted.
type ikeRekeyTask struct {
	spi     uint64
	ni      []byte
	keID    iana.KEID
	ke      transform.KEInitiator
	retries int
}

func (*ikeRekeyTask) exchange() ikewire.ExchangeType { return ikewire.CREATE_CHILD_SA }

func (t *ikeRekeyTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	if r, ok := s.responder.(*childResponder); ok && x == s.sa && s.old == nil {
		// The peer's CHILD SA waits for IKE_FOLLOWUP_KE (RFC 9370,
		// Section 2.2.4); try again once it is done or abandoned.
		s.rekeyAt = r.deadline()
		return nil, errors.New("ike: a CHILD SA with additional key exchanges is in progress")
	}
	if x != s.sa || s.old != nil || s.responder != nil {
		return nil, errors.New("ike: an IKE SA rekey is already in progress")
	}
	if t.spi == 0 {
		t.spi = s.m.newIKESPI(s)
	}
	if t.keID == iana.KENone {
		t.keID = x.suite.ke
	}
	ke, err := transform.NewKEInitiator(t.keID, s.rand())
	if err != nil {
		return nil, err
	}
	t.ke = ke
	t.ni = s.random(nonceLen)
	sap := &ikewire.SA{}
	for i, p := range s.peer.proposals() {
		o := ikeOffer(p)
		o.num, o.spi = uint8(i+1), spi64Bytes(t.spi)
		sap.Proposals = append(sap.Proposals, o.wire())
	}
	return []ikewire.Payload{sap, &ikewire.Nonce{Data: t.ni}, &ikewire.KE{Group: uint16(t.keID), Data: ke.Public()}}, nil
}

func (t *ikeRekeyTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	retry := func(delay time.Duration) {
		t.retries++
		s.retryAt = s.now().Add(delay)
		s.queueFront(t)
	}
	if n := findNotify(pl, ikewire.NotifyInvalidKEPayload); n != nil && len(n.Data) == 2 && t.retries < 2 {
		if g := iana.KEID(binary.BigEndian.Uint16(n.Data)); g != t.keID && offersIKEKE(s.peer.proposals(), g) {
			t.keID = g
			retry(0)
			return false
		}
	}
	if s.peerIKE != nil && errorNotify(pl) != nil {
		// RFC 7296, Section 2.25.2: the peer refused ours because its
		// rekey, which we answered, completed first; take its IKE SA.
		s.m.releaseIKESPI(t.spi)
		t.spi = 0
		s.adoptPeerIKE()
		return false
	}
	if findNotify(pl, ikewire.NotifyTemporaryFailure) != nil && t.retries < 5 {
		retry(time.Second + s.jitter(40*time.Second))
		return false
	}
	if err := t.complete(s, x, pl); err != nil {
		s.log.Warn("ike: IKE SA rekey failed", "peer", s.peerName(), "err", err)
		s.m.releaseIKESPI(t.spi)
		s.rekeyAt = s.now().Add(time.Minute)
	}
	return false
}

func (t *ikeRekeyTask) complete(s *session, x *ikeSA, pl []ikewire.Payload) error {
	if n := errorNotify(pl); n != nil {
		return notifyErr(n)
	}
	sap, nonce, ke := find[*ikewire.SA](pl), find[*ikewire.Nonce](pl), find[*ikewire.KE](pl)
	if sap == nil || nonce == nil || ke == nil {
		return fmt.Errorf("ike: IKE SA rekey response lacks SA, Nonce or KE: %w", errSyntax)
	}
	suite, spiR, err := checkIKEAnswer(s.peer.proposals(), sap)
	if err != nil {
		return err
	}
	if len(spiR) != 8 || spi64Value(spiR) == 0 || suite.ke != t.keID || iana.KEID(ke.Group) != t.keID {
		return fmt.Errorf("ike: IKE SA rekey response with a bad SPI or key exchange method: %w", errSyntax)
	}
	if err := checkNonce(nonce.Data, suite.prf); err != nil {
		return err
	}
	gir, err := t.ke.Finish(ke.Data)
	if err != nil {
		return err
	}
	t.ke = nil
	f := &followupKE{suite: suite, addKE: suite.addKE, spiI: t.spi, spiR: spi64Value(spiR), ni: t.ni, nr: bytes.Clone(nonce.Data), secrets: [][]byte{gir}}
	if suite.hasAddKE() {
		// RFC 9370, Section 2.2.4: the additional key exchanges follow
		// in IKE_FOLLOWUP_KE exchanges, linked by the responder's
		// ADDITIONAL_KEY_EXCHANGE notification.
		n := findNotify(pl, ikewire.NotifyAdditionalKeyExchange)
		if n == nil || len(n.Data) == 0 {
			f.destroy()
			return fmt.Errorf("ike: IKE SA rekey response without ADDITIONAL_KEY_EXCHANGE: %w", errSyntax)
		}
		f.link = bytes.Clone(n.Data)
		if peer, ok := s.peerRekeyNonces(); ok {
			// A collision with the peer's rekey, which we answered: the
			// four nonces decide it before the additional key
			// exchanges (RFC 7296, Section 2.8.2; RFC 9370, Section
			// 2.2.4).
			if lowestNonce([2][]byte{f.ni, f.nr}, peer) {
				// Ours is redundant: stop it; the peer's goes on.
				s.log.Info("ike: IKE SA rekey collision lost", "peer", s.peerName())
				f.destroy()
				s.m.releaseIKESPI(t.spi)
				t.spi = 0
				s.adoptPeerIKE()
				return nil
			}
			s.log.Info("ike: IKE SA rekey collision won", "peer", s.peerName())
			if s.peerIKE == nil {
				s.dropResponder() // the peer stops its rekey
			}
		}
		s.startRequest(x, &followupTask{f: f})
		return nil
	}
	return s.finishIKERekey(x, f)
}

// finishIKERekey moves the session to the new IKE SA once every key
// exchange of the rekey is done, and deletes the old one (RFC 7296, Section
// 1.3.2).
func (s *session) finishIKERekey(x *ikeSA, f *followupKE) error {
	defer f.destroy()
	nx := &ikeSA{initiator: true, spiI: f.spiI, spiR: f.spiR}
	if err := s.deriveIKE(x, nx, f.suite, f.ni, f.nr, f.secrets...); err != nil {
		return err
	}
	if s.peerIKE != nil && s.resolveIKECollision(x, nx, f.ni, f.nr) {
		return nil
	}
	if pr, ok := s.responder.(*ikeRekeyResponder); ok && s.peerIKE == nil {
		pf := pr.f
		// The peer's rekey, which we answered, waits for its
		// IKE_FOLLOWUP_KE exchanges while ours, without them, is done:
		// the four nonces decide (RFC 7296, Section 2.8.2; RFC 9370,
		// Section 2.2.4), as the peer decides once it has our answer.
		if lowestNonce([2][]byte{f.ni, f.nr}, [2][]byte{pf.ni, pf.nr}) {
			// Ours is redundant: we delete it, and the peer's completes
			// on x, which it then deletes.
			s.log.Info("ike: IKE SA rekey collision lost", "peer", s.peerName())
			s.forgetRedundant()
			s.redundant, s.redundantUntil = nx, s.now().Add(staleTimeout)
			s.startRequest(nx, &deleteIKETask{redundant: true})
			return nil
		}
		s.log.Info("ike: IKE SA rekey collision won", "peer", s.peerName())
		s.dropResponder() // the peer stops its rekey
	}
	s.switchIKE(x, nx)
	// RFC 7296, Section 1.3.2: the initiator deletes the old IKE SA; the
	// kick sends the Delete once no IKE_FOLLOWUP_KE exchange we answer
	// runs on it (RFC 9370, Section 2.2.4).
	x.deleteOld = true
	return nil
}

func (t *ikeRekeyTask) abort(s *session) {
	if t.spi != 0 && (s.sa == nil || s.sa.spiI != t.spi) {
		s.m.releaseIKESPI(t.spi)
	}
}

func (t *ikeRekeyTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }
func (t *ikeRekeyTask) moved(s *session)            { t.abort(s) }

// rekeyIKE derives the new IKE SA's keys, SKEYSEED = prf(SK_d (old), g^ir
// (new) | Ni | Nr) (RFC 7296, Section 2.18), or prf(SK_d (old), SK(0) | Ni |
// Nr | SK(1) | ... | SK(n)) with additional key exchanges (RFC 9370,
// Section 2.2.4), and moves the session to it.
func (s *session) rekeyIKE(x, nx *ikeSA, suite ikeSuite, ni, nr []byte, secrets ...[]byte) error {
	if err := s.deriveIKE(x, nx, suite, ni, nr, secrets...); err != nil {
		return err
	}
	s.switchIKE(x, nx)
	return nil
}

// deriveIKE derives the keys of nx, the new IKE SA of a rekey of x, and
// routes its SPI here.
func (s *session) deriveIKE(x, nx *ikeSA, suite ikeSuite, ni, nr []byte, secrets ...[]byte) error {
	seed, err := x.keys.Rekey(ni, nr, secrets...)
	if err != nil {
		return err
	}
	k, err := seed.Derive(suite.keys(), ni, nr, spi64Bytes(nx.spiI), spi64Bytes(nx.spiR))
	if err != nil {
		return err
	}
	// The new IKE SA is not authenticated again (RFC 7296, Section
	// 2.18): it needs neither SK_p nor the nonces.
	k.DropAuth()
	if err := nx.setKeys(k, suite); err != nil {
		return err
	}
	s.ops = append(s.ops, op{kind: opRegister, spi: nx.ourSPI()})
	return nil
}

// switchIKE moves the session from x to its successor nx; the CHILD SAs
// follow (RFC 7296, Section 1.3.2).
func (s *session) switchIKE(x, nx *ikeSA) {
	s.old, s.sa = x, nx
	s.oldUntil = s.now().Add(staleTimeout)
	s.scheduleIKERekey()
	s.emit(EventIKERekeyed, "", nil, nil)
}

// respondIKERekey answers an IKE SA rekey request.
func (s *session) respondIKERekey(x *ikeSA, pl []ikewire.Payload) ([]ikewire.Payload, func()) {
	errResp := func(t ikewire.NotifyType, data []byte) ([]ikewire.Payload, func()) {
		return []ikewire.Payload{&ikewire.Notify{Type: t, Data: data}}, nil
	}
	collides := s.rekeying()
	if s.old != nil || s.responder != nil || s.peerIKE != nil {
		// RFC 7296, Section 2.25.2: we are closing this IKE SA (a rekey
		// of ours completed), or another exchange with IKE_FOLLOWUP_KE
		// (RFC 9370) waits for the peer: the peer retries, or takes our
		// new IKE SA.
		return errResp(ikewire.NotifyTemporaryFailure, nil)
	}
	sap, nonce, ke := find[*ikewire.SA](pl), find[*ikewire.Nonce](pl), find[*ikewire.KE](pl)
	if ke == nil {
		return errResp(ikewire.NotifyInvalidSyntax, nil)
	}
	suite, num, keOK, ok := selectIKE(s.peer.proposals(), sap.Proposals, iana.KEID(ke.Group))
	if !ok {
		return errResp(ikewire.NotifyNoProposalChosen, nil)
	}
	if !keOK {
		return errResp(ikewire.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(suite.ke)))
	}
	var spiI []byte
	for _, p := range sap.Proposals {
		if p.Num == num {
			spiI = p.SPI
			break
		}
	}
	if len(spiI) != 8 || spi64Value(spiI) == 0 || checkNonce(nonce.Data, suite.prf) != nil {
		return errResp(ikewire.NotifyInvalidSyntax, nil)
	}
	ours, gir, err := transform.KERespond(suite.ke, ke.Data, s.rand())
	if err != nil {
		return errResp(ikewire.NotifyInvalidSyntax, nil)
	}
	nr := s.random(nonceLen)
	spiR := s.m.newIKESPI(s)
	resp := []ikewire.Payload{
		&ikewire.SA{Proposals: []ikewire.Proposal{suite.wire(num, spi64Bytes(spiR))}},
		&ikewire.Nonce{Data: nr},
		&ikewire.KE{Group: uint16(suite.ke), Data: ours},
	}
	f := &followupKE{suite: suite, addKE: suite.addKE, spiI: spi64Value(spiI), spiR: spiR, ni: bytes.Clone(nonce.Data), nr: nr, secrets: [][]byte{gir}}
	if own := s.ownFollowup(); own != nil && suite.hasAddKE() {
		// Our rekey waits for its IKE_FOLLOWUP_KE exchanges: with the
		// four nonces known, the collision is decided now, before any
		// more key exchanges (RFC 7296, Section 2.8.2; RFC 9370,
		// Section 2.2.4). The peer, which learns our Nr from this
		// answer, decides the same.
		if lowestNonce([2][]byte{own.f.ni, own.f.nr}, [2][]byte{f.ni, f.nr}) {
			s.log.Info("ike: IKE SA rekey collision lost", "peer", s.peerName())
			own.lost = true
			collides = false
		} else {
			// The peer abandons its rekey; answer, and keep nothing.
			s.log.Info("ike: IKE SA rekey collision won", "peer", s.peerName())
			f.destroy()
			s.m.releaseIKESPI(spiR)
			return append(resp, &ikewire.Notify{Type: ikewire.NotifyAdditionalKeyExchange, Data: s.random(followupLinkLen)}), nil
		}
	}
	if suite.hasAddKE() {
		// RFC 9370, Section 2.2.4: wait for the IKE_FOLLOWUP_KE
		// exchanges, linked by our notification.
		f.link = s.random(followupLinkLen)
		f.until = s.now().Add(followupTimeout)
		f.on = x
		s.responder = &ikeRekeyResponder{followupResponder: followupResponder{f}}
		return append(resp, &ikewire.Notify{Type: ikewire.NotifyAdditionalKeyExchange, Data: f.link}), nil
	}
	defer f.destroy()
	nx := &ikeSA{initiator: false, spiI: f.spiI, spiR: spiR}
	if collides {
		// RFC 7296, Sections 2.8.2 and 2.25.2: both sides rekey at once;
		// answer as usual, and let the nonces decide once ours is done.
		if err := s.deriveIKE(x, nx, suite, f.ni, nr, f.secrets...); err != nil {
			s.m.releaseIKESPI(spiR)
			return errResp(ikewire.NotifyNoProposalChosen, nil)
		}
		s.peerIKE = &ikeRekeyResponder{followupResponder{f}, nx}
		return resp, nil
	}
	if err := s.rekeyIKE(x, nx, suite, f.ni, nr, f.secrets...); err != nil {
		s.m.releaseIKESPI(spiR)
		return errResp(ikewire.NotifyNoProposalChosen, nil)
	}
	return resp, nil
}
