package ike

// Additional key exchanges of CREATE_CHILD_SA (RFC 9370, Section 2.2.4):
// a CHILD SA created or rekeyed, or the IKE SA rekeyed, with additional
// key exchanges continues in IKE_FOLLOWUP_KE exchanges, one per
// additional key exchange, each linked to the previous one by the
// responder's ADDITIONAL_KEY_EXCHANGE notification, on the IKE SA of the
// CREATE_CHILD_SA:
//
//	CREATE_CHILD_SA   SA, Ni, KEi [, N(REKEY_SA), TS]  -> SA, Nr, KEr, N(ADDITIONAL_KEY_EXCHANGE)(link)
//	IKE_FOLLOWUP_KE   KE(ADDKE1), N(ADDITIONAL_KEY_EXCHANGE)(link) -> KE(ADDKE1) [, N(...)(next link)]
//	...               the SA is installed, or the IKE SA rekeyed, after the last
//
// The initiator's side is followupTask; the responder's is a responder
// task, childResponder or ikeRekeyResponder, held in exchanges.responder
// (tasks.go lists the collision rules).

import (
	"bytes"
	"fmt"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/transform"
)

// followupLinkLen is the length of the ADDITIONAL_KEY_EXCHANGE link data we
// send; followupTimeout how long a responder keeps the state of a rekey
// whose IKE_FOLLOWUP_KE does not come (RFC 9370, Section 2.2.4 suggests 5
// to 20 seconds).
const (
	followupLinkLen = 16
	followupTimeout = 20 * time.Second
)

// followupKE is an IKE SA rekey, or a CHILD SA creation or rekey, with
// additional key exchanges in progress (RFC 9370, Section 2.2.4): the
// negotiated methods, the new SPIs and nonces, the shared secrets SK(0)...
// so far, and the responder's link data.
type followupKE struct {
	suite      ikeSuite      // IKE SA rekey
	child      *childPending // CHILD SA, nil for an IKE SA rekey
	addKE      [7]iana.KEID  // the negotiated Additional Key Exchanges
	spiI, spiR uint64
	ni, nr     []byte
	secrets    [][]byte
	link       []byte
	until      time.Time // responder: when to give up
	// on is the IKE SA whose IKE_FOLLOWUP_KE exchanges carry the key
	// exchanges, the one of the CREATE_CHILD_SA (responder).
	on *ikeSA
}

// childPending is the CHILD SA of a followupKE: everything needed to
// install it once the last key exchange is done (RFC 9370, Section 2.2.4:
// not before).
type childPending struct {
	cfg           *ChildConfig
	old           *child // the CHILD SA being rekeyed, nil for a new one
	initiator     bool
	suite         childSuite
	spiIn, spiOut uint32
	local, remote []tsRange
}

// next returns the method of the next additional key exchange, KENone when
// all are done.
func (f *followupKE) next() iana.KEID {
	n := len(f.secrets) - 1
	for _, k := range f.addKE {
		if k == iana.KENone {
			continue
		}
		if n == 0 {
			return k
		}
		n--
	}
	return iana.KENone
}

func (f *followupKE) destroy() {
	for _, b := range f.secrets {
		clear(b)
	}
	f.secrets = nil
}

// followupTask is the initiator's IKE_FOLLOWUP_KE exchange of a CHILD SA
// or of an IKE SA rekey (RFC 9370, Section 2.2.4), on the IKE SA of its
// CREATE_CHILD_SA (the old one, for an IKE SA rekey).
type followupTask struct {
	f   *followupKE
	ke  iana.KEID
	kei transform.KEInitiator
	// lost says that this IKE SA rekey lost a collision while this
	// exchange was in flight (RFC 7296, Section 2.8.2): it goes no
	// further, and should the peer have completed it, we delete the new
	// IKE SA.
	lost bool
}

func (*followupTask) exchange() ikewire.ExchangeType { return ikewire.IKE_FOLLOWUP_KE }

func (t *followupTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	t.ke = t.f.next()
	kei, err := transform.NewKEInitiator(t.ke, s.rand())
	if err != nil {
		return nil, err
	}
	t.kei = kei
	return []ikewire.Payload{
		&ikewire.KE{Group: uint16(t.ke), Data: kei.Public()},
		&ikewire.Notify{Type: ikewire.NotifyAdditionalKeyExchange, Data: t.f.link},
	}, nil
}

