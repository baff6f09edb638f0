// Package metrics serves goipsec's counters in the Prometheus text format
// (ARCHITECTURE.md, "Interfaces for people"). It holds no counters itself:
// on every scrape its collector asks a Source for a Snapshot of plain values
// and turns it into metrics, so the daemon keeps one set of counters for
// the control API and for Prometheus alike.
//
// Metric names follow the Prometheus conventions: the prefix goipsec_, the
// unit in the name, and _total on counters. A counter read from a structure
// that is replaced (an SPD swapped on reload, a CHILD SA rekeyed) starts again
// from zero with it; Prometheus treats that as a counter reset, and a rekeyed
// CHILD SA shows as a new series because its SPIs are labels.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source gives the collector the current counters. Metrics is called once
// per scrape, possibly from several goroutines at once, and must not block
// for long.
type Source interface {
	Metrics() Snapshot
}

// Snapshot is the set of values that one scrape exports. The zero value is
// a valid, empty snapshot.
type Snapshot struct {
	// ChildSAs are the installed CHILD SAs, manual and negotiated.
	ChildSAs []ChildSA
	// Rules are the SPD rules in evaluation order, the default rule last.
	Rules []Rule
	// IKESAs counts the IKE SAs by state ("connecting", "established",
	// "deleting"); nil when IKE is not running.
	IKESAs map[string]int
	// Handshakes counts IKE handshakes; see Handshakes for what each
	// counter means.
	Handshakes Handshakes
	// Acquires counts the ACQUIRE events of the data plane (RFC 4301,
	// Section 5.1.1: a PROTECT rule matched and no SA was there).
	Acquires uint64
	// IKEEventsLost counts IKE engine events dropped before the daemon saw
	// them (the engine counts Handshakes itself, so they are exact).
	IKEEventsLost uint64
	// Panics counts the panics the daemon recovered from, by component.
	Panics Panics
	// IKERefusedRetransmits counts messages that quoted the Message ID of a
	// peer's last request but did not get the cached response: from another
	// address, or failing the integrity check (RFC 7296, Section 2.1).
	IKERefusedRetransmits uint64
	// Drops counts the packets the data plane dropped, by reason (the
	// names of sa.Drop).
	Drops map[string]uint64
	// Dataplane holds the data plane's global packet counters.
	Dataplane Dataplane
	// PolicySources are the shared policy sources (policy_sources).
	PolicySources []PolicySource
}

// PolicySource is the state of one shared policy source: whether it
// answers, the revision in force, and the policies applied and refused.
type PolicySource struct {
	Kind, Prefix     string
	Connected        bool
	Revision         int64
	Updates, Refused uint64
}

// Panics counts recovered panics: of IKE SA goroutines (each ended that IKE
// SA) and of data plane goroutines (each dropped one packet).
type Panics struct {
	IKE, Dataplane uint64
}

// ChildSA is the counters of one CHILD SA (both directions).
type ChildSA struct {
	// Name is the manual SA's name or "connection/child".
	Name string
	// Protocol is "esp" or "ah"; Mode is "tunnel" or "transport".
	Protocol, Mode string
	// SPIIn and SPIOut are the SPIs as 8 hex digits.
	SPIIn, SPIOut string
	// BytesIn, PacketsIn, BytesOut and PacketsOut count the traffic the
	// SA carried: inbound packets that were accepted, outbound packets
	// that were sealed.
	BytesIn, BytesOut     uint64
	PacketsIn, PacketsOut uint64
	// ReplayDrops counts inbound packets refused by the replay window
	// (RFC 4303, Section 3.4.3); ICVFailures those whose integrity check
	// failed (RFC 4303, Section 3.4.4).
	ReplayDrops, ICVFailures uint64
}

// Rule is the hit counter of one SPD rule.
type Rule struct {
	// Index is the rule's position in evaluation order, from 1.
	Index int
	// Name is the rule's name ("default" for the default rule).
	Name string
	// Action is "protect", "bypass" or "discard".
	Action string
	// Hits counts the packets the rule matched.
	Hits uint64
}

