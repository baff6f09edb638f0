package replay

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/goipsec/goipsec/internal/benchtest"
)

func mustNew(t testing.TB, size int, esn bool) *Window {
	t.Helper()
	w, err := New(size, esn)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestNewSizes(t *testing.T) {
	for _, tc := range []struct {
		in, want int
	}{
		{MinSize, 64}, {64, 64}, {65, 128}, {DefaultSize, 1024}, {1000, 1024},
		{65536, 65536}, {MaxSize, MaxSize},
	} {
		w, err := New(tc.in, false)
		if err != nil {
			t.Fatalf("New(%d): %v", tc.in, err)
		}
		if w.Size() != tc.want {
			t.Errorf("New(%d).Size() = %d, want %d", tc.in, w.Size(), tc.want)
		}
		if n := len(w.bits); n&(n-1) != 0 || n*64 < tc.want+64 {
			t.Errorf("New(%d): ring of %d words", tc.in, n)
		}
	}
	for _, bad := range []int{-1, 0, 1, MinSize - 1, MaxSize + 1, math.MaxInt} {
		if _, err := New(bad, false); err == nil {
			t.Errorf("New(%d) succeeded", bad)
		}
	}
}

// acceptAll accepts seqs in order and fails on a rejection.
func acceptAll(t *testing.T, w *Window, seqs ...uint64) {
	t.Helper()
	for _, s := range seqs {
		if !w.Accept(s) {
			t.Fatalf("Accept(%d) = false, top %d", s, w.Top())
		}
	}
}

func TestInOrderAndDuplicates(t *testing.T) {
	w := mustNew(t, 64, false)
	if seq, ok := w.Check(0); ok || seq != 0 {
		t.Fatalf("Check(0) = %d, %v; sequence number 0 is never valid", seq, ok)
	}
	if w.Accept(0) {
		t.Fatal("Accept(0) = true")
	}
	for s := uint64(1); s <= 1000; s++ {
		if seq, ok := w.Check(uint32(s)); !ok || seq != s {
			t.Fatalf("Check(%d) = %d, %v", s, seq, ok)
		}
		if !w.Accept(s) {
			t.Fatalf("Accept(%d) = false", s)
		}
		if _, ok := w.Check(uint32(s)); ok {
			t.Fatalf("Check(%d) after Accept = ok", s)
		}
		if w.Accept(s) {
			t.Fatalf("second Accept(%d) = true", s)
		}
		if w.Top() != s {
			t.Fatalf("Top() = %d, want %d", w.Top(), s)
		}
	}
}

func TestOutOfOrderAndLeftOfWindow(t *testing.T) {
	w := mustNew(t, 64, false) // W = 64: window [top-63, top]
	acceptAll(t, w, 100)
	for _, s := range []uint64{99, 37, 70, 38, 98} { // 37 = 100-63, the left edge
		if _, ok := w.Check(uint32(s)); !ok {
			t.Fatalf("Check(%d) rejected inside the window", s)
		}
		acceptAll(t, w, s)
	}
	for _, s := range []uint64{36, 1, 99, 37} {
		if _, ok := w.Check(uint32(s)); ok {
			t.Errorf("Check(%d) accepted", s)
		}
		if w.Accept(s) {
			t.Errorf("Accept(%d) accepted", s)
		}
	}
	if w.Top() != 100 {
		t.Fatalf("Top() = %d", w.Top())
	}
	// Sliding by one moves the left edge: 37 was accepted, 38 is now the edge.
	acceptAll(t, w, 101)
	if w.Accept(37) {
		t.Error("Accept(37) after the window slid past it")
	}
	if _, ok := w.Check(39); !ok {
		t.Error("Check(39) rejected at the left edge")
	}
}

func TestHugeJumpClearsBitmap(t *testing.T) {
	for _, size := range []int{32, 64, 1024, 65536} {
		w := mustNew(t, size, false)
		W := uint64(w.Size())
		ring := uint64(len(w.bits)) * 64
		for s := uint64(1); s <= W; s++ {
			acceptAll(t, w, s)
		}
		// Jumps to the same ring position and far beyond: every number
		// in the new window that was not received must be acceptable.
		for _, jump := range []uint64{ring, ring + 1, 3 * ring, W + 1, W, 1 << 31} {
			top := w.Top() + jump
			acceptAll(t, w, top)
			for _, s := range []uint64{top - 1, top - W + 1, top - W/2, top - W + 63} {
				if _, ok := w.Check(uint32(s)); !ok {
					t.Fatalf("size %d jump %d: Check(%d) rejected, top %d", size, jump, s, top)
				}
			}
			if w.Accept(top - W) {
				t.Fatalf("size %d: Accept(top-W) accepted", size)
			}
			acceptAll(t, w, top-1)
			if w.Accept(top - 1) {
				t.Fatalf("size %d: duplicate accepted", size)
			}
		}
	}
}

func TestForgedPacketDoesNotMoveWindow(t *testing.T) {
	w := mustNew(t, 64, true)
	acceptAll(t, w, 1, 2, 3)
	// A forged packet far ahead passes Check (it is not a replay) but fails
	// its ICV, so Accept is never called: the window must not move, and the
	// genuine packets after it are still accepted.
	seq, ok := w.Check(1 << 30)
	if !ok || seq != 1<<30 {
		t.Fatalf("Check = %d, %v", seq, ok)
	}
	if w.Top() != 3 {
		t.Fatalf("Check moved the window: Top() = %d", w.Top())
	}
	for s := uint64(4); s < 200; s++ {
		if _, ok := w.Check(uint32(s)); !ok {
			t.Fatalf("Check(%d) rejected after a forged packet", s)
		}
		acceptAll(t, w, s)
	}
}

func TestNonESNLimits(t *testing.T) {
	w := mustNew(t, 64, false)
	if w.Accept(1 << 32) {
		t.Fatal("Accept(2^32) on a window without ESN")
	}
	acceptAll(t, w, math.MaxUint32)
	if seq, ok := w.Check(0); ok || seq != 0 {
		t.Fatalf("Check(0) = %d, %v without ESN", seq, ok)
	}
	if seq, ok := w.Check(5); ok || seq != 5 {
		t.Fatalf("Check(5) = %d, %v: no wrap without ESN", seq, ok)
	}
}

// TestESNBoundaries walks the examples of RFC 4303, Appendix A2.2 around the
// 2^32 boundary in both directions.
func TestESNBoundaries(t *testing.T) {
	const e = uint64(1) << 32
	w := mustNew(t, 64, true) // W = 64
	acceptAll(t, w, e-10)     // Case A: Tl = 2^32-10 >= W-1
	for _, tc := range []struct {
		low  uint32
		want uint64
		ok   bool
	}{
		{uint32(e - 20), e - 20, true},      // inside the window
		{uint32(e - 10), e - 10, false},     // duplicate
		{uint32(e - 10 - 63), e - 73, true}, // left edge Bl
		{uint32(e - 10 - 64), e + e - 74, true},
		{uint32(e - 1), e - 1, true},            // ahead, same subspace
		{0, e, true},                            // seq 0 of the next epoch
		{5, e + 5, true},                        // next subspace
		{math.MaxUint32 - 200, 2*e - 201, true}, // below Bl: next subspace
	} {
		seq, ok := w.Check(tc.low)
		if seq != tc.want || ok != tc.ok {
			t.Errorf("top 2^32-10: Check(%#x) = %#x, %v; want %#x, %v", tc.low, seq, ok, tc.want, tc.ok)
		}
	}
	// Cross the boundary: the low half 0 of epoch 1 is a real number.
	acceptAll(t, w, e-1, e, e+5) // now Case B: Tl = 5 < W-1
	for _, tc := range []struct {
		low  uint32
		want uint64
		ok   bool
	}{
		{uint32(e - 20), e - 20, true},   // previous subspace, in the window
		{uint32(e - 1), e - 1, false},    // duplicate across the boundary
		{0, e, false},                    // duplicate of seq 0 of epoch 1
		{uint32(e - 58), e - 58, true},   // left edge: e+5-63
		{uint32(e - 59), 2*e - 59, true}, // below Bl: read as current subspace, far ahead
		{6, e + 6, true},
		{3, e + 3, true},
	} {
		seq, ok := w.Check(tc.low)
		if seq != tc.want || ok != tc.ok {
			t.Errorf("top 2^32+5: Check(%#x) = %#x, %v; want %#x, %v", tc.low, seq, ok, tc.want, tc.ok)
		}
	}
	acceptAll(t, w, e-20)
	if w.Top() != e+5 {
		t.Fatalf("Top() = %#x after an older packet", w.Top())
	}
	// Exactly at a boundary: Top = 2^32-1, next is 2^32 (low 0).
	w = mustNew(t, 1024, true)
	acceptAll(t, w, e-1)
	if seq, ok := w.Check(0); !ok || seq != e {
		t.Fatalf("Check(0) at top 2^32-1 = %#x, %v", seq, ok)
	}
	acceptAll(t, w, e)
	if seq, ok := w.Check(0); ok || seq != e {
		t.Fatalf("Check(0) at top 2^32 = %#x, %v", seq, ok)
	}
	// Before the first epoch: a fresh window reads a high low half as the
	// (nonexistent) epoch -1 and refuses it.
	w = mustNew(t, 1024, true)
	if _, ok := w.Check(math.MaxUint32); ok {
		t.Fatal("Check(2^32-1) on a fresh ESN window accepted")
	}
	if seq, ok := w.Check(math.MaxUint32 - 1023); !ok || seq != math.MaxUint32-1023 {
		t.Fatalf("Check(2^32-1024) on a fresh window = %#x, %v", seq, ok)
	}
	// The last epoch: no subspace after 2^32-1.
	w = mustNew(t, 64, true)
	acceptAll(t, w, math.MaxUint64-1)
	if _, ok := w.Check(3); ok {
		t.Fatal("Check past 2^64-1 accepted")
	}
	if seq, ok := w.Check(math.MaxUint32); !ok || seq != math.MaxUint64 {
		t.Fatalf("Check(last) = %#x, %v", seq, ok)
	}
}

// expectedESN is the definition RFC 4303, Appendix A2.2 implements, written
// independently: the number congruent to low modulo 2^32 among the 2^32
// numbers starting at the left edge top-W+1. It is valid if it is >= 1.
func expectedESN(top, size uint64, low uint32) (int64, bool) {
	base := int64(top) - int64(size) + 1
	s := base + int64(low-uint32(base))
	return s, s >= 1
}

func TestESNInferenceProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for _, size := range []int{32, 64, 1024, 65536, MaxSize} {
		W := uint64((size + 63) &^ 63)
		for range n / 5 {
			var top uint64
			switch r.IntN(4) {
			case 0: // near a 2^32 boundary
				top = uint64(r.IntN(4))<<32 + uint64(r.Int64N(int64(2*W))) - W
			case 1: // near the start
				top = uint64(r.Int64N(int64(2 * W)))
			default:
				top = r.Uint64N(1 << 40)
			}
			if top == 0 || top > 1<<62 {
				continue
			}
			w := mustNew(t, size, true)
			acceptAll(t, w, top)
			var low uint32
			if r.IntN(2) == 0 {
				low = uint32(top) + uint32(r.Int64N(int64(4*W))) - uint32(2*W)
			} else {
				low = r.Uint32()
			}
			want, valid := expectedESN(top, W, low)
			seq, ok := w.Check(low)
			if valid && seq != uint64(want) {
				t.Fatalf("size %d top %#x: Check(%#x) = %#x, want %#x", size, top, low, seq, want)
			}
			if ok != (valid && uint64(want) != top) {
				t.Fatalf("size %d top %#x: Check(%#x) ok = %v, want valid %v (seq %#x)", size, top, low, ok, valid, want)
			}
		}
	}
}

