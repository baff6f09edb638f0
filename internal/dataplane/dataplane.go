// Package dataplane is the userspace IPsec data path: it reads cleartext
// packets from a TUN device, applies the SPD, seals them with the SA that the
// SAD holds for their policy (ESP or AH, tunnel or transport mode) and sends
// them over UDP (RFC 3948) or raw IP sockets; and in the other direction it
// receives ESP and AH, opens it, checks the replay window and the SA's
// selectors and writes the inner packets to the TUN device.
//
// The pipeline is shaped like wireguard-go's device package: batched reads
// into pooled buffers with headroom, so packets are sealed and opened in
// place; classification and sequence numbers in one sequential stage per
// source; cryptography in parallel on every core; and ordered send stages, one per
// lane of SAs, that keep each SA's packets in sequence order. send.go and receive.go describe the
// stages. Nothing on the per-packet path allocates, and malformed input is
// counted by reason (sa.Drop), never logged per packet and never fatal: even
// a panic in a stage costs only the packet or batch it was on (recover.go).
//
// The data plane does not import IKE: the daemon installs SAs with
// InstallInbound and InstallOutbound and reads Acquire and Expire events from
// Events.
package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/tun"
)

// Config configures a Dataplane. Zero values mean the documented defaults.
// The data plane owns the devices and sockets given here once Start is
// called, and closes them in Close.
type Config struct {
	// TUN is the device cleartext packets come from and go to. Required.
	TUN tun.Device
	// UDP carries ESP in UDP (RFC 3948) and IKE on port 4500; nil means
	// none: outbound SAs with sad.EncapUDP then drop their packets with
	// sa.DropUnsupported. If it also has the method of sourceUDP
	// (conn.UDPConn, conntest.UDP), ESP in UDP leaves from each SA's
	// sad.OutboundSA.LocalAddr, and a tunnel-mode SA's with the inner
	// header's DSCP and ECN as its outer TOS (RFC 6040, Section 4.1); else
	// from the address the socket or the routing table gives it, with TOS
	// 0. If it has the method of tosUDP, the ECN field each datagram
	// arrived with is combined into the inner packet (RFC 6040, Section
	// 4.2); else ESP in UDP reads as arriving Not-ECT.
	UDP conn.UDP
	// Raw are raw IP sockets for ESP and AH over IPv4 and IPv6, read in
	// parallel. The first of each IP version also sends that version's
	// SAs without encapsulation and BYPASS traffic in the clear. Empty:
	// such packets are dropped with sa.DropUnsupported.
	Raw []conn.Raw
	// Workers is the number of goroutines that encrypt and decrypt;
	// 0 means runtime.GOMAXPROCS(0).
	Workers int
	// Logger receives operational messages (never per-packet ones, never
	// key material); nil means slog.Default().
	Logger *slog.Logger
	// IKE, if not nil, is called with each IKE message that arrives on the
	// UDP socket, still led by the non-ESP marker of RFC 3948, Section 2.2
	// (the IKE engine, which adds it to what it sends, strips it), and its
	// sender. It is called on the receive goroutine and
	// must return quickly; pkt is valid only during the call. nil: such
	// messages are counted and dropped.
	IKE func(pkt []byte, from netip.AddrPort)
	// StageLen is how many packets are held per PROTECT policy while it
	// has no SA (until IKE installs one); 0 means 8, negative means none.
	StageLen int
	// AcquireInterval is how long the data plane waits before asking for an
	// SA again for a policy that still has none; 0 means 5 seconds.
	AcquireInterval time.Duration
	// EventQueue is the capacity of the Events channel; 0 means 256. Events
	// that find it full are counted and lost: the data path never blocks
	// on the control path.
	EventQueue int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Dataplane is a running (or ready to run) data path. Its methods are safe for
// concurrent use.
type Dataplane struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	workers int

	spd atomic.Pointer[spd.Snapshot]
	sad sad.DB

	raw4, raw6 conn.Raw  // senders by IP version
	udpFrom    sourceUDP // Config.UDP if it can send from a chosen address, else nil
	udpTOS     tosUDP    // Config.UDP if it reports each datagram's TOS, else nil

	events     chan Event
	eventsLost atomic.Uint64

	outPool *pool
	work    chan chunk
	lanes   []*lane // ordered send stages (worker.go)

	// outMu orders the assignment of sequence numbers with the queueing
	// of batches, between the TUN reader and staged-packet flushes.
	outMu  sync.Mutex
	closed bool

	stageMu sync.Mutex
	staged  map[stageKey]*stage

	counters counters
	drops    sa.DropCounters
	panics   panicState

	done      chan struct{}
	readers   sync.WaitGroup // goroutines that feed work
	stages    sync.WaitGroup // workers and sequential stages
	startOnce sync.Once
	closeOnce sync.Once
	inSeqs    []chan *batch
}