// Handshakes counts IKE SA establishments (IKE_SA_INIT plus IKE_AUTH, RFC
// 7296, Sections 1.2 and 1.3), as initiator and as responder.
type Handshakes struct {
	// Started counts IKE SAs the engine created: initiated, or kept as a
	// responder for an IKE_SA_INIT request (retransmissions, COOKIE
	// retries and requests dropped unanswered are not counted).
	Started uint64
	// Completed counts IKE SAs that were established.
	Completed uint64
	// Failed counts IKE SAs that ended with an error before they were
	// established, authentication failures included.
	Failed uint64
	// ChildRekeys and IKERekeys count completed rekeys of CHILD SAs and
	// IKE SAs, in either role.
	ChildRekeys, IKERekeys uint64
	// Duration is the histogram of the time from the creation of an IKE
	// SA to its establishment; nil when IKE is not running.
	Duration *Histogram
}

// Histogram is a cumulative histogram in seconds: Buckets maps each upper
// bound to the number of observations at most that large.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// Dataplane holds the data plane's global counters.
type Dataplane struct {
	TUNRead, TUNWritten uint64 // packets read from and written to the TUN device
	Sealed, Opened      uint64 // packets protected and sent, received and accepted
	Bypassed            uint64 // packets sent in the clear by a BYPASS rule
	IKEMessages         uint64 // IKE messages received on the NAT-T socket
	Keepalives          uint64 // NAT-keepalives received (RFC 3948, Section 2.3)
	SendErrors          uint64 // failed socket sends (batches)
	ReadErrors          uint64 // failed socket reads
	WriteErrors         uint64 // failed TUN writes (batches)
	EventsLost          uint64 // data plane events dropped before the daemon saw them
}

