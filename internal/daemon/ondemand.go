package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/internal/spd"
)

// onDemand is the per-peer state of the policy groups (policy.GroupRule),
// guarded by Daemon.mu:
//
//   - a private-or-clear peer whose first packet started IKE is pending for
//     the group's fallback_timeout; if it then has no SA, its traffic falls
//     back to the clear (a BYPASS exception, in the SPD and the host
//     firewall alike) for fallback_time, after which the next packet tries
//     IKE again (Libreswan's opportunistic encryption does the same);
//   - a clear-or-private peer that initiated IKE and holds an SA gets a
//     PROTECT exception while the SA lasts.
type onDemand struct {
	pending  map[netip.Addr]*peerTimer
	fallback map[netip.Addr]*peerTimer
	protect  map[netip.Addr]policy.Exception
	stopped  bool // Close ran: timers that fire change nothing
}

// peerTimer is a private-or-clear peer's negotiation (pending) or fallback
// to the clear.
type peerTimer struct {
	group policy.GroupRule
	since time.Time // the first packet, or the start of the fallback
	until time.Time // the end of the negotiation's time, or of the fallback
	timer *time.Timer
	// reason says why a fallback began: the peer's refusal, or no SA
	// within fallback_timeout.
	reason string
}

// exceptionsLocked returns the per-peer rules in force, in address order,
// leaving out (and forgetting) those whose peer snap puts in another group
// now.
func (d *Daemon) exceptionsLocked(snap *policy.Snapshot) []policy.Exception {
	var out []policy.Exception
	for peer, st := range d.od.fallback {
		if g, ok := snap.GroupOf(peer); !ok || g.Action != config.GroupPrivateOrClear {
			st.timer.Stop()
			delete(d.od.fallback, peer)
			continue
		}
		out = append(out, policy.Exception{Peer: peer, Action: spd.Bypass, Group: config.GroupPrivateOrClear})
	}
	for peer, e := range d.od.protect {
		g, ok := snap.GroupOf(peer)
		if !ok || g.Action != config.GroupClearOrPrivate || g.Ref != e.Ref {
			delete(d.od.protect, peer)
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b policy.Exception) int { return a.Peer.Compare(b.Peer) })
	return out
}

// refreshLocked applies the snapshot in force with the current per-peer
// exceptions.
func (d *Daemon) refreshLocked() {
	if d.snap == nil {
		return
	}
	snap, err := d.snap.WithExceptions(d.exceptionsLocked(d.snap))
	if err != nil {
		d.log.Error("per-peer policy not applied", "err", err)
		return
	}
	d.pol.Store(snap)
	for _, err := range d.enforceLocked(snap) {
		d.log.Warn("per-peer policy", "err", err)
	}
	d.snap = snap
}

// timeNegotiationLocked starts the fallback timer of a private-or-clear
// peer whose packet (ev) asked for an SA, unless one runs or the peer is
// in the clear already.
func (d *Daemon) timeNegotiationLocked(ev dataplane.Event) {
	g, ok := d.snap.GroupOfRule(ev.Rule)
	if !ok || g.Action != config.GroupPrivateOrClear {
		return
	}
	peer := ev.Packet.Dst.Unmap()
	if d.od.pending[peer] != nil || d.od.fallback[peer] != nil {
		return
	}
	now := d.opts.Now()
	st := &peerTimer{group: g, since: now, until: now.Add(g.FallbackTimeout)}
	if d.od.pending == nil {
		d.od.pending = map[netip.Addr]*peerTimer{}
	}
	d.od.pending[peer] = st
	st.timer = time.AfterFunc(g.FallbackTimeout, func() { d.negotiationTimeout(peer, st) })
}

// negotiationTimeout ends the negotiation time of a private-or-clear peer:
// without an SA, its traffic falls back to the clear for the group's
// fallback_time.
func (d *Daemon) negotiationTimeout(peer netip.Addr, st *peerTimer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.od.stopped || d.od.pending[peer] != st {
		return
	}
	delete(d.od.pending, peer)
	if d.hasSA(st.group.Ref, peer) {
		return
	}
	d.fallBackLocked(peer, st.group, fmt.Sprintf("no SA within fallback_timeout (%v)", st.group.FallbackTimeout))
}

