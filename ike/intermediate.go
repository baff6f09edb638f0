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

// Additional key exchanges of the IKE SA (RFC 9370) in IKE_INTERMEDIATE
// exchanges (RFC 9242):
//
//	IKE_SA_INIT        SA (with ADDKE transforms), KE, Ni/Nr, INTERMEDIATE_EXCHANGE_SUPPORTED
//	IKE_INTERMEDIATE   SK {KE(ADDKE1)}  -> SK {KE(ADDKE1)}, then the key update of Section 2.2.2
//	...                one exchange per negotiated ADDKE, in type order
//	IKE_AUTH           AUTH over ... | IntAuth_iN | IntAuth_rN | IKE_AUTH_MID
//
// Each IKE_INTERMEDIATE message is protected by, and authenticated in the
// IntAuth chain with, the keys in force before its exchange's update.

// intermediateTask is the initiator's IKE_INTERMEDIATE exchange carrying
// one additional key exchange (RFC 9370, Section 2.2.2).
type intermediateTask struct {
	ke      iana.KEID
	kei     transform.KEInitiator
	intAuth []byte // IntAuth_iN of our request
}

func (*intermediateTask) exchange() ikewire.ExchangeType { return ikewire.IKE_INTERMEDIATE }

func (t *intermediateTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	kei, err := transform.NewKEInitiator(t.ke, s.rand())
	if err != nil {
		return nil, err
	}
	t.kei = kei
	pl := []ikewire.Payload{&ikewire.KE{Group: uint16(t.ke), Data: kei.Public()}}
	h := ikewire.Header{SPIi: x.spiI, SPIr: x.spiR, Exchange: ikewire.IKE_INTERMEDIATE, Flags: ikewire.FlagInitiator, MessageID: x.nextID}
	if t.intAuth, err = s.nextIntAuth(x, true, h, pl); err != nil {
		return nil, err
	}
	return pl, nil
}

func (t *intermediateTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	if n := errorNotify(pl); n != nil {
		s.die(notifyErr(n))
		return false
	}
	ke := find[*ikewire.KE](pl)
	if ke == nil || iana.KEID(ke.Group) != t.ke {
		s.die(fmt.Errorf("ike: IKE_INTERMEDIATE response without a KE payload of method %s: %w", transform.KEName(t.ke), errSyntax))
		return false
	}
	secret, err := t.kei.Finish(ke.Data)
	t.kei = nil
	if err != nil {
		s.die(fmt.Errorf("ike: the responder's additional key exchange data: %w", err))
		return false
	}
	r, err := s.nextIntAuth(x, false, m.Header, pl)
	if err != nil {
		s.die(err)
		return false
	}
	s.intAuthI, s.intAuthR = t.intAuth, r
	if err := s.addKEUpdate(x, secret); err != nil {
		s.die(err)
	}
	return false
}

func (t *intermediateTask) abort(s *session) { t.kei = nil }

// addKEs returns the additional key exchange methods negotiated for the IKE
// SA, in the order of their exchanges (RFC 9370, Section 2.2.2: by
// Transform Type; NONE is skipped).
func (s *session) addKEs() []iana.KEID {
	if s.sa == nil {
		return nil
	}
	var out []iana.KEID
	for _, k := range s.sa.suite.addKE {
		if k != iana.KENone {
			out = append(out, k)
		}
	}
	return out
}

// queueIntermediate puts the initiator's IKE_INTERMEDIATE exchanges before
// IKE_AUTH.
func (s *session) queueIntermediate() {
	var ts []task
	for _, k := range s.addKEs() {
		ts = append(ts, &intermediateTask{ke: k})
	}
	s.tasks = append(ts, s.tasks...)
}