// counters are the data plane's global packet counters.
type counters struct {
	tunRead, tunWritten, sealed, opened, bypassed atomic.Uint64
	ike, keepalive, sendErrors, writeErrors       atomic.Uint64
	readErrors                                    atomic.Uint64
}

// Stats is a snapshot of the data plane's global counters.
type Stats struct {
	TUNRead     uint64            // packets read from the TUN device
	TUNWritten  uint64            // packets written to the TUN device
	Sealed      uint64            // packets sealed with ESP or AH and handed to a socket
	Opened      uint64            // packets opened and accepted
	Bypassed    uint64            // packets sent in the clear by a BYPASS rule
	IKE         uint64            // IKE messages received on the UDP socket
	Keepalives  uint64            // NAT-keepalives received (RFC 3948, Section 2.3)
	SendErrors  uint64            // socket sends that failed (batches)
	ReadErrors  uint64            // socket reads that failed
	WriteErrors uint64            // TUN writes that failed (batches)
	EventsLost  uint64            // events dropped because Events was full
	Drops       map[string]uint64 // dropped packets by reason (sa.Drop names)
}

// New checks c and returns a data plane that is not yet running.
func New(c Config) (*Dataplane, error) {
	if c.TUN == nil {
		return nil, errors.New("dataplane: Config.TUN is nil")
	}
	d := &Dataplane{cfg: c, log: c.Logger, now: c.Now, workers: c.Workers}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.workers <= 0 {
		d.workers = runtime.GOMAXPROCS(0)
	}
	if d.cfg.StageLen == 0 {
		d.cfg.StageLen = 8
	}
	if d.cfg.AcquireInterval <= 0 {
		d.cfg.AcquireInterval = 5 * time.Second
	}
	if d.cfg.EventQueue <= 0 {
		d.cfg.EventQueue = 256
	}
	d.udpFrom, _ = c.UDP.(sourceUDP)
	d.udpTOS, _ = c.UDP.(tosUDP)
	for _, r := range c.Raw {
		switch {
		case r == nil:
			return nil, errors.New("dataplane: nil Config.Raw entry")
		case r.Version() == 4 && d.raw4 == nil:
			d.raw4 = r
		case r.Version() == 6 && d.raw6 == nil:
			d.raw6 = r
		}
	}
	mtu, err := c.TUN.MTU()
	if err != nil {
		return nil, fmt.Errorf("dataplane: TUN MTU: %w", err)
	}
	bs := c.TUN.BatchSize()
	if bs <= 0 {
		bs = 1
	}
	// A few batches per stage keep every core busy without holding much
	// memory; each outbound batch is bs MTU-sized buffers.
	d.outPool = newPool(2*d.workers+2, bs, outboundBufSize(mtu))
	d.work = make(chan chunk, 4*d.workers*4)
	d.lanes = newLanes(2*d.workers+2, bs)
	d.events = make(chan Event, d.cfg.EventQueue)
	d.staged = make(map[stageKey]*stage)
	d.done = make(chan struct{})
	return d, nil
}

// Start starts the pipeline's goroutines. It may be called once.
func (d *Dataplane) Start() {
	d.startOnce.Do(func() {
		for range d.workers {
			d.stages.Add(1)
			go d.worker()
		}
		for _, l := range d.lanes {
			d.stages.Add(1)
			go d.sendLane(l)
		}
		d.readers.Add(1)
		go d.readTUN()
		if d.cfg.UDP != nil {
			d.startInbound(d.cfg.UDP.BatchSize(), func(b *batch) bool { return d.readUDP(b) })
		}
		for _, r := range d.cfg.Raw {
			d.startInbound(r.BatchSize(), func(b *batch) bool { return d.readRaw(r, b) })
		}
		d.stages.Add(1)
		go d.maintain()
	})
}

// Close stops the pipeline, closes the TUN device and the sockets, and waits
// for every goroutine to finish. Packets in flight are processed or dropped.
func (d *Dataplane) Close() error {
	d.closeOnce.Do(func() {
		d.outMu.Lock()
		d.closed = true
		d.outMu.Unlock()
		close(d.done)
		d.cfg.TUN.Close()
		if d.cfg.UDP != nil {
			d.cfg.UDP.Close()
		}
		for _, r := range d.cfg.Raw {
			r.Close()
		}
		d.readers.Wait()
		close(d.work)
		for _, l := range d.lanes {
			close(l.q)
		}
		for _, q := range d.inSeqs {
			close(q)
		}
		d.stages.Wait()
	})
	return nil
}

// SetSPD makes s the policy for every packet from now on. Until the first
// call, and with nil, every packet is dropped (sa.DropPolicy): the data
// plane fails closed.
func (d *Dataplane) SetSPD(s *spd.Snapshot) { d.spd.Store(s) }

// SPD returns the current policy, or nil.
func (d *Dataplane) SPD() *spd.Snapshot { return d.spd.Load() }

