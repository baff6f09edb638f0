package ike

// The task manager: every exchange of an IKE SA, in both roles, and the
// rules for the ones that cross.
//
// Initiator tasks. The work this side starts is a queue of tasks, run one
// at a time per IKE SA (window size 1, RFC 7296, Section 2.3). The exchange
// runner (exchange.go) owns the Message IDs, retransmits with exponential
// backoff and hands the decrypted response to the task (process). Each
// task also says what the end of its exchange without an answer means:
// giveUp, after Config.RetransmitTries (Section 2.4: the peer is dead,
// or only the old or redundant IKE SA of a rekey is, which is forgotten
// quietly: peerGone), and moved, when the old IKE SA it runs on is retired
// while the session lives on (a CHILD SA rekey or Delete starts again on
// the new IKE SA, Section 2.8; others end):
//
//	task             exchange          file             states
//	initTask         IKE_SA_INIT       init.go          sent -> retry (COOKIE, INVALID_KE_PAYLOAD; Sections 2.6, 1.2) -> done
//	intermediateTask IKE_INTERMEDIATE  intermediate.go  one per additional key exchange (RFC 9370, Section 2.2.2)
//	authTask         IKE_AUTH          auth.go          with the first CHILD SA (Section 1.2)
//	childTask        CREATE_CHILD_SA   child.go         create or rekey a CHILD SA (Sections 1.3.1, 1.3.3); moved: again on the new IKE SA
//	ikeRekeyTask     CREATE_CHILD_SA   rekey_ike.go     rekey the IKE SA (Section 1.3.2)
//	followupTask     IKE_FOLLOWUP_KE   followup.go      the additional key exchanges of the two above (RFC 9370, Section 2.2.4); lost: stop; moved: the CHILD SA again
//	deleteChildTask  INFORMATIONAL     child.go         Delete of a CHILD SA (Section 1.4.1); moved: again on the new IKE SA
//	deleteIKETask    INFORMATIONAL     info.go          Delete of the IKE SA, of the old one of a rekey, or of a redundant one
//	dpdTask          INFORMATIONAL     info.go          liveness check (Section 2.4)
//
// Responders. recvRequest (exchange.go) takes the peer's requests, one at
// a time, answers a retransmission from the response cache (Section 2.1)
// and hands the others to respond, below, which picks the responder of the
// exchange type. The responders of single-message exchanges are plain
// functions: respondInit (called before decryption), respondIntermediate
// and respondAuth keep their state in the session's handshake, dropped
// after IKE_AUTH; respondCreateChild creates or rekeys a CHILD SA
// (acceptChild) or rekeys the IKE SA (respondIKERekey); respondInformational
// takes Deletes. An exchange that spans several requests, a CREATE_CHILD_SA
// continued by IKE_FOLLOWUP_KE (RFC 9370, Section 2.2.4), is a responder
// task with its own state, created by the CREATE_CHILD_SA's responder and
// held in exchanges.responder, one at a time, which respond hands the
// IKE_FOLLOWUP_KE requests on its IKE SA until its last key exchange
// (process says done), its deadline (giveUp, followupTimeout), or the end
// of the IKE SA it runs on (drop):
//
//	responder          created by          file         completes
//	childResponder     acceptChild         followup.go  installs the CHILD SA (finishChild)
//	ikeRekeyResponder  respondIKERekey     followup.go  moves to the new IKE SA or, while our rekey is in flight, waits in peerIKE for the nonces to decide
//
// The life of a CHILD SA: childInstalled -> childRekeying (our rekey in
// flight, or the peer's waiting for IKE_FOLLOWUP_KE) -> childReplaced
// (rekeyed; waits for the peer's Delete, or deleteAt) or childDeleting (our
// Delete in flight). The IKE SAs of an IKE SA rekey: sa, the current one;
// old, the replaced one until its Delete (our Delete waits while a CHILD
// SA's IKE_FOLLOWUP_KE exchanges run on it: ikeSA.deleteOld); peerIKE,
// the peer's completed rekey while ours is in flight; redundant, the new
// IKE SA of the rekey that lost, until its Delete.
//
// Collisions: the active initiator task against the peer's request.
//
//   - CHILD SA rekey against CHILD SA rekey (RFC 7296, Section 2.8.1):
//     both are answered; once a side knows both exchanges, the one holding
//     the lowest of the four nonces is redundant: its initiator deletes the
//     SA it created, the other initiator deletes the old SA (ownRekeyDone,
//     peerRekeyDone, lowestNonce).
//   - CHILD SA rekey against its Delete (Section 2.25.1): a rekey of an SA
//     being deleted gets TEMPORARY_FAILURE, of one already gone
//     CHILD_SA_NOT_FOUND; the Delete stands. Delete against Delete: each
//     answers without the SPIs it is deleting itself.
//   - IKE SA rekey against IKE SA rekey (Sections 2.8.2, 2.25.2): both are
//     answered; the lowest nonce loses, the loser's initiator deletes the
//     new IKE SA it created, the winner's deletes the old one. With
//     IKE_FOLLOWUP_KE (RFC 9370, Section 2.2.4) the nonces of the two
//     CREATE_CHILD_SA exchanges decide as soon as a side knows all four,
//     before further key exchanges: the losing initiator stops (and
//     deletes the new IKE SA only if the peer's answer already completed
//     it), the winner forgets its responder state for the loser. When only
//     one of the two uses IKE_FOLLOWUP_KE, the side whose rekey is done
//     first decides against the peer's that waits (finishIKERekey).
//   - CHILD SA rekey against IKE SA rekey (Sections 2.8, 2.25.2): the CHILD
//     SA rekey is answered on the IKE SA it came on, even the old one, with
//     that SA's SK_d; the CHILD SAs then move to the new IKE SA. With
//     IKE_FOLLOWUP_KE, its exchanges run on that IKE SA, whose Delete waits
//     for them; one that arrives on the old IKE SA after our Delete of it
//     is refused with TEMPORARY_FAILURE and asked again at once on the new
//     one, as is one whose IKE SA the peer deletes meanwhile
//     (restartChild).
//   - A CREATE_CHILD_SA request while the responder waits for
//     IKE_FOLLOWUP_KE, or on an IKE SA being deleted, gets
//     TEMPORARY_FAILURE (Section 2.25); the initiator retries after a
//     random delay, or at once on the new IKE SA.

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// task is one exchange this side initiates, written straight-line: build
// the request, process the response.
type task interface {
	exchange() ikewire.ExchangeType
	// build returns the request's payloads (inside the SK payload except
	// in IKE_SA_INIT). An error abandons the task.
	build(s *session, x *ikeSA) ([]ikewire.Payload, error)
	// process handles the response's payloads (decrypted). It returns
	// true to send the request again with the same Message ID (the
	// IKE_SA_INIT retries of RFC 7296, Sections 1.2 and 2.6).
	process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) (retry bool)
	// abort tells the task it will never complete (the IKE SA died).
	abort(s *session)
	// giveUp is called when the peer answered none of the
	// Config.RetransmitTries retransmissions of the request on x (RFC
	// 7296, Section 2.4); x.active is still the task's request. The
	// task decides what that means: the peer is dead (peerGone), or
	// only the IKE SA x of a rekey is (the old or redundant one), and
	// ends the request (x.active).
	giveUp(s *session, x *ikeSA)
	// moved is called when x, the IKE SA the task's request is
	// outstanding on, is retired while the session lives on (the old IKE
	// SA of a rekey, RFC 7296, Section 2.8): the task starts again on
	// the new IKE SA or aborts.
	moved(s *session)
}