// respondIntermediate is the responder's IKE_INTERMEDIATE with the next
// additional key exchange (RFC 9370, Section 2.2.2). The keys are updated
// after the response is sent, with the keys it was protected by.
func (s *session) respondIntermediate(x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) ([]ikewire.Payload, func()) {
	fail := func(err error) ([]ikewire.Payload, func()) {
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidSyntax}}, func() { s.die(err) }
	}
	ks := s.addKEs()
	if x.initiator || x != s.sa || s.addKENext >= len(ks) {
		return fail(fmt.Errorf("ike: unexpected IKE_INTERMEDIATE request: %w", errSyntax))
	}
	want := ks[s.addKENext]
	ke := find[*ikewire.KE](pl)
	if ke == nil || iana.KEID(ke.Group) != want {
		// RFC 9370, Section 2.2.2: the KE payload must carry the
		// negotiated method of this additional key exchange.
		return fail(fmt.Errorf("ike: IKE_INTERMEDIATE request without a KE payload of method %s: %w", transform.KEName(want), errSyntax))
	}
	ours, secret, err := transform.KERespond(want, ke.Data, s.rand())
	if err != nil {
		return fail(fmt.Errorf("ike: the initiator's additional key exchange data: %w", err))
	}
	i, err := s.nextIntAuth(x, true, m.Header, pl)
	if err != nil {
		return fail(err)
	}
	resp := []ikewire.Payload{&ikewire.KE{Group: uint16(want), Data: ours}}
	h := ikewire.Header{SPIi: x.spiI, SPIr: x.spiR, Exchange: ikewire.IKE_INTERMEDIATE, Flags: ikewire.FlagResponse, MessageID: m.MessageID}
	r, err := s.nextIntAuth(x, false, h, resp)
	if err != nil {
		return fail(err)
	}
	return resp, func() {
		s.intAuthI, s.intAuthR = i, r
		if err := s.addKEUpdate(x, secret); err != nil {
			s.die(err)
		}
	}
}

// addKEUpdate replaces the IKE SA's keys after an additional key exchange
// with shared secret secret (RFC 9370, Section 2.2.2).
func (s *session) addKEUpdate(x *ikeSA, secret []byte) error {
	defer clear(secret)
	old := x.keys
	k, err := old.AddKE(secret)
	if err != nil {
		return err
	}
	if err := x.setKeys(k, x.suite); err != nil {
		return err
	}
	old.Destroy()
	s.addKENext++
	return nil
}

// nextIntAuth returns IntAuth_iN (initiator true) or IntAuth_rN of an
// IKE_INTERMEDIATE message with header h and inner payloads pl, chained to
// the previous value (RFC 9242, Section 3.3.1):
//
//	IntAuth_[i|r]N = prf(SK_p[i|r]N, IntAuth_[i|r]N-1 | IntAuth_[i|r]N_A | IntAuth_[i|r]N_P)
//
// A is the IKE header and the Encrypted payload's generic header, with the
// Length fields counting only the plaintext inner payloads (no IV, padding
// or ICV), and the message treated as unfragmented; P is the inner payloads.
// Received payloads are encoded again, which reproduces the octets received
// since unknown payloads are kept as they came.
func (s *session) nextIntAuth(x *ikeSA, initiator bool, h ikewire.Header, pl []ikewire.Payload) ([]byte, error) {
	a, err := intAuthInput(h, pl)
	if err != nil {
		return nil, err
	}
	prev := s.intAuthR
	if initiator {
		prev = s.intAuthI
	}
	return x.keys.IntAuth(initiator, prev, a), nil
}

// intAuthInput returns IntAuth_[i|r]N_A | IntAuth_[i|r]N_P of the message
// with header h and inner payloads pl (RFC 9242, Section 3.3.1, Figure 1).
func intAuthInput(h ikewire.Header, pl []ikewire.Payload) ([]byte, error) {
	b, err := (&ikewire.Message{Header: ikewire.Header{SPIi: h.SPIi, SPIr: h.SPIr, Exchange: h.Exchange, Flags: h.Flags, MessageID: h.MessageID}, Payloads: pl}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("ike: IntAuth: %w", err)
	}
	if len(b) < ikewire.HeaderLen {
		return nil, errors.New("ike: IntAuth: short message")
	}
	inner := b[ikewire.HeaderLen:]
	a := make([]byte, ikewire.HeaderLen+4, ikewire.HeaderLen+4+len(inner))
	copy(a, b[:ikewire.HeaderLen])
	first := a[16]
	a[16] = byte(ikewire.PayloadSK)
	binary.BigEndian.PutUint32(a[24:28], uint32(len(a)+len(inner)))
	a[ikewire.HeaderLen] = first
	binary.BigEndian.PutUint16(a[ikewire.HeaderLen+2:], uint16(4+len(inner)))
	return append(a, inner...), nil
}

