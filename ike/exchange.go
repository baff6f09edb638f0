package ike

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
)

// request is our outstanding request.
type request struct {
	id       uint32
	exch     ikewire.ExchangeType
	t        task
	pkts     [][]byte
	tries    int // retransmissions so far
	deadline time.Time
}

// response is the cached response to the peer's last request (RFC 7296,
// Section 2.1: a retransmitted request gets the same response again).
type response struct {
	id   uint32
	exch ikewire.ExchangeType
	pkts [][]byte
	// req is the SHA-256 digest of the datagram of the request (its last
	// fragment when it was fragmented) and from the address it came from:
	// a retransmission is answered only when it comes from there (RFC
	// 7296, Section 2.1).
	req  [sha256.Size]byte
	from netip.AddrPort
}

// newResponse returns the response cache entry of pkts, the response to
// request datagram req. Every established IKE SA keeps one for its life
// (the last response, for the peer's retransmission of the last request,
// RFC 7296, Section 2.1), so it keeps the datagrams at their length, not
// in the larger buffers they were built in, and the request as a digest.
func newResponse(id uint32, exch ikewire.ExchangeType, pkts [][]byte, req []byte, from netip.AddrPort) *response {
	kept := make([][]byte, len(pkts))
	for i, p := range pkts {
		kept[i] = bytes.Clone(p)
	}
	return &response{id: id, exch: exch, pkts: kept, req: sha256.Sum256(req), from: from}
}

// timeout returns the wait after send n (0 for the first transmission):
// RetransmitTimeout * RetransmitBase^n.
func (s *session) timeout(n int) time.Duration {
	return time.Duration(float64(s.cfg.RetransmitTimeout) * math.Pow(s.cfg.RetransmitBase, float64(n)))
}

// startRequest builds and sends task t's request on x with x's next
// Message ID.
func (s *session) startRequest(x *ikeSA, t task) {
	pl, err := t.build(s, x)
	if err != nil {
		s.log.Warn("ike: cannot build request", "exchange", t.exchange(), "err", err)
		t.abort(s)
		switch t.(type) {
		case *authTask, *intermediateTask:
			s.die(err)
		}
		return
	}
	pkts, err := s.seal(x, t.exchange(), x.nextID, false, pl)
	if err != nil {
		s.log.Warn("ike: cannot encode request", "exchange", t.exchange(), "err", err)
		t.abort(s)
		switch t.(type) {
		case *initTask, *intermediateTask, *authTask:
			s.die(err)
		}
		return
	}
	if t.exchange() == ikewire.IKE_SA_INIT {
		s.initReq = pkts[0]
	}
	x.active = &request{id: x.nextID, exch: t.exchange(), t: t, pkts: pkts, deadline: s.now().Add(s.timeout(0))}
	s.transmit(pkts, s.local, s.remote)
}

