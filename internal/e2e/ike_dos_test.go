package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/swantest"
)

// floodRequest builds IKE_SA_INIT requests for aes256gcm16-prfsha256-x25519
// (the responder's first IKE proposal here) with one nonce and KE value
// and any initiator SPI, preceded by a COOKIE when one is given (RFC 7296,
// Section 2.6).
type floodRequest struct{ ke, nonce []byte }

func newFloodRequest() floodRequest {
	r := floodRequest{ke: make([]byte, 32), nonce: make([]byte, 32)}
	rand.Read(r.ke)
	rand.Read(r.nonce)
	return r
}

func (r floodRequest) bytes(t *testing.T, spi uint64, cookie []byte) []byte {
	m := &ikewire.Message{
		Header: ikewire.Header{SPIi: spi, Exchange: ikewire.IKE_SA_INIT, Flags: ikewire.FlagInitiator},
		Payloads: []ikewire.Payload{
			&ikewire.SA{Proposals: []ikewire.Proposal{{Num: 1, Protocol: ikewire.ProtoIKE, Transforms: []ikewire.Transform{
				{Type: ikewire.TransformENCR, ID: 20, Attributes: []ikewire.Attribute{{Type: ikewire.AttrKeyLength, Value: 256}}}, // AES-GCM-16
				{Type: ikewire.TransformPRF, ID: 5}, // PRF_HMAC_SHA2_256
				{Type: ikewire.TransformKE, ID: 31}, // Curve25519
			}}}},
			&ikewire.KE{Group: 31, Data: r.ke},
			&ikewire.Nonce{Data: r.nonce},
		},
	}
	if cookie != nil {
		m.Payloads = append([]ikewire.Payload{&ikewire.Notify{Type: ikewire.NotifyCookie, Data: cookie}}, m.Payloads...)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawSender is an IPPROTO_RAW socket in ns that sends UDP datagrams from any
// source address (the kernel fills in the IPv4 checksum and length).
type rawSender struct {
	fd  int
	dst netip.Addr
	buf []byte
}

func newRawSender(t *testing.T, ns *nstest.NS, dst netip.Addr) *rawSender {
	t.Helper()
	s := &rawSender{dst: dst}
	if err := ns.Do(func() (err error) {
		s.fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatalf("[%s] raw socket: %v", ns.Name, err)
	}
	t.Cleanup(func() { syscall.Close(s.fd) })
	return s
}

// send sends payload from src:500 to dst:500; the UDP checksum is zero
// (none, RFC 768).
func (s *rawSender) send(src netip.Addr, payload []byte) error {
	n := 20 + 8 + len(payload)
	b := append(s.buf[:0], make([]byte, 28)...)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	s4, d4 := src.As4(), s.dst.As4()
	copy(b[12:], s4[:])
	copy(b[16:], d4[:])
	binary.BigEndian.PutUint16(b[20:], 500)
	binary.BigEndian.PutUint16(b[22:], 500)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	b = append(b, payload...)
	s.buf = b
	return syscall.Sendto(s.fd, b, 0, &syscall.SockaddrInet4{Addr: d4})
}

// vmRSS returns the resident set size of process pid in bytes.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestIKESAInitFloodLegitimatePeerConnects floods a goipsec responder with
// about 5,000 IKE_SA_INIT requests per second for 10 s from a third
// namespace: 4,000 a second from spoofed sources in 100.64.0.0/10 (a new
// address for each; the responder routes that prefix back to the
// attacker's namespace, which does not forward, so its answers die there)
// and 1,000 a second from one real address that returns every cookie the
// responder demands. Two seconds in, a legitimate initiator (goipsec, then
// strongSwan) brings up its IKE SA: it must be established within 10 s. The
// cookies come before any half-open limit (RFC 7296, Section 2.6), so the
// spoofed sources hold no more than the cookie threshold's slots and the
// real one no more than its per-source limit (daemon.ike
// max_half_open_per_source, 3 here). The responder's resident
// memory is sampled from /proc throughout; its peak must stay under 200 MB.
func TestIKESAInitFloodLegitimatePeerConnects(t *testing.T) {
	requireBins(t)
	for _, legit := range []string{"goipsec", "strongswan"} {
		t.Run(legit, func(t *testing.T) { floodWhileConnecting(t, legit) })
	}
}

func floodWhileConnecting(t *testing.T, legit string) {
	a, b, _ := ikeTopology(t, false, "tunnel")
	atk := nstest.New(t, "m")
	nstest.Link(t, atk, "eth0", []string{"198.51.100.3/24"}, b.ns, "eth1", []string{"198.51.100.2/24"})
	target := netip.MustParseAddr("198.51.100.2")
	spoofNet := netip.MustParsePrefix("100.64.0.0/10")
	b.ns.MustRun("ip", "route", "add", spoofNet.String(), "via", "198.51.100.3", "dev", "eth1")
	b.ns.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth1.rp_filter=0")
	atk.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=0")

	psk := newPSK()
	p := ikeProposals[0]
	ca := ikeConn{ike: p.ike, child: []string{p.esp}, mode: "tunnel", start: "none", localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
	cb := ca
	cb.localID, cb.remoteID = ca.remoteID, ca.localID
	cb.localAddrs = []string{b.outer.String(), target.String()}
	cb.remoteAddrs = []string{a.outer.String(), "198.51.100.0/24", spoofNet.String()}
	// Not the defaults (1000, 5, 1m), to see the keys reach the engine.
	const perSource = 3
	cb.daemonIKE = fmt.Sprintf("{max_half_open: 500, max_half_open_per_source: %d, cookie_lifetime: 30s}", perSource)
	var ch *swantest.Charon
	if legit == "strongswan" {
		ch = swantest.Start(t, a.ns, swantest.Config{Conn: swantest.PSKConn{
			Name: connName, Child: childName,
			Local: a.outer.String(), Remote: b.outer.String(),
			LocalID: ca.localID, RemoteID: ca.remoteID, PSK: psk,
			Proposals: p.ike, ESPProposals: p.esp,
			LocalTS: a.net.String(), RemoteTS: b.net.String(),
		}.String()})
	} else {
		a.startDaemon(t, ikeConfig(a, b, ca))
	}
	b.startDaemon(t, ikeConfig(b, a, cb))
	pid := b.proc.Cmd.Process.Pid
	before, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}

	// The responder's resident memory, sampled every 100 ms.
	var peak atomic.Int64
	peak.Store(before)
	sampleStop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleStop:
				return
			case <-tick.C:
				if rss, err := vmRSS(pid); err == nil && rss > peak.Load() {
					peak.Store(rss)
				}
			}
		}
	}()
	defer func() {
		select {
		case <-sampleStop:
		default:
			close(sampleStop)
		}
		wg.Wait()
	}()

	req := newFloodRequest()
	raw := newRawSender(t, atk, target)
	real := udpSender(t, atk, netip.AddrPortFrom(target, 500))
	// The real source returns each cookie at once, as an initiator that
	// receives at its address would.
	var echoed, full atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := real.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				return
			}
			m, err := ikewire.Parse(buf[:n])
			if err != nil || len(m.Payloads) == 0 {
				continue
			}
			if nt, ok := m.Payloads[0].(*ikewire.Notify); ok && nt.Type == ikewire.NotifyCookie {
				real.Write(req.bytes(t, m.SPIi, nt.Data))
				echoed.Add(1)
			} else if m.SPIr != 0 {
				full.Add(1) // a real IKE_SA_INIT answer: the source got a slot
			}
		}
	}()
	t.Cleanup(func() { real.Close() })

	const (
		floodTime = 10 * time.Second
		tick      = 10 * time.Millisecond
		spoofTick = 40 // per tick: 4,000 a second
		realTick  = 10 // per tick: 1,000 a second
	)
	var spoofed, fromReal, sendErrs int
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		base := binary.BigEndian.Uint32(spoofNet.Addr().AsSlice())
		next := time.Now()
		for end := time.Now().Add(floodTime); time.Now().Before(end); {
			for range spoofTick {
				var src [4]byte
				binary.BigEndian.PutUint32(src[:], base+1+uint32(spoofed)%(1<<22-2))
				if raw.send(netip.AddrFrom4(src), req.bytes(t, uint64(spoofed)<<20|1, nil)) != nil {
					sendErrs++
				}
				spoofed++
			}
			for range realTick {
				fromReal++
				if _, err := real.Write(req.bytes(t, uint64(fromReal)<<32|2, nil)); err != nil {
					sendErrs++
				}
			}
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
	}()

	time.Sleep(2 * time.Second)
	var (
		took time.Duration
		up   bool
	)
	if ch != nil {
		done := make(chan error, 1)
		go func() {
			var err error
			took, err = ch.Initiate(childName)
			done <- err
		}()
		select {
		case err := <-done:
			up = err == nil && took <= 10*time.Second
			if err != nil {
				t.Logf("charon: %v", err)
			}
		case <-time.After(10 * time.Second):
			<-done // charon gives up after its own timeout
		}
	} else {
		start := time.Now()
		if _, err := a.ctl(context.Background(), "up", childFull); err != nil {
			t.Fatal(err)
		}
		up = nstest.WaitFor(10*time.Second, func() bool {
			_, _, ok := established(a.trySAs())
			if ok {
				took = time.Since(start)
			}
			return ok
		})
	}
	<-floodDone
	mid := b.trySAs()
	close(sampleStop)
	real.Close()
	wg.Wait()

	t.Logf("flood: %d spoofed and %d real IKE_SA_INIT requests in %v (%d send errors); the real source returned %d cookies and got %d full answers",
		spoofed, fromReal, floodTime, sendErrs, echoed.Load(), full.Load())
	if mid != nil {
		t.Logf("responder IKE SAs at the end of the flood: %d (cookie threshold 10, %d per source)", len(mid.IKESAs), perSource)
	}
	t.Logf("responder RSS: %.1f MB before, peak %.1f MB during the flood", float64(before)/1e6, float64(peak.Load())/1e6)
	b.checkAlive(t)
	if ch == nil {
		a.checkAlive(t)
	}
	if !up {
		t.Fatalf("the legitimate %s initiator had no IKE SA within 10 s during the flood (took %v); responder: %+v", legit, took, b.trySAs())
	}
	t.Logf("the legitimate %s initiator's IKE SA was established %v after it started", legit, took.Round(10*time.Millisecond))
	if ch != nil && os.Getenv("SWANLOG") != "" {
		t.Logf("charon log:\n%s", ch.Log())
	}
	if peak.Load() > 200<<20 {
		t.Errorf("the responder's RSS peaked at %.1f MB, over 200 MB", float64(peak.Load())/1e6)
	}
	if full.Load() == 0 || full.Load() > perSource {
		t.Errorf("the real source got %d half-open IKE SAs, want 1 to the per-source limit %d", full.Load(), perSource)
	}
	mustPing(t, a.ns, a.inner, b.inner, 3)
}