// peerGone is what giving up on a request on x means for most tasks:
// the old IKE SA of a rekey is forgotten quietly (the tasks in flight on
// it move to the new one, retireOld), the redundant one of a collision
// too, and otherwise the peer is dead (RFC 7296, Section 2.4).
func (s *session) peerGone(x *ikeSA) {
	switch x {
	case s.old:
		s.retireOld()
	case s.redundant:
		s.forgetRedundant()
	default:
		s.die(ErrPeerDead)
	}
}

// responder is the responder's side of an exchange that spans several
// requests, with its own state: respond creates it for the first request,
// and the task manager (exchanges.responder) holds it until its last
// request, its deadline, or the end of the IKE SA it runs on. The
// responders of single-message exchanges are plain functions (respond).
type responder interface {
	// on returns the IKE SA whose requests continue the exchange.
	on() *ikeSA
	// process answers the peer's next request of the exchange, on x,
	// with the response's payloads and what to do once it is sent; done
	// says that the exchange is over (completed, or failed and dropped).
	process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) (resp []ikewire.Payload, after func(), done bool)
	// deadline is when the responder stops waiting for the next request;
	// giveUp is called then, after the manager forgot it.
	deadline() time.Time
	giveUp(s *session)
	// drop releases what the responder holds: the exchange will not
	// complete (the IKE SA ends, or a collision decided against it).
	drop(s *session)
}

