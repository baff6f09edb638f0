package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/swantest"
	"github.com/goipsec/goipsec/internal/testenv"
)

// rekeyLoadRun is what one iperf3 run through the tunnel measured.
type rekeyLoadRun struct {
	goodput      float64             // received bits per second
	retransmits  int                 // TCP retransmissions of the sender
	drops        []map[string]uint64 // by goipsec host
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
	loadTest{client: a, server: b.ns, dst: b.inner, goipsec: []*host{a, b}, rekey: []rekeyFunc{ctl(a), ctl(b)}}.run(t)
	a.checkAlive(t)
	b.checkAlive(t)
}

// TestRekeyUnderLoadStrongSwan is TestRekeyUnderLoad with charon as the
// peer (host b): the rekeys alternate between "ipsecctl rekey" and
// "swanctl --rekey". Only goipsec's drops are counted (charon's libipsec
// does not report them).
func TestRekeyUnderLoadStrongSwan(t *testing.T) {
	requireBins(t)
	testenv.RequireCommand(t, "iperf3")
	a, b, _ := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	p := ikeProposals[0]
	ch := swantest.Start(t, b.ns, swantest.Config{Conn: swanConn(a, b, p.ike, p.esp, psk)})
	a.startDaemon(t, ikeConfig(a, b, ikeConn{ike: p.ike, child: []string{p.esp}, mode: "tunnel", start: "trap",
		localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}))
	mustPing(t, a.ns, a.inner, b.inner, 3)
	a.waitEstablished(t, 5*time.Second)
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
	loadTest{client: a, server: b.ns, dst: b.inner, goipsec: []*host{a}, rekey: []rekeyFunc{goipsec, charon}}.run(t)
	a.checkAlive(t)
}

// rekeyFunc rekeys the IKE SA (ike) or the CHILD SA from one side.
type rekeyFunc func(ctx context.Context, ike bool) error

// loadTest is one measurement: iperf3 from client to dst in server's
// namespace, once without and once with rekeys by the functions of
// rekey in turn; the drops of the goipsec hosts are counted.
type loadTest struct {
	client  *host
	server  *nstest.NS
	dst     netip.Addr
	goipsec []*host
	rekey   []rekeyFunc
}

func (lt loadTest) run(t *testing.T) {
	t.Helper()
	base := lt.measure(t, false)
	load := lt.measure(t, true)
	for _, r := range []struct {
		name string
		run  rekeyLoadRun
	}{{"without rekeying", base}, {"with rekeying", load}} {
		t.Logf("%s: goodput %.0f Mbit/s, %d TCP retransmissions, %d CHILD and %d IKE SA rekeys; goipsec drops %v",
			r.name, r.run.goodput/1e6, r.run.retransmits, r.run.childRekeys, r.run.ikeRekeys, r.run.drops)
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
	for i, h := range lt.goipsec {
		for _, reason := range []string{"unknown_spi", "replay", "bad_icv"} {
			if n := load.drops[i][reason]; n != 0 {
				t.Errorf("goipsec %v dropped %d packets as %s during the rekeys", h.outer, n, reason)
			}
		}
	}
}

// drops returns the drop counters of the goipsec hosts.
func (lt loadTest) drops(t *testing.T) []map[string]uint64 {
	var out []map[string]uint64
	for _, h := range lt.goipsec {
		out = append(out, h.status(t).Counters.Drops)
	}
	return out
}

// measure runs iperf3 for loadDuration, rekeying every 5 s when rekey is
// set, and returns the figures; the drops are those counted during the
// run.
func (lt loadTest) measure(t *testing.T, rekey bool) rekeyLoadRun {
	t.Helper()
	before := lt.drops(t)
	srv := lt.server.Start("iperf3", "-s", "-1", "-B", lt.dst.String())
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
				ike := i%3 == 0
				if err := lt.rekey[i%len(lt.rekey)](ctx, ike); err != nil {
					if ctx.Err() == nil && r.rekeyFailure == nil {
						r.rekeyFailure = fmt.Errorf("rekey %d (IKE %v): %w", i, ike, err)
					}
					continue
				}
				if ike {
					r.ikeRekeys++
				} else {
					r.childRekeys++
				}
			}
		}()
	}
	secs := fmt.Sprint(int(loadDuration / time.Second))
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
	return r
}
