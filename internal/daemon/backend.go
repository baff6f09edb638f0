package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// The methods below implement internal/ctlserver.Backend.

// Status reports the daemon and its counters.
func (d *Daemon) Status(ctx context.Context) (ctlapi.Status, error) {
	st := d.dp.Stats()
	d.mu.Lock()
	file, nchild, nike := "", len(d.manual), 0
	if d.cfg != nil {
		file = d.cfg.File
	}
	d.mu.Unlock()
	if d.ike != nil {
		for _, s := range d.ike.SAs() {
			nike++
			nchild += len(s.Children)
		}
	}
	var bytesIn, bytesOut uint64
	snap := d.dp.SAD().Load()
	snap.InboundSAs(func(s *sad.InboundSA) { bytesIn += s.Stats.Bytes.Load() })
	snap.OutboundSAs(func(s *sad.OutboundSA) { bytesOut += s.Stats.Bytes.Load() })
	drops := st.Drops
	if drops == nil {
		drops = map[string]uint64{}
	}
	panics := ctlapi.Panics{Dataplane: d.dp.Panics()}
	if d.ike != nil {
		panics.IKE = d.ike.Panics()
	}
	now := d.opts.Now()
	return ctlapi.Status{
		Version:       d.opts.Version,
		API:           ctlapi.Version,
		PID:           pid(),
		Started:       d.started,
		UptimeSeconds: int64(now.Sub(d.started).Seconds()),
		ConfigFile:    file,
		IKESAs:        nike,
		ChildSAs:      nchild,
		Counters: ctlapi.Counters{
			PacketsIn: st.Opened, PacketsOut: st.Sealed,
			BytesIn: bytesIn, BytesOut: bytesOut,
			Drops: drops,
		},
		Panics:        panics,
		Pending:       d.Pending(),
		Goroutines:    runtime.NumGoroutine(),
		PolicySources: d.policySources(),
	}, nil
}

// SAs lists the CHILD SAs (manual ones for now; IKE SAs come with IKE).
func (d *Daemon) SAs(ctx context.Context) (ctlapi.SAs, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := ctlapi.SAs{IKESAs: []ctlapi.IKESA{}, ChildSAs: []ctlapi.ChildSA{}}
	names := make([]string, 0, len(d.manual))
	for n := range d.manual {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		inst := d.manual[n]
		m := inst.def
		encap := "none"
		if m.UDPEncap {
			encap = "udp"
		}
		c := ctlapi.ChildSA{
			Name: m.Name, Manual: true, State: "installed",
			Protocol: m.Protocol.String(), Mode: m.Mode.String(), Encap: encap,
			LocalAddr: m.LocalAddr, RemoteAddr: m.RemoteAddr,
			SPIIn: ctlapi.SPI(m.SPIIn), SPIOut: ctlapi.SPI(m.SPIOut),
			Algorithm: m.Suite.Name, ESN: m.ESN,
			LocalTS: tsStrings(m.LocalTS), RemoteTS: tsStrings(m.RemoteTS),
			BytesIn: inst.in.Stats.Bytes.Load(), PacketsIn: inst.in.Stats.Packets.Load(),
			BytesOut: inst.out.Stats.Bytes.Load(), PacketsOut: inst.out.Stats.Packets.Load(),
			ReplayDrops: inst.in.Stats.Drops[sa.DropReplay].Load(),
			ICVFailures: inst.in.Stats.Drops[sa.DropBadICV].Load(),
			Installed:   inst.installed,
			Lifetime: ctlapi.Lifetime{
				RekeyBytes: m.Limits.Soft.Bytes, ExpireBytes: m.Limits.Hard.Bytes,
				RekeyPackets: m.Limits.Soft.Packets, ExpirePackets: m.Limits.Hard.Packets,
			},
		}
		if m.Limits.Soft.Time != 0 {
			c.Lifetime.RekeyAt = inst.installed.Add(m.Limits.Soft.Time)
		}
		if m.Limits.Hard.Time != 0 {
			c.Lifetime.ExpireAt = inst.installed.Add(m.Limits.Hard.Time)
		}
		out.ChildSAs = append(out.ChildSAs, c)
	}
	if d.ike != nil {
		for i, ikesa := range d.ike.SAs() {
			out.IKESAs = append(out.IKESAs, ikeSAOf(uint32(i+1), ikesa))
			for _, ch := range ikesa.Children {
				out.ChildSAs = append(out.ChildSAs, d.childOf(uint32(i+1), ch))
			}
		}
	}
	return out, nil
}