func (t *followupTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	f := t.f
	if t.lost {
		t.finishLost(s, x, pl)
		return false
	}
	if err := t.complete(s, x, pl); err != nil {
		if c := f.child; c != nil {
			s.log.Warn("ike: CHILD SA not created", "peer", s.peerName(), "child", c.cfg.Name, "err", err)
			t.abort(s)
			s.emit(EventChildFailed, c.cfg.Name, nil, err)
			if c.old != nil && c.old.state == childInstalled {
				c.old.rekeyAt = s.now().Add(time.Minute) // try again later
			}
			return false
		}
		s.log.Warn("ike: IKE SA rekey failed", "peer", s.peerName(), "err", err)
		t.abort(s)
		s.rekeyAt = s.now().Add(time.Minute)
	}
	return false
}

func (t *followupTask) complete(s *session, x *ikeSA, pl []ikewire.Payload) error {
	if n := errorNotify(pl); n != nil {
		return notifyErr(n)
	}
	ke := find[*ikewire.KE](pl)
	if ke == nil || iana.KEID(ke.Group) != t.ke {
		return fmt.Errorf("ike: IKE_FOLLOWUP_KE response without a KE payload of method %s: %w", transform.KEName(t.ke), errSyntax)
	}
	secret, err := t.kei.Finish(ke.Data)
	t.kei = nil
	if err != nil {
		return err
	}
	t.f.secrets = append(t.f.secrets, secret)
	if t.f.next() != iana.KENone {
		n := findNotify(pl, ikewire.NotifyAdditionalKeyExchange)
		if n == nil || len(n.Data) == 0 {
			return fmt.Errorf("ike: IKE_FOLLOWUP_KE response without ADDITIONAL_KEY_EXCHANGE: %w", errSyntax)
		}
		t.f.link = bytes.Clone(n.Data)
		s.startRequest(x, &followupTask{f: t.f})
		return nil
	}
	f := t.f
	t.f = nil
	if f.child != nil {
		return s.finishChild(x, f)
	}
	return s.finishIKERekey(x, f)
}

// finishLost ends the IKE_FOLLOWUP_KE exchange of an IKE SA rekey that
// lost a collision while it was in flight. Should the peer's answer have
// completed the rekey, the new IKE SA is redundant and its initiator, we,
// deletes it (RFC 7296, Section 2.8.2); otherwise the peer forgets it.
func (t *followupTask) finishLost(s *session, x *ikeSA, pl []ikewire.Payload) {
	f := t.f
	ke := find[*ikewire.KE](pl)
	if f == nil || f.child != nil || errorNotify(pl) != nil || ke == nil || iana.KEID(ke.Group) != t.ke || t.kei == nil {
		t.abort(s)
		return
	}
	secret, err := t.kei.Finish(ke.Data)
	t.kei = nil
	if err != nil {
		t.abort(s)
		return
	}
	f.secrets = append(f.secrets, secret)
	if f.next() != iana.KENone {
		t.abort(s) // the peer forgets it when its own rekey completes
		return
	}
	t.f = nil
	defer f.destroy()
	nx := &ikeSA{initiator: true, spiI: f.spiI, spiR: f.spiR}
	if err := s.deriveIKE(x, nx, f.suite, f.ni, f.nr, f.secrets...); err != nil {
		s.m.releaseIKESPI(f.spiI)
		return
	}
	s.forgetRedundant()
	s.redundant, s.redundantUntil = nx, s.now().Add(staleTimeout)
	s.startRequest(nx, &deleteIKETask{redundant: true})
}

func (t *followupTask) abort(s *session) {
	t.kei = nil
	if t.f != nil && t.f.child != nil {
		s.releaseChildPending(t.f.child)
		t.f.destroy()
		t.f = nil
	}
	if t.f != nil {
		if s.sa == nil || s.sa.spiI != t.f.spiI {
			s.m.releaseIKESPI(t.f.spiI)
		}
		t.f.destroy()
		t.f = nil
	}
}

func (t *followupTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }

// moved: the IKE_FOLLOWUP_KE exchanges of a CHILD SA (RFC 9370, Section
// 2.2.4) cannot move to the new IKE SA; the CHILD SA is created or
// rekeyed again there (restartChild).
func (t *followupTask) moved(s *session) { s.restartChild(t) }

