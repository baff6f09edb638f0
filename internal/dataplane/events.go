package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventAcquire asks for an SA: a packet matched a PROTECT rule whose
	// bundle has no outbound SA (RFC 4301, Section 4.4.1: the SPD entry
	// triggers IKE). It is sent once per policy per
	// Config.AcquireInterval, not once per packet.
	EventAcquire EventKind = iota + 1
	// EventExpire reports that an SA crossed a soft (rekey) or hard
	// (delete) limit; SA says which.
	EventExpire
)

func (k EventKind) String() string {
	switch k {
	case EventAcquire:
		return "acquire"
	case EventExpire:
		return "expire"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is sent on Dataplane.Events.
type Event struct {
	Kind EventKind
	// Ref and Rule name the PROTECT rule of an Acquire (spd.Rule.Ref and
	// spd.Rule.Name).
	Ref  uint32
	Rule string
	// Packet describes the packet that triggered an Acquire: IKE proposes
	// its addresses, protocol and ports as the first traffic selectors
	// (RFC 7296, Section 2.9).
	Packet Trigger
	// SA is the limit event of an Expire.
	SA sa.Event
}

// Trigger is the selector-relevant part of the packet behind an Acquire.
type Trigger struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	HasPorts         bool
}

func (e Event) String() string {
	if e.Kind == EventExpire {
		return "expire: " + e.SA.String()
	}
	return fmt.Sprintf("acquire %q (ref %d): %v -> %v proto %d", e.Rule, e.Ref, e.Packet.Src, e.Packet.Dst, e.Packet.Proto)
}

// stage holds the packets of one PROTECT policy that wait for an SA. Its
// buffers are allocated once per policy and reused.
type stage struct {
	rule     string
	pkts     [][]byte // copies, len == packet length
	acquired time.Time
}

// stageKey names a stage: the bundle and, for a rule whose bundle holds
// one SA per peer (spd.Rule.PerPeer), the destination, so that each peer
// gets its own Acquire; else the zero Addr.
type stageKey struct {
	ref uint32
	dst netip.Addr
}

// stagePacket keeps a copy of pkt for the bundle of rule and sends an
// Acquire if none was sent for it (for its destination, with a per-peer
// rule) within AcquireInterval. It reports whether the packet was kept; if
// not, the caller counts sa.DropNoSA.
func (d *Dataplane) stagePacket(rule *spd.Rule, pkt []byte, info *packet.Info) bool {
	now := d.now()
	key := stageKey{ref: rule.Ref}
	if rule.PerPeer {
		key.dst = info.Dst
	}
	d.stageMu.Lock()
	st := d.staged[key]
	if st == nil {
		st = &stage{rule: rule.Name}
		d.staged[key] = st
	}
	acquire := st.acquired.IsZero() || now.Sub(st.acquired) >= d.cfg.AcquireInterval
	if acquire {
		st.acquired = now
	}
	kept := false
	if len(st.pkts) < d.cfg.StageLen {
		st.pkts = append(st.pkts, append([]byte(nil), pkt...))
		kept = true
	}
	d.stageMu.Unlock()
	if acquire {
		d.emit(Event{Kind: EventAcquire, Ref: rule.Ref, Rule: rule.Name, Packet: Trigger{
			Src: info.Src, Dst: info.Dst, Proto: info.Proto,
			SrcPort: info.SrcPort, DstPort: info.DstPort, HasPorts: info.HasPorts,
		}})
	}
	return kept
}

// expireStaged forgets policies that asked for an SA long ago and got none,
// so that a later packet triggers a new Acquire and stale packets are not
// sent minutes late.
func (d *Dataplane) expireStaged(now time.Time) {
	d.stageMu.Lock()
	defer d.stageMu.Unlock()
	for key, st := range d.staged {
		if now.Sub(st.acquired) >= 2*d.cfg.AcquireInterval {
			for range st.pkts {
				d.drops.Add(sa.DropNoSA)
			}
			delete(d.staged, key)
		}
	}
}

// flushStaged sends the packets staged for the bundle of o (those for its
// peer, when they were staged per destination) through the outbound
// pipeline, now that it has an SA.
func (d *Dataplane) flushStaged(o *sad.OutboundSA) {
	var pkts [][]byte
	d.stageMu.Lock()
	for key, st := range d.staged {
		if key.ref != o.Ref || key.dst.IsValid() && !slices.ContainsFunc(o.RemoteTS, func(sel traffic.Selector) bool { return sel.Contains(key.dst) }) {
			continue
		}
		pkts = append(pkts, st.pkts...)
		delete(d.staged, key)
	}
	d.stageMu.Unlock()
	if len(pkts) == 0 {
		return
	}
	b := d.outPool.get(d.done)
	if b == nil {
		return
	}
	b.restaged = true
	for _, p := range pkts {
		if b.n == len(b.elems) {
			break
		}
		e := b.elems[b.n]
		if len(p) > len(e.buf)-headroom {
			d.drops.Add(sa.DropTooBig)
			continue
		}
		e.start = headroom
		e.end = headroom + copy(e.buf[headroom:], p)
		b.n++
	}
	d.outMu.Lock()
	defer d.outMu.Unlock()
	if d.closed {
		d.outPool.put(b)
		return
	}
	d.classifyOutbound(b)
	d.queueOutbound(b)
}
