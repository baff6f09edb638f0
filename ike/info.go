package ike

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

// respondInformational answers an INFORMATIONAL request: Delete payloads
// (RFC 7296, Section 1.4.1) and, with no payloads, a liveness check
// (Section 2.4).
func (s *session) respondInformational(x *ikeSA, pl []ikewire.Payload) ([]ikewire.Payload, func()) {
	var resp []ikewire.Payload
	var after func()
	if findNotify(pl, ikewire.NotifyAuthenticationFailed) != nil && x == s.sa {
		// RFC 7296, Section 2.21.2: the initiator did not accept our
		// authentication; remove what IKE_AUTH installed.
		return nil, func() {
			s.authFailed(fmt.Errorf("%w: the peer said AUTHENTICATION_FAILED", ErrAuthFailed))
		}
	}
	for _, d := range findAll[*ikewire.Delete](pl) {
		switch d.Protocol {
		case ikewire.ProtoIKE:
			switch {
			case x == s.old:
				// The rekeyed IKE SA's initiator deletes the old one
				// (RFC 7296, Section 1.3.2); the session goes on.
				after = s.retireOld
			case x == s.redundant:
				// The loser of a simultaneous rekey deletes the IKE SA
				// its rekey created (RFC 7296, Section 2.8.2).
				after = s.forgetRedundant
			case s.peerIKE != nil && x == s.peerIKE.nx:
				// The peer's rekey lost the collision before ours
				// completed (RFC 7296, Section 2.8.2).
				after = s.dropPeerIKE
			case x == s.sa && s.peerIKE != nil:
				// The peer's rekey, which we answered, completed first
				// and it deletes the old IKE SA: take its new one and
				// forget our own rekey (RFC 7296, Section 2.25.2).
				after = func() {
					s.adoptPeerIKE()
					s.retireOld()
				}
			default:
				// The peer closed the IKE SA: close_action applies.
				after = s.peerClosed
			}
			return nil, after
		case ikewire.ProtoESP, ikewire.ProtoAH:
			var ours []uint32
			for _, spi := range d.SPIs {
				c := s.childByOutSPI(spi)
				if c == nil {
					continue
				}
				if c.state != childDeleting {
					// RFC 7296, Section 1.4.1: answer with the inbound
					// SPIs of the pairs, except those we are deleting
					// ourselves (Section 2.25.1).
					ours = append(ours, c.sa.SPIIn)
				}
				if p := c.peerRekey; p != nil && p.outPending && !p.redundant && s.live(p) {
					// Make before break (RFC 7296, Section 2.8): the
					// initiator of the rekey deletes the old SA once it
					// receives on the new one; send there before the old
					// one goes.
					s.activate(p)
				}
				s.removeChild(c, nil)
			}
			if len(ours) > 0 {
				resp = append(resp, &ikewire.Delete{Protocol: d.Protocol, SPIs: ours})
			}
		}
	}
	for _, n := range findAll[*ikewire.Notify](pl) {
		if n.Type.IsError() {
			s.log.Info("ike: peer reported an error", "peer", s.peerName(), "notify", n.Type)
		}
	}
	return resp, after
}

// retireOld forgets the IKE SA that a rekey replaced.
func (s *session) retireOld() {
	if s.old == nil {
		return
	}
	s.ops = append(s.ops, op{kind: opUnregister, spi: s.old.ourSPI()})
	if a := s.old.active; a != nil {
		// RFC 7296, Section 2.8: the CHILD SAs moved to the new IKE SA;
		// a CHILD SA rekey or delete that the old one's end cut short
		// starts again there (should the peer have answered a rekey, it
		// drops what that answer made, see forgetUnconfirmed).
		switch t := a.t.(type) {
		case *childTask:
			if s.state == StateEstablished && t.old != nil && s.live(t.old) {
				if t.old.state == childRekeying {
					t.old.state = childInstalled
				}
				s.queueFront(t)
			} else {
				t.abort(s)
			}
		case *deleteChildTask:
			if s.state == StateEstablished && s.live(t.c) {
				s.queueFront(t)
			}
		default:
			a.t.abort(s)
		}
		s.old.active = nil
	}
	if s.old.keys != nil {
		s.old.keys.Destroy()
	}
	s.old = nil
}

// dpdTask is a liveness check: an empty INFORMATIONAL request (RFC 7296,
// Section 2.4). A peer that does not answer any retransmission is dead.
type dpdTask struct{}

func (*dpdTask) exchange() ikewire.ExchangeType { return ikewire.INFORMATIONAL }
func (*dpdTask) build(*session, *ikeSA) ([]ikewire.Payload, error) {
	return nil, nil
}
func (*dpdTask) process(*session, *ikeSA, *ikewire.Message, []ikewire.Payload) bool {
	return false
}
func (*dpdTask) abort(*session) {}