// seal encodes a message of x: in the clear for IKE_SA_INIT, otherwise in
// an SK payload, fragmented when the peer supports it and it does not fit
// (RFC 7383, Section 2.5).
func (s *session) seal(x *ikeSA, exch ikewire.ExchangeType, id uint32, resp bool, pl []ikewire.Payload) ([][]byte, error) {
	h := ikewire.Header{SPIi: x.spiI, SPIr: x.spiR, Exchange: exch, MessageID: id}
	if x.initiator {
		h.Flags |= ikewire.FlagInitiator
	}
	if resp {
		h.Flags |= ikewire.FlagResponse
	}
	m := &ikewire.Message{Header: h}
	if exch == ikewire.IKE_SA_INIT {
		m.Payloads = pl
		b, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	sealer, err := x.sealer()
	if err != nil {
		return nil, err
	}
	if s.fragOK {
		max := s.cfg.FragmentSize
		if s.natt {
			max -= iana.NonESPMarkerLen
		}
		return ikewire.Fragment(m, pl, sealer, s.rand(), max)
	}
	b, err := ikewire.SealSK(m, pl, sealer, s.rand())
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

// transmit sends datagrams, with the non-ESP marker from the NAT-T port
// (RFC 3948, Section 2.2).
func (s *session) transmit(pkts [][]byte, from, to netip.AddrPort) {
	for _, p := range pkts {
		if from.Port() == s.cfg.NATTPort {
			p = append(make([]byte, iana.NonESPMarkerLen, iana.NonESPMarkerLen+len(p)), p...)
		}
		s.ops = append(s.ops, op{kind: opSend, pkt: p, from: from, to: to})
	}
}

// retransmit resends our outstanding request on x, or after the last try
// hands it to its task's giveUp (RFC 7296, Section 2.4).
func (s *session) retransmit(x *ikeSA) {
	a := x.active
	if a.tries >= s.cfg.RetransmitTries {
		s.log.Info("ike: peer not responding", "exchange", a.exch, "tries", a.tries+1)
		a.t.giveUp(s, x)
		return
	}
	a.tries++
	a.deadline = s.now().Add(s.timeout(a.tries))
	s.transmit(a.pkts, s.local, s.remote)
}

// open authenticates and decrypts the protected payloads of m, collecting
// fragments (RFC 7383, Section 2.6). done is false while fragments are
// missing.
func (s *session) open(x *ikeSA, m *ikewire.Message, req bool) (pl []ikewire.Payload, done bool, err error) {
	if len(m.Payloads) == 0 || x.keys == nil {
		return nil, false, &ikewire.ParseError{Reason: "no encrypted payload"}
	}
	switch m.Payloads[len(m.Payloads)-1].(type) {
	case *ikewire.SK:
		opener, err := x.opener()
		if err != nil {
			return nil, false, err
		}
		pl, err := ikewire.OpenSK(m, opener)
		return pl, err == nil, err
	case *ikewire.SKF:
		opener, err := x.opener()
		if err != nil {
			return nil, false, err
		}
		r := &x.reasmResp
		if req {
			r = &x.reasmReq
		}
		return r.Add(m, opener)
	}
	// RFC 7296, Section 3.14: everything after IKE_SA_INIT is protected.
	return nil, false, &ikewire.ParseError{Reason: "unprotected message after IKE_SA_INIT"}
}

// recvRequest runs the responder side of one exchange.
func (s *session) recvRequest(x *ikeSA, m *ikewire.Message, from, to netip.AddrPort) {
	if c := x.cached; c != nil && m.MessageID == c.id && x.peerID == c.id+1 {
		if s.retransmitted(x, c, m, from) {
			s.transmit(c.pkts, to, from)
		} else {
			s.m.refusedResends.Add(1)
		}
		return
	}
	if m.MessageID != x.peerID {
		return // RFC 7296, Section 2.3: outside the window
	}
	if m.Exchange == ikewire.IKE_SA_INIT {
		if s.state == StateConnecting && !x.initiator && x.peerID == 0 && x.keys == nil {
			s.respondInit(x, m, from, to)
		}
		return
	}
	pl, done, err := s.open(x, m, true)
	if err != nil {
		var pe *ikewire.ParseError
		if errors.As(err, &pe) && pe.Notify != 0 {
			// The message passed the integrity check but is malformed:
			// answer with the notification (RFC 7296, Section 2.21.2).
			s.reply(x, m, from, to, []ikewire.Payload{&ikewire.Notify{Type: pe.Notify, Data: pe.Data}})
			if s.state == StateConnecting {
				s.die(&NotifyError{Type: pe.Notify, Local: true})
			}
			return
		}
		s.log.Debug("ike: dropping request", "err", err)
		return
	}
	if !done {
		return
	}
	s.lastRecv = s.now()
	s.updateAddrs(from, to)
	pending := s.pendingOutbound()
	resp, after := s.respond(x, m, pl, from, to)
	s.reply(x, m, from, to, resp)
	// The peer's new request shows that it has our answers to its
	// earlier ones: the rekeyed SAs they created may send now.
	s.confirmOutbound(pending)
	if after != nil {
		after()
	}
}

// retransmitted reports whether m, which carries the Message ID of the
// peer's last request, is a retransmission of that request that deserves
// the cached response c again (RFC 7296, Section 2.1). A message that
// merely quotes the SPIs and the Message ID gets nothing, so the cache
// cannot amplify traffic toward a forged source: the retransmission must
// come from the address and port of the original request, which must be
// the IKE SA's peer, and be that request byte for byte or, past
// IKE_SA_INIT, pass the integrity check of its SK payload. RFC 7383,
// Section 2.6.1: of a fragmented request only the first fragment
// triggers the resend.
func (s *session) retransmitted(x *ikeSA, c *response, m *ikewire.Message, from netip.AddrPort) bool {
	if m.Exchange != c.exch || from != c.from || from != s.remote {
		return false
	}
	if len(m.Payloads) > 0 {
		if f, ok := m.Payloads[len(m.Payloads)-1].(*ikewire.SKF); ok && f.Number != 1 {
			return false
		}
	}
	if sha256.Sum256(m.Raw) == c.req {
		return true
	}
	if m.Exchange == ikewire.IKE_SA_INIT || len(m.Payloads) == 0 || x.keys == nil {
		// IKE_SA_INIT has no integrity check: only the same bytes count
		// (another IKE_SA_INIT with the same SPIi is not ours).
		return false
	}
	opener, err := x.opener()
	if err != nil {
		return false
	}
	switch m.Payloads[len(m.Payloads)-1].(type) {
	case *ikewire.SK:
		_, err := ikewire.OpenSK(m, opener)
		return err == nil
	case *ikewire.SKF:
		// A scratch Reassembler checks the fragment's ICV without
		// touching the one collecting the peer's next request.
		var r ikewire.Reassembler
		_, _, err := r.Add(m, opener)
		return err == nil
	}
	return false
}

// reply sends and caches the response to request m.
func (s *session) reply(x *ikeSA, m *ikewire.Message, from, to netip.AddrPort, pl []ikewire.Payload) {
	pkts, err := s.seal(x, m.Exchange, m.MessageID, true, pl)
	if err != nil {
		s.log.Warn("ike: cannot encode response", "exchange", m.Exchange, "err", err)
		return
	}
	x.cached = newResponse(m.MessageID, m.Exchange, pkts, m.Raw, from)
	x.peerID = m.MessageID + 1
	s.transmit(pkts, to, from)
}

// recvResponse completes our outstanding request.
func (s *session) recvResponse(x *ikeSA, m *ikewire.Message, from, to netip.AddrPort) {
	a := x.active
	if a == nil || m.MessageID != a.id || m.Exchange != a.exch {
		return
	}
	pl := m.Payloads
	if m.Exchange == ikewire.IKE_SA_INIT && s.local.Addr().IsUnspecified() {
		s.local = to // learn the source address the Transport chose
	}
	if m.Exchange != ikewire.IKE_SA_INIT {
		var done bool
		var err error
		pl, done, err = s.open(x, m, false)
		if err != nil {
			var pe *ikewire.ParseError
			if errors.As(err, &pe) && pe.Notify != 0 && x == s.sa {
				// A malformed response that passed the integrity
				// check ends the IKE SA (RFC 7296, Section 2.21.2).
				s.die(&NotifyError{Type: pe.Notify, Local: true})
			}
			return
		}
		if !done {
			return
		}
		s.lastRecv = s.now()
		s.updateAddrs(from, to)
	}
	x.active = nil
	x.nextID = a.id + 1
	if a.t.process(s, x, m, pl) && s.state != StateDead {
		x.nextID = a.id
		s.startRequest(x, a.t)
	}
}