// model is the reference: a set of received numbers and the maximum. A number
// is accepted if it is not 0, not received, and within size of the maximum.
type model struct {
	seen map[uint64]bool
	max  uint64
	size uint64
}

func (m *model) accept(s uint64) bool {
	if s == 0 || m.seen[s] || (s <= m.max && m.max-s >= m.size) {
		return false
	}
	m.seen[s] = true
	m.max = max(m.max, s)
	return true
}

func TestAgainstModel(t *testing.T) {
	n := 200000
	if testing.Short() {
		n = 20000
	}
	for _, size := range []int{32, 64, 100, 1024, 65536, MaxSize} {
		for _, esn := range []bool{false, true} {
			r := rand.New(rand.NewPCG(uint64(size), 7))
			w := mustNew(t, size, esn)
			W := uint64(w.Size())
			m := &model{seen: map[uint64]bool{}, size: W}
			next := uint64(1)
			if esn {
				next = 1<<32 - 3*W // cross the boundary during the run
			}
			for i := range n {
				var s uint64
				switch k := r.IntN(100); {
				case k < 50: // in order
					s = next
					next++
				case k < 75: // reordered within about the window
					d := r.Uint64N(W + W/4 + 2)
					if d < next {
						s = next - d
					}
				case k < 85: // duplicate of a recent one
					s = m.max - r.Uint64N(min(m.max, 8)+1)
				case k < 90: // a jump ahead, sometimes beyond the window
					next += r.Uint64N(3 * W)
					s = next
				case k < 91:
					next += r.Uint64N(1 << 20)
					s = next
				default: // far behind
					s = r.Uint64N(next + 1)
				}
				if !esn && s > math.MaxUint32 {
					continue
				}
				wantOK := s != 0 && !m.seen[s] && (s > m.max || m.max-s < W)
				if esn {
					if seq, ok := w.Check(uint32(s)); seq == s && ok != wantOK {
						t.Fatalf("size %d esn step %d: Check(%#x) = %v, model %v", size, i, s, ok, wantOK)
					}
				} else if _, ok := w.Check(uint32(s)); ok != wantOK {
					t.Fatalf("size %d step %d: Check(%d) = %v, model %v", size, i, s, ok, wantOK)
				}
				got, want := w.Accept(s), m.accept(s)
				if got != want {
					t.Fatalf("size %d esn %v step %d: Accept(%#x) = %v, model %v (top %#x)", size, esn, i, s, got, want, m.max)
				}
				if w.Top() != m.max {
					t.Fatalf("Top() = %d, model %d", w.Top(), m.max)
				}
			}
		}
	}
}

