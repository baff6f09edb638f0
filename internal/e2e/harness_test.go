package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"golang.org/x/sys/unix"
)

// binDir holds ipsecd and ipsecctl, built once by TestMain; empty when the
// tests cannot run (not root), buildErr when the build failed.
var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "goipsec-e2e-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, "e2e:", err)
				return 1
			}
			defer os.RemoveAll(dir)
			buildErr = build(dir)
			binDir = dir
			if os.Getenv("GOIPSEC_E2E_RACE") != "" {
				// The daemons inherit GORACE and write any race report
				// to a file here; one report fails the run.
				os.Setenv("GORACE", "log_path="+filepath.Join(dir, "race"))
				defer func() {
					reports, _ := filepath.Glob(filepath.Join(dir, "race.*"))
					for _, r := range reports {
						b, _ := os.ReadFile(r)
						fmt.Fprintf(os.Stderr, "e2e: race report %s:\n%s\n", r, b)
					}
					if len(reports) > 0 {
						os.Exit(1)
					}
				}()
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// build compiles the two commands into dir from the repository root.
func build(dir string) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return fmt.Errorf("e2e: go.mod not found")
		}
		root = parent
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if os.Getenv("GOIPSEC_E2E_RACE") != "" {
		// GOIPSEC_E2E_RACE=1 builds the daemons with the race detector,
		// which then checks them under real traffic.
		args = append(args, "-race")
	}
	cmd := exec.Command(goCommand(), append(args, "./cmd/ipsecd", "./cmd/ipsecctl")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("e2e: go build: %v\n%s", err, out)
	}
	return nil
}

// goCommand returns the go command: the one on PATH, else the one of the
// toolchain that built the test.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// requireBins is the first call of every test: root, the binaries, ping.
func requireBins(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "ping")
}

func ipsecd() string   { return filepath.Join(binDir, "ipsecd") }
func ipsecctl() string { return filepath.Join(binDir, "ipsecctl") }

// spec is one tunnel configuration between hosts A and B.
type spec struct {
	name     string
	protocol string // "esp" or "ah"
	mode     string // "tunnel" or "transport"
	encap    string // "udp" or "none"
	v6       bool
	alg      string // suite keyword
}

func (s spec) suite(t *testing.T) transform.Suite {
	t.Helper()
	parse := transform.ParseESP
	if s.protocol == "ah" {
		parse = transform.ParseAH
	}
	su, err := parse(s.alg)
	if err != nil {
		t.Fatal(err)
	}
	return su
}

// host is one side of a pair: its namespace, addresses and daemon.
type host struct {
	ns    *nstest.NS
	outer netip.Addr // address on eth0
	inner netip.Addr // tunnel mode: on lo; transport mode: outer
	net   netip.Prefix
	sock  string
	conf  string
	proc  *nstest.Proc
}

// pair is two hosts joined by a veth pair, with the keys and SPIs of the SA
// from A to B (keyAB, spiAB) and back.
type pair struct {
	spec         spec
	a, b         *host
	suite        transform.Suite
	keyAB, keyBA []byte
	spiAB, spiBA uint32
	dir          string
}

// newPair builds the namespaces, links and addresses for s and writes the
// daemons' configurations; extraA is YAML appended to A's (a policies
// section). The daemons are not started.
func newPair(t *testing.T, s spec, extraA string) *pair {
	t.Helper()
	p := &pair{spec: s, suite: s.suite(t)}
	dir, err := os.MkdirTemp("", "gie2e") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p.dir = dir
	p.a = &host{ns: nstest.New(t, "a")}
	p.b = &host{ns: nstest.New(t, "b")}
	if s.v6 {
		p.a.outer, p.b.outer = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		nstest.Link(t, p.a.ns, "eth0", []string{"2001:db8::1/64"}, p.b.ns, "eth0", []string{"2001:db8::2/64"})
	} else {
		p.a.outer, p.b.outer = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		nstest.Link(t, p.a.ns, "eth0", []string{"192.0.2.1/24"}, p.b.ns, "eth0", []string{"192.0.2.2/24"})
	}
	if s.mode == "tunnel" {
		if s.v6 {
			p.a.inner, p.b.inner = netip.MustParseAddr("fd01::1"), netip.MustParseAddr("fd02::1")
			p.a.net, p.b.net = netip.MustParsePrefix("fd01::/64"), netip.MustParsePrefix("fd02::/64")
		} else {
			p.a.inner, p.b.inner = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
			p.a.net, p.b.net = netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")
		}
		p.a.ns.AddLoopbackAddr(p.a.inner.String())
		p.b.ns.AddLoopbackAddr(p.b.inner.String())
	} else {
		p.a.inner, p.b.inner = p.a.outer, p.b.outer
	}
	p.keyAB, p.keyBA = randomKey(p.suite.KeyLen()), randomKey(p.suite.KeyLen())
	p.spiAB, p.spiBA = 0x1000+mrand.Uint32N(0xfff0000), 0x20000000+mrand.Uint32N(0xfff0000)
	p.a.sock, p.b.sock = filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	p.a.conf, p.b.conf = filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, p.a.conf, p.config(p.a, p.b, p.spiAB, p.spiBA, p.keyAB, p.keyBA)+extraA)
	writeFile(t, p.b.conf, p.config(p.b, p.a, p.spiBA, p.spiAB, p.keyBA, p.keyAB))
	return p
}

