package daemon

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/metrics"
)

// Metrics implements metrics.Source. It reuses what the control API reports
// (SAs, Policies, the data plane's Stats) and adds the handshake and
// acquire counters only the daemon can see.
//
// What the handshake counters count, and what they cannot see:
//   - started: IKE_SA_INIT requests with an initiator SPI not seen among the
//     last recentSPIs ones, sent by this host (it initiates) or received by
//     it (it responds), on port 500 or 4500. Retransmissions and the retry
//     with a COOKIE (RFC 7296, Section 2.6) keep SPIi and count once; a
//     flood of more than recentSPIs distinct SPIs may count a
//     retransmission again. Requests the engine drops unanswered (over
//     MaxHalfOpen) still count: the peer did start them.
//   - completed: the engine's EventIKEUp (an IKE SA was authenticated).
//   - failed: EventAuthFailed, or EventIKEDown with an error for an IKE SA
//     that never sent EventIKEUp (half-open timeout, retransmissions
//     exhausted, refused with a notify). An attempt abandoned without an
//     error (terminated while connecting) is neither completed nor failed.
//
// Events the engine drops because the daemon is slow (ike_events_lost)
// make completed and failed undercount.
func (d *Daemon) Metrics() metrics.Snapshot {
	ctx := context.Background()
	var s metrics.Snapshot
	sas, _ := d.SAs(ctx)
	for _, c := range sas.ChildSAs {
		s.ChildSAs = append(s.ChildSAs, metrics.ChildSA{
			Name: c.Name, Protocol: c.Protocol, Mode: c.Mode,
			SPIIn: c.SPIIn.String(), SPIOut: c.SPIOut.String(),
			BytesIn: c.BytesIn, BytesOut: c.BytesOut, PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut,
			ReplayDrops: c.ReplayDrops, ICVFailures: c.ICVFailures,
		})
	}
	if d.ike != nil {
		s.IKESAs = make(map[string]int)
		for _, x := range sas.IKESAs {
			s.IKESAs[strings.ToLower(x.State)]++
		}
		s.IKEEventsLost = d.ike.DroppedEvents()
		s.Panics.IKE = d.ike.Panics()
		s.IKERefusedRetransmits = d.ike.RefusedRetransmits()
	}
	s.Panics.Dataplane = d.dp.Panics()
	pol, _ := d.Policies(ctx)
	for _, p := range pol.Policies {
		s.Rules = append(s.Rules, metrics.Rule{Index: p.Index, Name: p.Name, Action: p.Action, Hits: p.Hits})
	}
	st := d.dp.Stats()
	s.Drops = st.Drops
	s.Dataplane = metrics.Dataplane{
		TUNRead: st.TUNRead, TUNWritten: st.TUNWritten, Sealed: st.Sealed, Opened: st.Opened, Bypassed: st.Bypassed,
		IKEMessages: st.IKE, Keepalives: st.Keepalives,
		SendErrors: st.SendErrors, ReadErrors: st.ReadErrors, WriteErrors: st.WriteErrors, EventsLost: st.EventsLost,
	}
	s.Acquires = d.stats.acquires.Load()
	s.Handshakes = metrics.Handshakes{
		Started:   d.stats.started.Load(),
		Completed: d.stats.completed.Load(),
		Failed:    d.stats.failed.Load(),
	}
	s.Rekeys = metrics.Rekeys{IKE: d.stats.ikeRekeys.Load(), Child: d.stats.childRekeys.Load()}
	return s
}

// recentSPIs bounds the memory of initiator SPIs that dedupes
// retransmitted IKE_SA_INIT requests.
const recentSPIs = 1024

// stats are the counters the daemon keeps for Metrics. The counters are
// safe for concurrent use; up and ended belong to the watchIKE goroutine.
type stats struct {
	acquires, started, completed, failed atomic.Uint64
	ikeRekeys, childRekeys               atomic.Uint64

	mu      sync.Mutex
	seen    map[uint64]struct{} // SPIi of recent IKE_SA_INIT requests
	ring    [recentSPIs]uint64  // the same, oldest first from next
	next    int
	up      map[uint64]struct{} // SPIi of IKE SAs that were established
	ended   map[uint64]struct{} // SPIi of IKE SAs already counted as failed
	pruneAt int                 // size of up plus ended that triggers a prune
}

func newStats() *stats {
	return &stats{seen: make(map[uint64]struct{}), up: make(map[uint64]struct{}), ended: make(map[uint64]struct{}), pruneAt: recentSPIs}
}

