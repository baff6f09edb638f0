package ike

// The life of one IKE SA. A session is owned by one goroutine (or, in tests,
// stepped by the caller); its core, handle, turns one input (a received
// datagram, a timer, a command) into an ordered list of effects (ops) and
// does no I/O itself:
//
//	input --handle--> recv / tick / command --> tasks and responders
//	                                        --> ops: send, install, delete, event, register
//
// The work this side starts is a queue of tasks (init, auth, child-create,
// child-rekey, ike-rekey, delete, dpd), run one at a time by the exchange
// runner in exchange.go, which owns Message IDs, retransmission and the
// response cache (window size 1, RFC 7296, Section 2.3). tasks.go lists
// the tasks and responders, their states and the collision rules; the
// session keeps the long-lived state of the IKE SA and its CHILD SAs.

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/bits"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/ike/keys"
	"github.com/goipsec/goipsec/transform"
)

// inputKind says what an input carries.
type inputKind uint8

const (
	inPacket inputKind = iota + 1
	inTimer
	inCommand
)

// input is one event for a session.
type input struct {
	kind     inputKind
	pkt      []byte
	from, to netip.AddrPort
	cmd      command
}

// commandKind names what the owner of the Manager asked for.
type commandKind uint8

const (
	cmdInitiate      commandKind = iota + 1 // create child (or nothing if it is up)
	cmdRekeyChild                           // rekey child by name or SPI
	cmdRekeyIKE                             // rekey the IKE SA
	cmdTerminate                            // delete child by name, or the IKE SA if empty
	cmdDeleteSPI                            // delete the CHILD SA with inbound SPI spi (hard expiry)
	cmdRekeySPI                             // rekey the CHILD SA with inbound SPI spi (soft expiry)
	cmdInstallFailed                        // the Installer refused CHILD SA spi
	cmdClose                                // delete everything silently (manager closing, INITIAL_CONTACT)
	cmdCloseNotify                          // send a Delete for the IKE SA and go, without waiting
	cmdSetPeer                              // a reload changed the peer's configuration
)

type command struct {
	kind    commandKind
	child   string
	trigger *Trigger
	spi     uint32
	peer    *Peer // cmdSetPeer
}

// opKind says what an op does.
type opKind uint8

const (
	opSend     opKind = iota + 1
	opInstall         // install the inbound SA, prepare the outbound one
	opActivate        // the prepared outbound SA starts carrying traffic
	opDelete
	opEvent
	opRegister       // route datagrams with our IKE SPI spi to this session
	opUnregister     // stop routing spi here
	opInitialContact // close the duplicates with id silently (INITIAL_CONTACT)
	opReplace        // close the duplicates with id with a Delete (UniqueReplace)
	opDone           // the session is over
	opRestart        // initiate children names again (ActionStart); after opDone
	opReauth         // create the IKE SA that replaces this one, with children names
	opRetire         // delete the IKE SA with our SPI spi, which this one replaced
)

// op is one effect of handling an input, executed in order by the owner.
// A handshake makes about ten; child points to a copy of the CHILD SA for
// the three kinds that carry one, so that the others do not each carry
// its 400 bytes.
type op struct {
	kind     opKind
	pkt      []byte
	from, to netip.AddrPort
	child    *ChildSA // opInstall, opActivate, opDelete
	ev       Event
	spi      uint64
	id       Identity
	names    []string // opRestart
}

// ikeSA is the protocol state of one IKE SA; a session holds two during an
// IKE SA rekey (RFC 7296, Section 1.3.2).
type ikeSA struct {
	initiator  bool // this host is the original initiator of this IKE SA
	spiI, spiR uint64
	suite      ikeSuite
	keys       *keys.IKESAKeys // nil until IKE_SA_INIT is done
	prf        transform.PRF

	// The exchange runner's state (exchange.go).
	nextID    uint32   // Message ID of our next request
	active    *request // our outstanding request; window size 1
	peerID    uint32   // Message ID expected in the peer's next request
	cached    *response
	reasmReq  ikewire.Reassembler
	reasmResp ikewire.Reassembler

	// deleteOld says that this is the old IKE SA of our completed rekey,
	// whose Delete waits until no IKE_FOLLOWUP_KE exchange of a CHILD SA
	// rekey that crossed ours runs on it (RFC 9370, Section 2.2.4).
	deleteOld bool
}

