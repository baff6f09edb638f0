package daemon

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/metrics"
)

// Metrics implements metrics.Source. It reuses what the control API reports
// (SAs, Policies, the data plane's Stats), the IKE engine's own counters
// (ike.Manager.Stats: handshakes, rekeys, handshake durations) and the
// acquire counter only the daemon sees.
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
	for _, p := range d.policySources() {
		s.PolicySources = append(s.PolicySources, metrics.PolicySource{Kind: p.Kind, Prefix: p.Prefix,
			Connected: p.Connected, Revision: p.Revision, Updates: p.Updates, Refused: p.Refused})
	}
	if d.ike != nil {
		s.Handshakes = ikeHandshakes(d.ike.Stats())
	}
	return s
}

// ikeHandshakes converts the engine's counters.
func ikeHandshakes(st ike.Stats) metrics.Handshakes {
	h := st.HandshakeDurations
	hist := &metrics.Histogram{Count: h.Count, Sum: h.Sum.Seconds(), Buckets: make(map[float64]uint64, len(h.Buckets))}
	for i, b := range ike.HandshakeBuckets {
		hist.Buckets[b.Seconds()] = h.Buckets[i]
	}
	return metrics.Handshakes{
		Started: st.HandshakesStarted, Completed: st.HandshakesCompleted, Failed: st.HandshakesFailed,
		ChildRekeys: st.ChildRekeys, IKERekeys: st.IKERekeys, Duration: hist,
	}
}

// stats are the counters the daemon keeps for Metrics beyond the data
// plane's and the engine's. Safe for concurrent use.
type stats struct {
	acquires atomic.Uint64
}
