package sa

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// The limits below are those of RFC 4303, Section 3.3.3 and RFC 4302,
// Section 3.3.2: the counter never cycles, so the last number is 2^32-1, or
// 2^64-1 with extended sequence numbers (RFC 4303, Section 2.2.1).

// seqEvents collects the events of a meter.
type seqEvents struct {
	mu   sync.Mutex
	list []Event
}

func (e *seqEvents) add(ev Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
}

func (e *seqEvents) count(hard bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.list {
		if ev.Hard == hard && ev.Kind == LimitSeq {
			n++
		}
	}
	return n
}

// newSeq returns a counter and the events of its meter.
func newSeq(t *testing.T, start uint64, esn bool, margin uint64, limits Limits) (*SeqCounter, *Meter, *seqEvents) {
	t.Helper()
	ev := new(seqEvents)
	m := NewMeter(Event{Protocol: ESP, SPI: 0x1234, Direction: Outbound}, limits, time.Unix(0, 0), ev.add)
	c, err := NewSeqCounter(start, esn, margin, m)
	if err != nil {
		t.Fatal(err)
	}
	return c, m, ev
}

func wantSeqDrop(t *testing.T, c *SeqCounter, want Drop) {
	t.Helper()
	s, err := c.Next()
	var d Drop
	if s != 0 || !errors.As(err, &d) || d != want {
		t.Fatalf("Next = %d, %v, want 0, %v", s, err, want)
	}
}

func wantSeq(t *testing.T, c *SeqCounter, want uint64) {
	t.Helper()
	if s, err := c.Next(); s != want || err != nil {
		t.Fatalf("Next = %d, %v, want %d", s, err, want)
	}
}

func TestSeqCounterFresh(t *testing.T) {
	c, _, ev := newSeq(t, 0, false, 0, Limits{})
	if c.Last() != 0 {
		t.Fatalf("Last %d before any Next", c.Last())
	}
	for want := uint64(1); want <= 3; want++ {
		wantSeq(t, c, want)
	}
	if c.Last() != 3 {
		t.Fatalf("Last %d, want 3", c.Last())
	}
	if len(ev.list) != 0 {
		t.Fatalf("events %v", ev.list)
	}
}

func TestSeqCounterExhaustion(t *testing.T) {
	for _, tc := range []struct {
		name string
		esn  bool
		last uint64
	}{
		{"32", false, 1<<32 - 1},
		{"esn", true, 1<<64 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, m, ev := newSeq(t, tc.last-2, tc.esn, 0, Limits{})
			wantSeq(t, c, tc.last-1)
			wantSeq(t, c, tc.last)
			for range 3 {
				wantSeqDrop(t, c, DropSeqExhausted)
			}
			if ev.count(true) != 1 || ev.count(false) != 1 || len(ev.list) != 2 {
				t.Fatalf("events %v", ev.list)
			}
			if e := ev.list[1]; e.Protocol != ESP || e.SPI != 0x1234 || e.Direction != Outbound || !e.Hard {
				t.Fatalf("hard event %v", e)
			}
			if c.Last() != tc.last {
				t.Fatalf("Last %d, want %d", c.Last(), tc.last)
			}
			if m.Alive() {
				t.Fatal("meter alive after exhaustion")
			}
		})
	}
}

// TestSeqCounterESNCrossing checks that with ESN the counter goes on past
// 2^32-1 without any event.
func TestSeqCounterESNCrossing(t *testing.T) {
	c, _, ev := newSeq(t, 1<<32-2, true, 0, Limits{})
	for _, want := range []uint64{1<<32 - 1, 1 << 32, 1<<32 + 1} {
		wantSeq(t, c, want)
	}
	if len(ev.list) != 0 {
		t.Fatalf("events %v", ev.list)
	}
}