func (x *ikeSA) ourSPI() uint64 {
	if x.initiator {
		return x.spiI
	}
	return x.spiR
}

// setKeys installs the IKE SA's keys, once it checked that they make SK
// ciphers (RFC 7296, Section 2.14: SK_ei/SK_ai protect what the original
// initiator sends).
func (x *ikeSA) setKeys(k *keys.IKESAKeys, s ikeSuite) error {
	prf, err := transform.NewPRF(s.prf)
	if err != nil {
		return err
	}
	for _, fromI := range []bool{true, false} {
		if _, err := skCipher(k, s, fromI); err != nil {
			return err
		}
	}
	x.keys, x.suite, x.prf = k, s, prf
	return nil
}

// skCipher returns the SK cipher of the messages that the original
// initiator (fromI) or the original responder sends.
func skCipher(k *keys.IKESAKeys, s ikeSuite, fromI bool) (ikewire.SKCipher, error) {
	if fromI {
		return ikewire.NewSKCipher(s.encr.ID, s.integ, k.SKei(), k.SKai())
	}
	return ikewire.NewSKCipher(s.encr.ID, s.integ, k.SKer(), k.SKar())
}

// sealer returns the SK cipher of our outbound messages. The IKE SA keeps
// its keys, not its ciphers: an idle IKE SA sends and receives a message
// now and then, and the ciphers (about 1.5 KiB for two AES-GCM states) are
// made for each message instead of held for its life (docs/performance.md,
// "IKE at scale").
func (x *ikeSA) sealer() (ikewire.SKCipher, error) { return x.cipher(x.initiator) }

// opener returns the SK cipher of the peer's messages.
func (x *ikeSA) opener() (ikewire.SKCipher, error) { return x.cipher(!x.initiator) }

func (x *ikeSA) cipher(fromI bool) (ikewire.SKCipher, error) {
	if x.keys == nil {
		return nil, errors.New("ike: no keys yet")
	}
	return skCipher(x.keys, x.suite, fromI)
}

// childState is the state of a CHILD SA.
type childState uint8

const (
	childInstalled childState = iota + 1
	childRekeying             // a rekey of it is in progress (by us, or by the peer with IKE_FOLLOWUP_KE)
	childReplaced             // rekeyed; waits for its Delete
	childDeleting             // our Delete is in progress
)

// child is one installed CHILD SA.
type child struct {
	cfg      *ChildConfig
	sa       ChildSA
	state    childState
	rekeyAt  time.Time
	expireAt time.Time // the hard lifetime (ChildConfig.LifeTime); zero: none
	deleteAt time.Time // for childReplaced: when to delete it ourselves

	// Make-before-break (RFC 7296, Section 2.8): the responder of a rekey
	// sends on the new SA only once the initiator can receive on it.
	// outPending says that the outbound SA is prepared, not active; it
	// becomes active on the peer's next request (with a window of one,
	// RFC 7296, Section 2.3, that request proves that the peer processed
	// our response and installed the SA) or at activateAt.
	outPending bool
	activateAt time.Time
	// redundant marks the SA of a rekey that lost a collision (RFC 7296,
	// Section 2.8.1): it never carries traffic out, and its initiator
	// deletes it.
	redundant bool
	// rekeyed says that a newer SA replaced this one: deleting it
	// reports no child_down.
	rekeyed bool
	// peerRekey is the SA that answering the peer's rekey of this one
	// created, and peerNonces that exchange's Ni and Nr, to resolve a
	// collision with our own rekey of it (RFC 7296, Section 2.8.1).
	peerRekey  *child
	peerNonces [2][]byte
}

// staleTimeout is how long a rekeyed CHILD SA or IKE SA waits for the
// peer's Delete before this side deletes it itself.
const staleTimeout = time.Minute

// outboundGrace is how long the responder of a CHILD SA rekey waits for
// the initiator's next request before it sends on the new SA anyway.
const outboundGrace = 10 * time.Second