// restartChild ends t, an initiator's IKE_FOLLOWUP_KE exchange on an IKE
// SA that goes away, and queues the creation or rekey of its CHILD SA
// again, to run on the session's IKE SA (RFC 7296, Section 2.8: the CHILD
// SAs move to the new IKE SA).
func (s *session) restartChild(t *followupTask) {
	f := t.f
	if f == nil || f.child == nil {
		t.abort(s)
		return
	}
	cfg, old := f.child.cfg, f.child.old
	t.abort(s)
	if s.state != StateEstablished || (old != nil && (!s.live(old) || old.state != childInstalled)) {
		return
	}
	if old != nil {
		old.rekeyAt = time.Time{}
	} else {
		s.pendingChildren[cfg.Name] = true
	}
	s.queueFront(&childTask{cfg: cfg, old: old})
}

// followupResponder is what the two responder tasks continued by
// IKE_FOLLOWUP_KE (RFC 9370, Section 2.2.4) share: the key exchanges so
// far, the IKE SA of their CREATE_CHILD_SA and the link data.
type followupResponder struct{ f *followupKE }

func (r *followupResponder) on() *ikeSA          { return r.f.on }
func (r *followupResponder) deadline() time.Time { return r.f.until }

// answer runs the key exchange of the peer's IKE_FOLLOWUP_KE request pl
// and returns the response. last says that this was the last key
// exchange: the caller completes the exchange. Otherwise done says that
// the exchange is over: a malformed request ends it (drop releases its
// state) and is answered with INVALID_SYNTAX.
func (r *followupResponder) answer(s *session, pl []ikewire.Payload, drop func(*session)) (resp []ikewire.Payload, last, done bool) {
	f := r.f
	if n := findNotify(pl, ikewire.NotifyAdditionalKeyExchange); n == nil || !bytes.Equal(n.Data, f.link) {
		// RFC 9370, Section 2.2.4: an unknown link.
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyStateNotFound}}, false, false
	}
	invalid := []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidSyntax}}
	want := f.next()
	ke := find[*ikewire.KE](pl)
	if ke == nil || iana.KEID(ke.Group) != want {
		drop(s)
		return invalid, false, true
	}
	ours, secret, err := transform.KERespond(want, ke.Data, s.rand())
	if err != nil {
		drop(s)
		return invalid, false, true
	}
	f.secrets = append(f.secrets, secret)
	resp = []ikewire.Payload{&ikewire.KE{Group: uint16(want), Data: ours}}
	if f.next() != iana.KENone {
		f.link = s.random(followupLinkLen)
		f.until = s.now().Add(followupTimeout)
		return append(resp, &ikewire.Notify{Type: ikewire.NotifyAdditionalKeyExchange, Data: f.link}), false, false
	}
	return resp, true, true
}

// childResponder is the responder's creation or rekey of a CHILD SA whose
// CREATE_CHILD_SA (acceptChild) continues in IKE_FOLLOWUP_KE exchanges; it
// installs the SA after the last key exchange (RFC 9370, Section 2.2.4).
type childResponder struct{ followupResponder }

func (r *childResponder) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) ([]ikewire.Payload, func(), bool) {
	resp, last, done := r.answer(s, pl, r.drop)
	if !last {
		return resp, nil, done
	}
	f := r.f
	if err := s.finishChild(x, f); err != nil {
		s.log.Warn("ike: CHILD SA not created", "peer", s.peerName(), "child", f.child.cfg.Name, "err", err)
		s.releaseChildPending(f.child)
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyNoProposalChosen}}, nil, true
	}
	return resp, nil, true
}

func (r *childResponder) giveUp(s *session) {
	// RFC 9370, Section 2.2.4: the initiator did not continue.
	s.log.Info("ike: abandoned: no IKE_FOLLOWUP_KE", "peer", s.peerName(), "what", "CHILD SA "+r.f.child.cfg.Name)
	r.drop(s)
}

func (r *childResponder) drop(s *session) {
	s.releaseChildPending(r.f.child)
	r.f.destroy()
}