var (
	childLabels = []string{"name", "protocol", "mode", "spi_in", "spi_out"}
	childDir    = append(append([]string(nil), childLabels...), "direction")

	descChildBytes   = newDesc("child_sa_bytes_total", "Bytes carried by a CHILD SA (inbound: accepted, outbound: sealed), by direction.", childDir)
	descChildPackets = newDesc("child_sa_packets_total", "Packets carried by a CHILD SA (inbound: accepted, outbound: sealed), by direction.", childDir)
	descChildReplay  = newDesc("child_sa_replay_drops_total", "Inbound packets of a CHILD SA refused by the anti-replay window (RFC 4303, Section 3.4.3).", childLabels)
	descChildICV     = newDesc("child_sa_icv_failures_total", "Inbound packets of a CHILD SA whose integrity check failed (RFC 4303, Section 3.4.4).", childLabels)
	descRuleHits     = newDesc("spd_rule_hits_total", "Packets matched by an SPD rule; index is the position in evaluation order, the default rule last.", []string{"index", "name", "action"})
	descIKESAs       = newDesc("ike_sas", "IKE SAs by state.", []string{"state"})
	descHSStarted    = newDesc("ike_handshakes_started_total", "IKE SAs created, as initiator or as responder to a kept IKE_SA_INIT request.", nil)
	descHSDuration   = newDesc("ike_handshake_duration_seconds", "Time from the creation of an IKE SA to its establishment.", nil)
	descHSCompleted  = newDesc("ike_handshakes_completed_total", "IKE SAs established.", nil)
	descHSFailed     = newDesc("ike_handshakes_failed_total", "IKE SAs that ended with an error before they were established.", nil)
	descRekeys       = newDesc("rekeys_total", "IKE SAs (kind ike) and CHILD SAs (kind child) replaced by a rekey, whichever end started it.", []string{"kind"})
	descIKELost      = newDesc("ike_events_lost_total", "IKE engine events dropped before the daemon counted them.", nil)
	descPanics       = newDesc("panics_total", "Panics recovered, by component; each ended only what it owned (an IKE SA, a packet).", []string{"component"})
	descIKERefused   = newDesc("ike_refused_retransmits_total", "Messages quoting a peer's last Message ID that got no cached response: another source, or no valid ICV (RFC 7296, Section 2.1).", nil)
	descAcquires     = newDesc("acquires_total", "ACQUIRE events: packets that matched a PROTECT rule without an SA (RFC 4301, Section 5.1.1), rate-limited per policy.", nil)
	descDrops        = newDesc("dropped_packets_total", "Packets the data plane dropped, by reason.", []string{"reason"})
	descTUNRead      = newDesc("dataplane_tun_read_packets_total", "Packets read from the TUN device.", nil)
	descTUNWritten   = newDesc("dataplane_tun_written_packets_total", "Packets written to the TUN device.", nil)
	descSealed       = newDesc("dataplane_sealed_packets_total", "Packets protected with ESP or AH and handed to a socket.", nil)
	descOpened       = newDesc("dataplane_opened_packets_total", "Packets received with ESP or AH and accepted.", nil)
	descBypassed     = newDesc("dataplane_bypassed_packets_total", "Packets sent in the clear by a BYPASS rule.", nil)
	descIKEMessages  = newDesc("dataplane_ike_messages_total", "IKE messages received on the NAT-T socket.", nil)
	descKeepalives   = newDesc("dataplane_nat_keepalives_total", "NAT-keepalives received (RFC 3948, Section 2.3).", nil)
	descErrors       = newDesc("dataplane_errors_total", "I/O errors of the data plane by operation: send (socket, per batch), read (socket), write (TUN, per batch).", []string{"op"})
	descEventsLost   = newDesc("dataplane_events_lost_total", "Data plane events dropped before the daemon saw them.", nil)
	descSrcUpdates   = newDesc("policy_source_updates_total", "Policies applied from a shared policy source (policy_sources).", []string{"source", "prefix"})
	descSrcRefused   = newDesc("policy_source_refused_total", "Revisions of a shared policy source refused: a bad document, or a policy that did not apply.", []string{"source", "prefix"})
	descSrcConnected = newDesc("policy_source_connected", "1 if the last read or watch of a shared policy source succeeded, else 0.", []string{"source", "prefix"})
	descSrcRevision  = newDesc("policy_source_revision", "The source's revision of the policy in force (etcd's store revision).", []string{"source", "prefix"})

	allDescs = []*prometheus.Desc{descChildBytes, descChildPackets, descChildReplay, descChildICV, descRuleHits,
		descIKESAs, descHSStarted, descHSCompleted, descHSFailed, descHSDuration, descRekeys, descIKELost, descPanics, descIKERefused, descAcquires, descDrops,
		descTUNRead, descTUNWritten, descSealed, descOpened, descBypassed, descIKEMessages, descKeepalives,
		descErrors, descEventsLost, descSrcUpdates, descSrcRefused, descSrcConnected, descSrcRevision}
)

func newDesc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc("goipsec_"+name, help, labels, nil)
}

// ikeStates are exported even when no IKE SA is in them, so that a
// dashboard sees 0 rather than no data.
var ikeStates = []string{"connecting", "established", "deleting"}

// collector is a prometheus.Collector over a Source.
type collector struct{ src Source }

