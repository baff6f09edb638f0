package sa

import (
	"sync/atomic"
	"time"
)

// Meter counts an SA's use and reports each limit of Limits the first time it
// is crossed. Hard limits make Add return false from then on. Safe for
// concurrent use; Add allocates nothing.
type Meter struct {
	limits  Limits
	start   time.Time
	bytes   atomic.Uint64
	packets atomic.Uint64
	fired   atomic.Uint32 // bit per (hard, kind) already reported
	dead    atomic.Bool
	event   Event // template: Protocol, SPI, Direction
	notify  func(Event)
}

// NewMeter returns a meter for the SA described by tmpl (its Protocol, SPI and
// Direction are copied into every event), started at now. notify, if not nil,
// is called once per crossed limit, from whichever goroutine crossed it; it must
// not block.
func NewMeter(tmpl Event, limits Limits, now time.Time, notify func(Event)) *Meter {
	m := new(Meter)
	m.Init(tmpl, limits, now, notify)
	return m
}

// Init makes m, a zero Meter that is not yet in use, a meter as NewMeter
// describes, for engines that embed the meter in their SA's state rather
// than point to one. A Meter must not be copied.
func (m *Meter) Init(tmpl Event, limits Limits, now time.Time, notify func(Event)) {
	m.limits, m.start, m.event, m.notify = limits, now, tmpl, notify
}

// Bytes returns the payload bytes counted so far.
func (m *Meter) Bytes() uint64 { return m.bytes.Load() }

// Packets returns the packets counted so far.
func (m *Meter) Packets() uint64 { return m.packets.Load() }

// Start returns the time the meter started.
func (m *Meter) Start() time.Time { return m.start }

// Dead reports whether a hard limit has been crossed.
func (m *Meter) Dead() bool { return m.dead.Load() }

// Alive reports whether the SA may still be used, without counting anything.
func (m *Meter) Alive() bool { return !m.dead.Load() }

// Usable reports whether the SA may carry another packet: no hard limit has
// been crossed, time limits included. now is called, and Check run, only
// when the limits include a time limit, so the packet engines call Usable
// once per packet without reading the clock for SAs that have none.
func (m *Meter) Usable(now func() time.Time) bool {
	if m.dead.Load() {
		return false
	}
	if m.limits.Soft.Time == 0 && m.limits.Hard.Time == 0 {
		return true
	}
	return m.Check(now())
}

// Add counts one packet of n payload bytes. It returns false if a hard limit
// had already been crossed (the packet must be dropped with DropExpired). The
// packet that crosses a hard limit is the last one allowed.
func (m *Meter) Add(n int) bool {
	if m.dead.Load() {
		return false
	}
	b := m.bytes.Add(uint64(n))
	p := m.packets.Add(1)
	l := &m.limits
	if l.Soft.Bytes != 0 && b >= l.Soft.Bytes {
		m.Fire(false, LimitBytes)
	}
	if l.Soft.Packets != 0 && p >= l.Soft.Packets {
		m.Fire(false, LimitPackets)
	}
	if l.Hard.Bytes != 0 && b >= l.Hard.Bytes {
		m.Fire(true, LimitBytes)
	}
	if l.Hard.Packets != 0 && p >= l.Hard.Packets {
		m.Fire(true, LimitPackets)
	}
	return true
}

// Check reports time limits crossed at now. The data plane calls it from a
// timer; it returns false once the SA is dead.
func (m *Meter) Check(now time.Time) bool {
	age := now.Sub(m.start)
	if m.limits.Soft.Time != 0 && age >= m.limits.Soft.Time {
		m.Fire(false, LimitTime)
	}
	if m.limits.Hard.Time != 0 && age >= m.limits.Hard.Time {
		m.Fire(true, LimitTime)
	}
	return !m.dead.Load()
}

// Fire reports the limit (hard, kind) unless it was reported before. A hard
// limit marks the meter dead. Packet engines call it for LimitSeq.
func (m *Meter) Fire(hard bool, kind LimitKind) {
	bit := uint32(1) << (uint32(kind) * 2)
	if hard {
		bit <<= 1
		m.dead.Store(true)
	}
	for {
		old := m.fired.Load()
		if old&bit != 0 {
			return
		}
		if m.fired.CompareAndSwap(old, old|bit) {
			break
		}
	}
	if m.notify != nil {
		e := m.event
		e.Hard = hard
		e.Kind = kind
		m.notify(e)
	}
}
