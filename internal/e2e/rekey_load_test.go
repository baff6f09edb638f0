package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/testenv"
)

// rekeyLoadRun is what one iperf3 run through the tunnel measured.
type rekeyLoadRun struct {
	goodput      float64 // received bits per second
	retransmits  int     // TCP retransmissions of the sender
	drops        [2]map[string]uint64
	childRekeys  int
	ikeRekeys    int
	rekeyFailure error
}

// loadDuration is how long each iperf3 run lasts.
const loadDuration = 30 * time.Second

// TestRekeyUnderLoad runs iperf3 TCP for 30 s through a tunnel between two
// goipsec daemons whose CHILD SA is rekeyed every 5 s and IKE SA every
// 15 s ("ipsecctl rekey", alternately from both sides), then the same run
// without rekeying. Make-before-break rekeying (RFC 7296, Section 2.8)
// must drop no packet as unknown SPI, replay or bad ICV on either side;
// goodput and TCP retransmissions of both runs are logged, not asserted
// (the machine is shared).
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

	base := runRekeyLoad(t, a, b, false)
	load := runRekeyLoad(t, a, b, true)
	for _, r := range []struct {
		name string
		run  rekeyLoadRun
	}{{"without rekeying", base}, {"with rekeying", load}} {
		t.Logf("%s: goodput %.0f Mbit/s, %d TCP retransmissions, %d CHILD and %d IKE SA rekeys; drops A %v, B %v",
			r.name, r.run.goodput/1e6, r.run.retransmits, r.run.childRekeys, r.run.ikeRekeys, r.run.drops[0], r.run.drops[1])
	}
	if base.goodput > 0 {
		t.Logf("goodput ratio with/without rekeying: %.3f", load.goodput/base.goodput)
	}
	if load.rekeyFailure != nil {
		t.Errorf("rekey: %v", load.rekeyFailure)
	}
	if load.childRekeys < 4 || load.ikeRekeys < 1 {
		t.Errorf("only %d CHILD SA and %d IKE SA rekeys ran", load.childRekeys, load.ikeRekeys)
	}
	for i, side := range []string{"A", "B"} {
		for _, reason := range []string{"unknown_spi", "replay", "bad_icv"} {
			if n := load.drops[i][reason]; n != 0 {
				t.Errorf("%s dropped %d packets as %s during the rekeys", side, n, reason)
			}
		}
	}
	a.checkAlive(t)
	b.checkAlive(t)
}

// runRekeyLoad runs iperf3 from A to B for loadDuration, rekeying when
// rekey is set, and returns the figures; the drops are those counted
// during the run.
func runRekeyLoad(t *testing.T, a, b *host, rekey bool) rekeyLoadRun {
	t.Helper()
	before := [2]map[string]uint64{a.status(t).Counters.Drops, b.status(t).Counters.Drops}
	srv := b.ns.Start("iperf3", "-s", "-1", "-B", b.inner.String())
	defer srv.Stop()
	time.Sleep(300 * time.Millisecond)
	var r rekeyLoadRun
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if rekey {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(5 * time.Second)
			defer tick.Stop()
			for i := 1; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				// Alternate the sides; every third rekey is the IKE SA's.
				h := a
				if i%2 == 0 {
					h = b
				}
				target := childFull
				if i%3 == 0 {
					target = connName
				}
				if _, err := h.ctl(ctx, "rekey", target); err != nil {
					if ctx.Err() == nil && r.rekeyFailure == nil {
						r.rekeyFailure = fmt.Errorf("ipsecctl rekey %s: %w", target, err)
					}
					continue
				}
				if target == connName {
					r.ikeRekeys++
				} else {
					r.childRekeys++
				}
			}
		}()
	}
	secs := fmt.Sprint(int(loadDuration / time.Second))
	out, err := a.ns.Cmd(context.Background(), "iperf3", "-c", b.inner.String(), "-B", a.inner.String(), "-t", secs, "--json").Output()
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
	after := [2]map[string]uint64{a.status(t).Counters.Drops, b.status(t).Counters.Drops}
	for i := range after {
		r.drops[i] = map[string]uint64{}
		for k, v := range after[i] {
			if d := v - before[i][k]; d != 0 {
				r.drops[i][k] = d
			}
		}
	}
	return r
}
