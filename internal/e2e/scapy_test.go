package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testenv"
)

// python is Debian's interpreter, which has python3-scapy; the python3 on
// PATH may be another one.
const python = "/usr/bin/python3"

func requireScapy(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import scapy.layers.ipsec").CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("%s cannot import scapy (apt-get install python3-scapy): %v: %s", python, err, out))
	}
}

// scapySA is the "sa" object of testdata/wire_scapy.py.
type scapySA struct {
	Proto string `json:"proto"`
	SPI   uint32 `json:"spi"`
	Alg   string `json:"alg"`
	Key   string `json:"key"`
	Mode  string `json:"mode"`
}

// scapyInner is what scapy found inside one packet.
type scapyInner struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
	Seq      uint32 `json:"seq"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Proto    int    `json:"proto"`
	ICMPType int    `json:"icmp_type"`
	ICMPID   int    `json:"icmp_id"`
	ICMPSeq  int    `json:"icmp_seq"`
}

func runScapy(t *testing.T, req, resp any) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/wire_scapy.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wire_scapy.py: %v\n%s", err, stderr.Bytes())
	}
	if err := json.Unmarshal(out, resp); err != nil {
		t.Fatalf("wire_scapy.py answered %q: %v", out, err)
	}
}

// scapySAs returns the scapy descriptions of the SAs from A to B and back.
func (p *pair) scapySAs() (ab, ba scapySA) {
	ab = scapySA{Proto: p.spec.protocol, SPI: p.spiAB, Alg: p.spec.alg, Key: hexs(p.keyAB), Mode: p.spec.mode}
	ba = ab
	ba.SPI, ba.Key = p.spiBA, hexs(p.keyBA)
	return ab, ba
}

// wirePackets returns the ESP or AH packets of SPI spi from src to dst among
// the captured frames, as hex.
func wirePackets(frames []frame, src, dst netip.Addr, proto string, spi uint32) []string {
	var out []string
	for _, f := range frames {
		ip, ok := parseIP(f.pkt)
		if !ok || ip.src != src || ip.dst != dst {
			continue
		}
		switch proto {
		case "esp":
			if s, _, ok := espOf(ip); !ok || s != spi {
				continue
			}
		case "ah":
			if ip.proto != 51 || len(ip.payload) < 12 || uint32(ip.payload[4])<<24|uint32(ip.payload[5])<<16|uint32(ip.payload[6])<<8|uint32(ip.payload[7]) != spi {
				continue
			}
		}
		out = append(out, hexs(f.pkt))
	}
	return out
}

func scapyDecrypt(t *testing.T, sa scapySA, pkts []string) []scapyInner {
	t.Helper()
	var resp struct {
		Results []scapyInner `json:"results"`
	}
	runScapy(t, map[string]any{"op": "decrypt", "sa": sa, "packets": pkts}, &resp)
	if len(resp.Results) != len(pkts) {
		t.Fatalf("scapy answered %d results for %d packets", len(resp.Results), len(pkts))
	}
	for i, r := range resp.Results {
		if !r.OK {
			t.Errorf("scapy could not open packet %d (SPI %08x): %s\n%s", i, sa.SPI, r.Error, pkts[i])
		}
	}
	return resp.Results
}

// TestScapyOnTheWire has scapy, an independent ESP and AH implementation,
// check what the daemons put on the wire: it decrypts the captured packets of
// a ping with the configured keys and finds the ICMP echo requests and replies
// inside; and it seals an echo request with A's key that B must accept and
// answer through the tunnel.
func TestScapyOnTheWire(t *testing.T) {
	requireBins(t)
	requireScapy(t)
	for _, s := range []spec{
		espTunnel4,
		{name: "ah-transport-IPv4", protocol: "ah", mode: "transport", encap: "none", alg: "sha256"},
	} {
		t.Run(s.name, func(t *testing.T) {
			p := newPair(t, s, "")
			p.start(t)
			wire := startCapture(t, p.b.ns, "eth0")
			mustPing(t, p.a.ns, p.a.inner, p.b.inner, 3)
			// The replies are on the wire once ping has them; the capture
			// socket may still be reading them.
			ab, ba := p.scapySAs()
			var reqs, reps []string
			nstest.WaitFor(10*time.Second, func() bool {
				f := wire.packets()
				reqs = wirePackets(f, p.a.outer, p.b.outer, s.protocol, p.spiAB)
				reps = wirePackets(f, p.b.outer, p.a.outer, s.protocol, p.spiBA)
				return len(reqs) >= 3 && len(reps) >= 3
			})
			if len(reqs) < 3 || len(reps) < 3 {
				t.Fatalf("captured %d %s packets from A and %d from B, want at least 3 each", len(reqs), s.protocol, len(reps))
			}
			echo := map[[2]int]bool{}
			for _, r := range scapyDecrypt(t, ab, reqs) {
				if r.OK && r.Src == p.a.inner.String() && r.Dst == p.b.inner.String() && r.Proto == 1 && r.ICMPType == 8 {
					echo[[2]int{r.ICMPID, r.ICMPSeq}] = true
				}
			}
			replies := 0
			for _, r := range scapyDecrypt(t, ba, reps) {
				if r.OK && r.Src == p.b.inner.String() && r.Dst == p.a.inner.String() && r.Proto == 1 && r.ICMPType == 0 && echo[[2]int{r.ICMPID, r.ICMPSeq}] {
					replies++
				}
			}
			if len(echo) < 3 || replies < 3 {
				t.Fatalf("scapy found %d echo requests %s -> %s and %d matching replies, want 3 each", len(echo), p.a.inner, p.b.inner, replies)
			}
			t.Logf("scapy opened %d packets from A and %d from B: %d echo requests, %d replies", len(reqs), len(reps), len(echo), replies)
			if s.mode != "tunnel" {
				return
			}

			// scapy seals, B accepts and answers through the tunnel.
			echosBefore := icmpInEchos(t, p.b.ns)
			inBefore := p.b.childSA(t).PacketsIn
			const id, icmpSeq, espSeq = 0x5ca9, 7, 1 << 20
			var sealed struct {
				Packet string `json:"packet"`
			}
			runScapy(t, map[string]any{"op": "seal", "sa": ab, "seq": espSeq,
				"outer_src": p.a.outer.String(), "outer_dst": p.b.outer.String(),
				"inner": map[string]any{"src": p.a.inner.String(), "dst": p.b.inner.String(), "id": id, "seq": icmpSeq, "data": "sealed by scapy"},
			}, &sealed)
			raw, err := hexBytes(sealed.Packet)
			if err != nil {
				t.Fatal(err)
			}
			ip, ok := parseIP(raw)
			if !ok || ip.proto != 50 {
				t.Fatalf("scapy's packet is not IP/ESP: %s", sealed.Packet)
			}
			c := udpSender(t, p.a.ns, netip.AddrPortFrom(p.b.outer, esp.NATTPort))
			if _, err := c.Write(ip.payload); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { return icmpInEchos(t, p.b.ns) > echosBefore }) {
				t.Fatalf("B's kernel did not receive scapy's echo request; B's drops: %v", p.b.status(t).Counters.Drops)
			}
			if n := p.b.childSA(t).PacketsIn; n != inBefore+1 {
				t.Errorf("B's SA counted %d packets in for scapy's one", n-inBefore)
			}
			// B's answer is ESP from B again: scapy must find the reply.
			found := false
			nstest.WaitFor(10*time.Second, func() bool {
				reps = wirePackets(wire.packets(), p.b.outer, p.a.outer, s.protocol, p.spiBA)
				return len(reps) > 3
			})
			for _, r := range scapyDecrypt(t, ba, reps) {
				if r.OK && r.ICMPType == 0 && r.ICMPID == id && r.ICMPSeq == icmpSeq && r.Src == p.b.inner.String() && r.Dst == p.a.inner.String() {
					found = true
				}
			}
			if !found {
				t.Errorf("no echo reply to scapy's request (id %#x seq %d) among %d ESP packets from B", id, icmpSeq, len(reps))
			} else {
				t.Logf("B accepted scapy's ESP packet (sequence number %d) and its reply opened in scapy", espSeq)
			}
			p.b.checkAlive(t)
		})
	}
}