// ikeRekeyResponder is the responder's IKE SA rekey (respondIKERekey),
// held in exchanges.responder while its CREATE_CHILD_SA continues in
// IKE_FOLLOWUP_KE exchanges. Once every key exchange is done the session
// moves to the new IKE SA or, should our own rekey be in flight, the
// responder, now with the new IKE SA nx, waits in exchanges.peerIKE for
// the nonces to decide the collision (RFC 7296, Section 2.8.2).
type ikeRekeyResponder struct {
	followupResponder
	nx *ikeSA
}

// nonces returns the Ni and Nr of the peer's rekey.
func (r *ikeRekeyResponder) nonces() [2][]byte { return [2][]byte{r.f.ni, r.f.nr} }

func (r *ikeRekeyResponder) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) ([]ikewire.Payload, func(), bool) {
	resp, last, done := r.answer(s, pl, r.drop)
	if !last {
		return resp, nil, done
	}
	f := r.f
	defer f.destroy()
	nx := &ikeSA{initiator: false, spiI: f.spiI, spiR: f.spiR}
	if s.rekeying() {
		// Our own rekey, whose response has not come, collides with
		// this one: the nonces decide once it does (RFC 7296, Section
		// 2.8.2), as for a rekey without additional key exchanges.
		if err := s.deriveIKE(x, nx, f.suite, f.ni, f.nr, f.secrets...); err != nil {
			s.m.releaseIKESPI(f.spiR)
			return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyNoProposalChosen}}, nil, true
		}
		r.nx, s.peerIKE = nx, r
		return resp, nil, true
	}
	if err := s.rekeyIKE(x, nx, f.suite, f.ni, f.nr, f.secrets...); err != nil {
		s.m.releaseIKESPI(f.spiR)
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyNoProposalChosen}}, nil, true
	}
	return resp, nil, true
}

func (r *ikeRekeyResponder) giveUp(s *session) {
	// RFC 9370, Section 2.2.4: the initiator did not continue.
	s.log.Info("ike: abandoned: no IKE_FOLLOWUP_KE", "peer", s.peerName(), "what", "IKE SA rekey")
	r.drop(s)
}

func (r *ikeRekeyResponder) drop(s *session) {
	s.m.releaseIKESPI(r.f.spiR)
	r.f.destroy()
}

// finishChild derives the keys of a CHILD SA once every key exchange is
// done, KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)) (RFC
// 9370, Section 2.2.4), and installs it. The initiator then deletes the SA
// it rekeyed, the responder waits for that (RFC 7296, Section 1.3.3).
func (s *session) finishChild(x *ikeSA, f *followupKE) error {
	defer f.destroy()
	c := f.child
	ck, err := x.keys.Child(c.suite.suite, f.ni, f.nr, f.secrets...)
	if err != nil {
		return err
	}
	sa := ChildSA{
		SPIIn: c.spiIn, SPIOut: c.spiOut,
		KeyIn: bytes.Clone(ck.Inbound(c.initiator)), KeyOut: bytes.Clone(ck.Outbound(c.initiator)),
		LocalTS: toSet(c.local), RemoteTS: toSet(c.remote),
	}
	ck.Destroy()
	c.spiIn = 0 // now owned by the CHILD SA
	nw := s.install(c.cfg, sa, c.suite, c.old)
	if old := c.old; old != nil {
		if c.initiator {
			s.ownRekeyDone(old, nw, f.ni, f.nr)
		} else {
			if old.state == childRekeying {
				old.state = childInstalled // it waited for our IKE_FOLLOWUP_KE answers
			}
			s.peerRekeyDone(old, nw, f.ni, f.nr)
		}
	}
	return nil
}

// releaseChildPending frees what a CHILD SA that will not be installed
// holds: its inbound SPI, the rekeyed SA's state and the initiator's claim
// on the child's name.
func (s *session) releaseChildPending(c *childPending) {
	if c.spiIn != 0 {
		s.m.freeSPI(c.spiIn)
		c.spiIn = 0
	}
	if c.old != nil && c.old.state == childRekeying {
		c.old.state = childInstalled
		if c.initiator && c.old.rekeyAt.IsZero() {
			c.old.rekeyAt = s.now().Add(time.Minute) // try again later
		}
	}
	if c.initiator && c.old == nil {
		delete(s.pendingChildren, c.cfg.Name)
	}
}