// exchanges is the task manager's state of a session, apart from the
// Message IDs, outstanding request and response cache of each IKE SA
// (ikeSA): what waits to run, what a responder exchange in progress
// holds, and the IKE SAs an IKE SA rekey brings and takes away. All of it
// is transient: a session with nothing in progress has it empty.
type exchanges struct {
	tasks   []task
	retryAt time.Time // the task queue waits until then (TEMPORARY_FAILURE)

	// responder is the responder exchange in progress that spans several
	// requests: an IKE SA rekey or CHILD SA waiting for IKE_FOLLOWUP_KE
	// (RFC 9370, Section 2.2.4); one at a time.
	responder responder

	old      *ikeSA    // the IKE SA being replaced, until its Delete completes
	oldUntil time.Time // when to forget old without a Delete
	// A simultaneous IKE SA rekey (RFC 7296, Section 2.8.2, rekey_ike.go):
	// peerIKE is the responder task of the peer's rekey that we answered
	// while ours was in flight, with its new IKE SA (nx), until the nonces
	// decide; redundant the new IKE SA of the rekey that lost, until its
	// Delete (or redundantUntil).
	peerIKE        *ikeRekeyResponder
	redundant      *ikeSA
	redundantUntil time.Time

	pendingChildren map[string]bool // child names being created
}

// queue appends a task; kick starts it when the runner is idle.
func (s *session) queue(t task) { s.tasks = append(s.tasks, t) }

// queueFront puts a task before the others (the delete after a rekey, a
// retry).
func (s *session) queueFront(t task) { s.tasks = append([]task{t}, s.tasks...) }

// kick sends our deferred Delete of the old IKE SA once nothing runs on
// it, and starts the next task if no request is outstanding (window size
// 1, RFC 7296, Section 2.3).
func (s *session) kick() {
	if o := s.old; o != nil && o.deleteOld && o.active == nil && (s.responder == nil || s.responder.on() != o) && s.state != StateDead {
		o.deleteOld = false
		s.startRequest(o, &deleteIKETask{old: true})
	}
	if s.state == StateDead || s.sa == nil || s.sa.active != nil || len(s.tasks) == 0 {
		return
	}
	if s.retryAt.After(s.now()) {
		return
	}
	t := s.tasks[0]
	if s.state == StateConnecting {
		// Only the handshake runs before the IKE SA is established.
		switch t.(type) {
		case *initTask, *intermediateTask, *authTask:
		default:
			return
		}
	}
	s.tasks = s.tasks[1:]
	s.startRequest(s.sa, t)
}