// refused falls back to the clear at once for a private-or-clear peer
// being timed whose negotiation for connection conn the peer refused (ev,
// see refusal): waiting for fallback_timeout is for a peer that does not
// answer. Libreswan's opportunistic encryption installs its failure shunt
// on a refusal as on a timeout; an on-path attacker who could forge the
// refusal could as well drop the negotiation (docs/guide-network.md).
func (d *Daemon) refused(ev ike.Event) {
	reason, ok := refusal(ev.Err)
	peer := ev.Remote.Addr().Unmap()
	if !ok || !peer.IsValid() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.od.pending[peer]
	if d.od.stopped || st == nil || st.group.Conn != ev.Peer {
		return
	}
	st.timer.Stop()
	delete(d.od.pending, peer)
	if d.hasSA(st.group.Ref, peer) {
		return
	}
	d.fallBackLocked(peer, st.group, reason)
}

// refusal reports whether err, the cause of a failed negotiation, is a
// refusal: the peer answered with an error notification (RFC 7296, Section
// 3.10.1: NO_PROPOSAL_CHOSEN or an INVALID_KE_PAYLOAD whose group we do not
// offer in IKE_SA_INIT; AUTHENTICATION_FAILED, TS_UNACCEPTABLE or
// NO_PROPOSAL_CHOSEN in IKE_AUTH), or this host refused the peer (its
// authentication or its answer). Silence (ike.ErrPeerDead,
// ike.ErrHalfOpenTimeout) and the end of an SA are not refusals. The
// reason says who refused with what.
func refusal(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	var ne *ike.NotifyError
	if errors.As(err, &ne) || errors.Is(err, ike.ErrAuthFailed) {
		return err.Error(), true
	}
	return "", false
}

// fallBackLocked puts peer's traffic in the clear for group g's
// fallback_time, for reason (which the log and the fallback event give).
func (d *Daemon) fallBackLocked(peer netip.Addr, g policy.GroupRule, reason string) {
	now := d.opts.Now()
	fb := &peerTimer{group: g, since: now, until: now.Add(g.FallbackTime), reason: reason}
	if d.od.fallback == nil {
		d.od.fallback = map[netip.Addr]*peerTimer{}
	}
	d.od.fallback[peer] = fb
	fb.timer = time.AfterFunc(g.FallbackTime, func() { d.fallbackEnd(peer, fb) })
	d.refreshLocked()
	d.log.Info("traffic with the peer falls back to the clear", "peer", peer, "group", g.Rule,
		"reason", reason, "until", fb.until)
	d.events.publish(ctlapi.Event{Type: ctlapi.EventFallback, Time: now, Fields: map[string]string{
		"peer": peer.String(), "group": g.Action.String(), "until": fb.until.UTC().Format(time.RFC3339), "reason": reason}})
}

// fallbackEnd ends the fallback of a peer: its next packet tries IKE again.
func (d *Daemon) fallbackEnd(peer netip.Addr, fb *peerTimer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.od.stopped || d.od.fallback[peer] != fb {
		return
	}
	delete(d.od.fallback, peer)
	d.refreshLocked()
	d.log.Info("fallback to the clear ended: the next packet tries IKE", "peer", peer)
	d.events.publish(ctlapi.Event{Type: ctlapi.EventFallbackEnd, Time: d.opts.Now(), Fields: map[string]string{
		"peer": peer.String(), "group": fb.group.Action.String()}})
}

// hasSA reports whether bundle ref has an outbound SA for peer.
func (d *Daemon) hasSA(ref uint32, peer netip.Addr) bool {
	return d.dp.SAD().Load().Covers(ref, peer)
}

// childUp updates the groups' per-peer state for a CHILD SA that came up
// (inbound SPI spiIn): a private-or-clear peer is protected from now on,
// even if it answered after its fallback began; a clear-or-private peer
// that has an SA gets its traffic protected.
func (d *Daemon) childUp(spiIn uint32) {
	ch := d.installer.child(spiIn)
	if ch == nil {
		return
	}
	peer := ch.c.Remote.Addr().Unmap()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snap == nil {
		return
	}
	g, ok := d.snap.GroupOf(peer)
	if !ok || g.Ref != ch.c.Ref {
		return
	}
	switch g.Action {
	case config.GroupPrivateOrClear:
		if st := d.od.pending[peer]; st != nil {
			st.timer.Stop()
			delete(d.od.pending, peer)
		}
		if fb := d.od.fallback[peer]; fb != nil {
			fb.timer.Stop()
			delete(d.od.fallback, peer)
			d.refreshLocked()
		}
	case config.GroupClearOrPrivate:
		if _, ok := d.od.protect[peer]; ok {
			return
		}
		if d.od.protect == nil {
			d.od.protect = map[netip.Addr]policy.Exception{}
		}
		d.od.protect[peer] = policy.Exception{Peer: peer, Action: spd.Protect, Ref: g.Ref, Group: config.GroupClearOrPrivate}
		d.refreshLocked()
	}
}