// sawIKE counts pkt (an IKE message without the non-ESP marker) as a
// started handshake if it is an IKE_SA_INIT request with a new SPIi.
func (s *stats) sawIKE(pkt []byte) {
	spi, ok := saInitRequest(pkt)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.seen[spi]; dup {
		return
	}
	if old := s.ring[s.next]; old != 0 {
		delete(s.seen, old)
	}
	s.ring[s.next] = spi
	s.next = (s.next + 1) % recentSPIs
	s.seen[spi] = struct{}{}
	s.started.Add(1)
}

// saInitRequest returns the SPIi of an IKE_SA_INIT request: the header of
// RFC 7296, Section 3.1, with major version 2, exchange type IKE_SA_INIT
// (34), the Response flag clear, message ID 0 and SPIr zero ("MUST be zero
// in the first message of an IKE initial exchange").
func saInitRequest(b []byte) (uint64, bool) {
	const hdrLen, exchSAInit, flagResponse = 28, 34, 0x20
	if len(b) < hdrLen || b[17]>>4 != 2 || b[18] != exchSAInit || b[19]&flagResponse != 0 ||
		binary.BigEndian.Uint32(b[20:24]) != 0 || binary.BigEndian.Uint64(b[8:16]) != 0 {
		return 0, false
	}
	spi := binary.BigEndian.Uint64(b[0:8])
	return spi, spi != 0
}

// countIKEEvent updates the handshake and rekey counters; it is
// called by watchIKE for every engine event, in order.
func (d *Daemon) countIKEEvent(ev ike.Event) {
	s := d.stats
	switch ev.Kind {
	case ike.EventIKEUp:
		s.completed.Add(1)
		s.up[ev.SPIi] = struct{}{}
	case ike.EventChildRekeyed:
		s.childRekeys.Add(1)
		return
	case ike.EventIKERekeyed:
		s.ikeRekeys.Add(1)
		// The event carries the new IKE SA's SPIs (RFC 7296, Section
		// 2.18), which a later EventIKEDown will name.
		s.up[ev.SPIi] = struct{}{}
	case ike.EventAuthFailed:
		if _, up := s.up[ev.SPIi]; !up {
			s.failed.Add(1)
			s.ended[ev.SPIi] = struct{}{}
		}
	case ike.EventIKEDown:
		_, up := s.up[ev.SPIi]
		_, counted := s.ended[ev.SPIi]
		delete(s.up, ev.SPIi)
		delete(s.ended, ev.SPIi)
		if !up && !counted && ev.Err != nil {
			s.failed.Add(1)
		}
	default:
		return
	}
	// The SPIs of IKE SAs replaced by a rekey never see EventIKEDown, nor
	// do those whose events were lost: forget the SPIs of IKE SAs that no
	// longer exist once the sets grow (past twice what the last prune
	// kept, so that the cost stays proportional to the events).
	if len(s.up)+len(s.ended) > s.pruneAt {
		live := make(map[uint64]bool)
		for _, x := range d.ike.SAs() {
			live[x.SPIi] = true
		}
		for spi := range s.up {
			if !live[spi] && spi != ev.SPIi {
				delete(s.up, spi)
			}
		}
		for spi := range s.ended {
			if !live[spi] && spi != ev.SPIi {
				delete(s.ended, spi)
			}
		}
		s.pruneAt = max(recentSPIs, 2*(len(s.up)+len(s.ended)))
	}
}

// countingTransport counts the IKE_SA_INIT requests the engine sends.
type countingTransport struct {
	ike.Transport
	s    *stats
	natt uint16 // the NAT-T port (Daemon.nattPort)
}

func (t countingTransport) Send(pkt []byte, from, to netip.AddrPort) error {
	if from.Port() == t.natt && len(pkt) >= 4 {
		t.s.sawIKE(pkt[4:]) // the non-ESP marker (RFC 3948, Section 2.2)
	} else {
		t.s.sawIKE(pkt)
	}
	return t.Transport.Send(pkt, from, to)
}

// countingSocket counts the IKE_SA_INIT requests received on port 500.
type countingSocket struct {
	IKESocket
	s *stats
}

func (c countingSocket) ReadFrom(b []byte) (n int, from, to netip.AddrPort, err error) {
	n, from, to, err = c.IKESocket.ReadFrom(b)
	if err == nil {
		c.s.sawIKE(b[:n])
	}
	return n, from, to, err
}

// natIKE is the data plane's hook for IKE on port 4500: it counts, then
// hands the message to handleNATT.
func (d *Daemon) natIKE(pkt []byte, from netip.AddrPort) {
	d.stats.sawIKE(pkt)
	d.handleNATT(pkt, from)
}
