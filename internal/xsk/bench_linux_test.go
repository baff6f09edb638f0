//go:build amd64 || arm64

package xsk

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/sa"
	"golang.org/x/sys/unix"
)

// The measurement of docs/performance.md, "AF_XDP on veth, measured": a
// sender floods a fixed number of ESP packets over the veth of a pair of
// namespaces, and a receiver counts them. Senders: raw socket sendmmsg
// (conn.RawConn, what the data plane sends raw ESP with), ESP in UDP with
// segmentation offload (conn.UDPConn), and AF_XDP transmit. Receivers: raw
// socket recvmmsg (conn.RawConn), AF_XDP behind the XDP program (native
// mode on veth, or generic), and ESP in UDP with receive coalescing
// (conn.UDPConn).

// ioCase is one sender and one receiver.
type ioCase struct{ tx, rx string }

func (c ioCase) String() string { return c.tx + ">" + c.rx }

var benchCases = []ioCase{
	{"raw", "raw"},       // raw ESP as goipsec does it now
	{"raw", "xsk"},       // AF_XDP receive, raw sockets to send
	{"raw", "xskgen"},    // the same with the program in generic mode
	{"xsk", "xsk"},       // AF_XDP both ways
	{"xsk", "xskgen"},    // the same, the receiver's program in generic mode
	{"xsk", "raw"},       // AF_XDP transmit alone
	{"udp", "udp"},       // ESP in UDP with GSO and GRO: the reference
	{"udp-nogso", "udp"}, // for scale: UDP without segmentation offload
}

