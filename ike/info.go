package ike

import (
	"fmt"

	"github.com/goipsec/goipsec/ike/ikewire"
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
			if after = s.rekeyDelete(x); after == nil {
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
func (*dpdTask) abort(*session)              {}
func (*dpdTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }
func (*dpdTask) moved(*session)              {}

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

// giveUp: an unanswered Delete of the old or redundant IKE SA of a rekey
// ends only that IKE SA; of the IKE SA itself, the peer is dead (RFC
// 7296, Section 2.4).
func (t *deleteIKETask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }
func (t *deleteIKETask) moved(s *session)            {}
