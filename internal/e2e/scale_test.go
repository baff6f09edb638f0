//go:build scale

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
)

// TestOnDemandScale is issue 10's scale proof: one hub with N on-demand
// peers (GOIPSEC_SCALE_PEERS, default 200), each peer a namespace of its
// own on one bridge running ipsecd with the hub's policy (10.77.0.0/24
// private, certificates from one CA). Every peer pings the hub, which
// starts one IKE SA and one transport-mode CHILD SA per peer; then the hub
// pings every peer back over those SAs. It logs the setup time and the
// hub's memory. Too slow for make test: run it with make scale-peers
// (scripts/scale-peers.sh).
func TestOnDemandScale(t *testing.T) {
	requireBins(t)
	n := 200
	if s := os.Getenv("GOIPSEC_SCALE_PEERS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 250 {
			t.Fatalf("GOIPSEC_SCALE_PEERS=%q: want 1 to 250", s)
		}
	}
	net := newBridge(t)
	hub := net.add(t, "hub", netip.MustParseAddr("10.77.0.1"), 24, true)
	var peers []*groupHost
	for i := range n {
		peers = append(peers, net.add(t, "s"+strconv.Itoa(i), netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)}), 24, true))
	}
	hub.startDaemon(t, groupsPolicy(hub, groupsPrivate))
	rss0 := rssKB(t, hub)
	t0 := time.Now()
	for _, p := range peers {
		writeFile(t, p.conf, groupsPolicy(p, groupsPrivate))
		os.Remove(p.sock)
		p.proc = p.ns.Start(ipsecd(), "-c", p.conf)
	}
	for _, p := range peers {
		if !nstest.WaitFor(120*time.Second, func() bool { _, err := p.ctl(context.Background(), "status"); return err == nil }) {
			t.Fatalf("[%s] ipsecd did not answer\n%s", p.ns.Name, p.proc.Output)
		}
	}
	started := time.Since(t0)

	// Every peer pings the hub, 16 at a time; the first packet of each
	// starts IKE with the hub.
	t1 := time.Now()
	firsts := make([]time.Duration, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s := time.Now()
			for time.Since(s) < 60*time.Second {
				out, _ := p.ns.Run("ping", "-n", "-c", "1", "-W", "2", "-I", p.outer.String(), hub.outer.String())
				if strings.Contains(out, " 1 received") {
					firsts[i] = time.Since(s)
					return
				}
			}
			firsts[i] = -1
		}()
	}
	wg.Wait()
	setup := time.Since(t1)
	failed := 0
	for i, d := range firsts {
		if d < 0 {
			failed++
			t.Errorf("peer %v never reached the hub", peers[i].outer)
		}
	}
	// The hub answers every peer over its SA: one ping each, back.
	back := 0
	for _, p := range peers {
		if out, _ := hub.ns.Run("ping", "-n", "-c", "1", "-W", "2", "-I", hub.outer.String(), p.outer.String()); strings.Contains(out, " 1 received") {
			back++
		}
	}
	var ps ctlapi.Peers
	hub.ctlJSON(t, &ps, "peers")
	est := 0
	for _, p := range ps.Peers {
		if p.State == ctlapi.PeerEstablished && p.Children >= 1 {
			est++
		}
	}
	rss1 := rssKB(t, hub)
	sorted := slices.Clone(firsts)
	slices.Sort(sorted)
	t.Logf("%d peers: daemons up in %v; all peers reached the hub in %v (first reply per peer: median %v, max %v, 16 pings in parallel); "+
		"%d of %d answered by the hub; hub peers established %d; hub RSS %d kB idle, %d kB with %d peers (%.1f kB per peer)",
		n, started.Round(time.Millisecond), setup.Round(time.Millisecond), sorted[n/2].Round(time.Millisecond), sorted[n-1].Round(time.Millisecond),
		back, n, est, rss0, rss1, n, float64(rss1-rss0)/float64(n))
	if failed > 0 || back != n || est != n {
		t.Errorf("%d peers failed to reach the hub, %d of %d answered back, %d established", failed, back, n, est)
	}
	hub.checkAlive(t)
}

// rssKB returns the resident memory of h's daemon, in kB.
func rssKB(t *testing.T, h *groupHost) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.proc.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