// ikeSAOf converts an engine snapshot to the API's type. The API's states
// are the lowercase names of ctlapi ("established"); the engine's String
// gives strongSwan's capitals.
func ikeSAOf(id uint32, s ike.IKESA) ctlapi.IKESA {
	return ctlapi.IKESA{
		Name: s.Peer, ID: id, State: strings.ToLower(s.State.String()), Version: 2, Initiator: s.Initiator,
		LocalAddr: s.Local, RemoteAddr: s.Remote, LocalID: s.LocalID.String(), RemoteID: s.RemoteID.String(),
		SPIi: ctlapi.IKESPI(s.SPIi), SPIr: ctlapi.IKESPI(s.SPIr), Proposal: s.Proposal,
		Encap:       s.NATLocal || s.NATRemote || s.Local.Port() == esp.NATTPort,
		Established: s.Established, RekeyAt: s.RekeyAt,
	}
}

func (d *Daemon) childOf(ikeID uint32, c ike.ChildSA) ctlapi.ChildSA {
	encap := "none"
	if c.UDPEncap {
		encap = "udp"
	}
	alg := c.Suite.Name
	out := ctlapi.ChildSA{
		Name: c.Peer + "/" + c.Child, IKESA: ikeID, State: "installed",
		Protocol: c.Protocol.String(), Mode: c.Mode.String(), Encap: encap,
		LocalAddr: c.Local.Addr(), RemoteAddr: c.Remote.Addr(),
		SPIIn: ctlapi.SPI(c.SPIIn), SPIOut: ctlapi.SPI(c.SPIOut),
		Algorithm: alg, ESN: c.ESN,
		LocalTS: tsStrings(c.LocalTS), RemoteTS: tsStrings(c.RemoteTS),
		Installed: c.Installed,
	}
	if c.KE != iana.KENone {
		out.KE = transform.KEName(c.KE)
		out.KEs = []string{out.KE}
		for _, k := range c.AddKE {
			if k != iana.KENone {
				out.KEs = append(out.KEs, transform.KEName(k))
			}
		}
	}
	if c.Limits.Hard.Time != 0 {
		out.Lifetime.ExpireAt = c.Installed.Add(c.Limits.Hard.Time)
	}
	if ch := d.installer.child(c.SPIIn); ch != nil {
		out.BytesIn, out.PacketsIn = ch.in.Stats.Bytes.Load(), ch.in.Stats.Packets.Load()
		out.BytesOut, out.PacketsOut = ch.out.Stats.Bytes.Load(), ch.out.Stats.Packets.Load()
		out.ReplayDrops = ch.in.Stats.Drops[sa.DropReplay].Load()
		out.ICVFailures = ch.in.Stats.Drops[sa.DropBadICV].Load()
	}
	return out
}

func tsStrings(set traffic.Set) []string {
	out := make([]string, 0, len(set))
	for _, s := range set {
		out = append(out, s.String())
	}
	return out
}

func actionName(a spd.Action) string {
	switch a {
	case spd.Protect:
		return ctlapi.ActionProtect
	case spd.Bypass:
		return ctlapi.ActionBypass
	}
	return ctlapi.ActionDiscard
}

// Policies lists the SPD in evaluation order with hit counters; the last
// entry is the default rule.
func (d *Daemon) Policies(ctx context.Context) (ctlapi.Policies, error) {
	s := d.dp.SPD()
	out := ctlapi.Policies{Policies: []ctlapi.Policy{}}
	if s == nil {
		return out, nil
	}
	for i, r := range s.Rules() {
		out.Policies = append(out.Policies, d.policyOf(s, i, r))
	}
	out.Policies = append(out.Policies, ctlapi.Policy{Index: s.Len() + 1, Name: "default", LocalTS: []string{}, RemoteTS: []string{},
		Action: actionName(s.Default()), Hits: s.Hits(-1)})
	return out, nil
}

func (d *Daemon) policyOf(s *spd.Snapshot, i int, r spd.Rule) ctlapi.Policy {
	p := ctlapi.Policy{Index: i + 1, Name: r.Name, LocalTS: tsStrings(r.Local), RemoteTS: tsStrings(r.Remote), Action: actionName(r.Action), Hits: s.Hits(i)}
	if r.Action == spd.Protect {
		p.SA = r.Name
	}
	return p
}

