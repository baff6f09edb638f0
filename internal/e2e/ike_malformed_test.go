package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testenv"
)

// ikeDatagram is one malformed input and the port it goes to.
type ikeDatagram struct {
	port uint16 // 500, or 4500 (the bytes then start with the non-ESP marker or are ESP)
	b    []byte
}

// openikedCorpus returns the raw IKE messages of the openiked OSS-Fuzz
// corpus in testdata/corpus at the module root (see testdata/README.md).
func openikedCorpus(t *testing.T, dir string) [][]byte { return testenv.OpenikedCorpus(t, 0) }

// libreswanPackets returns the IKEv2 and IKEv1 packets of
// libreswan-bad-ikev2.json (UDP payloads without a non-ESP marker).
func libreswanPackets(t *testing.T, dir string) [][]byte {
	t.Helper()
	var f struct {
		IKEv2 []struct{ ID, Hex string } `json:"ikev2_packets"`
		IKEv1 []struct{ ID, Hex string } `json:"ikev1_cve_packets"`
	}
	testenv.ReadJSON(t, filepath.Join(dir, "corpus", "libreswan-bad-ikev2.json"), &f)
	var out [][]byte
	for _, p := range append(f.IKEv2, f.IKEv1...) {
		out = append(out, testenv.Unhex(t, p.Hex))
	}
	if len(out) == 0 {
		t.Fatal("libreswan-bad-ikev2.json: no packets")
	}
	return out
}

// tcpdumpIKE returns the UDP payloads to or from port 500 or 4500 in the
// tcpdump-malformed captures, as far as they were captured, with the port.
func tcpdumpIKE(t *testing.T, dir string) []ikeDatagram {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "corpus", "tcpdump-malformed", "*.pcap*"))
	if err != nil || len(files) == 0 {
		t.Fatal("no captures in testdata/corpus/tcpdump-malformed")
	}
	var out []ikeDatagram
	for _, file := range files {
		for _, cp := range testenv.ReadCapture(t, file) {
			var proto uint8
			var l4 []byte
			switch {
			case len(cp.IP) >= 20 && cp.IP[0]>>4 == 4:
				ihl := int(cp.IP[0]&0xf) * 4
				if ihl < 20 || ihl > len(cp.IP) {
					continue
				}
				proto, l4 = cp.IP[9], cp.IP[ihl:]
			case len(cp.IP) >= 40 && cp.IP[0]>>4 == 6:
				proto, l4 = cp.IP[6], cp.IP[40:]
			default:
				continue
			}
			if proto != 17 || len(l4) < 8 {
				continue
			}
			sport, dport := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
			var port uint16
			switch {
			case dport == 500 || dport == 4500:
				port = dport
			case sport == 500 || sport == 4500:
				port = sport
			default:
				continue
			}
			out = append(out, ikeDatagram{port, l4[8:]})
		}
	}
	return out
}