// session is one IKE SA (and its successor while it is rekeyed) with its
// CHILD SAs.
type session struct {
	m     *Manager
	cfg   *Config
	log   *slog.Logger
	peer  *Peer // the configuration; provisional for a responder until IKE_AUTH
	state IKESAState

	// The state of IKE_SA_INIT, IKE_INTERMEDIATE and IKE_AUTH; nil once
	// IKE_AUTH is done (endHandshake), so that an established IKE SA does
	// not keep the first messages, nonces and key exchange data.
	*handshake

	sa *ikeSA
	// The task manager: queued tasks, the state of exchanges in progress
	// in either role, and the IKE SAs of a rekey (tasks.go).
	exchanges

	local, remote        netip.AddrPort
	natLocal, natRemote  bool
	natt                 bool // IKE moved to NATTPort (RFC 7296, Section 2.23)
	fragOK               bool // both sides sent IKEV2_FRAGMENTATION_SUPPORTED
	localID, remoteID    Identity
	children             []*child
	created, established time.Time
	lastRecv             time.Time
	rekeyAt, keepaliveAt time.Time
	expireAt             time.Time // the IKE SA's hard lifetime (RekeyTime + OverTime); zero: none
	reauthAt, reauthEnd  time.Time // when to reauthenticate, and the hard lifetime without it (Peer.ReauthTime)
	replaces             uint64    // reauthentication: our SPI of the IKE SA this one replaces, until it is told to go
	dpdSent              time.Time // when the last liveness check was queued, for Peer.DPDTimeout
	closedByPeer         bool      // the peer deleted the IKE SA (Peer.CloseAction)
	ops                  []op
}

// handshake is what the initial exchanges need until IKE_AUTH completes:
// the nonces and IKE_SA_INIT messages that AUTH signs (RFC 7296, Section
// 2.15), the IntAuth chain of IKE_INTERMEDIATE (RFC 9242, Section 3.3),
// the cookie and INVALID_KE_PAYLOAD retry state (Sections 2.6, 1.2).
type handshake struct {
	cands             []*Peer // responder: the peers whose addresses match
	ni, nr            []byte
	ke                transform.KEInitiator
	keID              iana.KEID
	cookie            []byte
	initReq, initResp []byte   // the IKE_SA_INIT messages as sent, for AUTH
	sigHashes         []uint16 // the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427), nil if none
	addKENext         int      // additional key exchanges completed (RFC 9370)
	intAuthI          []byte   // the IntAuth chain of IKE_INTERMEDIATE (RFC 9242, Section 3.3.1)
	intAuthR          []byte
	authMID           uint32 // the Message ID of IKE_AUTH (RFC 9242, Section 3.3.2)
}

// endHandshake drops the handshake state once IKE_AUTH and the CHILD SA
// it carried are done, and the keys that only AUTH and IKE_INTERMEDIATE
// use (keys.IKESAKeys.DropAuth); nothing after it reads them (IKE_AUTH
// and IKE_INTERMEDIATE requests are refused outside StateConnecting, and
// retransmitted ones are answered from the response cache).
func (s *session) endHandshake() {
	s.handshake = nil
	if s.sa != nil && s.sa.keys != nil {
		s.sa.keys.DropAuth()
	}
}

func newSession(m *Manager, now time.Time) *session {
	return &session{
		m: m, cfg: &m.cfg, log: m.cfg.Logger, state: StateConnecting, handshake: &handshake{},
		created: now, lastRecv: now, exchanges: exchanges{pendingChildren: map[string]bool{}},
	}
}

func (s *session) now() time.Time { return s.cfg.Now() }

// copyOf returns a pointer to a copy of c, for an op.
func copyOf(c ChildSA) *ChildSA { return &c }

func (s *session) rand() io.Reader { return s.cfg.Rand }

func (s *session) random(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand(), b); err != nil {
		panic("ike: reading randomness: " + err.Error()) // crypto/rand does not fail
	}
	return b
}

func (s *session) emit(k EventKind, childName string, c *ChildSA, err error) {
	ev := Event{Kind: k, Child: childName, Err: err, Remote: s.remote}
	if s.peer != nil {
		ev.Peer = s.peer.Name
	}
	if s.sa != nil {
		ev.SPIi, ev.SPIr = s.sa.spiI, s.sa.spiR
	}
	if c != nil {
		ev.SPIIn, ev.SPIOut = c.SPIIn, c.SPIOut
	}
	s.m.counters.count(k, s.established.Sub(s.created))
	s.ops = append(s.ops, op{kind: opEvent, ev: ev})
}

// handle is the session's core: it processes one input and returns the
// effects, in order. It does no I/O.
func (s *session) handle(in input) []op {
	s.ops = nil
	if s.state == StateDead {
		return nil
	}
	switch in.kind {
	case inPacket:
		s.recv(in.pkt, in.from, in.to)
	case inTimer:
		s.tick()
	case inCommand:
		s.command(in.cmd)
	}
	s.kick()
	s.reauthDone()
	ops := s.ops
	s.ops = nil
	return ops
}