// Initiate brings up "conn" or "conn/child" with IKE.
func (d *Daemon) Initiate(ctx context.Context, name string) error {
	if d.ike == nil {
		return ctlapi.Errorf(ctlapi.ErrUnavailable, "initiate %s: IKE is not running", name)
	}
	conn, child, _ := ctlapi.SplitName(name)
	if err := d.ike.Initiate(conn, child, nil); err != nil {
		return ctlapi.Errorf(ctlapi.ErrNotFound, "initiate %s: %v", name, err)
	}
	return nil
}

// Terminate removes a manual SA until the next reload, or (later) an IKE SA.
func (d *Daemon) Terminate(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	inst, ok := d.manual[name]
	if !ok {
		if d.ike != nil {
			conn, child, _ := ctlapi.SplitName(name)
			if err := d.ike.Terminate(conn, child); err != nil {
				return ctlapi.Errorf(ctlapi.ErrNotFound, "terminate %s: %v", name, err)
			}
			return nil
		}
		return ctlapi.Errorf(ctlapi.ErrNotFound, "no SA named %q", name)
	}
	d.dp.RemoveOutbound(inst.out.Ref, inst.out.Protocol, inst.out.SPI)
	d.dp.RemoveInbound(inst.in.Protocol, inst.in.SPI)
	delete(d.manual, name)
	d.log.Info("manual SA terminated", "name", name)
	d.events.publish(ctlapi.Event{Type: ctlapi.EventChildDown, Time: d.opts.Now(), Fields: map[string]string{
		"name": name, "spi_in": fmt.Sprintf("%08x", inst.in.SPI), "spi_out": fmt.Sprintf("%08x", inst.out.SPI), "reason": "terminated"}})
	return nil
}

// Rekey rekeys "conn" (the IKE SA) or "conn/child" with IKE. Manual SAs
// are rekeyed by editing their keys and reloading.
func (d *Daemon) Rekey(ctx context.Context, name string) error {
	d.mu.Lock()
	_, manual := d.manual[name]
	d.mu.Unlock()
	if manual {
		return ctlapi.Errorf(ctlapi.ErrBadRequest, "rekey %s: a manual SA is rekeyed by editing its keys and reloading", name)
	}
	if d.ike == nil {
		return ctlapi.Errorf(ctlapi.ErrUnavailable, "rekey %s: IKE is not running", name)
	}
	conn, child, _ := ctlapi.SplitName(name)
	if err := d.rekeyable(conn, child); err != nil {
		return ctlapi.Errorf(ctlapi.ErrConflict, "rekey %s: %v", name, err)
	}
	if err := d.ike.Rekey(conn, child); err != nil {
		return ctlapi.Errorf(ctlapi.ErrNotFound, "rekey %s: %v", name, err)
	}
	return nil
}

// rekeyable says why conn (child "") or conn/child cannot be rekeyed now:
// only an established IKE SA can be rekeyed or carry the CREATE_CHILD_SA
// exchange that rekeys one of its CHILD SAs (RFC 7296, Sections 1.3.2 and
// 1.3.3). Without this check a rekey asked for right after Initiate, while
// IKE_SA_INIT or IKE_AUTH still runs, reached the engine, which ignored it,
// and returned nil.
func (d *Daemon) rekeyable(conn, child string) error {
	known := false
	for _, s := range d.ike.SAs() {
		if s.Peer != conn {
			continue
		}
		known = true
		if s.State != ike.StateEstablished {
			continue
		}
		if child == "" {
			return nil
		}
		for _, c := range s.Children {
			if c.Child == child {
				return nil
			}
		}
	}
	switch {
	case !known:
		return nil // the engine says there is no such IKE SA
	case child == "":
		return errors.New("daemon: the IKE SA is not established yet; rekey it once it is")
	}
	return fmt.Errorf("daemon: no established IKE SA has CHILD SA %s yet; rekey it once it is up", child)
}