func randomKey(n int) []byte {
	k := make([]byte, n)
	rand.Read(k)
	return k
}

func writeFile(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// config is the YAML of one side. Every value is quoted: IPv6 addresses and
// selectors with ports contain flow indicators.
func (p *pair) config(local, remote *host, spiOut, spiIn uint32, keyOut, keyIn []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "daemon:\n  socket: %q\n  state_dir: %q\n  tun: {name: ipsec0, mtu: 1400}\n  log: {level: info}\n", local.sock, local.sock+".state")
	fmt.Fprintf(&b, "manual_sas:\n  - name: e2e\n    protocol: %s\n    mode: %s\n    encap: %s\n", p.spec.protocol, p.spec.mode, p.spec.encap)
	fmt.Fprintf(&b, "    local_addr: %q\n    remote_addr: %q\n", local.outer, remote.outer)
	if p.spec.mode == "tunnel" {
		fmt.Fprintf(&b, "    local_ts: [%q]\n    remote_ts: [%q]\n", local.net, remote.net)
	}
	fmt.Fprintf(&b, "    spi_out: 0x%08x\n    spi_in: 0x%08x\n    algorithm: %s\n", spiOut, spiIn, p.spec.alg)
	fmt.Fprintf(&b, "    key_out: 0x%x\n    key_in: 0x%x\n", keyOut, keyIn)
	return b.String()
}

// start starts both daemons and waits until their control sockets answer.
func (p *pair) start(t *testing.T) {
	t.Helper()
	for _, h := range []*host{p.a, p.b} {
		if out, err := exec.Command(ipsecd(), "-c", h.conf, "--check").CombinedOutput(); err != nil {
			t.Fatalf("ipsecd --check %s: %v\n%s", h.conf, err, out)
		}
		h.proc = h.ns.Start(ipsecd(), "-c", h.conf)
	}
	for _, h := range []*host{p.a, p.b} {
		ok := nstest.WaitFor(30*time.Second, func() bool {
			if done, _ := h.proc.Exited(); done {
				return true
			}
			_, err := h.ctl(context.Background(), "status")
			return err == nil
		})
		if done, err := h.proc.Exited(); done {
			t.Fatalf("[%s] ipsecd exited: %v\n%s", h.ns.Name, err, h.proc.Output)
		}
		if !ok {
			t.Fatalf("[%s] ipsecd did not answer on %s within 30s\n%s", h.ns.Name, h.sock, h.proc.Output)
		}
	}
}