// recv processes one datagram addressed to this session.
func (s *session) recv(pkt []byte, from, to netip.AddrPort) {
	m, err := ikewire.Parse(pkt)
	if err != nil {
		// RFC 7296, Section 2.21: a message that cannot be parsed before
		// its integrity is checked is dropped.
		s.log.Debug("ike: dropping malformed message", "from", from, "err", err)
		return
	}
	x := s.saFor(&m.Header)
	if x == nil {
		return
	}
	// RFC 7296, Section 3.1: the I flag says the sender is the original
	// initiator of the IKE SA.
	if m.IsInitiator() == x.initiator {
		return
	}
	if m.IsResponse() {
		s.recvResponse(x, m, from, to)
	} else {
		s.recvRequest(x, m, from, to)
	}
}

func (s *session) saFor(h *ikewire.Header) *ikeSA {
	for _, x := range s.ikeSAs() {
		if x == nil || h.SPIi != x.spiI {
			continue
		}
		if h.SPIr == x.spiR {
			return x
		}
		// The first IKE_SA_INIT request has no SPIr; its response sets it.
		if h.Exchange == ikewire.IKE_SA_INIT && ((!h.IsResponse() && h.SPIr == 0) || (x.initiator && h.IsResponse() && x.spiR == 0)) {
			return x
		}
	}
	return nil
}

// updateAddrs follows the peer to a new address after an authenticated
// message when a NAT is between us (RFC 7296, Section 2.23).
func (s *session) updateAddrs(from, to netip.AddrPort) {
	if !to.Addr().IsValid() || to.Addr().IsUnspecified() {
		// A socket bound to every address does not say which one the
		// message reached: keep the address we know, take the port.
		to = netip.AddrPortFrom(s.local.Addr(), to.Port())
	}
	if from == s.remote && to == s.local {
		return
	}
	if s.natLocal || s.natRemote || s.natt || s.state == StateConnecting {
		s.remote, s.local = from, to
		if to.Port() == s.cfg.NATTPort {
			s.natt = true
		}
	}
}

// tick handles timers: half-open timeout, retransmissions, DPD, rekeying and
// NAT keepalives.
func (s *session) tick() {
	now := s.now()
	if s.state == StateConnecting && !s.sa.initiator && now.Sub(s.created) >= s.cfg.HalfOpenTimeout {
		s.die(ErrHalfOpenTimeout)
		return
	}
	for _, x := range s.ikeSAs() {
		if x != nil && x.active != nil && !now.Before(x.active.deadline) {
			s.retransmit(x)
			if s.state == StateDead {
				return
			}
		}
	}
	if s.state != StateEstablished {
		return
	}
	if !s.expireAt.IsZero() && !now.Before(s.expireAt) {
		// strongSwan's over_time: the rekey did not complete in time.
		s.log.Info("ike: IKE SA not rekeyed within its hard lifetime", "peer", s.peerName())
		s.closeNotify(ErrExpired)
		return
	}
	if !s.reauthEnd.IsZero() && !now.Before(s.reauthEnd) {
		s.log.Info("ike: IKE SA not reauthenticated within its hard lifetime", "peer", s.peerName())
		s.closeNotify(ErrExpired)
		return
	}
	if !s.reauthAt.IsZero() && !now.Before(s.reauthAt) {
		s.reauthenticate(now)
	}
	if !s.dpdSent.IsZero() {
		switch {
		case !s.lastRecv.Before(s.dpdSent):
			s.dpdSent = time.Time{} // answered
		case !now.Before(s.dpdSent.Add(s.peer.DPDTimeout)):
			s.log.Info("ike: peer not responding within dpd_timeout", "peer", s.peerName(), "timeout", s.peer.DPDTimeout)
			s.die(ErrPeerDead)
			return
		}
	}
	if d := s.peer.DPDDelay; d > 0 && s.sa.active == nil && len(s.tasks) == 0 && now.Sub(s.lastRecv) >= d {
		// RFC 7296, Section 2.4: an empty INFORMATIONAL request checks
		// liveness.
		s.queue(&dpdTask{})
		if s.peer.DPDTimeout > 0 {
			s.dpdSent = now
		}
	}
	if !s.rekeyAt.IsZero() && !now.Before(s.rekeyAt) {
		s.rekeyAt = time.Time{}
		s.queue(&ikeRekeyTask{})
	}
	if s.old != nil && s.old.active == nil && !s.oldUntil.IsZero() && !now.Before(s.oldUntil) {
		s.retireOld()
	}
	if s.redundant != nil && s.redundant.active == nil && !now.Before(s.redundantUntil) {
		s.forgetRedundant()
	}
	if r := s.responder; r != nil && !now.Before(r.deadline()) {
		s.responder = nil
		r.giveUp(s)
	}
	for _, c := range s.children {
		if (c.state == childInstalled || c.state == childRekeying) && !c.expireAt.IsZero() && !now.Before(c.expireAt) {
			// The hard lifetime: the data plane refuses the SA from now
			// on (ChildSA.Limits.Hard.Time); delete it with the peer.
			c.expireAt = time.Time{}
			s.log.Info("ike: CHILD SA reached its hard lifetime", "peer", s.peerName(), "child", c.cfg.Name)
			c.state = childDeleting
			s.queueFront(&deleteChildTask{c: c})
			continue
		}
		if c.state == childInstalled && !c.rekeyAt.IsZero() && !now.Before(c.rekeyAt) {
			c.rekeyAt = time.Time{}
			s.queue(&childTask{cfg: c.cfg, old: c})
		}
		if c.state == childReplaced && !c.deleteAt.IsZero() && !now.Before(c.deleteAt) {
			c.deleteAt = time.Time{}
			c.state = childDeleting
			s.queue(&deleteChildTask{c: c, replaced: true})
		}
		if c.outPending && !now.Before(c.activateAt) {
			s.activate(c)
		}
	}
	if s.natLocal && s.cfg.KeepaliveInterval > 0 && !now.Before(s.keepaliveAt) {
		// RFC 3948, Section 2.3: a NAT-keepalive is one 0xFF byte.
		s.ops = append(s.ops, op{kind: opSend, pkt: []byte{0xff}, from: s.local, to: s.remote})
		s.keepaliveAt = now.Add(s.cfg.KeepaliveInterval)
	}
}

