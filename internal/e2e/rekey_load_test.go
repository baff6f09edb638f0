package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/swantest"
	"github.com/goipsec/goipsec/internal/testenv"
)

// The rekey-under-load proof of issue 8 ("Rekey under load, measured"):
// iperf3 TCP through the tunnel for loadDuration, the CHILD SA rekeyed
// every 5 s and the IKE SA every 20 s, alternately from both sides, against
// runs without rekeying, interleaved (no rekey, rekey, no rekey, ...).
//
// make test runs one pair of 20 s runs. GOIPSEC_REKEY_LOAD sets the length
// of each run (a Go duration, "60s" for the proof) and
// GOIPSEC_REKEY_LOAD_PAIRS the number of pairs; scripts/rekeyload.sh (make
// rekey-load) runs the 60 s proof with 3 pairs against both peers.
const (
	rekeyLoadEnv      = "GOIPSEC_REKEY_LOAD"
	rekeyLoadPairsEnv = "GOIPSEC_REKEY_LOAD_PAIRS"
	swanLogEnv        = "GOIPSEC_REKEY_LOAD_SWANLOG"
	// childRekeyEvery and ikeRekeyEvery are the rekey periods. The
	// IKE rekeys fall between two CHILD rekeys (first at ikeRekeyFirst), so
	// that a short run has one too and the two never start together.
	childRekeyEvery = 5 * time.Second
	ikeRekeyEvery   = 20 * time.Second
	ikeRekeyFirst   = 12500 * time.Millisecond
)

// rekeyLoadSettings returns the length of each iperf3 run and the number
// of (no rekey, rekey) pairs.
func rekeyLoadSettings(t *testing.T) (time.Duration, int) {
	t.Helper()
	d, pairs := 20*time.Second, 1
	if s := os.Getenv(rekeyLoadEnv); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v < 10*time.Second || v > 10*time.Minute {
			t.Fatalf("%s=%q: want a duration from 10s to 10m", rekeyLoadEnv, s)
		}
		d = v
	}
	if s := os.Getenv(rekeyLoadPairsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 20 {
			t.Fatalf("%s=%q: want 1 to 20", rekeyLoadPairsEnv, s)
		}
		pairs = v
	}
	return d, pairs
}

// rekeyLoadRun is what one iperf3 run through the tunnel measured.
type rekeyLoadRun struct {
	goodput      float64             // received bits per second
	retransmits  int                 // TCP retransmissions of the sender
	drops        []map[string]uint64 // by goipsec host
	peerDrops    map[string]int      // charon's, from its log (nil: goipsec peer)
	childRekeys  int
	ikeRekeys    int
	rekeyFailure error
}

