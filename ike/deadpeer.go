package ike

// Lifetimes, dead peers and duplicate IKE SAs: what happens when a CHILD SA
// is installed (its rekey time, jitter and limits), when an IKE SA ends
// because its peer is dead or closed it (Peer.DPDAction,
// Peer.CloseAction), and when a second IKE SA with the same remote identity
// is established (Peer.Unique).

import (
	"fmt"
	"slices"
	"time"
)

// scheduleChild sets the rekey time of a new CHILD SA, RekeyTime minus a
// random part of RandTime, its hard lifetime, and the limits the data plane
// enforces (c, the SA handed to the Installer).
func (s *session) scheduleChild(ch *child, c *ChildSA, now time.Time) {
	cfg := ch.cfg
	if rt := cfg.rekeyTime(); rt > 0 {
		ch.rekeyAt = now.Add(rt - s.randUpTo(cfg.randTime()))
	}
	if lt := cfg.lifeTime(); lt > 0 {
		ch.expireAt = now.Add(lt)
	}
	c.Limits = cfg.limits()
	ch.sa.Limits = c.Limits
}

// scheduleReauth sets the reauthentication time of a new IKE SA,
// ReauthTime minus a random part of RandTime, and the hard lifetime
// without it, ReauthTime + OverTime. An IKE SA rekey does not move them
// (the peer was not authenticated again).
func (s *session) scheduleReauth() {
	s.reauthAt, s.reauthEnd = time.Time{}, time.Time{}
	if rt := s.peer.ReauthTime; rt > 0 {
		now := s.now()
		s.reauthAt = now.Add(rt - s.randUpTo(s.peer.randTime()))
		if ot := s.peer.overTime(); ot > 0 {
			s.reauthEnd = now.Add(rt + ot)
		}
	}
}

// reauthRetry is when a reauthentication that did not replace the IKE SA
// is tried again.
const reauthRetry = 2 * time.Minute

// reauthenticate asks the Manager for the IKE SA that replaces this one
// (opReauth), with the CHILD SAs that are up; the new one deletes this one
// when they are all up again (reauthDone), make before break.
func (s *session) reauthenticate(now time.Time) {
	s.reauthAt = now.Add(reauthRetry)
	var names []string
	for _, c := range s.children {
		if c.state != childReplaced && c.state != childDeleting && !slices.Contains(names, c.cfg.Name) {
			names = append(names, c.cfg.Name)
		}
	}
	s.log.Info("ike: reauthenticating", "peer", s.peerName(), "children", names)
	s.ops = append(s.ops, op{kind: opReauth, names: names})
}

// reauthDone, on the IKE SA made by a reauthentication, asks the Manager
// to delete the one it replaces once it is established and every child it
// took over is up (or failed).
func (s *session) reauthDone() {
	if s.replaces == 0 || s.state != StateEstablished || len(s.pendingChildren) > 0 {
		return
	}
	s.ops = append(s.ops, op{kind: opRetire, spi: s.replaces})
	s.replaces = 0
}

// reauth creates the IKE SA that replaces a's (opReauth): to the address
// a's peer speaks from, with the children names; the first one is created
// in IKE_AUTH, the others with CREATE_CHILD_SA.
func (m *Manager) reauth(a *actor, names []string) {
	old := a.s
	m.mu.Lock()
	p := m.peerLocked(old.peerName())
	if p == nil || m.closed {
		m.mu.Unlock()
		return
	}
	var first *ChildConfig
	if len(names) > 0 {
		first = p.child(names[0])
	}
	na, err := m.newInitiatorLocked(p, first, nil, old.remote.Addr())
	if err != nil {
		m.mu.Unlock()
		m.cfg.Logger.Warn("ike: reauthentication", "peer", p.Name, "err", err)
		return
	}
	s := na.s
	s.replaces = old.sa.ourSPI()
	for _, n := range names[1:] {
		if c := p.child(n); c != nil {
			s.pendingChildren[n] = true
			s.queue(&childTask{cfg: c})
		}
	}
	m.mu.Unlock()
	m.deliver(na, input{kind: inTimer})
}

// retire deletes the IKE SA with our SPI spi, replaced by a's
// reauthentication (opRetire), with a Delete exchange (RFC 7296, Section
// 1.4.1).
func (m *Manager) retire(a *actor, spi uint64) {
	m.mu.Lock()
	b := m.bySPI[spi]
	m.mu.Unlock()
	if b != nil && b != a {
		m.deliver(b, input{kind: inCommand, cmd: command{kind: cmdTerminate}})
	}
}