// deadline returns when tick must next run; zero means never.
func (s *session) deadline() time.Time {
	var d time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	if s.state == StateDead {
		return d
	}
	if s.state == StateConnecting && !s.sa.initiator {
		at(s.created.Add(s.cfg.HalfOpenTimeout))
	}
	for _, x := range s.ikeSAs() {
		if x != nil && x.active != nil {
			at(x.active.deadline)
		}
	}
	if len(s.tasks) > 0 && s.retryAt.After(s.now()) {
		at(s.retryAt)
	}
	if s.state != StateEstablished {
		return d
	}
	if s.peer.DPDDelay > 0 && s.sa.active == nil && len(s.tasks) == 0 {
		at(s.lastRecv.Add(s.peer.DPDDelay))
	}
	if !s.dpdSent.IsZero() {
		at(s.dpdSent.Add(s.peer.DPDTimeout))
	}
	at(s.rekeyAt)
	at(s.expireAt)
	at(s.reauthAt)
	at(s.reauthEnd)
	if s.old != nil && s.old.active == nil {
		at(s.oldUntil)
	}
	if s.redundant != nil && s.redundant.active == nil {
		at(s.redundantUntil)
	}
	if s.responder != nil {
		at(s.responder.deadline())
	}
	for _, c := range s.children {
		switch c.state {
		case childInstalled:
			at(c.rekeyAt)
			at(c.expireAt)
		case childRekeying:
			at(c.expireAt)
		case childReplaced:
			at(c.deleteAt)
		}
		if c.outPending {
			at(c.activateAt)
		}
	}
	if s.natLocal && s.cfg.KeepaliveInterval > 0 {
		at(s.keepaliveAt)
	}
	return d
}