// TestRekeyUnderLoad runs iperf3 TCP through a tunnel between two goipsec
// daemons whose CHILD SA is rekeyed every 5 s and IKE SA every 20 s
// ("ipsecctl rekey", alternately from both sides), interleaved with runs
// without rekeying (see rekeyLoadEnv). Make-before-break rekeying (RFC
// 7296, Section 2.8) must drop no packet as unknown SPI, replay or bad ICV
// on either side; goodput and TCP retransmissions are logged with their
// ratios, not asserted (the machine is shared: scripts/rekeyload.sh
// reports medians over several pairs).
func TestRekeyUnderLoad(t *testing.T) {
	requireBins(t)
	testenv.RequireCommand(t, "iperf3")
	a, b, _ := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	ca := ikeConn{ike: "aes256gcm16-prfsha256-x25519", child: []string{"aes256gcm16"}, mode: "tunnel", start: "trap",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
	cb := ca
	cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
	a.startDaemon(t, ikeConfig(a, b, ca))
	b.startDaemon(t, ikeConfig(b, a, cb))
	mustPing(t, a.ns, a.inner, b.inner, 3)
	a.waitEstablished(t, 5*time.Second)
	b.waitEstablished(t, 5*time.Second)

	ctl := func(h *host) rekeyFunc {
		return func(ctx context.Context, ike bool) error {
			target := childFull
			if ike {
				target = connName
			}
			_, err := h.ctl(ctx, "rekey", target)
			return err
		}
	}
	loadTest{peer: "goipsec", client: a, server: b.ns, dst: b.inner, goipsec: []*host{a, b}, rekey: []rekeyFunc{ctl(a), ctl(b)}}.run(t)
	a.checkAlive(t)
	b.checkAlive(t)
}

// TestRekeyUnderLoadStrongSwan is TestRekeyUnderLoad with charon as the
// peer (host b): the rekeys alternate between "ipsecctl rekey" and
// "swanctl --rekey". charon's libipsec keeps no drop counters; its drops
// are the lines of its log that say a packet was dropped as of an unknown
// SA, as a replay or for a bad ICV (swanDropPatterns), and a probe with an
// unknown SPI checks first that such a line does show. That log costs
// goodput (a line per packet); GOIPSEC_REKEY_LOAD_SWANLOG=0 leaves it and
// the count of charon's drops out.
func TestRekeyUnderLoadStrongSwan(t *testing.T) {
	requireBins(t)
	testenv.RequireCommand(t, "iperf3")
	a, b, _ := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	p := ikeProposals[0]
	// libipsec logs its drops at level 2 of the esp group, with a line
	// for every packet: that costs charon enough to skew the goodput, so
	// GOIPSEC_REKEY_LOAD_SWANLOG=0 turns it off for ratio runs.
	count := os.Getenv(swanLogEnv) != "0"
	cfg := swantest.Config{Conn: swanConn(a, b, p.ike, p.esp, psk)}
	if count {
		cfg.Charon = "charon {\n  filelog {\n    swantest {\n      esp = 2\n    }\n  }\n}"
	}
	ch := swantest.Start(t, b.ns, cfg)
	a.startDaemon(t, ikeConfig(a, b, ikeConn{ike: p.ike, child: []string{p.esp}, mode: "tunnel", start: "trap",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}))
	mustPing(t, a.ns, a.inner, b.inner, 3)
	a.waitEstablished(t, 5*time.Second)
	lt := loadTest{peer: "strongswan", client: a, server: b.ns, dst: b.inner, goipsec: []*host{a}}
	if count {
		probeSwanDrops(t, a, b, ch)
		lt.charon = ch
	} else {
		t.Logf("%s=0: charon's drops are not counted", swanLogEnv)
	}
	goipsec := func(ctx context.Context, ike bool) error {
		target := childFull
		if ike {
			target = connName
		}
		_, err := a.ctl(ctx, "rekey", target)
		return err
	}
	charon := func(ctx context.Context, ike bool) error {
		var err error
		if ike {
			_, err = ch.Swanctl("--rekey", "--ike", connName)
		} else {
			_, err = ch.Swanctl("--rekey", "--child", childName)
		}
		return err
	}
	lt.rekey = []rekeyFunc{goipsec, charon}
	lt.run(t)
	a.checkAlive(t)
}

// swanDropPatterns are the lines charon's libipsec logs (level 1) for an
// inbound ESP packet it drops, by goipsec's drop reason.
var swanDropPatterns = map[string]string{
	"unknown_spi": "inbound ESP packet does not belong to an installed SA",
	"replay":      "ESP sequence number verification failed",
	"bad_icv":     "ESP decryption or ICV verification failed",
}

// swanDrops counts the drop lines in charon's log so far.
func swanDrops(ch *swantest.Charon) map[string]int {
	log := ch.Log()
	out := map[string]int{}
	for reason, line := range swanDropPatterns {
		out[reason] = strings.Count(log, line)
	}
	return out
}

// probeSwanDrops sends charon one ESP-in-UDP datagram with an SPI it does
// not know (RFC 3948, Section 2.1: a non-zero SPI where IKE has its
// non-ESP marker) and waits for the log line that counts it, so that zero
// drops later means none, not a log level that hides them.
func probeSwanDrops(t *testing.T, a, b *host, ch *swantest.Charon) {
	t.Helper()
	before := swanDrops(ch)["unknown_spi"]
	err := a.ns.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(b.outer, 4500).String())
		if err != nil {
			return err
		}
		defer c.Close()
		pkt := make([]byte, 64)
		copy(pkt, []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1})
		_, err = c.Write(pkt)
		return err
	})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if !nstest.WaitFor(3*time.Second, func() bool { return swanDrops(ch)["unknown_spi"] > before }) {
		t.Fatalf("charon did not log the probe with an unknown SPI (%q): its drops cannot be counted", swanDropPatterns["unknown_spi"])
	}
}

