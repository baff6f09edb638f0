package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/policy"
	"github.com/goipsec/goipsec/tun/tuntest"
)

const (
	keyAB = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
	keyBA = "0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3"
)

func manualConfig(t *testing.T, side string, extra string) *config.Config {
	t.Helper()
	local, remote, lnet, rnet, spiOut, spiIn, kOut, kIn := "192.0.2.1", "192.0.2.2", "10.1.0.0/16", "10.2.0.0/16", "0x1001", "0x2001", keyAB, keyBA
	if side == "b" {
		local, remote, lnet, rnet, spiOut, spiIn, kOut, kIn = remote, local, rnet, lnet, spiIn, spiOut, kIn, kOut
	}
	y := fmt.Sprintf(`manual_sas:
  - name: lab
    protocol: esp
    mode: tunnel
    encap: udp
    local_addr: %s
    remote_addr: %s
    local_ts: [%s]
    remote_ts: [%s]
    spi_out: %s
    spi_in: %s
    algorithm: aes256gcm16
    key_out: %s
    key_in: %s
%s`, local, remote, lnet, rnet, spiOut, spiIn, kOut, kIn, extra)
	c, err := config.Parse(side+".yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	c.Daemon.StateDir = t.TempDir() // the manual SA's send counter
	return c
}

type fakeRouter struct{ routes chan []policy.Route }

func (f fakeRouter) Set(r []policy.Route) error { f.routes <- r; return nil }

type peer struct {
	d   *Daemon
	tun *tuntest.Device
	rt  fakeRouter
}

func newPeer(t *testing.T, nw *conntest.Network, side string, cfg *config.Config) *peer {
	addr := netip.MustParseAddr("192.0.2.1")
	if side == "b" {
		addr = netip.MustParseAddr("192.0.2.2")
	}
	dev := tuntest.New(1400, 16, 256)
	udp := nw.UDP(netip.AddrPortFrom(addr, conn.NATTPort), 16, 256)
	rt := fakeRouter{routes: make(chan []policy.Route, 8)}
	d, err := New(cfg, Options{TUN: dev, UDP: udp, Router: rt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Load: func(string) (*config.Config, error) { return cfg, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &peer{d: d, tun: dev, rt: rt}
}

func recv(t *testing.T, dev *tuntest.Device) []byte {
	t.Helper()
	select {
	case p := <-dev.Out:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet arrived")
		return nil
	}
}

func TestManualTunnel(t *testing.T) {
	nw := conntest.NewNetwork(1024)
	a := newPeer(t, nw, "a", manualConfig(t, "a", ""))
	b := newPeer(t, nw, "b", manualConfig(t, "b", ""))

	if r := <-a.rt.routes; len(r) != 1 || r[0].Dst != netip.MustParsePrefix("10.2.0.0/16") {
		t.Fatalf("routes of a: %v", r)
	}
	src, dst := netip.AddrPortFrom(netip.MustParseAddr("10.1.0.1"), 1000), netip.AddrPortFrom(netip.MustParseAddr("10.2.0.1"), 2000)
	for i := range 5 {
		pkt := tuntest.UDP(src, dst, []byte(fmt.Sprintf("hello %d", i)))
		a.tun.In <- pkt
		got := recv(t, b.tun)
		if string(got) != string(pkt) {
			t.Fatalf("packet %d changed in transit:\n got %x\nwant %x", i, got, pkt)
		}
	}
	ctx := context.Background()
	sas, err := b.d.SAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas.ChildSAs) != 1 || sas.ChildSAs[0].PacketsIn != 5 || sas.ChildSAs[0].SPIIn != 0x1001 || sas.ChildSAs[0].Algorithm != "aes256gcm16" {
		t.Fatalf("b's SAs: %+v", sas.ChildSAs)
	}
	st, _ := a.d.Status(ctx)
	if st.ChildSAs != 1 || st.Counters.PacketsOut != 5 {
		t.Fatalf("a's status: %+v", st)
	}
	pol, _ := a.d.Policies(ctx)
	if len(pol.Policies) != 2 || pol.Policies[0].Hits != 5 || pol.Policies[0].Action != "protect" {
		t.Fatalf("a's policies: %+v", pol.Policies)
	}
	ex, err := a.d.Explain(ctx, ctlapi.ExplainRequest{Src: src.Addr(), Dst: dst.Addr(), Proto: 17, DPort: 2000, Direction: "out"})
	if err != nil || !ex.Matched || ex.Action != "protect" || ex.Rule == nil || ex.Rule.Name != "lab" {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
}

func TestReconfig(t *testing.T) {
	nw := conntest.NewNetwork(1024)
	cfg := manualConfig(t, "a", "")
	a := newPeer(t, nw, "a", cfg)
	<-a.rt.routes
	if err := a.d.Reconfig(manualConfig(t, "a", "")); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("same config: %v, want ErrNoChanges", err)
	}
	res, err := a.d.Reload(context.Background())
	if err != nil || res.Changed {
		t.Fatalf("reload of the same file: %+v, %v", res, err)
	}
	withDiscard := manualConfig(t, "a", "policies:\n  - {name: never, remote_ts: [10.9.0.0/16], action: discard}\n")
	if err := a.d.Reconfig(withDiscard); err != nil {
		t.Fatalf("adding a policy: %v", err)
	}
	if r := <-a.rt.routes; len(r) != 2 {
		t.Fatalf("routes after adding a discard rule: %v", r)
	}
	pol, _ := a.d.Policies(context.Background())
	if pol.Policies[0].Name != "never" || pol.Policies[0].Action != "discard" {
		t.Fatalf("policies: %+v", pol.Policies)
	}
	a.tun.In <- tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:5"), netip.MustParseAddrPort("10.9.0.1:5"), []byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := a.d.Status(context.Background())
		if st.Counters.Drops["policy"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("discarded packet not counted: %+v", st.Counters.Drops)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.d.Terminate(context.Background(), "lab"); err != nil {
		t.Fatal(err)
	}
	if err := a.d.Terminate(context.Background(), "lab"); !errors.Is(err, ctlapi.ErrNotFound) {
		t.Fatalf("terminating twice: %v", err)
	}
	if err := a.d.Initiate(context.Background(), "x"); !errors.Is(err, ctlapi.ErrUnavailable) || !strings.Contains(err.Error(), "IKE is not running") {
		t.Fatalf("initiate: %v", err)
	}
}

type fakeFilter struct{ rules chan []policy.FilterRule }

func (f fakeFilter) Set(r []policy.FilterRule) error { f.rules <- r; return nil }

// TestFilter checks that the firewall gets the policy's rules at start and
// again only when a reload changes them.
func TestFilter(t *testing.T) {
	nw := conntest.NewNetwork(1024)
	cfg := manualConfig(t, "a", "")
	f := fakeFilter{rules: make(chan []policy.FilterRule, 8)}
	d, err := New(cfg, Options{TUN: tuntest.New(1400, 16, 256), UDP: nw.UDP(netip.MustParseAddrPort("192.0.2.1:4500"), 16, 256),
		Filter: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	select {
	case r := <-f.rules:
		if len(r) != 1 || r[0].Action != policy.FilterDrop || r[0].Remote.String() != "10.2.0.0/16" || r[0].Local.String() != "10.1.0.0/16" {
			t.Fatalf("filter at start: %+v", r)
		}
	default:
		t.Fatal("the filter got no rules at start")
	}
	if err := d.Reconfig(manualConfig(t, "a", "")); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("same config: %v, want ErrNoChanges", err)
	}
	select {
	case r := <-f.rules:
		t.Fatalf("the filter was set again for an unchanged configuration: %+v", r)
	default:
	}
	if err := d.Reconfig(manualConfig(t, "a", "policies:\n  - {name: dns, remote_ts: [\"10.2.0.53/32[udp/53]\"], action: bypass}\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-f.rules:
		if len(r) != 2 || r[0].Action != policy.FilterAccept || r[0].Remote.String() != "10.2.0.53/32[udp/53]" || r[1].Action != policy.FilterDrop {
			t.Fatalf("filter after adding a bypass: %+v", r)
		}
	default:
		t.Fatal("the filter was not updated after a reload that added a bypass")
	}
}