// ctl runs ipsecctl against h's daemon and returns its standard output.
func (h *host) ctl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := h.ns.Cmd(ctx, ipsecctl(), append([]string{"-s", h.sock}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ipsecctl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// ctlJSON runs "ipsecctl -s SOCK args... --json" and decodes its output.
func (h *host) ctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := h.ctl(context.Background(), append(args, "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("ipsecctl %v --json: %v\n%s", args, err, out)
	}
}

func (h *host) status(t *testing.T) ctlapi.Status {
	t.Helper()
	var st ctlapi.Status
	h.ctlJSON(t, &st, "status")
	return st
}

// childSA returns the manual SA named "e2e" from "ipsecctl sas --json".
func (h *host) childSA(t *testing.T) ctlapi.ChildSA {
	t.Helper()
	var sas ctlapi.SAs
	h.ctlJSON(t, &sas, "sas")
	for _, c := range sas.ChildSAs {
		if c.Name == "e2e" {
			return c
		}
	}
	t.Fatalf("[%s] no CHILD SA named e2e in %+v", h.ns.Name, sas)
	return ctlapi.ChildSA{}
}

// checkAlive fails the test if h's daemon has exited or panicked.
func (h *host) checkAlive(t *testing.T) {
	t.Helper()
	if done, err := h.proc.Exited(); done {
		t.Errorf("[%s] ipsecd exited: %v", h.ns.Name, err)
	}
	if out := h.proc.Output.String(); strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:") {
		t.Errorf("[%s] ipsecd output shows a panic:\n%s", h.ns.Name, out)
	}
}

var receivedRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// ping runs ping in ns from src to dst and returns how many replies came
// back, with ping's output.
func ping(t *testing.T, ns *nstest.NS, src, dst netip.Addr, count int, interval string) (int, string) {
	t.Helper()
	out, _ := ns.Run("ping", "-n", "-c", strconv.Itoa(count), "-i", interval, "-W", "5", "-I", src.String(), dst.String())
	m := receivedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("[%s] ping %s: unexpected output:\n%s", ns.Name, dst, out)
	}
	n, _ := strconv.Atoi(m[2])
	return n, out
}

// mustPing fails the test unless all count echo requests get a reply.
func mustPing(t *testing.T, ns *nstest.NS, src, dst netip.Addr, count int) {
	t.Helper()
	if n, out := ping(t, ns, src, dst, count, "0.2"); n != count {
		t.Fatalf("[%s] ping -I %s %s: %d of %d replies\n%s", ns.Name, src, dst, n, count, out)
	}
}

// tcpTransfer sends size pseudo-random bytes over TCP from src in a to dst in
// b and checks that the SHA-256 of what arrived matches what was sent.
func tcpTransfer(t *testing.T, a, b *nstest.NS, src, dst netip.Addr, size int) {
	t.Helper()
	var ln net.Listener
	if err := b.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		t.Fatalf("[%s] listen: %v", b.Name, err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Minute))
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- result{n, h.Sum(nil), err}
	}()

	data := make([]byte, size)
	var seed [32]byte
	rand.Read(seed[:])
	mrand.NewChaCha8(seed).Read(data)
	want := sha256.Sum256(data)
	var c net.Conn
	if err := a.Do(func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 30 * time.Second}
		c, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("[%s] dial %s from %s: %v", a.Name, ln.Addr(), src, err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	if _, err := c.Write(data); err != nil {
		c.Close()
		t.Fatalf("TCP write: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	var r result
	select {
	case r = <-got:
	case <-time.After(4 * time.Minute):
		c.Close()
		t.Fatal("TCP receiver did not finish within 4 minutes")
	}
	c.Close()
	if r.err != nil {
		t.Fatalf("TCP receive: %v after %d bytes", r.err, r.n)
	}
	if r.n != int64(size) || !bytes.Equal(r.sum, want[:]) {
		t.Fatalf("TCP transfer: received %d bytes with SHA-256 %x, sent %d with %x", r.n, r.sum, size, want)
	}
}

// capture is a packet capture on one interface of a namespace through an
// AF_PACKET socket, in both directions. An interface without a link-layer
// address (a TUN device) delivers IP packets without a link header.
type capture struct {
	fd   int
	l3   bool // no Ethernet header
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	frames []frame
}

// frame is one captured IP packet (the Ethernet header removed), sent or
// received on the interface.
type frame struct {
	pkt []byte
}

func startCapture(t *testing.T, ns *nstest.NS, ifname string) *capture {
	t.Helper()
	c := &capture{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		c.l3 = len(ifi.HardwareAddr) == 0
		return nil
	})
	if err != nil {
		t.Fatalf("[%s] capture on %s: %v", ns.Name, ifname, err)
	}
	go c.loop()
	t.Cleanup(c.close)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *capture) loop() {
	defer close(c.done)
	buf := make([]byte, 65536+14)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil || n < 14 {
			continue // timeout (EAGAIN) or EINTR
		}
		pkt := buf[14:n]
		if c.l3 {
			if pkt = buf[:n]; pkt[0]>>4 != 4 && pkt[0]>>4 != 6 {
				continue
			}
		} else if et := binary.BigEndian.Uint16(buf[12:14]); et != 0x0800 && et != 0x86dd {
			continue
		}
		f := frame{pkt: bytes.Clone(pkt)}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// close stops the capture; it may be called more than once.
func (c *capture) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	unix.Close(c.fd)
}

// packets returns a copy of the packets captured so far.
func (c *capture) packets() []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]frame(nil), c.frames...)
}