// Reload re-reads the configuration file and applies it.
func (d *Daemon) Reload(ctx context.Context) (ctlapi.ReloadResult, error) {
	d.mu.Lock()
	file := ""
	if d.cfg != nil {
		file = d.cfg.File
	}
	d.mu.Unlock()
	cfg, err := d.opts.Load(file)
	if err != nil {
		return ctlapi.ReloadResult{}, ctlapi.Errorf(ctlapi.ErrBadRequest, "%v", err)
	}
	err = d.configure(cfg, d.Reconfig)
	if cerr := (*config.Error)(nil); errors.As(err, &cerr) {
		// The file does not merge with the shared policy in force.
		return ctlapi.ReloadResult{}, ctlapi.Errorf(ctlapi.ErrBadRequest, "%v", err)
	}
	res := ctlapi.ReloadResult{Changed: err == nil}
	switch {
	case err == nil:
		res.Summary = "configuration applied"
	case err == ErrNoChanges:
		res.Summary = "no changes"
	case isOnlyPending(err):
		// The new configuration is in force; what failed is being
		// retried, and saying that the old one runs would be false.
		res.Changed = true
		res.Summary = "configuration applied; retrying in the background: " + strings.Join(d.Pending(), "; ")
	default:
		return res, err
	}
	subsystemLog(d.opts.Logger, "config").Info("reload", "changed", res.Changed, "summary", res.Summary)
	d.events.publish(ctlapi.Event{Type: ctlapi.EventReload, Time: d.opts.Now(), Fields: map[string]string{"changed": fmt.Sprint(res.Changed), "summary": res.Summary}})
	return res, nil
}

// Explain says which SPD rule a packet would hit.
func (d *Daemon) Explain(ctx context.Context, req ctlapi.ExplainRequest) (ctlapi.ExplainResult, error) {
	s := d.dp.SPD()
	if s == nil {
		return ctlapi.ExplainResult{}, ctlapi.Errorf(ctlapi.ErrUnavailable, "no policy loaded")
	}
	info := packet.Info{Src: req.Src, Dst: req.Dst, Proto: req.Proto, TotalLen: 0}
	if req.Src.Is4() {
		info.Version = 4
	} else {
		info.Version = 6
	}
	switch req.Proto {
	case 1, 58:
		info.HasICMP = true
		info.ICMPType, info.ICMPCode = uint8(req.DPort>>8), uint8(req.DPort)
	case 6, 17, 132:
		info.HasPorts = true
		info.SrcPort, info.DstPort = req.SPort, req.DPort
	}
	dir := sa.Outbound
	if req.Direction == "in" {
		dir = sa.Inbound
	}
	steps := s.Explain(dir, &info)
	res := ctlapi.ExplainResult{Request: req, Steps: []ctlapi.ExplainStep{}}
	rules := s.Rules()
	for _, st := range steps {
		res.Steps = append(res.Steps, ctlapi.ExplainStep{Index: st.Index + 1, Name: st.Name, Matched: st.Matched, Reason: st.Reason})
		if st.Matched {
			res.Matched = st.Index >= 0
			res.Action = actionName(st.Action)
			res.Reason = st.Reason
			if st.Index >= 0 && st.Index < len(rules) {
				p := d.policyOf(s, st.Index, rules[st.Index])
				res.Rule = &p
			}
		}
	}
	if res.Action == "" {
		res.Action = actionName(s.Default())
	}
	if len(steps) > 0 {
		peer := req.Dst
		if dir == sa.Inbound {
			peer = req.Src
		}
		d.explainGroup(&res, peer, steps[len(steps)-1].Name)
	}
	return res, nil
}

// Subscribe streams events.
func (d *Daemon) Subscribe(ctx context.Context) (<-chan ctlapi.Event, func()) {
	return d.events.subscribe()
}

func (d *Daemon) nameOfSPI(proto sa.Protocol, spi uint32) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, inst := range d.manual {
		if (inst.in.Protocol == proto && inst.in.SPI == spi) || (inst.out.Protocol == proto && inst.out.SPI == spi) {
			return name
		}
	}
	return ""
}

// broker fans events out to subscribers, dropping events for slow ones.
type broker struct {
	mu     sync.Mutex
	subs   map[chan ctlapi.Event]struct{}
	closed bool
}

func newBroker() *broker { return &broker{subs: make(map[chan ctlapi.Event]struct{})} }

func (b *broker) subscribe() (<-chan ctlapi.Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan ctlapi.Event, 64)
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if _, ok := b.subs[ch]; ok {
				delete(b.subs, ch)
				close(ch)
			}
		})
	}
}

func (b *broker) publish(e ctlapi.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		close(ch)
		delete(b.subs, ch)
	}
}

// isOnlyPending reports whether every error joined in err is an ErrPending
// one: the configuration is in force, only routes or firewall rules are
// being retried.
func isOnlyPending(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, ErrPending) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, ErrPending)
}

// policySources reports the state of Options.Source, if any.
func (d *Daemon) policySources() []ctlapi.PolicySource {
	if d.opts.Source == nil {
		return nil
	}
	return []ctlapi.PolicySource{d.opts.Source.Status()}
}
