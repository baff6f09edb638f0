package ike

// Make-before-break CHILD SA rekeying and its collisions (RFC 7296,
// Sections 1.3.3, 2.8, 2.8.1 and 2.25.1). The life of a rekey, per role:
//
//	initiator  request --> response: install the new SA (inbound, then
//	           outbound at once: the responder installed its inbound SA
//	           before answering) --> Delete of the old SA --> answer:
//	           delete the old SA.
//	responder  request: install the new inbound SA, prepare the outbound
//	           one (outPending) --> answer --> the initiator's next
//	           request (its Delete of the old SA, usually) proves it
//	           received the answer: activate the outbound SA, then delete
//	           the old one and answer.
//
// Each side thus sends on the new SA only once the other receives on it,
// and receives on the old SA as long as the other may send on it; the
// Installer keeps a deleted inbound SA a little longer for the packets
// still in flight (Installer.DeleteSA).
//
// Both sides rekeying the same SA at once answer each other as usual; once
// a side knows both exchanges, the one with the lowest of the four nonces
// is redundant: its initiator deletes the SA it created, the other
// initiator deletes the old SA (RFC 7296, Section 2.8.1).

import (
	"bytes"
	"time"
)

// activate makes c's prepared outbound SA the one that carries its
// traffic.
func (s *session) activate(c *child) {
	c.outPending, c.activateAt = false, time.Time{}
	s.ops = append(s.ops, op{kind: opActivate, child: copyOf(c.sa)})
}

// pendingOutbound returns the CHILD SAs whose outbound SA waits for the
// peer's next request.
func (s *session) pendingOutbound() []*child {
	var out []*child
	for _, c := range s.children {
		if c.outPending {
			out = append(out, c)
		}
	}
	return out
}

// confirmOutbound activates the outbound SAs of pending, the rekeys we
// answered before the peer's latest request: with a window of one (RFC
// 7296, Section 2.3), a new request means that the peer processed our
// answer and receives on the new SA.
func (s *session) confirmOutbound(pending []*child) {
	for _, c := range pending {
		if c.outPending && !c.redundant && s.live(c) {
			s.activate(c)
		}
	}
}

// ownRekeyDone finishes our rekey of old, which created nw with nonces ni
// and nr.
func (s *session) ownRekeyDone(old, nw *child, ni, nr []byte) {
	now := s.now()
	if p := old.peerRekey; p != nil {
		// Both sides rekeyed old (RFC 7296, Section 2.8.1).
		if lowestNonce([2][]byte{ni, nr}, old.peerNonces) {
			// Ours is redundant: we delete it, and the peer, whose rekey
			// won, deletes old. Our new SA never sends.
			s.log.Info("ike: CHILD SA rekey collision lost", "peer", s.peerName(), "child", nw.cfg.Name)
			nw.redundant, nw.outPending = true, false
			nw.state = childDeleting
			s.queueFront(&deleteChildTask{c: nw})
			if s.live(old) && (old.state == childInstalled || old.state == childRekeying) {
				old.state = childReplaced
				old.rekeyed = true
				old.deleteAt = now.Add(staleTimeout)
			}
			return
		}
		// Ours won: the peer deletes the SA its rekey created.
		s.log.Info("ike: CHILD SA rekey collision won", "peer", s.peerName(), "child", nw.cfg.Name)
		p.redundant, p.outPending = true, false
		if s.live(p) && p.state == childInstalled {
			p.state = childReplaced
			p.deleteAt = now.Add(staleTimeout)
		}
	}
	s.activate(nw)
	old.rekeyed = true
	if s.live(old) && old.state != childDeleting {
		// RFC 7296, Section 1.3.3: the initiator deletes the old SA.
		old.state = childDeleting
		s.queueFront(&deleteChildTask{c: old, replaced: true})
	}
}

// peerRekeyDone records that we answered the peer's rekey of old, which
// created nw with nonces ni and nr: nw sends once the peer shows that it
// receives on it, and old waits for the peer's Delete (RFC 7296, Section
// 1.3.3), or for our own rekey of it to complete when the two collide.
func (s *session) peerRekeyDone(old, nw *child, ni, nr []byte) {
	now := s.now()
	nw.outPending, nw.activateAt = true, now.Add(outboundGrace)
	old.peerRekey = nw
	old.peerNonces = [2][]byte{bytes.Clone(ni), bytes.Clone(nr)}
	old.rekeyed = true
	if old.state != childRekeying {
		old.state = childReplaced
		old.deleteAt = now.Add(staleTimeout)
	}
}

// forgetUnconfirmed undoes our answer to the peer's earlier rekey of old
// when the peer asks to rekey old again: it never received that answer
// (else old would be replaced for it too), so the SA the answer created
// never carried traffic and goes at once.
func (s *session) forgetUnconfirmed(old *child) {
	p := old.peerRekey
	if p == nil || !p.outPending || !s.live(p) {
		return
	}
	s.log.Debug("ike: the peer rekeys again; dropping the unconfirmed SA", "peer", s.peerName(), "child", old.cfg.Name)
	p.redundant = true
	s.removeChild(p, nil)
	old.peerRekey, old.peerNonces = nil, [2][]byte{}
	old.state, old.rekeyed, old.deleteAt = childInstalled, false, time.Time{}
}

// live reports whether c is one of the session's CHILD SAs.
func (s *session) live(c *child) bool {
	return c != nil && s.hasChildPtr(c)
}