// childDown drops the PROTECT exceptions of clear-or-private peers that no
// longer have an SA: their traffic goes in the clear again.
func (d *Daemon) childDown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := false
	for peer, e := range d.od.protect {
		if !d.hasSA(e.Ref, peer) {
			delete(d.od.protect, peer)
			changed = true
		}
	}
	if changed {
		d.refreshLocked()
	}
}

// stopOnDemand stops the timers.
func (d *Daemon) stopOnDemand() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.od.stopped = true
	for _, st := range d.od.pending {
		st.timer.Stop()
	}
	for _, st := range d.od.fallback {
		st.timer.Stop()
	}
}

// onDemandConns returns the connections for many peers: group templates
// and connections whose rule is per peer.
func onDemandConns(snap *policy.Snapshot) map[string]bool {
	out := map[string]bool{}
	for _, c := range snap.Children {
		if c.Group {
			out[c.Conn] = true
		}
	}
	for _, r := range snap.Rules {
		if r.PerPeer {
			if c, ok := snap.ChildByRef(r.Ref); ok {
				out[c.Conn] = true
			}
		}
	}
	return out
}

// Peers lists the peers of the connections for many hosts: their IKE SAs,
// and the private-or-clear peers in the clear or being timed.
func (d *Daemon) Peers(ctx context.Context) (ctlapi.Peers, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := ctlapi.Peers{Peers: []ctlapi.Peer{}}
	if d.snap == nil {
		return out, nil
	}
	group := func(a netip.Addr) string {
		if g, ok := d.snap.GroupOf(a); ok {
			return g.Action.String()
		}
		return ""
	}
	conns := onDemandConns(d.snap)
	seen := map[netip.Addr]bool{}
	if d.ike != nil {
		for _, s := range d.ike.SAs() {
			if !conns[s.Peer] {
				continue
			}
			a := s.Remote.Addr().Unmap()
			p := ctlapi.Peer{Addr: a, Connection: s.Peer, Group: group(a), State: ctlapi.PeerConnecting,
				Initiator: s.Initiator, Children: len(s.Children)}
			if s.State == ike.StateEstablished {
				p.State, p.Since, p.RemoteID = ctlapi.PeerEstablished, s.Established, s.RemoteID.String()
			}
			if seen[a] && p.State != ctlapi.PeerEstablished {
				continue // a second IKE SA (a collision, a rekey) of a listed peer
			}
			if seen[a] {
				out.Peers = slices.DeleteFunc(out.Peers, func(x ctlapi.Peer) bool { return x.Addr == a })
			}
			seen[a] = true
			out.Peers = append(out.Peers, p)
		}
	}
	for a, fb := range d.od.fallback {
		// The fallback is what decides for the peer's traffic, even
		// while an IKE SA with it still tries.
		out.Peers = slices.DeleteFunc(out.Peers, func(x ctlapi.Peer) bool { return x.Addr == a && x.State != ctlapi.PeerEstablished })
		if slices.ContainsFunc(out.Peers, func(x ctlapi.Peer) bool { return x.Addr == a }) {
			continue
		}
		out.Peers = append(out.Peers, ctlapi.Peer{Addr: a, Connection: fb.group.Conn, Group: fb.group.Action.String(),
			State: ctlapi.PeerClear, Since: fb.since, Until: fb.until})
	}
	slices.SortFunc(out.Peers, func(x, y ctlapi.Peer) int { return x.Addr.Compare(y.Addr) })
	return out, nil
}

// explainGroup fills in the group that decided for the peer of res's
// packet, and for private-or-clear its fallback state.
func (d *Daemon) explainGroup(res *ctlapi.ExplainResult, peer netip.Addr, rule string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snap == nil {
		return
	}
	peer = peer.Unmap()
	g, byGroup := d.snap.GroupOfRule(rule)
	if !byGroup {
		i := slices.IndexFunc(d.snap.Exceptions, func(e policy.Exception) bool { return e.Name() == rule })
		if i < 0 {
			return
		}
		var ok bool
		if g, ok = d.snap.GroupOf(peer); !ok {
			return
		}
	}
	res.Group, res.GroupPrefix = g.Action.String(), g.Prefix.String()
	if g.Action != config.GroupPrivateOrClear {
		return
	}
	res.Fallback = &ctlapi.Fallback{}
	if fb := d.od.fallback[peer]; fb != nil {
		res.Fallback.Active, res.Fallback.Until = true, fb.until
		res.Reason = fmt.Sprintf("no SA with %v (%s): in the clear until %s, then IKE is tried again (%s)",
			peer, fb.reason, fb.until.UTC().Format(time.RFC3339), res.Reason)
	} else if st := d.od.pending[peer]; st != nil {
		res.Fallback.Negotiating, res.Fallback.Until = true, st.until
	}
}