// ipPacket is what the tests need to know of a captured packet.
type ipPacket struct {
	src, dst netip.Addr
	proto    uint8  // protocol of the first header after the fixed header
	payload  []byte // what follows the fixed IP header
}

// parseIP parses the fixed IPv4 or IPv6 header (no IPv6 extension headers,
// which the tests do not send).
func parseIP(b []byte) (ipPacket, bool) {
	if len(b) < 20 {
		return ipPacket{}, false
	}
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0xf) * 4
		tl := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || tl < ihl || tl > len(b) {
			return ipPacket{}, false
		}
		return ipPacket{netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), b[9], b[ihl:tl]}, true
	case 6:
		if len(b) < 40 {
			return ipPacket{}, false
		}
		pl := int(binary.BigEndian.Uint16(b[4:]))
		if 40+pl > len(b) {
			return ipPacket{}, false
		}
		return ipPacket{netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), b[6], b[40 : 40+pl]}, true
	}
	return ipPacket{}, false
}

// espOf returns the SPI of an ESP packet (raw or in UDP 4500) and whether
// the packet is one, with the bytes from the ESP header on.
func espOf(p ipPacket) (uint32, []byte, bool) {
	switch p.proto {
	case 50:
		if len(p.payload) >= 8 {
			return binary.BigEndian.Uint32(p.payload), p.payload, true
		}
	case 17:
		if len(p.payload) >= 16 && binary.BigEndian.Uint16(p.payload[2:]) == esp.NATTPort {
			e := p.payload[8:]
			if spi := binary.BigEndian.Uint32(e); spi != 0 {
				return spi, e, true
			}
		}
	}
	return 0, nil, false
}

// icmpEcho builds an IPv4 ICMP echo request from src to dst.
func icmpEcho(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	b := make([]byte, 20+8+len(data))
	packet.PutIPv4Header(b, src, dst, 1, len(b), 64, id)
	m := b[20:]
	m[0] = 8 // echo request, RFC 792
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], data)
	binary.BigEndian.PutUint16(m[2:], packet.Checksum(m, 0))
	return b
}

// sealer seals tunnel-mode IPv4 packets as A's daemon would, for tests that
// forge or replay traffic to B.
type sealer struct {
	out *esp.Outbound
}

func newSealer(t *testing.T, p *pair, startSeq uint64) *sealer {
	t.Helper()
	tr, err := p.suite.NewESP(p.keyAB)
	if err != nil {
		t.Fatal(err)
	}
	mode := sa.Tunnel
	if p.spec.mode == "transport" {
		mode = sa.Transport
	}
	o, err := esp.NewOutbound(esp.Config{SPI: p.spiAB, Mode: mode, Transform: tr, Local: p.a.outer, Remote: p.b.outer, StartSeq: startSeq})
	if err != nil {
		t.Fatal(err)
	}
	return &sealer{o}
}

// seal returns the ESP packet (from the ESP header on) that carries inner,
// with the next sequence number.
func (s *sealer) seal(t *testing.T, inner []byte) []byte {
	t.Helper()
	head, tail := s.out.Overhead()
	buf := make([]byte, head+len(inner)+tail)
	copy(buf[head:], inner)
	start, end, err := s.out.Seal(buf, head, head+len(inner))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := parseIP(buf[start:end])
	if !ok || p.proto != 50 {
		t.Fatalf("sealed packet is not ESP: % x", buf[start:end])
	}
	return p.payload
}

// udpSender opens a UDP socket in ns for sending to dst.
func udpSender(t *testing.T, ns *nstest.NS, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatalf("[%s] UDP socket to %s: %v", ns.Name, dst, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// icmpInEchos returns the Icmp InEchos counter of ns's kernel (RFC 2011).
func icmpInEchos(t *testing.T, ns *nstest.NS) uint64 {
	t.Helper()
	out := ns.MustRun("cat", "/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "Icmp: ") {
			continue
		}
		f := strings.Fields(line)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InEchos" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
	}
	t.Fatalf("[%s] no Icmp InEchos in /proc/net/snmp:\n%s", ns.Name, out)
	return 0
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func hexBytes(s string) ([]byte, error) { return hex.DecodeString(s) }