// command handles a request of the Manager's owner.
func (s *session) command(c command) {
	switch c.kind {
	case cmdInitiate:
		if s.peer == nil {
			return
		}
		cfg := s.peer.child(c.child)
		if cfg == nil || s.hasChild(cfg.Name) {
			return
		}
		s.pendingChildren[cfg.Name] = true
		s.queue(&childTask{cfg: cfg, trigger: c.trigger})
	case cmdSetPeer:
		s.setPeer(c.peer)
	case cmdRekeyIKE:
		if s.state == StateEstablished {
			s.queue(&ikeRekeyTask{})
		}
	case cmdRekeyChild, cmdRekeySPI:
		for _, ch := range s.children {
			if ch.state == childInstalled && ((c.kind == cmdRekeyChild && ch.cfg.Name == c.child) || (c.kind == cmdRekeySPI && ch.sa.SPIIn == c.spi)) {
				ch.rekeyAt = time.Time{}
				s.queue(&childTask{cfg: ch.cfg, old: ch})
			}
		}
	case cmdTerminate:
		if c.child == "" {
			s.terminate()
			return
		}
		for _, ch := range s.children {
			if ch.cfg.Name == c.child && (ch.state == childInstalled || ch.state == childReplaced) {
				ch.state = childDeleting
				s.queue(&deleteChildTask{c: ch})
			}
		}
	case cmdDeleteSPI, cmdInstallFailed:
		for _, ch := range s.children {
			if ch.sa.SPIIn == c.spi && ch.state != childDeleting {
				ch.state = childDeleting
				s.queueFront(&deleteChildTask{c: ch})
			}
		}
	case cmdClose:
		s.die(nil)
	case cmdCloseNotify:
		s.closeNotify(nil)
	}
}

// closeNotify sends a Delete for the IKE SA once, without waiting for the
// answer, and ends the session with err.
func (s *session) closeNotify(err error) {
	if s.state != StateConnecting && s.sa.keys != nil {
		id := s.sa.nextID
		if s.sa.active != nil {
			id = s.sa.active.id + 1
		}
		if pkts, err := s.seal(s.sa, ikewire.INFORMATIONAL, id, false, []ikewire.Payload{&ikewire.Delete{Protocol: ikewire.ProtoIKE}}); err == nil {
			s.transmit(pkts, s.local, s.remote)
		}
	}
	s.die(err)
}

// terminate deletes the IKE SA with an INFORMATIONAL exchange (RFC 7296,
// Section 1.4.1), or silently before it is established.
func (s *session) terminate() {
	if s.state != StateEstablished {
		s.die(nil)
		return
	}
	s.state = StateDeleting
	s.tasks = nil
	if s.sa.active == nil {
		s.startRequest(s.sa, &deleteIKETask{})
	} else {
		s.queue(&deleteIKETask{})
	}
}

func (s *session) hasChild(name string) bool {
	if s.pendingChildren[name] {
		return true
	}
	for _, c := range s.children {
		if c.cfg.Name == name && c.state != childDeleting && c.state != childReplaced && !c.redundant {
			return true
		}
	}
	return false
}

// die ends the session: every CHILD SA is deleted from the Installer and
// the IKE SA is forgotten. err nil means a normal deletion.
func (s *session) die(err error) {
	if s.state == StateDead {
		return
	}
	act, up := s.deathAction(err)
	for _, c := range s.children {
		s.ops = append(s.ops, op{kind: opDelete, child: copyOf(c.sa)})
		if c.state != childReplaced && !c.rekeyed && !c.redundant {
			s.emit(EventChildDown, c.cfg.Name, &c.sa, err)
		}
	}
	s.children = nil
	for _, t := range s.tasks {
		t.abort(s)
	}
	for _, x := range s.ikeSAs() {
		if x != nil && x.active != nil {
			x.active.t.abort(s)
			x.active = nil
		}
	}
	s.tasks = nil
	s.dropResponder()
	if s.state == StateConnecting && err != nil {
		s.m.counters.failed.Add(1)
	}
	if s.state == StateEstablished || s.state == StateDeleting || err != nil {
		s.emit(EventIKEDown, "", nil, err)
	}
	s.state = StateDead
	for _, x := range s.ikeSAs() {
		if x != nil && x.keys != nil {
			x.keys.Destroy()
		}
	}
	s.ops = append(s.ops, op{kind: opDone})
	s.runDeathAction(act, up)
}

// establish marks the IKE SA authenticated.
func (s *session) establish() {
	now := s.now()
	s.state = StateEstablished
	s.established = now
	s.lastRecv = now
	s.keepaliveAt = now.Add(s.cfg.KeepaliveInterval)
	s.scheduleIKERekey()
	s.scheduleReauth()
	s.emit(EventIKEUp, "", nil, nil)
}