// NewCollector returns a prometheus.Collector that reads src on every
// collection.
func NewCollector(src Source) prometheus.Collector { return collector{src} }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Metrics()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, sa := range s.ChildSAs {
		l := []string{sa.Name, sa.Protocol, sa.Mode, sa.SPIIn, sa.SPIOut}
		counter(descChildBytes, sa.BytesIn, append(l, "in")...)
		counter(descChildBytes, sa.BytesOut, append(l, "out")...)
		counter(descChildPackets, sa.PacketsIn, append(l, "in")...)
		counter(descChildPackets, sa.PacketsOut, append(l, "out")...)
		counter(descChildReplay, sa.ReplayDrops, l...)
		counter(descChildICV, sa.ICVFailures, l...)
	}
	for _, r := range s.Rules {
		counter(descRuleHits, r.Hits, strconv.Itoa(r.Index), r.Name, r.Action)
	}
	if s.IKESAs != nil {
		states := append([]string(nil), ikeStates...)
		for st := range s.IKESAs {
			if !contains(states, st) {
				states = append(states, st)
			}
		}
		sort.Strings(states)
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(descIKESAs, prometheus.GaugeValue, float64(s.IKESAs[st]), st)
		}
	}
	counter(descHSStarted, s.Handshakes.Started)
	counter(descHSCompleted, s.Handshakes.Completed)
	counter(descHSFailed, s.Handshakes.Failed)
	counter(descRekeys, s.Handshakes.ChildRekeys, "child")
	counter(descRekeys, s.Handshakes.IKERekeys, "ike")
	if h := s.Handshakes.Duration; h != nil {
		ch <- prometheus.MustNewConstHistogram(descHSDuration, h.Count, h.Sum, h.Buckets)
	}
	counter(descIKELost, s.IKEEventsLost)
	counter(descPanics, s.Panics.IKE, "ike")
	counter(descPanics, s.Panics.Dataplane, "dataplane")
	counter(descIKERefused, s.IKERefusedRetransmits)
	counter(descAcquires, s.Acquires)
	for _, p := range s.PolicySources {
		counter(descSrcUpdates, p.Updates, p.Kind, p.Prefix)
		counter(descSrcRefused, p.Refused, p.Kind, p.Prefix)
		up := 0.0
		if p.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descSrcConnected, prometheus.GaugeValue, up, p.Kind, p.Prefix)
		ch <- prometheus.MustNewConstMetric(descSrcRevision, prometheus.GaugeValue, float64(p.Revision), p.Kind, p.Prefix)
	}
	for reason, n := range s.Drops {
		counter(descDrops, n, reason)
	}
	dp := s.Dataplane
	counter(descTUNRead, dp.TUNRead)
	counter(descTUNWritten, dp.TUNWritten)
	counter(descSealed, dp.Sealed)
	counter(descOpened, dp.Opened)
	counter(descBypassed, dp.Bypassed)
	counter(descIKEMessages, dp.IKEMessages)
	counter(descKeepalives, dp.Keepalives)
	counter(descErrors, dp.SendErrors, "send")
	counter(descErrors, dp.ReadErrors, "read")
	counter(descErrors, dp.WriteErrors, "write")
	counter(descEventsLost, dp.EventsLost)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Handler returns an http.Handler that serves src's metrics, with the Go
// runtime and process collectors, in the Prometheus exposition formats. A
// scrape that finds two series with the same labels still returns the rest
// and logs the conflict to log (nil means slog.Default()).
func Handler(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// slogPrinter adapts slog to promhttp.Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics: " + fmt.Sprint(v...)) }

// Server is a listening metrics endpoint. Create it with Listen.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen opens the metrics endpoint on addr (host:port; port 0 picks one)
// without serving yet, so that a caller can treat a listen error as fatal
// before it starts Serve in a goroutine. log nil means slog.Default().
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	if src == nil {
		return nil, errors.New("metrics: nil Source")
	}
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	// Only /metrics exists; every other path is 404.
	mux.Handle("GET /metrics", Handler(src, log))
	return &Server{ln: ln, log: log, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close closes the listener of a server that is not serving; a serving
// one is stopped by cancelling the context given to Serve.
func (s *Server) Close() error { return s.ln.Close() }

// Serve answers scrapes until ctx is done, then shuts the server down
// (waiting up to 5 seconds for scrapes in progress) and returns nil. Any
// other end of serving is returned as an error.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// Serve listens on addr and serves src's metrics at /metrics until ctx is
// done; it returns nil after a clean shutdown and an error if it cannot
// listen or stops serving for another reason. log nil means
// slog.Default().
func Serve(ctx context.Context, addr string, src Source, log *slog.Logger) error {
	s, err := Listen(addr, src, log)
	if err != nil {
		return err
	}
	s.log.Info("metrics endpoint listening", "addr", s.Addr().String(), "path", "/metrics")
	return s.Serve(ctx)
}