// peerClosed ends the session because the peer deleted the IKE SA (RFC
// 7296, Section 1.4.1); Peer.CloseAction runs.
func (s *session) peerClosed() {
	s.closedByPeer = true
	s.die(nil)
}

// deathAction returns the action for a session that ends with err, and the
// names of its CHILD SAs that were up. Only an established IKE SA whose
// peer is dead (ErrPeerDead) or deleted it has an action.
func (s *session) deathAction(err error) (Action, []string) {
	if s.peer == nil || s.state != StateEstablished {
		return ActionClear, nil
	}
	act := ActionClear
	switch {
	case err == ErrPeerDead:
		act = s.peer.DPDAction
	case err == nil && s.closedByPeer:
		act = s.peer.CloseAction
	}
	if act == ActionClear {
		return act, nil
	}
	var up []string
	for _, c := range s.children {
		if c.state != childReplaced && c.state != childDeleting {
			up = append(up, c.cfg.Name)
		}
	}
	for name := range s.pendingChildren {
		up = append(up, name)
	}
	return act, up
}

// runDeathAction carries out act once the session is over: ActionTrap
// reports EventChildTrap per child, ActionStart makes the Manager initiate
// them again (opRestart runs after opDone, so the new IKE SA does not
// find this one).
func (s *session) runDeathAction(act Action, up []string) {
	switch act {
	case ActionTrap:
		for _, name := range up {
			s.emit(EventChildTrap, name, nil, nil)
		}
	case ActionStart:
		s.log.Info("ike: re-initiating", "peer", s.peerName(), "children", up)
		s.ops = append(s.ops, op{kind: opRestart, names: up})
	}
}

// uniqueness applies Peer.Unique when IKE_AUTH authenticated the peer as
// remote, before the IKE SA is established; initialContact says the peer
// sent INITIAL_CONTACT. An error refuses the new IKE SA (UniqueKeep).
func (s *session) uniqueness(remote Identity, initialContact bool) error {
	if s.replaces != 0 {
		return nil // a reauthentication deletes the IKE SA it replaces itself
	}
	switch s.peer.Unique {
	case UniqueKeep:
		if s.m.hasDuplicate(s, remote) {
			return fmt.Errorf("%w: unique keep: an IKE SA with %s exists", ErrAuthFailed, remote)
		}
	case UniqueReplace:
		s.ops = append(s.ops, op{kind: opReplace, id: remote})
		return nil
	case UniqueNever:
		return nil
	}
	if initialContact {
		// RFC 7296, Section 2.4: the peer lost its state; delete the
		// other IKE SAs with it.
		s.ops = append(s.ops, op{kind: opInitialContact, id: remote})
	}
	return nil
}

// duplicatesLocked returns the established IKE SAs other than s's with
// s's peer configuration and remote identity id.
func (m *Manager) duplicatesLocked(s *session, id Identity) []*actor {
	peer := s.peerName()
	var out []*actor
	for _, b := range m.byIdent[identKeyOf(&IKESA{Peer: peer, RemoteID: id})] {
		info := b.info.Load()
		if b.s != s && !b.dead && info != nil && info.Peer == peer && info.RemoteID.Equal(id) && info.State == StateEstablished {
			out = append(out, b)
		}
	}
	return out
}

// hasDuplicate reports whether an established IKE SA other than s's has
// s's peer configuration and remote identity id.
func (m *Manager) hasDuplicate(s *session, id Identity) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.duplicatesLocked(s, id)) > 0
}

// closeDuplicates ends the duplicates of a's IKE SA with remote identity
// id: silently after INITIAL_CONTACT (the peer forgot them), with a Delete
// for UniqueReplace.
func (m *Manager) closeDuplicates(a *actor, id Identity, notify bool) {
	m.mu.Lock()
	others := m.duplicatesLocked(a.s, id)
	m.mu.Unlock()
	k := cmdClose
	if notify {
		k = cmdCloseNotify
	}
	for _, b := range others {
		if notify {
			m.cfg.Logger.Info("ike: unique replace: deleting the older IKE SA", "peer", a.s.peerName(), "remote_id", id.String())
		}
		m.deliver(b, input{kind: inCommand, cmd: command{kind: k}})
	}
}

// restart initiates the children names of peer again (ActionStart), or
// the IKE SA alone without any.
func (m *Manager) restart(peer string, names []string) {
	if len(names) == 0 {
		names = []string{""}
	}
	for _, n := range names {
		if err := m.Initiate(peer, n, nil); err != nil {
			m.cfg.Logger.Warn("ike: restart after the peer's death or close", "peer", peer, "child", n, "err", err)
		}
	}
}