// scheduleIKERekey sets the rekey time of a new IKE SA, RekeyTime minus a
// random part of RandTime, and its hard lifetime, RekeyTime + OverTime
// (strongSwan's rekey_time, rand_time and over_time).
func (s *session) scheduleIKERekey() {
	s.rekeyAt, s.expireAt = time.Time{}, time.Time{}
	if rt := s.peer.rekeyTime(); rt > 0 {
		now := s.now()
		s.rekeyAt = now.Add(rt - s.randUpTo(s.peer.randTime()))
		if ot := s.peer.overTime(); ot > 0 {
			s.expireAt = now.Add(rt + ot)
		}
	}
}

// jitter returns a random duration up to a tenth of d, so that two peers
// with the same configuration do not retry at once.
func (s *session) jitter(d time.Duration) time.Duration { return s.randUpTo(d / 10) }

// randUpTo returns a random duration in [0, d), uniformly distributed with
// a resolution of d/2^32, so that many SAs configured alike do not rekey
// in the same second (strongSwan's rand_time); 0 if d is not positive.
func (s *session) randUpTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	// d * r / 2^32 in 96 bits: d * r overflows 64 bits when d is
	// longer than about 4.3 s.
	r := uint64(binary.BigEndian.Uint32(s.random(4)))
	hi, lo := bits.Mul64(uint64(d), r)
	return time.Duration(hi<<32 | lo>>32)
}

// NAT detection (RFC 7296, Section 2.23): SHA-1(SPIi | SPIr | IP | Port).
func natHash(spiI, spiR uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spiI)
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], spiR)
	h.Write(b[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	binary.BigEndian.PutUint16(b[:2], ap.Port())
	h.Write(b[:2])
	return h.Sum(nil)
}

// natdPayloads returns the NAT detection notifications of an IKE_SA_INIT
// message with SPIs spiI, spiR.
func (s *session) natdPayloads(spiI, spiR uint64) []ikewire.Payload {
	src := natHash(spiI, spiR, s.local)
	if s.peer != nil && s.peer.Encap {
		// strongSwan's encap=yes: a source hash that cannot match makes
		// the peer see a NAT, so both sides use UDP encapsulation.
		src = s.random(sha1.Size)
	}
	return []ikewire.Payload{
		&ikewire.Notify{Type: ikewire.NotifyNATDetectionSourceIP, Data: src},
		&ikewire.Notify{Type: ikewire.NotifyNATDetectionDestinationIP, Data: natHash(spiI, spiR, s.remote)},
	}
}

// checkNATD evaluates the peer's NAT detection notifications in a message
// with header h received from s.remote at s.local.
func (s *session) checkNATD(h *ikewire.Header, pl []ikewire.Payload) {
	var srcs [][]byte
	var dst []byte
	for _, p := range pl {
		if n, ok := p.(*ikewire.Notify); ok {
			switch n.Type {
			case ikewire.NotifyNATDetectionSourceIP:
				srcs = append(srcs, n.Data)
			case ikewire.NotifyNATDetectionDestinationIP:
				dst = n.Data
			}
		}
	}
	if len(srcs) == 0 || dst == nil {
		return // the peer does not do NAT detection
	}
	want := natHash(h.SPIi, h.SPIr, s.remote)
	s.natRemote = true
	for _, src := range srcs {
		if bytes.Equal(src, want) {
			s.natRemote = false
		}
	}
	s.natLocal = !bytes.Equal(dst, natHash(h.SPIi, h.SPIr, s.local))
}

// payload helpers.

func findNotify(pl []ikewire.Payload, t ikewire.NotifyType) *ikewire.Notify {
	for _, p := range pl {
		if n, ok := p.(*ikewire.Notify); ok && n.Type == t {
			return n
		}
	}
	return nil
}

// errorNotify returns the first error notification (type below 16384).
func errorNotify(pl []ikewire.Payload) *ikewire.Notify {
	for _, p := range pl {
		if n, ok := p.(*ikewire.Notify); ok && n.Type.IsError() {
			return n
		}
	}
	return nil
}

func find[T ikewire.Payload](pl []ikewire.Payload) T {
	var zero T
	for _, p := range pl {
		if t, ok := p.(T); ok {
			return t
		}
	}
	return zero
}

func findAll[T ikewire.Payload](pl []ikewire.Payload) []T {
	var out []T
	for _, p := range pl {
		if t, ok := p.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func notifyErr(n *ikewire.Notify) error {
	return &NotifyError{Type: n.Type}
}

var errSyntax = &NotifyError{Type: ikewire.NotifyInvalidSyntax}