// rekeyFunc rekeys the IKE SA (ike) or the CHILD SA from one side.
type rekeyFunc func(ctx context.Context, ike bool) error

// loadTest is one measurement: iperf3 from client to dst in server's
// namespace, without and with rekeys by the functions of rekey in turn,
// interleaved; the drops of the goipsec hosts (and of charon, if set) are
// counted.
type loadTest struct {
	peer     string // "goipsec" or "strongswan", for the log lines
	client   *host
	server   *nstest.NS
	dst      netip.Addr
	goipsec  []*host
	charon   *swantest.Charon
	rekey    []rekeyFunc
	duration time.Duration
}

func (lt loadTest) run(t *testing.T) {
	t.Helper()
	var pairs int
	lt.duration, pairs = rekeyLoadSettings(t)
	var ratios, retransRatios []float64
	for i := range pairs {
		base := lt.measure(t, false)
		lt.logRun(t, i, base, false)
		load := lt.measure(t, true)
		lt.logRun(t, i, load, true)
		if base.goodput > 0 {
			ratios = append(ratios, load.goodput/base.goodput)
		}
		retransRatios = append(retransRatios, float64(load.retransmits+1)/float64(base.retransmits+1))
		lt.check(t, i, load)
	}
	// One line for scripts/rekeyload.sh: medians and spread over the
	// pairs. The retransmission ratio is (rekey+1)/(no rekey+1).
	med, lo, hi := medianSpread(ratios)
	rmed, rlo, rhi := medianSpread(retransRatios)
	t.Logf("REKEYLOAD-SUMMARY peer=%s duration=%v pairs=%d goodput_ratio_median=%.3f min=%.3f max=%.3f retrans_ratio_median=%.2f min=%.2f max=%.2f",
		lt.peer, lt.duration, pairs, med, lo, hi, rmed, rlo, rhi)
}

// logRun logs one run in the form scripts/rekeyload.sh reads.
func (lt loadTest) logRun(t *testing.T, pair int, r rekeyLoadRun, rekey bool) {
	t.Helper()
	t.Logf("REKEYLOAD peer=%s pair=%d rekey=%v goodput_mbps=%.0f retrans=%d child_rekeys=%d ike_rekeys=%d goipsec_drops=%v peer_drops=%v",
		lt.peer, pair, rekey, r.goodput/1e6, r.retransmits, r.childRekeys, r.ikeRekeys, r.drops, r.peerDrops)
}

// check asserts what a run with rekeys must show whatever the load: every
// rekey ran, and no packet was dropped as unknown SPI, replay or bad ICV.
func (lt loadTest) check(t *testing.T, pair int, load rekeyLoadRun) {
	t.Helper()
	if load.rekeyFailure != nil {
		t.Errorf("pair %d: rekey: %v", pair, load.rekeyFailure)
	}
	wantChild, wantIKE := lt.expectedRekeys()
	if load.childRekeys < wantChild || load.ikeRekeys < wantIKE {
		t.Errorf("pair %d: only %d CHILD SA and %d IKE SA rekeys ran, want %d and %d", pair, load.childRekeys, load.ikeRekeys, wantChild, wantIKE)
	}
	for i, h := range lt.goipsec {
		for reason := range swanDropPatterns {
			if n := load.drops[i][reason]; n != 0 {
				t.Errorf("pair %d: goipsec %v dropped %d packets as %s during the rekeys", pair, h.outer, n, reason)
			}
		}
	}
	for reason, n := range load.peerDrops {
		if n != 0 {
			t.Errorf("pair %d: charon dropped %d packets as %s during the rekeys (%q in its log)", pair, n, reason, swanDropPatterns[reason])
		}
	}
}

