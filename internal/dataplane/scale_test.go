package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// The per-SA cost benchmarks of issue 9 (docs/performance.md, "Per-SA
// cost"): real ESP engines, aes256gcm16, tunnel mode, a 1024-packet replay
// window, one SA pair (inbound and outbound) per CHILD SA, each pair with
// its own Ref, installed through the data plane API.

const (
	scaleSuite  = "aes256gcm16"
	scaleWindow = 1024
	// scaleBatch is the batch the benchmarks move through the stages, as a
	// reader hands them on: the batch size of BenchmarkPipeline.
	scaleBatch = 64
	// scaleRound is how many packets are prepared, with the timer
	// stopped, before they are processed.
	scaleRound = 1024
)

var (
	scaleLocalNet  = netip.MustParsePrefix("10.1.0.0/16")
	scaleRemoteNet = netip.MustParsePrefix("10.2.0.0/16")
	scaleLocal     = netip.MustParseAddr("192.0.2.1")
	scaleRemote    = netip.MustParseAddr("192.0.2.2")
	scaleSizes     = []int{1, 1000, 10000, 100000}
)

// scalePattern is how the benchmarks spread packets over the SAs. Packets
// come in runs of burst consecutive packets of one SA, each run's SA drawn
// at random from the n installed.
type scalePattern struct {
	name  string
	burst int
}

var scalePatterns = []scalePattern{
	// random: every packet on its own random SA, the worst case: with
	// many SAs every packet finds its SA's state cold.
	{"random", 1},
	// flows: runs of 8 packets per SA, 8 SAs per batch of 64, as TCP
	// flows send bursts (a 64 KiB TSO segment is 45 packets) and the
	// reader hands a batch to the stages at once.
	{"flows", 8},
	// bursts: runs of 32 packets per SA, 2 SAs per batch, as a TSO or
	// GRO segment of one TCP flow arrives (45 packets for 64 KiB).
	{"bursts", 32},
}

// next fills sas with the SA index of each packet of a round.
func (p scalePattern) next(r *rand.Rand, n int, sas []int) {
	for i := 0; i < len(sas); i += p.burst {
		k := r.IntN(n)
		for j := i; j < min(i+p.burst, len(sas)); j++ {
			sas[j] = k
		}
	}
}

// scalePair is one CHILD SA as installed: the inbound and outbound SAs in
// the data plane, and the peer's outbound engine with the inbound SA's
// key, which seals the packets the inbound benchmarks open.
type scalePair struct {
	in   *sad.InboundSA
	out  *sad.OutboundSA
	peer *esp.Outbound
}