// TestSeqCounterSoftMargin checks where the soft event fires: once fewer
// than margin numbers remain after the one just handed out.
func TestSeqCounterSoftMargin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		esn       bool
		margin    uint64
		lastQuiet uint64 // the last number without the soft event
	}{
		{"margin10", false, 10, 1<<32 - 1 - 10},
		{"default32", false, 0, 1<<32 - 1 - 1<<28},
		{"defaultESN", true, 0, 1<<64 - 1 - 1<<32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, ev := newSeq(t, tc.lastQuiet-1, tc.esn, tc.margin, Limits{})
			wantSeq(t, c, tc.lastQuiet)
			if len(ev.list) != 0 {
				t.Fatalf("event at %d: %v", tc.lastQuiet, ev.list)
			}
			wantSeq(t, c, tc.lastQuiet+1)
			wantSeq(t, c, tc.lastQuiet+2)
			if ev.count(false) != 1 || len(ev.list) != 1 {
				t.Fatalf("events %v", ev.list)
			}
		})
	}
	// A margin larger than the space fires on the first number.
	c, _, ev := newSeq(t, 0, false, 1<<40, Limits{})
	wantSeq(t, c, 1)
	if ev.count(false) != 1 {
		t.Fatalf("events %v", ev.list)
	}
}

// TestSeqCounterExpired checks that a hard limit of another kind stops the
// counter with DropExpired.
func TestSeqCounterExpired(t *testing.T) {
	c, m, _ := newSeq(t, 0, false, 0, Limits{Hard: Lifetime{Packets: 1}})
	wantSeq(t, c, 1)
	m.Add(100) // the packet that reaches the hard packet limit
	wantSeqDrop(t, c, DropExpired)
	if c.Last() != 1 {
		t.Fatalf("Last %d, want 1", c.Last())
	}
}

func TestSeqCounterStart(t *testing.T) {
	m := NewMeter(Event{}, Limits{}, time.Unix(0, 0), nil)
	if _, err := NewSeqCounter(1<<32, false, 0, m); err == nil {
		t.Fatal("start 2^32 accepted without ESN")
	}
	if _, err := NewSeqCounter(1<<32, true, 0, m); err != nil {
		t.Fatalf("start 2^32 with ESN: %v", err)
	}
	// A start at the last number leaves nothing to hand out.
	c, _, ev := newSeq(t, 1<<32-1, false, 0, Limits{})
	wantSeqDrop(t, c, DropSeqExhausted)
	if ev.count(true) != 1 {
		t.Fatalf("events %v", ev.list)
	}
}

func TestSeqCounterInRange(t *testing.T) {
	c32, _, _ := newSeq(t, 0, false, 0, Limits{})
	cESN, _, _ := newSeq(t, 0, true, 0, Limits{})
	for _, tc := range []struct {
		c    *SeqCounter
		seq  uint64
		want bool
	}{
		{c32, 0, false},
		{c32, 1, true},
		{c32, 1<<32 - 1, true},
		{c32, 1 << 32, false},
		{cESN, 0, false},
		{cESN, 1 << 32, true},
		{cESN, 1<<64 - 1, true},
	} {
		if got := tc.c.InRange(tc.seq); got != tc.want {
			t.Errorf("InRange(%d) = %v, want %v", tc.seq, got, tc.want)
		}
	}
	if MaxSeq(false) != 1<<32-1 || MaxSeq(true) != 1<<64-1 {
		t.Fatalf("MaxSeq %d %d", MaxSeq(false), MaxSeq(true))
	}
}

// TestSeqCounterConcurrent hands out numbers on several goroutines: each
// number from 1 to the total comes out exactly once.
func TestSeqCounterConcurrent(t *testing.T) {
	const workers, each = 8, 2000
	c, _, _ := newSeq(t, 0, false, 0, Limits{})
	seen := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				s, err := c.Next()
				if err != nil {
					t.Error(err)
					return
				}
				seen[w] = append(seen[w], s)
			}
		})
	}
	wg.Wait()
	got := make([]bool, workers*each+1)
	for _, list := range seen {
		for i, s := range list {
			if s == 0 || s > workers*each || got[s] {
				t.Fatalf("number %d out of range or handed out twice", s)
			}
			if i > 0 && s <= list[i-1] {
				t.Fatalf("numbers out of order on one goroutine: %d after %d", s, list[i-1])
			}
			got[s] = true
		}
	}
	if c.Last() != workers*each {
		t.Fatalf("Last %d, want %d", c.Last(), workers*each)
	}
}

func TestSeqCounterAllocs(t *testing.T) {
	c, _, _ := newSeq(t, 0, false, 0, Limits{})
	if n := testing.AllocsPerRun(1000, func() { c.Next() }); n != 0 {
		t.Fatalf("Next allocates %v times", n)
	}
}