// expectedRekeys returns how many CHILD and IKE SA rekeys the schedule
// starts within a run, less the last one of each that may race the end.
func (lt loadTest) expectedRekeys() (child, ike int) {
	child = int((lt.duration-time.Millisecond)/childRekeyEvery) - 1
	if lt.duration > ikeRekeyFirst {
		ike = int((lt.duration-ikeRekeyFirst-time.Millisecond)/ikeRekeyEvery) + 1
	}
	return child, max(ike-1, 1)
}

// medianSpread returns the median, minimum and maximum of v (zeros when
// empty).
func medianSpread(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Sorted(slices.Values(v))
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

// drops returns the drop counters of the goipsec hosts.
func (lt loadTest) drops(t *testing.T) []map[string]uint64 {
	var out []map[string]uint64
	for _, h := range lt.goipsec {
		out = append(out, h.status(t).Counters.Drops)
	}
	return out
}

// rekeyLoop rekeys on the schedule until ctx is done: the CHILD SA every
// childRekeyEvery, the IKE SA every ikeRekeyEvery from ikeRekeyFirst,
// each kind alternating between the functions of lt.rekey. The counts
// and the first failure go to r once the loop returned.
func (lt loadTest) rekeyLoop(ctx context.Context, r *rekeyLoadRun) {
	start := time.Now()
	nextChild, nextIKE := childRekeyEvery, ikeRekeyFirst
	for i, j := 0, 0; ; {
		ike := nextIKE < nextChild
		at := min(nextChild, nextIKE)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		side := i
		if ike {
			// The IKE rekeys start on the side the CHILD ones did not
			// last use.
			side = j + 1
		}
		err := lt.rekey[side%len(lt.rekey)](ctx, ike)
		if ike {
			j++
			nextIKE += ikeRekeyEvery
		} else {
			i++
			nextChild += childRekeyEvery
		}
		switch {
		case err != nil:
			if ctx.Err() == nil && r.rekeyFailure == nil {
				r.rekeyFailure = fmt.Errorf("rekey at %v (IKE %v): %w", at, ike, err)
			}
		case ike:
			r.ikeRekeys++
		default:
			r.childRekeys++
		}
	}
}

// measure runs iperf3 for lt.duration, rekeying on the schedule when
// rekey is set, and returns the figures; the drops are those counted
// during the run.
func (lt loadTest) measure(t *testing.T, rekey bool) rekeyLoadRun {
	t.Helper()
	before := lt.drops(t)
	var swanBefore map[string]int
	if lt.charon != nil {
		swanBefore = swanDrops(lt.charon)
	}
	srv := lt.server.Start("iperf3", "-s", "-1", "-B", lt.dst.String())
	defer srv.Stop()
	time.Sleep(300 * time.Millisecond)
	var r rekeyLoadRun
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if rekey {
		wg.Go(func() { lt.rekeyLoop(ctx, &r) })
	}
	secs := fmt.Sprint(int(lt.duration / time.Second))
	out, err := lt.client.ns.Cmd(context.Background(), "iperf3", "-c", lt.dst.String(), "-B", lt.client.inner.String(), "-t", secs, "--json").Output()
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("iperf3: %v\n%s", err, out)
	}
	var res struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("iperf3 --json: %v\n%s", err, out)
	}
	r.goodput, r.retransmits = res.End.SumReceived.BitsPerSecond, res.End.SumSent.Retransmits
	// Let the last rekey's Delete complete before counting.
	time.Sleep(time.Second)
	after := lt.drops(t)
	r.drops = make([]map[string]uint64, len(after))
	for i := range after {
		r.drops[i] = map[string]uint64{}
		for k, v := range after[i] {
			if d := v - before[i][k]; d != 0 {
				r.drops[i][k] = d
			}
		}
	}
	if lt.charon != nil {
		r.peerDrops = map[string]int{}
		for k, v := range swanDrops(lt.charon) {
			r.peerDrops[k] = v - swanBefore[k]
		}
	}
	return r
}