// newScaleDataplane returns a data plane that is not started, with a UDP
// socket double whose datagrams go nowhere (they are dropped and counted
// as a network drops them).
func newScaleDataplane(tb testing.TB) *Dataplane {
	tb.Helper()
	nw := conntest.NewNetwork(64)
	d, err := New(Config{TUN: tuntest.New(1500, scaleBatch, 16), UDP: nw.UDP(netip.AddrPortFrom(scaleLocal, 4500), scaleBatch, 16)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// scaleEngines builds the engines of CHILD SA i of n: inbound SPI i+1,
// outbound SPI n+i+1, and the peer's sender for the inbound SPI. Keys
// derive from the SPIs.
func scaleEngines(tb testing.TB, suite transform.Suite, n, i int) (in *esp.Inbound, out, peer *esp.Outbound) {
	k := make([]byte, suite.KeyLen())
	tr := func(spi uint32) transform.ESP {
		binary.BigEndian.PutUint32(k, spi)
		t, err := suite.NewESP(k)
		if err != nil {
			tb.Fatal(err)
		}
		return t
	}
	newOut := func(spi uint32, local, remote netip.Addr) *esp.Outbound {
		o, err := esp.NewOutbound(esp.Config{SPI: spi, Transform: tr(spi), Local: local, Remote: remote})
		if err != nil {
			tb.Fatal(err)
		}
		return o
	}
	spiIn, spiOut := uint32(i+1), uint32(n+i+1)
	in, err := esp.NewInbound(esp.Config{SPI: spiIn, Transform: tr(spiIn), ReplayWindow: scaleWindow})
	if err != nil {
		tb.Fatal(err)
	}
	return in, newOut(spiOut, scaleLocal, scaleRemote), newOut(spiIn, scaleRemote, scaleLocal)
}

// scaleSAs wraps the engines of CHILD SA i of n in SAD entries: ESP in UDP
// outbound, Ref the outbound SPI.
func scaleSAs(n, i int, in *esp.Inbound, out *esp.Outbound) (*sad.InboundSA, *sad.OutboundSA) {
	spiIn, spiOut := uint32(i+1), uint32(n+i+1)
	return &sad.InboundSA{Protocol: sa.ESP, SPI: spiIn, Local: set(scaleLocalNet), Remote: set(scaleRemoteNet), LocalAddr: scaleLocal, SA: in},
		&sad.OutboundSA{Protocol: sa.ESP, SPI: spiOut, Ref: spiOut, LocalTS: set(scaleLocalNet), RemoteTS: set(scaleRemoteNet),
			Encap: sad.EncapUDP, Remote: netip.AddrPortFrom(scaleRemote, 4500), SA: out}
}

// installScale installs n CHILD SAs into d (SPIs 1..n inbound, n+1..2n
// outbound) and returns them.
func installScale(tb testing.TB, d *Dataplane, n int) []scalePair {
	tb.Helper()
	suite, err := transform.ParseESP(scaleSuite)
	if err != nil {
		tb.Fatal(err)
	}
	pairs := make([]scalePair, n)
	for i := range pairs {
		ein, eout, peer := scaleEngines(tb, suite, n, i)
		in, out := scaleSAs(n, i, ein, eout)
		if err := d.InstallInbound(in); err != nil {
			tb.Fatal(err)
		}
		if err := d.InstallOutbound(out); err != nil {
			tb.Fatal(err)
		}
		pairs[i] = scalePair{in: in, out: out, peer: peer}
	}
	return pairs
}

// BenchmarkMemoryPerSA reports the heap that n installed CHILD SAs hold:
// per pair (B/pair) and per SA (B/SA, half of it): both engines with their
// keys, AEADs and replay window, and both SAD entries with their
// selectors. The peer engines that the other benchmarks seal with are not
// counted.
func BenchmarkMemoryPerSA(b *testing.B) {
	for _, n := range scaleSizes[1:] {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var perPair float64
			for range b.N {
				var before, after runtime.MemStats
				d := newScaleDataplane(b)
				runtime.GC()
				runtime.ReadMemStats(&before)
				pairs := installScale(b, d, n)
				for i := range pairs {
					pairs[i].peer = nil // not part of this host's state
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				// Less the benchmark's own slice of pairs.
				held := after.HeapAlloc - before.HeapAlloc - uint64(cap(pairs))*uint64(reflect.TypeFor[scalePair]().Size())
				perPair = float64(held) / float64(n)
				runtime.KeepAlive(pairs)
				runtime.KeepAlive(d)
			}
			b.ReportMetric(perPair, "B/pair")
			b.ReportMetric(perPair/2, "B/SA")
		})
	}
}

// cpuClock adds up the CPU time of the benchmark's thread over the timed
// sections, for the cpu-ns/op metric: on a shared machine whose cores
// other jobs take, wall-clock ns/op counts the time spent waiting for a
// core, CPU time does not (cache lines that other jobs evict still
// count). The benchmark's goroutine is locked to its thread meanwhile.
type cpuClock struct {
	total, since time.Duration
	ok           bool
}

func startCPUClock(b *testing.B) *cpuClock {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	return new(cpuClock)
}

func (c *cpuClock) start() { c.since, c.ok = threadCPU() }

func (c *cpuClock) stop() {
	if now, ok := threadCPU(); ok && c.ok {
		c.total += now - c.since
	}
}

// report adds cpu-ns/op to b's results.
func (c *cpuClock) report(b *testing.B) {
	if c.ok && b.N > 0 {
		b.ReportMetric(float64(c.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// sealed is one packet that a peer sealed for the inbound benchmark.
type sealed struct {
	buf        []byte
	start, end int
}

// BenchmarkInboundScale measures the per-packet work of the inbound
// stages with n SAs installed, on batches of 64 packets spread over the
// SAs as each pattern says (scalePatterns): the reader's SAD lookup by SPI
// for the whole batch, then the worker's stage for the batch (warm the
// batch's SAs, then Decrypt each packet), then the sequential stage for
// the batch: Accept on the replay window, decoding the inner packet, the
// selector check and the SA's counters. 1400-byte
// inner packets; the goroutine hand-offs and the socket and TUN I/O are
// left out (BenchmarkPipeline has them). The packets are sealed by the
// peers' engines in rounds of 1024, with the timer stopped.
func BenchmarkInboundScale(b *testing.B) { eachScale(b, benchInbound) }

// eachScale runs bench for every traffic pattern and number of SAs.
func eachScale(b *testing.B, bench func(*testing.B, scalePattern, int)) {
	for _, pat := range scalePatterns {
		for _, n := range scaleSizes {
			b.Run(fmt.Sprintf("%s/n=%d", pat.name, n), func(b *testing.B) { bench(b, pat, n) })
		}
	}
}

func benchInbound(b *testing.B, pat scalePattern, n int) { driveScale(b, newInboundRun(b, pat, n)) }

// A scaleRun is the state of one scale benchmark for one pattern and n.
// prepare makes a round of scaleRound packets, with the timer stopped;
// process then runs the first m of them through the stages, in batches.
type scaleRun interface {
	prepare()
	process(m int)
}

// scaleInner is the length of the benchmarks' inner packets.
const scaleInner = 1400

// driveScale runs b.N packets through run, round by round, and reports the
// CPU time of process per packet.
func driveScale(b *testing.B, run scaleRun) {
	b.SetBytes(scaleInner)
	b.ReportAllocs()
	settle()
	cpu := startCPUClock(b)
	defer cpu.report(b)
	b.ResetTimer()
	for done := 0; done < b.N; {
		m := min(scaleRound, b.N-done)
		b.StopTimer()
		run.prepare()
		b.StartTimer()
		cpu.start()
		run.process(m)
		cpu.stop()
		done += m
	}
}

// settle collects the garbage of the setup (100,000 SAs installed and
// their engines built) before the timed rounds, which allocate nothing: a
// collection that the setup started would otherwise mark a heap of
// hundreds of megabytes during the rounds, with the write barrier on for
// the benchmark's thread and the collector's threads taking the other
// core and the shared cache.
func settle() { runtime.GC() }

// inboundRun is BenchmarkInboundScale's state.
type inboundRun struct {
	b      *testing.B
	d      *Dataplane
	pat    scalePattern
	pairs  []scalePair
	inner  []byte
	head   int
	pkts   []sealed
	sas    []int
	r      *rand.Rand
	ins    [scaleBatch]*sad.InboundSA
	bounds [scaleBatch]struct {
		start, end int
		seq        uint64
	}
	info packet.Info
}

func newInboundRun(b *testing.B, pat scalePattern, n int) scaleRun {
	d := newScaleDataplane(b)
	x := &inboundRun{b: b, d: d, pat: pat, pairs: installScale(b, d, n), r: rand.New(rand.NewPCG(5, 6))}
	x.inner = tuntest.UDP(netip.AddrPortFrom(netip.MustParseAddr("10.2.0.1"), 1),
		netip.AddrPortFrom(netip.MustParseAddr("10.1.0.1"), 9), make([]byte, scaleInner-28))
	head, tail := x.pairs[0].peer.Overhead()
	x.head = head
	x.pkts = make([]sealed, scaleRound)
	for i := range x.pkts {
		x.pkts[i].buf = make([]byte, head+len(x.inner)+tail)
	}
	x.sas = make([]int, scaleRound)
	return x
}

// prepare has the peers seal a round of packets.
func (x *inboundRun) prepare() {
	x.pat.next(x.r, len(x.pairs), x.sas)
	for i := range x.pkts {
		p, o := &x.pkts[i], x.pairs[x.sas[i]].peer
		copy(p.buf[x.head:], x.inner)
		var err error
		if p.start, p.end, err = o.Seal(p.buf, x.head, x.head+len(x.inner)); err != nil {
			x.b.Fatal(err)
		}
	}
}

func (x *inboundRun) process(n int) {
	for lo := 0; lo < n; lo += scaleBatch {
		m := min(scaleBatch, n-lo)
		batch := x.pkts[lo : lo+m]
		// The reader: SAD lookup by SPI.
		snap := x.d.SAD().Load()
		for i := range batch {
			p := &batch[i]
			x.ins[i] = snap.Inbound(sa.ESP, binary.BigEndian.Uint32(p.buf[p.start+packet.IPv4MinHeaderLen:]))
		}
		// The workers: warm the SAs' state (as warm does), then
		// Decrypt.
		for level := range warmLevels {
			var last *sad.InboundSA
			for _, in := range x.ins[:m] {
				if in != last {
					last = in
					warmEngine(in.SA, level)
				}
			}
		}
		for i := range batch {
			p, y := &batch[i], &x.bounds[i]
			var err error
			if y.start, y.end, y.seq, err = x.ins[i].SA.Decrypt(p.buf, p.start, p.end); err != nil {
				x.b.Fatal(err)
			}
		}
		// The sequential stage.
		for i := range batch {
			p, y, in := &batch[i], &x.bounds[i], x.ins[i]
			if err := in.Accept(y.seq); err != nil {
				x.b.Fatal(err)
			}
			pkt := p.buf[y.start:y.end]
			if err := packet.Decode(pkt, &x.info); err != nil || !in.Allows(&x.info) {
				x.b.Fatal("the inner packet does not pass the selector check")
			}
			in.Stats.Add(len(pkt))
		}
	}
}

// BenchmarkOutboundScale measures the per-packet work of the outbound
// stages with n SAs installed, on batches of 64 packets spread over the
// SAs as each pattern says: the classification (decoding the packet, SAD
// lookup by the Ref of the packet's SPD rule and its selectors, the
// headroom check, NextSeq), then the workers' stage (warm, then work1:
// bare ESP), then the send stage (sendBatch on each lane the batch uses:
// the SA's counters, runs grouped by destination, the bare ESP handed to
// the UDP socket). 1400-byte inner packets. The SPD lookup is left out (each SA
// has its own Ref here, and the SPD is not what this measures); so are the
// TUN read and the goroutine hand-offs. The socket is the in-memory
// double, which drops the datagrams: no one listens at their destination.
// The cleartext is copied into the buffers in rounds of 1024, with the
// timer stopped.
func BenchmarkOutboundScale(b *testing.B) { eachScale(b, benchOutbound) }

func benchOutbound(b *testing.B, pat scalePattern, n int) { driveScale(b, newOutboundRun(b, pat, n)) }

// outboundRun is BenchmarkOutboundScale's state.
type outboundRun struct {
	b       *testing.B
	d       *Dataplane
	pat     scalePattern
	pairs   []scalePair
	inner   []byte
	batches []*batch
	refs    []uint32
	sas     []int
	r       *rand.Rand
	info    packet.Info
}

func newOutboundRun(b *testing.B, pat scalePattern, n int) scaleRun {
	d := newScaleDataplane(b)
	x := &outboundRun{b: b, d: d, pat: pat, pairs: installScale(b, d, n), r: rand.New(rand.NewPCG(5, 6))}
	for i := range x.pairs {
		x.pairs[i].peer = nil
	}
	x.inner = tuntest.UDP(netip.AddrPortFrom(netip.MustParseAddr("10.1.0.1"), 1),
		netip.AddrPortFrom(netip.MustParseAddr("10.2.0.1"), 9), make([]byte, scaleInner-28))
	pool := newPool(scaleRound/scaleBatch, scaleBatch, outboundBufSize(1500))
	x.batches = make([]*batch, scaleRound/scaleBatch)
	for i := range x.batches {
		x.batches[i] = pool.newBatch()
	}
	x.refs = make([]uint32, scaleRound)
	x.sas = make([]int, scaleRound)
	return x
}

// prepare draws a round's SAs and puts the cleartext into the buffers.
func (x *outboundRun) prepare() {
	x.pat.next(x.r, len(x.pairs), x.sas)
	for i, k := range x.sas {
		x.refs[i] = x.pairs[k].out.Ref
	}
	for _, bt := range x.batches {
		for _, e := range bt.elems {
			e.start, e.end = headroom, headroom+copy(e.buf[headroom:], x.inner)
		}
	}
}

func (x *outboundRun) process(n int) {
	d := x.d
	for j, bt := range x.batches {
		m := min(scaleBatch, n-j*scaleBatch)
		if m <= 0 {
			break
		}
		bt.n = m
		// The classification, after the SPD gave each packet's Ref.
		snap := d.SAD().Load()
		for i, e := range bt.elems[:m] {
			if err := packet.Decode(e.buf[e.start:e.end], &x.info); err != nil {
				x.b.Fatal(err)
			}
			o := snap.Lookup(x.refs[j*scaleBatch+i], &x.info)
			if o == nil {
				x.b.Fatal("no outbound SA")
			}
			if head, tail := o.SA.Overhead(); head > e.start || e.end+tail > len(e.buf) {
				x.b.Fatal("no room")
			}
			seq, err := o.SA.NextSeq()
			if err != nil {
				x.b.Fatal(err)
			}
			e.out, e.seq, e.kind, e.sp = o, seq, kindProtect, x.info.Split
		}
		// The workers.
		warm(bt.elems[:m])
		for _, e := range bt.elems[:m] {
			d.work1(e)
			if e.drop != sa.DropNone {
				x.b.Fatal(e.drop)
			}
		}
		// The send stage: each lane that has packets of the batch.
		var lanes uint32
		for _, e := range bt.elems[:m] {
			e.lane = saLane(e.out)
			lanes |= 1 << e.lane
		}
		for l := range d.lanes {
			if lanes&(1<<l) != 0 {
				d.sendBatch(d.lanes[l], bt)
			}
		}
	}
}

// BenchmarkScaleRatio runs each per-packet benchmark (InboundScale,
// OutboundScale) with one SA and with 100,000 in alternate rounds of 1024
// packets within one benchmark, and reports both CPU times per packet
// (n1-cpu-ns/op, cpu-ns/op) and their ratio (x-n1): issue 9's figure. On a
// shared machine whose load changes from second to second, the ratio of
// two sub-benchmarks run a minute apart moves with the load; rounds a few
// milliseconds apart see the same load.
func BenchmarkScaleRatio(b *testing.B) {
	n := scaleSizes[len(scaleSizes)-1]
	for _, dir := range []struct {
		name string
		run  func(*testing.B, scalePattern, int) scaleRun
	}{{"inbound", newInboundRun}, {"outbound", newOutboundRun}} {
		for _, pat := range scalePatterns {
			b.Run(fmt.Sprintf("%s/%s/n=%d", dir.name, pat.name, n), func(b *testing.B) {
				runs := [2]scaleRun{dir.run(b, pat, 1), dir.run(b, pat, n)}
				var cpu [2]cpuClock
				b.SetBytes(scaleInner)
				b.ReportAllocs()
				settle()
				startCPUClock(b)
				b.ResetTimer()
				for done := 0; done < b.N; {
					m := min(scaleRound, b.N-done)
					for i, run := range runs {
						b.StopTimer()
						run.prepare()
						b.StartTimer()
						cpu[i].start()
						run.process(m)
						cpu[i].stop()
					}
					done += m
				}
				if cpu[0].ok && cpu[1].ok && b.N > 0 {
					b.ReportMetric(float64(cpu[0].total.Nanoseconds())/float64(b.N), "n1-cpu-ns/op")
					b.ReportMetric(float64(cpu[1].total.Nanoseconds())/float64(b.N), "cpu-ns/op")
					b.ReportMetric(float64(cpu[1].total)/float64(cpu[0].total), "x-n1")
				}
			})
		}
	}
}

// BenchmarkInstallScale measures installing and deleting CHILD SAs through
// the data plane API with n installed: per pair, InstallInbound and
// InstallOutbound (install-ns/pair), RemoveOutbound and RemoveInbound
// (delete-ns/pair). The engines (key schedules, AEADs, replay windows) are
// built beforehand with the timer stopped, in rounds of 1024 pairs, and
// reported apart (build-ns/pair): IKE builds them before it installs. The
// figures are CPU time of the benchmark's thread (see cpuClock), where
// the wall-clock time of a busy machine counts waits for a core; the
// garbage collector's work on other threads is not in them.
func BenchmarkInstallScale(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			d := newScaleDataplane(b)
			installScale(b, d, n)
			suite, err := transform.ParseESP(scaleSuite)
			if err != nil {
				b.Fatal(err)
			}
			ins := make([]*sad.InboundSA, scaleRound)
			outs := make([]*sad.OutboundSA, scaleRound)
			startCPUClock(b)
			b.ReportAllocs() // of install and delete: the build runs with the timer stopped
			var build, install, del cpuClock
			b.ResetTimer()
			for done := 0; done < b.N; {
				m := min(scaleRound, b.N-done)
				b.StopTimer()
				build.start()
				for i := range m {
					// SPIs above those installed: 2n+1 on.
					in, out, _ := scaleEngines(b, suite, n, 2*n+i)
					ins[i], outs[i] = scaleSAs(n, 2*n+i, in, out)
				}
				build.stop()
				b.StartTimer()
				install.start()
				for i := range m {
					if err := d.InstallInbound(ins[i]); err != nil {
						b.Fatal(err)
					}
					if err := d.InstallOutbound(outs[i]); err != nil {
						b.Fatal(err)
					}
				}
				install.stop()
				del.start()
				for i := range m {
					if d.RemoveOutbound(outs[i].Ref, sa.ESP, outs[i].SPI) == nil || d.RemoveInbound(sa.ESP, ins[i].SPI) == nil {
						b.Fatal("SA not removed")
					}
				}
				del.stop()
				done += m
			}
			for _, c := range []struct {
				clock *cpuClock
				unit  string
			}{{&build, "build-cpu-ns/pair"}, {&install, "install-cpu-ns/pair"}, {&del, "delete-cpu-ns/pair"}} {
				if c.clock.ok {
					b.ReportMetric(float64(c.clock.total.Nanoseconds())/float64(b.N), c.unit)
				}
			}
		})
	}
}
