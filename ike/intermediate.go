package ike

import (
	"encoding/binary"
	"errors"
	"fmt"

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

func (t *intermediateTask) abort(s *session)            { t.kei = nil }
func (t *intermediateTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }
func (t *intermediateTask) moved(s *session)            { t.abort(s) }

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