func TestConcurrentAccept(t *testing.T) {
	w := mustNew(t, 4096, true)
	const perG, gs = 2000, 4
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for g := range gs {
		wg.Go(func() {
			// Every goroutine offers the same numbers: each must be
			// accepted exactly once.
			for i := range perG {
				s := uint64(i + 1)
				if g%2 == 1 {
					s = perG - uint64(i)
				}
				if _, ok := w.Check(uint32(s)); ok && w.Accept(s) {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if accepted.Load() != perG {
		t.Fatalf("accepted %d of %d distinct numbers", accepted.Load(), perG)
	}
}

func TestAllocs(t *testing.T) {
	w := mustNew(t, DefaultSize, true)
	var s uint64
	n := testing.AllocsPerRun(1000, func() {
		s++
		seq, ok := w.Check(uint32(s))
		if ok {
			w.Accept(seq)
		}
		w.Accept(s - 1)
	})
	if n != 0 {
		t.Fatalf("Check+Accept allocate %v times per packet", n)
	}
}

func BenchmarkAccept(b *testing.B) {
	for _, esn := range []bool{false, true} {
		name := "seq32"
		if esn {
			name = "esn"
		}
		b.Run(name+"/inorder", func(b *testing.B) {
			w := mustNew(b, DefaultSize, esn)
			var s uint64
			for b.Loop() {
				s++
				seq, ok := w.Check(uint32(s))
				if !ok || !w.Accept(seq) {
					b.Fatal("rejected")
				}
			}
		})
		b.Run(name+"/reordered", func(b *testing.B) {
			// Pairs swapped: 2, 1, 4, 3, ...
			w := mustNew(b, DefaultSize, esn)
			var i uint64
			for b.Loop() {
				i++
				s := i + 1
				if i%2 == 0 {
					s = i - 1
				}
				if seq, ok := w.Check(uint32(s)); ok {
					w.Accept(seq)
				}
			}
		})
	}
}

// TestWindowOneAllocation checks the layout of the per-SA cost work of
// issue 9: a window of up to DefaultSize packets keeps its ring inside the
// Window (one allocation, header and ring adjacent); a larger one has its
// ring apart, and both work.
func TestWindowOneAllocation(t *testing.T) {
	for _, c := range []struct{ size, allocs int }{{MinSize, 1}, {DefaultSize, 1}, {2 * DefaultSize, 2}} {
		if n := testing.AllocsPerRun(100, func() { New(c.size, false) }); int(n) != c.allocs {
			t.Errorf("size %d: %v allocations, want %d", c.size, n, c.allocs)
		}
		w, err := New(c.size, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{1, 3, uint64(c.size) + 10, 3} {
			if _, ok := w.Check(uint32(seq)); !ok || !w.Accept(seq) {
				if seq == 3 && w.Top() > 3 {
					continue // the second 3 is left of the window or a replay
				}
				t.Fatalf("size %d: seq %d refused", c.size, seq)
			}
		}
		if w.Accept(uint64(c.size) + 10) {
			t.Fatalf("size %d: a replay was accepted", c.size)
		}
	}
}

// TestConcurrentCheckAccept runs Check (which takes no lock) and Accept on
// several goroutines that offer the same numbers, slightly reordered, across
// the 2^32 boundary of an ESN window: whenever Check says yes, the number it
// infers is the one sent (RFC 4303, Appendix A), unless that number is left
// of the window by then; whenever it says no, Accept
// refuses the number too (Check never refuses what Accept would take); and
// no number is accepted twice. With a window wider than the range, every
// number is accepted exactly once; with a narrow one, the window slides
// while the goroutines check against it.
func TestConcurrentCheckAccept(t *testing.T) {
	const n, gs, jitter = 6000, 4, 16
	base := uint64(1)<<32 - n/2
	for _, size := range []int{MaxSize, 64, 256} {
		w := mustNew(t, size, true)
		acceptAll(t, w, base)
		counts := make([]atomic.Int32, n+1)
		var wg sync.WaitGroup
		var bad atomic.Value
		for g := range gs {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 7))
				order := make([]uint64, n)
				for i := range order {
					order[i] = uint64(i + 1)
				}
				// Reorder within blocks of jitter numbers, far less than
				// the window.
				for i := 0; i < n; i += jitter {
					blk := order[i:min(i+jitter, n)]
					r.Shuffle(len(blk), func(a, b int) { blk[a], blk[b] = blk[b], blk[a] })
				}
				for _, k := range order {
					s := base + k
					seq, ok := w.Check(uint32(s))
					if !ok {
						if w.Accept(s) {
							bad.Store(fmt.Sprintf("size %d: Check(%#x) refused, Accept took it", size, s))
						}
						continue
					}
					if seq != s {
						// Only a number that has fallen left of the
						// window (another goroutine ran ahead) reads as
						// one in the next high half, whose ICV would
						// fail: RFC 4303, Appendix A2.2.
						if seq != s+1<<32 || w.Top() < s+uint64(w.Size()) || w.Accept(s) {
							bad.Store(fmt.Sprintf("size %d: Check(%#x) inferred %#x, top %#x", size, uint32(s), seq, w.Top()))
						}
						continue
					}
					if w.Accept(seq) {
						counts[k].Add(1)
					}
				}
			})
		}
		wg.Wait()
		if b := bad.Load(); b != nil {
			t.Fatal(b)
		}
		for k := 1; k <= n; k++ {
			c := counts[k].Load()
			if c > 1 || size == MaxSize && c != 1 {
				t.Fatalf("size %d: %#x accepted %d times", size, base+uint64(k), c)
			}
		}
		if w.Top() != base+n {
			t.Fatalf("size %d: Top() = %#x, want %#x", size, w.Top(), base+n)
		}
	}
}

// TestConcurrentDuplicatePairs offers each number twice at the same
// instant, from two goroutines released together, at the window's edges:
// the new top, a hole just inside it, and the left edge. Each number lies
// inside the window when it is offered, so exactly one copy is accepted,
// or none if the number was accepted before.
func TestConcurrentDuplicatePairs(t *testing.T) {
	const W = 64
	for _, esn := range []bool{false, true} {
		w := mustNew(t, W, esn)
		var top uint64 = 1000
		if esn {
			top = 1<<32 - 2 // the offers cross into the next high half
		}
		acceptAll(t, w, top)
		seen := map[uint64]bool{top: true}
		for i := range uint64(200) {
			t2 := top + 2*i + 2
			for _, s := range []uint64{t2, t2 - 1, t2 - W + 1} {
				var wins atomic.Int32
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range 2 {
					wg.Go(func() {
						<-start
						if seq, ok := w.Check(uint32(s)); ok && seq == s && w.Accept(seq) {
							wins.Add(1)
						}
					})
				}
				close(start)
				wg.Wait()
				want := int32(1)
				if seen[s] {
					want = 0
				}
				if got := wins.Load(); got != want {
					t.Fatalf("esn %v: %#x accepted %d times, want %d", esn, s, got, want)
				}
				seen[s] = true
			}
		}
	}
}

// lockedCheck is Check as it was before it went lock-free: the same
// inference and bitmap test under the window's mutex. It lives here only,
// for BenchmarkCheckAcceptOldNew.
func (w *Window) lockedCheck(seqLow uint32) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Check(seqLow)
}

// BenchmarkCheckAcceptOldNew compares the replay work of one inbound
// packet before and after Check went lock-free (issue 9: one lock per
// inbound packet): old is a locked Check and Accept (two lock round trips),
// new a lock-free Check and Accept (one). In-order ESN numbers, a window of
// DefaultSize. "serial" interleaves the two in batches of 8 packets and
// reports the medians of the per-packet times; "parallel" runs each on
// every core at once, numbers from a shared counter, as the data plane's
// workers check while its sequential stage accepts.
func BenchmarkCheckAcceptOldNew(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		w1, w2 := mustNew(b, DefaultSize, true), mustNew(b, DefaultSize, true)
		oldFn := func(i int) error {
			s := uint64(i) + 1
			if seq, ok := w1.lockedCheck(uint32(s)); !ok || !w1.Accept(seq) {
				return fmt.Errorf("old: %d rejected", s)
			}
			return nil
		}
		newFn := func(i int) error {
			s := uint64(i) + 1
			if seq, ok := w2.Check(uint32(s)); !ok || !w2.Accept(seq) {
				return fmt.Errorf("new: %d rejected", s)
			}
			return nil
		}
		benchtest.OldNew(b, 8, 0, nil, oldFn, newFn)
	})
	for _, old := range []bool{true, false} {
		name := "parallel/new"
		if old {
			name = "parallel/old"
		}
		b.Run(name, func(b *testing.B) {
			w := mustNew(b, DefaultSize, true)
			check := w.Check
			if old {
				check = w.lockedCheck
			}
			var next atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s := next.Add(1)
					// Numbers from several goroutines arrive slightly out
					// of order; one left of the window is refused, as in
					// the data plane.
					if seq, ok := check(uint32(s)); ok {
						w.Accept(seq)
					}
				}
			})
		})
	}
}