// SAD returns the SA database, for lookups and listings. Install and remove
// SAs through the Dataplane's methods, which also release staged packets.
func (d *Dataplane) SAD() *sad.DB { return &d.sad }

// InstallInbound adds an inbound SA. IKE installs the inbound SA of a pair
// before the outbound one, so that the peer's first packets find it.
func (d *Dataplane) InstallInbound(s *sad.InboundSA) error {
	return d.sad.InstallInbound(s)
}

// InstallOutbound makes s the outbound SA of its bundle (s.Ref), replacing
// the previous one if any, and sends the packets staged for the bundle.
func (d *Dataplane) InstallOutbound(s *sad.OutboundSA) error {
	if _, err := d.sad.InstallOutbound(s); err != nil {
		return err
	}
	d.flushStaged(s)
	return nil
}

// RemoveInbound deletes an inbound SA; packets for it are then dropped with
// sa.DropUnknownSPI. It returns the SA (for its final counters) or nil.
func (d *Dataplane) RemoveInbound(proto sa.Protocol, spi uint32) *sad.InboundSA {
	return d.sad.RemoveInbound(proto, spi)
}

// RemoveOutbound deletes the outbound SA (proto, spi) of bundle ref, unless
// another SA has replaced it. It returns the SA or nil.
func (d *Dataplane) RemoveOutbound(ref uint32, proto sa.Protocol, spi uint32) *sad.OutboundSA {
	return d.sad.RemoveOutbound(ref, proto, spi)
}

// Events returns the channel of Acquire and Expire events. The daemon must
// keep reading it; events that find it full are lost (and counted).
func (d *Dataplane) Events() <-chan Event { return d.events }

// OnSAEvent turns an SA's limit event into an Expire event on Events. Use it
// as esp.Config.OnEvent and ah.Config.OnEvent. It never blocks.
func (d *Dataplane) OnSAEvent(e sa.Event) {
	d.emit(Event{Kind: EventExpire, SA: e})
}

func (d *Dataplane) emit(e Event) {
	select {
	case d.events <- e:
	default:
		d.eventsLost.Add(1)
	}
}

// Drops returns the global drop counters (every dropped packet is counted
// here; packets that belonged to an SA also on the SA's Stats.Drops).
func (d *Dataplane) Drops() *sa.DropCounters { return &d.drops }

// Stats returns a snapshot of the global counters.
func (d *Dataplane) Stats() Stats {
	c := &d.counters
	return Stats{
		TUNRead:     c.tunRead.Load(),
		TUNWritten:  c.tunWritten.Load(),
		Sealed:      c.sealed.Load(),
		Opened:      c.opened.Load(),
		Bypassed:    c.bypassed.Load(),
		IKE:         c.ike.Load(),
		Keepalives:  c.keepalive.Load(),
		SendErrors:  c.sendErrors.Load(),
		ReadErrors:  c.readErrors.Load(),
		WriteErrors: c.writeErrors.Load(),
		EventsLost:  d.eventsLost.Load(),
		Drops:       d.drops.Snapshot(),
	}
}

// dropElem counts e's drop reason globally and on its SA.
func (d *Dataplane) dropElem(e *elem) {
	d.drops.Add(e.drop)
	if e.out != nil {
		e.out.Stats.Drops.Add(e.drop)
	}
	if e.in != nil {
		e.in.Stats.Drops.Add(e.drop)
	}
	e.kind = kindNone
}

// asDrop turns an engine error into a drop reason.
func asDrop(err error) sa.Drop {
	// The engines return sa.Drop values; the type assertion keeps the
	// common case free of allocations.
	if d, ok := err.(sa.Drop); ok && d != sa.DropNone {
		return d
	}
	var d sa.Drop
	if errors.As(err, &d) && d != sa.DropNone {
		return d
	}
	return sa.DropMalformed
}

// closedErr reports whether err means the device or socket is gone.
func closedErr(err error) bool {
	return errors.Is(err, conn.ErrClosed) || errors.Is(err, errClosed)
}

// maintain runs the timers: time lifetimes of idle SAs (the engines check
// them per packet too) and the expiry of staged packets.
func (d *Dataplane) maintain() {
	defer d.stages.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
		}
		d.guard(siteMaintain, d.tick)
	}
}

// tick is one run of the timers.
func (d *Dataplane) tick() {
	now := d.now()
	snap := d.sad.Load()
	snap.InboundSAs(func(s *sad.InboundSA) { checkMeter(s.SA, now) })
	snap.OutboundSAs(func(s *sad.OutboundSA) { checkMeter(s.SA, now) })
	d.expireStaged(now)
}

// metered is implemented by the esp and ah SAs.
type metered interface{ Meter() *sa.Meter }

func checkMeter(x any, now time.Time) {
	if m, ok := x.(metered); ok && m.Meter() != nil {
		m.Meter().Check(now)
	}
}