// result is one run of one case: counts and per-packet times in ns.
type result struct {
	sent, received      int
	pps                 float64 // received per second, first to last
	rxCPU, txCPU, proc  float64 // receiver and sender thread CPU, process CPU, per packet received
	softirqd            float64 // the ksoftirqd threads' CPU per packet received
	rxBatch             float64 // packets per receive call that returned any
	xdpMode             string
	zeroCopy, txZeroCpy bool
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// softirqdCPU returns the CPU time of the kernel's ksoftirqd threads (the
// first field of /proc/PID/schedstat, in ns): the receive processing that
// the kernel defers from the threads that raised it. Other tenants' softirq
// work counts too, so it is an upper bound.
func softirqdCPU() time.Duration {
	var sum time.Duration
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") {
			continue
		}
		st, err := os.ReadFile("/proc/" + d.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f, _, _ := strings.Cut(string(st), " ")
		ns, _ := strconv.ParseInt(f, 10, 64)
		sum += time.Duration(ns)
	}
	return sum
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// receiver reads until stop is set (an AF_XDP socket) or its socket is
// closed, counting packets and reading each one's SPI.
type receiver struct {
	count, calls, spis atomic.Int64
	first, last        atomic.Int64 // ns since the start
	cpu                time.Duration
	done               chan struct{}
	stop               atomic.Bool
	close              func() // ends the reading
	release            func() // after the reading ended, or nil
}

func (r *receiver) got(k int, t0 time.Time) {
	if k == 0 {
		return
	}
	now := int64(time.Since(t0))
	if r.count.Load() == 0 {
		r.first.Store(now)
	}
	r.count.Add(int64(k))
	r.calls.Add(1)
	r.last.Store(now)
}

// startReceiver opens the receiving end of c in p.rcv and starts reading on
// a goroutine locked to its thread.
func startReceiver(t *testing.T, p *pair, c ioCase, t0 time.Time, res *result) *receiver {
	t.Helper()
	r := &receiver{done: make(chan struct{})}
	var loop func()
	switch c.rx {
	case "raw":
		var rc *conn.RawConn
		in(t, p.rcv, func() (err error) { rc, err = conn.ListenRaw(4, sa.ESP, 0); return err })
		r.close = func() { rc.Close() }
		loop = func() {
			bufs := make([][]byte, rc.BatchSize())
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			sizes := make([]int, len(bufs))
			for {
				k, err := rc.Read(bufs, sizes, 0)
				if err != nil {
					return
				}
				for i := range k {
					r.spis.Add(int64(binary.BigEndian.Uint32(bufs[i][20:]) & 1))
				}
				r.got(k, t0)
			}
		}
	case "udp":
		var uc *conn.UDPConn
		in(t, p.rcv, func() (err error) {
			uc, err = conn.ListenUDP(netip.AddrPortFrom(xskAddr, conn.NATTPort), 0)
			return err
		})
		r.close = func() { uc.Close() }
		loop = func() {
			// As the data plane reads: a batch of 64 KiB buffers.
			bufs := make([][]byte, uc.BatchSize())
			for i := range bufs {
				bufs[i] = make([]byte, 64<<10)
			}
			sizes := make([]int, len(bufs))
			addrs := make([]netip.AddrPort, len(bufs))
			for {
				k, err := uc.Read(bufs, sizes, addrs, 0)
				if err != nil {
					return
				}
				for i := range k {
					r.spis.Add(int64(binary.BigEndian.Uint32(bufs[i]) & 1))
				}
				r.got(k, t0)
			}
		}
	case "xsk", "xskgen":
		var prog *Program
		var s *Socket
		in(t, p.rcv, func() (err error) {
			if prog, err = Attach(p.rcvIdx, Options{Dst: xskAddr, Generic: c.rx == "xskgen"}); err != nil {
				return err
			}
			if s, err = Open(p.rcvIdx, Config{}); err != nil {
				prog.Close()
				return err
			}
			return prog.Register(0, s)
		})
		res.xdpMode, res.zeroCopy = prog.Mode().String(), s.ZeroCopy()
		r.close = func() { r.stop.Store(true) }
		r.release = func() { prog.Close() } // detaches it for the next case
		t.Cleanup(func() { prog.Close() })
		loop = func() {
			defer s.Close()
			frames := make([][]byte, 64)
			for !r.stop.Load() {
				k, err := s.Read(frames, 20*time.Millisecond)
				if err != nil {
					t.Error(err)
					return
				}
				for _, f := range frames[:k] {
					r.spis.Add(int64(binary.BigEndian.Uint32(f[34:]) & 1))
				}
				r.got(k, t0)
			}
		}
	default:
		t.Fatalf("no receiver %q", c.rx)
	}
	ready := make(chan struct{})
	go func() {
		defer close(r.done)
		runtime.LockOSThread()
		start := threadCPU()
		close(ready)
		loop()
		r.cpu = threadCPU() - start
	}()
	<-ready
	return r
}

// send floods n packets from p.snd by c.tx on the calling goroutine, locked
// to its thread, and returns the thread's CPU time.
func send(t *testing.T, p *pair, c ioCase, n int, res *result) time.Duration {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pkt := espPacket(senderAddr, xskAddr, 0x1000, 1)
	var write func(k int) (int, error)
	var batch int
	switch c.tx {
	case "raw":
		var rc *conn.RawConn
		in(t, p.snd, func() (err error) { rc, err = conn.ListenRaw(4, sa.ESP, 0); return err })
		defer rc.Close()
		batch = rc.BatchSize()
		bufs := slices.Repeat([][]byte{pkt}, batch)
		write = func(k int) (int, error) { return k, rc.Write(bufs[:k]) }
	case "udp", "udp-nogso":
		var uc *conn.UDPConn
		in(t, p.snd, func() (err error) {
			uc, err = conn.ListenUDP(netip.AddrPortFrom(senderAddr, 0), 0)
			return err
		})
		defer uc.Close()
		batch = uc.BatchSize()
		var bufs [][]byte
		for range batch {
			b := make([]byte, espLen, 2*espLen)
			copy(b, pkt[20:])
			bufs = append(bufs, b)
		}
		if c.tx == "udp-nogso" {
			// Each datagram longer than the one before: no run of
			// equal sizes for UDP_SEGMENT.
			for i := range bufs {
				bufs[i] = bufs[i][:espLen-(len(bufs)-1-i)]
			}
		}
		dst := netip.AddrPortFrom(xskAddr, conn.NATTPort)
		write = func(k int) (int, error) { return k, uc.Write(bufs[:k], dst) }
	case "xsk":
		var s *Socket
		in(t, p.snd, func() (err error) { s, err = Open(p.sndIdx, Config{TX: true, NoRX: true}); return err })
		defer s.Close()
		res.txZeroCpy = s.ZeroCopy()
		batch = 64
		frames := slices.Repeat([][]byte{frame(p.rcvMAC, p.sndMAC, pkt)}, batch)
		write = func(k int) (int, error) { return s.Write(frames[:k]) }
	default:
		t.Fatalf("no sender %q", c.tx)
	}
	start := threadCPU()
	for sent, stalls := 0, 0; sent < n; {
		k, err := write(min(batch, n-sent))
		if err != nil {
			t.Fatalf("%v: sending after %d packets: %v", c, sent, err)
		}
		sent += k
		if k == 0 {
			// An AF_XDP ring full of frames the kernel has not sent yet.
			if stalls++; stalls > 1e6 {
				t.Fatalf("%v: no progress after %d packets", c, sent)
			}
			runtime.Gosched()
		}
	}
	res.sent = n
	return threadCPU() - start
}

// measure runs one case once: n packets, then waits until the receiver has
// them all or has had none for 300 ms.
func measure(t *testing.T, p *pair, c ioCase, n int) result {
	t.Helper()
	var res result
	t0 := time.Now()
	proc0, soft0 := processCPU(), softirqdCPU()
	r := startReceiver(t, p, c, t0, &res)
	tx := send(t, p, c, n, &res)
	for last, still := int64(-1), 0; still < 15; {
		time.Sleep(20 * time.Millisecond)
		cnt := r.count.Load()
		if cnt >= int64(n) {
			break
		}
		if cnt == last {
			still++
		} else {
			last, still = cnt, 0
		}
	}
	r.close()
	<-r.done
	if r.release != nil {
		r.release()
	}
	proc, soft := processCPU()-proc0, softirqdCPU()-soft0
	res.received = int(r.count.Load())
	if res.received == 0 {
		return res
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(res.received) }
	if span := r.last.Load() - r.first.Load(); span > 0 {
		res.pps = float64(res.received) / (float64(span) / 1e9)
	}
	res.rxCPU, res.txCPU, res.proc, res.softirqd = per(r.cpu), per(tx), per(proc), per(soft)
	res.rxBatch = float64(res.received) / float64(r.calls.Load())
	return res
}

// TestMeasureSmoke runs every case of the benchmark once with a few
// packets, so that the measurement itself keeps working: each receiver
// gets packets from its sender.
func TestMeasureSmoke(t *testing.T) {
	p := newPair(t)
	for _, c := range benchCases {
		res := measure(t, p, c, 2000)
		if res.received == 0 {
			t.Errorf("%v: nothing received of %d", c, res.sent)
		}
		t.Logf("%-14v received %d of %d, XDP %s", c, res.received, res.sent, res.xdpMode)
	}
}

// TestXSKBench is the benchmark of docs/performance.md, "AF_XDP on veth,
// measured": GOIPSEC_XSK_BENCH=1 runs it (about a minute, so not in make
// test), GOIPSEC_XSK_BENCH_ROUNDS rounds (7) of GOIPSEC_XSK_BENCH_PACKETS
// packets (300000) per case, the cases interleaved in each round;
// GOIPSEC_XSK_BENCH_CASES limits it to some cases (raw>xsk,udp>udp), for
// profiling one. It prints medians and ranges, and writes them to the file
// GOIPSEC_XSK_BENCH_OUT names; it asserts nothing about speed.
func TestXSKBench(t *testing.T) {
	if os.Getenv("GOIPSEC_XSK_BENCH") != "1" {
		t.Skip("GOIPSEC_XSK_BENCH=1 runs the AF_XDP benchmark (about a minute)")
	}
	rounds, n := envInt("GOIPSEC_XSK_BENCH_ROUNDS", 7), envInt("GOIPSEC_XSK_BENCH_PACKETS", 300000)
	cases := benchCases
	if only := os.Getenv("GOIPSEC_XSK_BENCH_CASES"); only != "" {
		// For profiling one case: a comma-separated list such as raw>xsk,udp>udp.
		cases = slices.DeleteFunc(slices.Clone(cases), func(c ioCase) bool {
			return !slices.Contains(strings.Split(only, ","), c.String())
		})
	}
	p := newPair(t)
	all := make(map[ioCase][]result)
	for range rounds {
		for _, c := range cases {
			all[c] = append(all[c], measure(t, p, c, n))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rounds of %d packets of %d bytes of ESP per case; median [min-max]\n", rounds, n, espLen)
	fmt.Fprintf(&b, "%-14s | %-20s | %-17s | %-17s | %-19s | %-17s | %-16s | %-13s | %s\n",
		"send>receive", "received Mpps", "rx CPU ns/pkt", "tx CPU ns/pkt", "process ns/pkt", "ksoftirqd ns/pkt", "pkts per read", "lost %", "mode")
	for _, c := range cases {
		rs := all[c]
		f := func(get func(result) float64, scale float64, prec int) string {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = get(r) * scale
			}
			slices.Sort(v)
			return fmt.Sprintf("%.*f [%.*f-%.*f]", prec, v[len(v)/2], prec, v[0], prec, v[len(v)-1])
		}
		pps := f(func(r result) float64 { return r.pps }, 1e-6, 3)
		mode := rs[0].xdpMode
		if mode != "" {
			mode += map[bool]string{true: " zero-copy", false: " copy"}[rs[0].zeroCopy]
		}
		if c.tx == "xsk" {
			mode += map[bool]string{true: "; tx zero-copy", false: "; tx copy"}[rs[0].txZeroCpy]
		}
		fmt.Fprintf(&b, "%-14v | %-20s | %-17s | %-17s | %-19s | %-17s | %-16s | %-13s | %s\n", c, pps,
			f(func(r result) float64 { return r.rxCPU }, 1, 0), f(func(r result) float64 { return r.txCPU }, 1, 0),
			f(func(r result) float64 { return r.proc }, 1, 0), f(func(r result) float64 { return r.softirqd }, 1, 0),
			f(func(r result) float64 { return r.rxBatch }, 1, 1),
			f(func(r result) float64 { return 100 * float64(r.sent-r.received) / float64(r.sent) }, 1, 1), mode)
	}
	// Ratios to ESP in UDP within each round, then their median and range.
	ref := all[ioCase{"udp", "udp"}]
	if len(ref) == rounds {
		for _, q := range []struct {
			what string
			f    func(r, u result) float64
		}{
			{"received rate over udp>udp's", func(r, u result) float64 { return r.pps / u.pps }},
			{"udp>udp's CPU per packet (process + ksoftirqd) over this case's", func(r, u result) float64 {
				return (u.proc + u.softirqd) / (r.proc + r.softirqd)
			}},
		} {
			fmt.Fprintf(&b, "%s, median [min-max] of the rounds:\n", q.what)
			for _, c := range cases {
				var v []float64
				for i, r := range all[c] {
					if x := q.f(r, ref[i]); r.received > 0 && ref[i].received > 0 && x > 0 {
						v = append(v, x)
					}
				}
				if len(v) > 0 {
					slices.Sort(v)
					fmt.Fprintf(&b, "  %-14v %.3f [%.3f-%.3f]\n", c, v[len(v)/2], v[0], v[len(v)-1])
				}
			}
		}
	}
	t.Log("\n" + b.String())
	if out := os.Getenv("GOIPSEC_XSK_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
