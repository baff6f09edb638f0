package dataplane

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/internal/spd"
	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun"
)

// The namespace test runs two copies of this test binary as IPsec peers in two
// network namespaces joined by a veth pair, with real TUN devices, UDP and raw
// sockets, and passes ping and iperf3 through the tunnel.

func TestMain(m *testing.M) {
	if side := os.Getenv("GOIPSEC_DP_PEER"); side != "" {
		if err := runPeer(side, os.Getenv("GOIPSEC_DP_ENCAP")); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runPeer is one side of TestNamespaces, running inside its namespace.
func runPeer(side, encap string) error {
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	lnet, rnet := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")
	linner := "10.1.0.1"
	spiOut, spiIn := uint32(0x1000), uint32(0x2000)
	if side == "b" {
		local, remote, lnet, rnet, linner = remote, local, rnet, lnet, "10.2.0.1"
		spiOut, spiIn = spiIn, spiOut
	}
	dev, err := tun.Create("gi0", 1400)
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "set", "gi0", "up"},
		{"route", "add", rnet.String(), "dev", "gi0", "src", linner},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	udp, err := conn.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), conn.NATTPort), conn.DefaultMark)
	if err != nil {
		return err
	}
	gso, gro := udp.Offloads()
	raw, err := conn.ListenRaw(4, sa.ESP, conn.DefaultMark)
	if err != nil {
		return err
	}
	dp, err := New(Config{TUN: dev, UDP: udp, Raw: []conn.Raw{raw}})
	if err != nil {
		return err
	}
	snap, err := spd.Compile([]spd.Rule{{Name: "net", Local: set(lnet), Remote: set(rnet), Action: spd.Protect, Ref: 1}}, spd.Bypass)
	if err != nil {
		return err
	}
	dp.SetSPD(snap)
	suite, _ := transform.ParseESP("aes256gcm16")
	to, _ := suite.NewESP(key(suite.KeyLen(), byte(spiOut)))
	ti, _ := suite.NewESP(key(suite.KeyLen(), byte(spiIn)))
	out, err := esp.NewOutbound(esp.Config{SPI: spiOut, Transform: to, Local: local, Remote: remote})
	if err != nil {
		return err
	}
	in, err := esp.NewInbound(esp.Config{SPI: spiIn, Transform: ti, ReplayWindow: 4096})
	if err != nil {
		return err
	}
	e, port := sad.EncapUDP, uint16(4500)
	if encap == "none" {
		e, port = sad.EncapNone, 0
	}
	if err := dp.InstallInbound(&sad.InboundSA{Protocol: sa.ESP, SPI: spiIn, Local: set(lnet), Remote: set(rnet), LocalAddr: local, SA: in}); err != nil {
		return err
	}
	if err := dp.InstallOutbound(&sad.OutboundSA{Protocol: sa.ESP, SPI: spiOut, Ref: 1, Encap: e, Remote: netip.AddrPortFrom(remote, port), SA: out}); err != nil {
		return err
	}
	if path := os.Getenv("GOIPSEC_DP_PROFILE"); path != "" {
		f, err := os.Create(path + "." + side)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	dp.Start()
	fmt.Printf("ready (UDP GSO %v, GRO %v)\n", gso, gro)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Printf("stats %+v\n", dp.Stats())
	return dp.Close()
}

// TestNamespaces passes ping and iperf3 through two real peers. It needs
// root, ip, ping and iperf3, and reports the throughput next to the bare
// veth's in the log (figures from a shared machine: ratios, not absolutes).
func TestNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("needs namespaces and a few seconds")
	}
	for _, encap := range []string{"udp", "none"} {
		t.Run("encap-"+encap, func(t *testing.T) {
			a, b := nstest.New(t, "dpa"), nstest.New(t, "dpb")
			nstest.Link(t, a, "veth0", []string{"192.0.2.1/24"}, b, "veth0", []string{"192.0.2.2/24"})
			a.AddLoopbackAddr("10.1.0.1")
			b.AddLoopbackAddr("10.2.0.1")
			exe, _ := os.Executable()
			prof := "GOIPSEC_DP_PROFILE=" + os.Getenv("GOIPSEC_DP_PROFILE")
			pa := a.Start("env", "GOIPSEC_DP_PEER=a", "GOIPSEC_DP_ENCAP="+encap, prof, exe)
			pb := b.Start("env", "GOIPSEC_DP_PEER=b", "GOIPSEC_DP_ENCAP="+encap, prof, exe)
			for _, p := range []*nstest.Proc{pa, pb} {
				if !nstest.WaitFor(10*time.Second, func() bool { return strings.Contains(p.Output.String(), "ready") }) {
					t.Fatalf("peer not ready: %s", p.Output.String())
				}
			}
			t.Log(strings.TrimSpace(pa.Output.String()))
			a.MustRun("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "10.1.0.1", "10.2.0.1")
			testenv.RequireCommand(t, "iperf3")
			tunnel := iperf(t, a, b, "10.2.0.1", "10.1.0.1")
			bare := iperf(t, a, b, "192.0.2.2", "192.0.2.1")
			t.Logf("iperf3 TCP, 1 stream, 3 s: tunnel %.2f Gbit/s, bare veth %.2f Gbit/s (%.0f%%)", tunnel/1e9, bare/1e9, 100*tunnel/bare)
			pa.Stop()
			pb.Stop()
			t.Log("A: ", lastLine(pa.Output.String()))
			t.Log("B: ", lastLine(pb.Output.String()))
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// iperf runs one iperf3 TCP test from client (bound to src) to server's dst
// and returns the received bits per second.
func iperf(t *testing.T, client, server *nstest.NS, dst, src string) float64 {
	t.Helper()
	srv := server.Start("iperf3", "-s", "-1", "-B", dst)
	time.Sleep(300 * time.Millisecond)
	secs := "3"
	if s := os.Getenv("GOIPSEC_DP_IPERF_SECONDS"); s != "" {
		secs = s
	}
	out := client.MustRun("iperf3", "-c", dst, "-B", src, "-t", secs, "-J")
	srv.Stop()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return res.End.SumReceived.BitsPerSecond
}
