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

import "time"

// ikeCollision is the peer's rekey that we answered while ours was in
// flight.
type ikeCollision struct {
	nx     *ikeSA
	suite  ikeSuite
	nonces [2][]byte // its Ni, Nr
}

// ikeSAs returns every IKE SA of the session, nil ones included.
func (s *session) ikeSAs() []*ikeSA {
	xs := []*ikeSA{s.sa, s.old, s.redundant, nil}
	if s.peerIKE != nil {
		xs[3] = s.peerIKE.nx
	}
	return xs
}

// rekeyingPlain reports whether our rekey of the IKE SA in flight is a
// CREATE_CHILD_SA without IKE_FOLLOWUP_KE, the only kind whose collisions
// are resolved by the nonces here.
func (s *session) rekeyingPlain() bool {
	_, ok := s.sa.active.t.(*ikeRekeyTask)
	return ok
}

// resolveIKECollision decides between our completed rekey of x, which
// created nx with nonces ni and nr, and the peer's in s.peerIKE. It returns
// true when ours lost: the session then runs on the peer's IKE SA and
// deletes nx; otherwise the caller moves to nx and deletes x.
func (s *session) resolveIKECollision(x, nx *ikeSA, ni, nr []byte) bool {
	c := s.peerIKE
	s.peerIKE = nil
	if lowestNonce([2][]byte{ni, nr}, c.nonces) {
		s.log.Info("ike: IKE SA rekey collision lost", "peer", s.peerName())
		s.switchIKE(x, c.nx, c.suite)
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
	s.switchIKE(x, c.nx, c.suite)
}

// dropPeerIKE forgets the peer's rekey of a collision that it lost
// before ours completed.
func (s *session) dropPeerIKE() {
	if c := s.peerIKE; c != nil {
		s.peerIKE = nil
		s.forgetIKE(c.nx)
	}
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