// respond is the responder's half of every exchange: it hands the peer's
// request (decrypted) to the responder of its exchange type, in the IKE
// SA states where that exchange may come, and returns the response's
// payloads and what to do once the response is sent. Anything else gets
// INVALID_SYNTAX (RFC 7296, Section 2.21.2).
func (s *session) respond(x *ikeSA, m *ikewire.Message, pl []ikewire.Payload, from, to netip.AddrPort) ([]ikewire.Payload, func()) {
	invalid := []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyInvalidSyntax}}
	switch m.Exchange {
	case ikewire.IKE_AUTH:
		if s.state != StateConnecting || x.initiator || x != s.sa {
			return invalid, nil
		}
		if s.addKENext < len(s.addKEs()) {
			// RFC 9370, Section 2.2.2: every additional key exchange
			// comes before IKE_AUTH.
			err := fmt.Errorf("ike: IKE_AUTH before the additional key exchanges completed: %w", errSyntax)
			return invalid, func() { s.die(err) }
		}
		s.authMID = m.MessageID
		return s.respondAuth(x, pl, from, to)
	case ikewire.IKE_FOLLOWUP_KE:
		if s.state != StateEstablished {
			return invalid, nil
		}
		r := s.responder
		if r == nil || x != r.on() {
			// RFC 9370, Section 2.2.4: no exchange waits for it.
			return []ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyStateNotFound}}, nil
		}
		// The responder is let go while it runs, as what it completes
		// (a CHILD SA, an IKE SA rekey) no longer waits; it is held again
		// while more requests are to come.
		s.responder = nil
		resp, after, done := r.process(s, x, m, pl)
		if !done {
			s.responder = r
		}
		return resp, after
	case ikewire.IKE_INTERMEDIATE:
		if s.state != StateConnecting {
			return invalid, nil
		}
		return s.respondIntermediate(x, m, pl)
	case ikewire.CREATE_CHILD_SA:
		if s.state != StateEstablished && s.state != StateDeleting {
			return invalid, nil
		}
		return s.respondCreateChild(x, pl)
	case ikewire.INFORMATIONAL:
		return s.respondInformational(x, pl)
	default:
		s.log.Info("ike: exchange type not implemented", "exchange", m.Exchange)
		return invalid, nil
	}
}

// dropResponder forgets the responder exchange in progress, if any, and
// releases what it holds.
func (s *session) dropResponder() {
	if r := s.responder; r != nil {
		s.responder = nil
		r.drop(s)
	}
}

// Collision detection: what our active task on the IKE SA is doing when a
// request of the peer arrives.

// rekeying reports whether we are rekeying the IKE SA ourselves.
func (s *session) rekeying() bool {
	if a := s.sa.active; a != nil {
		switch t := a.t.(type) {
		case *ikeRekeyTask:
			return true
		case *followupTask:
			return !t.lost && (t.f == nil || t.f.child == nil)
		}
	}
	return false
}

// ownFollowup returns our IKE SA rekey's IKE_FOLLOWUP_KE exchange in
// flight, if any: its CREATE_CHILD_SA is done, so its nonces are known.
func (s *session) ownFollowup() *followupTask {
	if a := s.sa.active; a != nil {
		if t, ok := a.t.(*followupTask); ok && !t.lost && t.f != nil && t.f.child == nil {
			return t
		}
	}
	return nil
}

// peerRekeyNonces returns the nonces of the peer's IKE SA rekey that we
// answered while ours is in progress: complete (peerIKE) or waiting for
// its IKE_FOLLOWUP_KE exchanges (ikeRekeyResponder).
func (s *session) peerRekeyNonces() ([2][]byte, bool) {
	if c := s.peerIKE; c != nil {
		return c.nonces(), true
	}
	if r, ok := s.responder.(*ikeRekeyResponder); ok {
		return [2][]byte{r.f.ni, r.f.nr}, true
	}
	return [2][]byte{}, false
}

// lowestNonce reports whether the exchange with nonces a holds the lowest
// of the four nonces of a and b, which makes its SA the redundant one
// (RFC 7296, Section 2.8.1). Nonces compare as unsigned big-endian
// numbers of their common length, as strongSwan compares them (memcmp).
func lowestNonce(a, b [2][]byte) bool {
	low := func(x, y []byte) []byte {
		if cmpNonce(x, y) <= 0 {
			return x
		}
		return y
	}
	return cmpNonce(low(a[0], a[1]), low(b[0], b[1])) < 0
}

func cmpNonce(x, y []byte) int {
	n := min(len(x), len(y))
	if c := bytes.Compare(x[:n], y[:n]); c != 0 {
		return c
	}
	return len(x) - len(y)
}