// TestIKEMalformed sends the malformed-message corpora of
// testdata/corpus from a third namespace to a goipsec responder
// that holds an established IKE SA with another goipsec, while a ping runs
// through the tunnel: the 15,762 openiked messages to port 500, every tenth
// of them also to port 4500 behind the non-ESP marker (RFC 3948, Section
// 2.2) and every eighth with the SPIs of the live IKE SA written into its
// header; Libreswan's bad IKEv2 and IKEv1 CVE packets to both ports; and the
// IKE datagrams of the tcpdump crash captures. The responder accepts
// IKE_SA_INIT from the attacker's network, so well-formed requests in the
// corpus create half-open IKE SAs (up to the cookie threshold, RFC 7296,
// Section 2.6); so do 64 copies of A's own IKE_SA_INIT request with fresh
// initiator SPIs, spread over the corpus. Nothing may panic, every echo
// request must be answered, and once the half-open timeout (daemon.ike
// half_open_timeout, 8 s here) has passed only the established IKE SA may
// remain.
func TestIKEMalformed(t *testing.T) {
	requireBins(t)
	data := testenv.Testdata(t)
	var inputs []ikeDatagram
	corpus := openikedCorpus(t, data)
	bad := libreswanPackets(t, data)
	dump := tcpdumpIKE(t, data)

	a, b, _ := ikeTopology(t, false, "tunnel")
	atk := nstest.New(t, "m")
	nstest.Link(t, atk, "eth0", []string{"198.51.100.3/24"}, b.ns, "eth1", []string{"198.51.100.2/24"})
	target := netip.MustParseAddr("198.51.100.2")
	psk := newPSK()
	p := ikeProposals[0]
	ca := ikeConn{ike: p.ike, child: []string{p.esp}, mode: "tunnel", start: "trap", localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
	cb := ca
	cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
	cb.localAddrs = []string{b.outer.String(), target.String()}
	cb.remoteAddrs = []string{a.outer.String(), "198.51.100.0/24"}
	cb.daemonIKE = "{half_open_timeout: 8s}"
	a.startDaemon(t, ikeConfig(a, b, ca))
	b.startDaemon(t, ikeConfig(b, a, cb))
	captA := startCapture(t, a.ns, "eth0")
	mustPing(t, a.ns, a.inner, b.inner, 3)
	live, liveChild := b.waitEstablished(t, 5*time.Second)
	captA.close()

	// A's IKE_SA_INIT request, replayed with fresh initiator SPIs, is a
	// well-formed request that the responder must answer and keep as a
	// half-open IKE SA (or answer with a COOKIE above the threshold): the
	// corpora alone hold no IKE_SA_INIT that the responder would accept,
	// so without these the half-open check would check nothing.
	var init []byte
	for _, f := range captA.packets() {
		ip, ok := parseIP(f.pkt)
		if !ok || ip.proto != 17 || ip.dst != b.outer || len(ip.payload) < 8+28 || binary.BigEndian.Uint16(ip.payload[2:]) != 500 {
			continue
		}
		if msg := ip.payload[8:]; msg[18] == exchIKESAInit && msg[19]&0x20 == 0 && init == nil {
			init = bytes.Clone(msg)
		}
	}
	if init == nil {
		t.Fatal("no IKE_SA_INIT request from A on the wire")
	}

	for i, c := range corpus {
		inputs = append(inputs, ikeDatagram{500, c})
		if i%10 == 0 {
			inputs = append(inputs, ikeDatagram{4500, append([]byte{0, 0, 0, 0}, c...)})
		}
		if i%8 == 0 && len(c) >= 28 {
			x := append([]byte(nil), c...)
			binary.BigEndian.PutUint64(x[0:], uint64(live.SPIi))
			binary.BigEndian.PutUint64(x[8:], uint64(live.SPIr))
			inputs = append(inputs, ikeDatagram{500, x})
		}
	}
	for i := range 64 {
		x := bytes.Clone(init)
		rand.Read(x[:8])
		// Spread them over the corpus: some arrive below the cookie
		// threshold, the rest above it.
		at := len(inputs) * (i + 1) / 65
		inputs = slices.Insert(inputs, at, ikeDatagram{500, x})
	}
	for _, c := range bad {
		inputs = append(inputs, ikeDatagram{500, c}, ikeDatagram{4500, append([]byte{0, 0, 0, 0}, c...)})
	}
	inputs = append(inputs, dump...)

	// A ping through the tunnel, in rounds of ten, until the half-open
	// IKE SAs are gone.
	var (
		mu         sync.Mutex
		sent, recv int
		lossOut    []string
	)
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, _ := a.ns.Run("ping", "-n", "-c", "10", "-i", "0.1", "-W", "2", "-I", a.inner.String(), b.inner.String())
			m := receivedRE.FindStringSubmatch(out)
			mu.Lock()
			sent += 10
			if m == nil || m[2] != "10" {
				lossOut = append(lossOut, out)
				if m != nil {
					n, _ := strconv.Atoi(m[2])
					recv += n
				}
			} else {
				recv += 10
			}
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-pinged
	}()

	// Pace the datagrams so that the responder's socket buffer holds
	// them: the point is that the engine parses each one.
	conns := map[uint16]*net.UDPConn{
		500:  udpSender(t, atk, netip.AddrPortFrom(target, 500)),
		4500: udpSender(t, atk, netip.AddrPortFrom(target, 4500)),
	}
	capt := startCapture(t, atk, "eth0")
	start := time.Now()
	for i, d := range inputs {
		conns[d.port].Write(d.b) // ICMP errors from earlier sends may fail a write; the next goes on
		if i%40 == 39 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	sendDone := time.Now()
	t.Logf("sent %d datagrams (%d openiked, %d Libreswan, %d from tcpdump captures) in %v",
		len(inputs), len(corpus), len(bad), len(dump), sendDone.Sub(start).Round(time.Millisecond))

	b.checkAlive(t)
	a.checkAlive(t)
	mid := b.sas(t)
	halfOpen := 0
	for _, s := range mid.IKESAs {
		if s.SPIi != live.SPIi {
			halfOpen++
		}
	}
	t.Logf("right after the corpus: %d IKE SAs besides the established one", halfOpen)
	if halfOpen == 0 {
		t.Errorf("no half-open IKE SA after 64 replayed IKE_SA_INIT requests with fresh SPIs")
	}

	// The half-open timeout is 8 s from each IKE SA's creation; poll
	// until only the established IKE SA is left.
	var last *ctlapi.SAs
	gone := nstest.WaitFor(30*time.Second-time.Since(sendDone), func() bool {
		last = b.trySAs()
		return last != nil && len(last.IKESAs) == 1
	})
	t.Logf("half-open IKE SAs gone %v after the last datagram", time.Since(sendDone).Round(100*time.Millisecond))
	close(stop)
	<-pinged
	capt.close()
	answered := 0
	for _, f := range capt.packets() {
		if ip, ok := parseIP(f.pkt); ok && ip.src == target && ip.proto == 17 {
			answered++
		}
	}
	t.Logf("the responder sent %d datagrams back to the attacker", answered)
	if answered == 0 {
		t.Errorf("the responder answered none of the 64 replayed IKE_SA_INIT requests: did the datagrams reach it?")
	}

	if last == nil {
		t.Fatal("ipsecctl sas failed on the responder")
	}
	if !gone {
		t.Errorf("IKE SAs left after the half-open timeout: %+v", last.IKESAs)
	}
	ike, children, ok := established(last)
	if !ok || ike.SPIi != live.SPIi || ike.SPIr != live.SPIr || len(children) != 1 || children[0].SPIIn != liveChild.SPIIn {
		t.Errorf("the established SAs changed: %+v", last)
	}
	if len(last.ChildSAs) != 1 {
		t.Errorf("CHILD SAs: %+v, want only the established one", last.ChildSAs)
	}
	mu.Lock()
	t.Logf("ping through the tunnel meanwhile: %d of %d answered", recv, sent)
	if recv != sent || sent == 0 {
		t.Errorf("ping through the tunnel lost %d of %d echo requests:\n%s", sent-recv, sent, strings.Join(lossOut, "\n"))
	}
	mu.Unlock()
	mustPing(t, a.ns, a.inner, b.inner, 3)
	b.checkAlive(t)
	a.checkAlive(t)
}