// intAuth returns what IKE_AUTH's AUTH covers after IKE_INTERMEDIATE
// exchanges: IntAuth_iN | IntAuth_rN | IKE_AUTH_MID (RFC 9242, Section
// 3.3.2); nil without them.
func (s *session) intAuth() [][]byte {
	if s.intAuthI == nil {
		return nil
	}
	return [][]byte{s.intAuthI, s.intAuthR, binary.BigEndian.AppendUint32(nil, s.authMID)}
}

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

// followupTask is the initiator's IKE_FOLLOWUP_KE exchange of an IKE SA
// rekey (RFC 9370, Section 2.2.4), on the old IKE SA.
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

// respondFollowup is the responder's IKE_FOLLOWUP_KE of an IKE SA rekey
// (RFC 9370, Section 2.2.4).
func (s *session) respondFollowup(x *ikeSA, pl []ikewire.Payload) ([]ikewire.Payload, func()) {
	f := s.followup
	n := findNotify(pl, ikewire.NotifyAdditionalKeyExchange)
	if f == nil || x != f.on || n == nil || !bytes.Equal(n.Data, f.link) {
		// RFC 9370, Section 2.2.4: an unknown link.
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyStateNotFound}}, nil
	}
	want := f.next()
	ke := find[*ikewire.KE](pl)
	if ke == nil || iana.KEID(ke.Group) != want {
		s.dropFollowup()
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidSyntax}}, nil
	}
	ours, secret, err := transform.KERespond(want, ke.Data, s.rand())
	if err != nil {
		s.dropFollowup()
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidSyntax}}, nil
	}
	f.secrets = append(f.secrets, secret)
	resp := []ikewire.Payload{&ikewire.KE{Group: uint16(want), Data: ours}}
	if f.next() != iana.KENone {
		f.link = s.random(followupLinkLen)
		f.until = s.now().Add(followupTimeout)
		return append(resp, &ikewire.Notify{Type: ikewire.NotifyAdditionalKeyExchange, Data: f.link}), nil
	}
	s.followup = nil
	if f.child != nil {
		if err := s.finishChild(x, f); err != nil {
			s.log.Warn("ike: CHILD SA not created", "peer", s.peerName(), "child", f.child.cfg.Name, "err", err)
			s.releaseChildPending(f.child)
			return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyNoProposalChosen}}, nil
		}
		return resp, nil
	}
	defer f.destroy()
	nx := &ikeSA{initiator: false, spiI: f.spiI, spiR: f.spiR}
	if s.rekeying() {
		// Our own rekey, whose response has not come, collides with
		// this one: the nonces decide once it does (RFC 7296, Section
		// 2.8.2), as for a rekey without additional key exchanges.
		if err := s.deriveIKE(x, nx, f.suite, f.ni, f.nr, f.secrets...); err != nil {
			s.m.releaseIKESPI(f.spiR)
			return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyNoProposalChosen}}, nil
		}
		s.peerIKE = &ikeCollision{nx: nx, nonces: [2][]byte{f.ni, f.nr}}
		return resp, nil
	}
	if err := s.rekeyIKE(x, nx, f.suite, f.ni, f.nr, f.secrets...); err != nil {
		s.m.releaseIKESPI(f.spiR)
		return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyNoProposalChosen}}, nil
	}
	return resp, nil
}

// dropFollowup forgets the responder's unfinished IKE SA rekey or CHILD
// SA.
func (s *session) dropFollowup() {
	if f := s.followup; f != nil {
		if f.child != nil {
			s.releaseChildPending(f.child)
		} else {
			s.m.releaseIKESPI(f.spiR)
		}
		f.destroy()
		s.followup = nil
	}
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
