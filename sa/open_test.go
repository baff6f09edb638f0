package sa

import (
	"testing"
	"time"
)

// fakeStages returns fixed Decrypt results and records Accept calls.
type fakeStages struct {
	nstart, nend int
	seq          uint64
	decryptErr   error
	acceptErr    error
	accepted     []uint64
}

func (f *fakeStages) Decrypt(buf []byte, start, end int) (int, int, uint64, error) {
	return f.nstart, f.nend, f.seq, f.decryptErr
}

func (f *fakeStages) Accept(seq uint64) error {
	f.accepted = append(f.accepted, seq)
	return f.acceptErr
}

// TestOpen checks the rule of RFC 4303, Section 3.4.3 (and RFC 4302,
// Section 3.4.3): the window moves for every packet whose ICV verified,
// even one whose payload is then refused, and never for another.
func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		name         string
		f            fakeStages
		wantAccept   bool
		wantErr      error
		wantS, wantE int
	}{
		{"ok", fakeStages{nstart: 20, nend: 84, seq: 7}, true, nil, 20, 84},
		{"bad-icv", fakeStages{decryptErr: DropBadICV}, false, DropBadICV, 0, 0},
		{"bad-padding", fakeStages{nstart: 1, nend: 2, seq: 9, decryptErr: DropBadPadding}, true, DropBadPadding, 0, 0},
		{"replayed", fakeStages{nstart: 20, nend: 84, seq: 7, acceptErr: DropReplay}, true, DropReplay, 0, 0},
		{"replayed-bad-padding", fakeStages{seq: 9, decryptErr: DropBadPadding, acceptErr: DropReplay}, true, DropReplay, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			s, e, err := Open(&f, make([]byte, 100), 0, 100)
			if err != tc.wantErr || s != tc.wantS || e != tc.wantE {
				t.Errorf("Open = %d, %d, %v, want %d, %d, %v", s, e, err, tc.wantS, tc.wantE, tc.wantErr)
			}
			if tc.wantAccept != (len(f.accepted) == 1) || len(f.accepted) > 1 || tc.wantAccept && f.accepted[0] != f.seq {
				t.Errorf("Accept calls %v", f.accepted)
			}
		})
	}
}

func TestOpenAllocs(t *testing.T) {
	f := &fakeStages{nstart: 20, nend: 84, seq: 7, accepted: make([]uint64, 0, 2000)}
	buf := make([]byte, 100)
	if n := testing.AllocsPerRun(1000, func() { Open(f, buf, 0, 100) }); n != 0 {
		t.Fatalf("Open allocates %v times", n)
	}
}

func TestMeterUsable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	calls := 0
	clock := func(d time.Duration) func() time.Time {
		return func() time.Time { calls++; return t0.Add(d) }
	}
	// Without a time limit the clock is never read.
	m := NewMeter(Event{}, Limits{Hard: Lifetime{Packets: 2}}, t0, nil)
	if !m.Usable(clock(time.Hour)) || calls != 0 {
		t.Fatalf("usable without time limit: calls %d", calls)
	}
	m.Add(1)
	m.Add(1) // reaches the hard packet limit
	if m.Usable(clock(0)) || calls != 0 {
		t.Fatalf("usable after the hard packet limit (calls %d)", calls)
	}
	// With one, it is read and a passed hard limit kills the SA.
	var ev []Event
	m = NewMeter(Event{}, Limits{Soft: Lifetime{Time: time.Minute}, Hard: Lifetime{Time: 2 * time.Minute}}, t0, func(e Event) { ev = append(ev, e) })
	if !m.Usable(clock(90*time.Second)) || calls != 1 || len(ev) != 1 || ev[0].Hard {
		t.Fatalf("at 90s: calls %d, events %v", calls, ev)
	}
	if m.Usable(clock(2*time.Minute)) || calls != 2 || len(ev) != 2 || !ev[1].Hard || !m.Dead() {
		t.Fatalf("at 120s: calls %d, events %v", calls, ev)
	}
	if m.Usable(clock(0)) || calls != 2 {
		t.Fatalf("dead meter read the clock: calls %d", calls)
	}
}