// deleteIKETask deletes the IKE SA x it runs on, with its CHILD SAs unless
// x is the old IKE SA of a rekey (RFC 7296, Section 1.4.1).
type deleteIKETask struct {
	old       bool
	redundant bool // x is the new IKE SA of our rekey that lost a collision
}

func (*deleteIKETask) exchange() ikewire.ExchangeType { return ikewire.INFORMATIONAL }

func (t *deleteIKETask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	return []ikewire.Payload{&ikewire.Delete{Protocol: ikewire.ProtoIKE}}, nil
}

func (t *deleteIKETask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	switch {
	case t.old:
		s.retireOld()
	case t.redundant:
		s.forgetRedundant()
	default:
		s.die(nil)
	}
	return false
}

func (t *deleteIKETask) abort(s *session) {}

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
	if x == s.sa && s.old == nil && s.followup != nil && s.followup.child != nil {
		// The peer's CHILD SA waits for IKE_FOLLOWUP_KE (RFC 9370,
		// Section 2.2.4); try again once it is done or abandoned.
		s.rekeyAt = s.followup.until
		return nil, errors.New("ike: a CHILD SA with additional key exchanges is in progress")
	}
	if x != s.sa || s.old != nil || s.followup != nil {
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
	s.switchIKE(x, nx, f.suite)
	s.startRequest(x, &deleteIKETask{old: true})
	return nil
}

func (t *ikeRekeyTask) abort(s *session) {
	if t.spi != 0 && (s.sa == nil || s.sa.spiI != t.spi) {
		s.m.releaseIKESPI(t.spi)
	}
}

// rekeyIKE derives the new IKE SA's keys, SKEYSEED = prf(SK_d (old), g^ir
// (new) | Ni | Nr) (RFC 7296, Section 2.18), or prf(SK_d (old), SK(0) | Ni |
// Nr | SK(1) | ... | SK(n)) with additional key exchanges (RFC 9370,
// Section 2.2.4), and moves the session to it.
func (s *session) rekeyIKE(x, nx *ikeSA, suite ikeSuite, ni, nr []byte, secrets ...[]byte) error {
	if err := s.deriveIKE(x, nx, suite, ni, nr, secrets...); err != nil {
		return err
	}
	s.switchIKE(x, nx, suite)
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
	if err := nx.setKeys(k, suite); err != nil {
		return err
	}
	s.ops = append(s.ops, op{kind: opRegister, spi: nx.ourSPI()})
	return nil
}

// switchIKE moves the session from x to its successor nx; the CHILD SAs
// follow (RFC 7296, Section 1.3.2).
func (s *session) switchIKE(x, nx *ikeSA, suite ikeSuite) {
	s.old, s.sa = x, nx
	s.oldUntil = s.now().Add(staleTimeout)
	s.keID = suite.ke
	s.scheduleIKERekey()
	s.emit(EventIKERekeyed, "", nil, nil)
}

// respondIKERekey answers an IKE SA rekey request.
func (s *session) respondIKERekey(x *ikeSA, pl []ikewire.Payload) ([]ikewire.Payload, func()) {
	errResp := func(t ikewire.NotifyType, data []byte) ([]ikewire.Payload, func()) {
		return []ikewire.Payload{&ikewire.Notify{Type: t, Data: data}}, nil
	}
	collides := s.rekeying()
	if s.old != nil || s.followup != nil || s.peerIKE != nil || (collides && !s.rekeyingPlain()) {
		// RFC 7296, Section 2.25.2: we are closing this IKE SA (a rekey
		// of ours completed), or a rekey with IKE_FOLLOWUP_KE (RFC 9370)
		// is in progress: the peer retries, or takes our new IKE SA.
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
	if suite.hasAddKE() && collides {
		f.destroy()
		s.m.releaseIKESPI(spiR)
		return errResp(ikewire.NotifyTemporaryFailure, nil)
	}
	if suite.hasAddKE() {
		// RFC 9370, Section 2.2.4: wait for the IKE_FOLLOWUP_KE
		// exchanges, linked by our notification.
		f.link = s.random(followupLinkLen)
		f.until = s.now().Add(followupTimeout)
		s.followup = f
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
		s.peerIKE = &ikeCollision{nx: nx, suite: suite, nonces: [2][]byte{bytes.Clone(f.ni), bytes.Clone(nr)}}
		return resp, nil
	}
	if err := s.rekeyIKE(x, nx, suite, f.ni, nr, f.secrets...); err != nil {
		s.m.releaseIKESPI(spiR)
		return errResp(ikewire.NotifyNoProposalChosen, nil)
	}
	return resp, nil
}

// rekeying reports whether we are rekeying the IKE SA ourselves.
func (s *session) rekeying() bool {
	if a := s.sa.active; a != nil {
		switch t := a.t.(type) {
		case *ikeRekeyTask:
			return true
		case *followupTask:
			return t.f == nil || t.f.child == nil
		}
	}
	return false
}
