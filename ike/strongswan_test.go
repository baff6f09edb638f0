package ike

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// udpTransport is a Transport over real UDP sockets on ports 500 and 4500,
// for the interoperability test; the daemon has its own.
type udpTransport struct {
	c500, c4500 *net.UDPConn
	natt        uint16
}

func (u *udpTransport) Send(pkt []byte, from, to netip.AddrPort) error {
	c := u.c500
	if from.Port() == u.natt {
		c = u.c4500
	}
	_, err := c.WriteToUDPAddrPort(pkt, to)
	return err
}

func (u *udpTransport) serve(m *Manager, c *net.UDPConn) {
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		m.HandlePacket(buf[:n], from, local)
	}
}

// swan is a strongSwan 5.9 charon in a namespace (TESTBED.md).
type swan struct {
	t   *testing.T
	ns  *nstest.NS
	dir string
	uri string
}

const swanConf = `charon {
  load = random nonce openssl aesni aes sha1 sha2 hmac gcm chapoly curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici updown
  retransmit_tries = 2
  filelog {
    log {
      path = DIR/charon.log
      default = 1
      ike = 2
      cfg = 2
      chd = 4
      flush_line = yes
    }
  }
  plugins {
    vici {
      socket = unix://DIR/charon.vici
    }
  }
}
`

func startSwan(t *testing.T, ns *nstest.NS, extra string) *swan {
	dir := t.TempDir()
	conf := filepath.Join(dir, "strongswan.conf")
	text := strings.Replace(strings.ReplaceAll(swanConf, "DIR", dir), "charon {\n", "charon {\n"+extra, 1)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &swan{t: t, ns: ns, dir: dir, uri: "unix://" + filepath.Join(dir, "charon.vici")}
	ns.Start("env", "STRONGSWAN_CONF="+conf, "unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon")
	if !nstest.WaitFor(10*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, "charon.vici")); return err == nil }) {
		t.Fatal("charon did not start")
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SWANLOG") != "" {
			b, _ := os.ReadFile(filepath.Join(dir, "charon.log"))
			t.Logf("charon.log:\n%s", b)
		}
	})
	return s
}

// childKeys returns every CHILD SA key strongSwan logged (chd = 4):
// encryption and integrity keys of both directions, in hex.
func (s *swan) childKeys() map[string]bool {
	b, err := os.ReadFile(filepath.Join(s.dir, "charon.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	head := regexp.MustCompile(`(encryption|integrity) (initiator|responder) key => (\d+) bytes`)
	row := regexp.MustCompile(`\[CHD\]\s+\d+: ((?:[0-9A-F]{2} )+)`)
	keys := map[string]bool{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		h := head.FindStringSubmatch(lines[i])
		if h == nil {
			continue
		}
		n, _ := strconv.Atoi(h[3])
		var key string
		for j := i + 1; j < len(lines) && len(key) < 2*n; j++ {
			r := row.FindStringSubmatch(lines[j])
			if r == nil {
				break
			}
			key += strings.ToLower(strings.ReplaceAll(r[1], " ", ""))
		}
		keys[key] = true
	}
	return keys
}

// checkChildKeys compares the KEYMAT of every CHILD SA installed with the
// keys strongSwan derived: the independent check of RFC 7296, Section 2.17.
func (s *swan) checkChildKeys(inst *fakeInstaller) {
	s.t.Helper()
	keys := s.childKeys()
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if len(inst.installed) == 0 {
		s.t.Fatal("nothing installed")
	}
	for _, c := range inst.installed {
		il := transform.IntegKeyLen(c.Suite.Integ)
		for _, k := range [][]byte{c.KeyIn, c.KeyOut} {
			el := len(k) - il
			if !keys[hex.EncodeToString(k[:el])] || (il > 0 && !keys[hex.EncodeToString(k[el:])]) {
				s.t.Errorf("CHILD SA %08x/%08x (%s): key not among strongSwan's", c.SPIIn, c.SPIOut, c.Suite.Name)
			}
		}
	}
}

func (s *swan) swanctl(args ...string) (string, error) {
	return s.ns.Run("swanctl", append(args, "--uri", s.uri)...)
}

func (s *swan) load(ike, esp string) {
	s.t.Helper()
	s.loadTS(ike, esp, "10.2.0.0/16", "10.1.0.0/16")
}

func (s *swan) loadTS(ike, esp, localTS, remoteTS string) {
	s.t.Helper()
	conf := fmt.Sprintf(`connections {
  gi {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = %s
    local {
      auth = psk
      id = b.example
    }
    remote {
      auth = psk
      id = a.example
    }
    children {
      net {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
      }
    }
  }
}
secrets {
  ike-gi {
    id-a = a.example
    id-b = b.example
    secret = "correct horse battery staple"
  }
}
`, ike, localTS, remoteTS, esp)
	f := filepath.Join(s.dir, "swanctl.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		s.t.Fatal(err)
	}
	if out, err := s.swanctl("--load-all", "--clear", "--file", f); err != nil {
		s.t.Fatalf("swanctl --load-all: %v\n%s", err, out)
	}
}

// giSide starts a Manager in namespace gi on 192.0.2.1 with UDP sockets on
// port (and 4500), closed when the test ends.
func giSide(t *testing.T, gi *nstest.NS, cfg Config, port int) (*Manager, *fakeInstaller) {
	if cfg.NATTPort == 0 {
		cfg.NATTPort = 4500
	}
	tr := udpTransport{natt: cfg.NATTPort}
	if err := gi.Do(func() error {
		var err error
		if tr.c500, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port}); err != nil {
			return err
		}
		tr.c4500, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: int(cfg.NATTPort)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	inst := &fakeInstaller{}
	cfg.Logger = testLogger(t)
	cfg.RetransmitTimeout = time.Second
	cfg.Port = uint16(port)
	m := NewManager(cfg, inst, &tr)
	go tr.serve(m, tr.c500)
	go tr.serve(m, tr.c4500)
	t.Cleanup(func() {
		m.Close()
		tr.c500.Close()
		tr.c4500.Close()
	})
	return m, inst
}

// swanPair returns our peer configuration for strongSwan's "gi" connection.
func swanPeer(t *testing.T, ike, esp string) Peer {
	pa, _ := peerPair(t, ike, esp)
	pa.LocalAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	pa.RemoteAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}
	return pa
}

// waitInstalled polls every millisecond until n CHILD SAs are live.
func waitInstalled(inst *fakeInstaller, n int) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(inst.live()) < n; {
		time.Sleep(time.Millisecond)
	}
}

// TestStrongSwan negotiates with strongSwan 5.9.8 in both roles for the
// proposals of issue 4, rekeys both SAs from both sides and deletes. Only
// IKE is checked here (the Installer is a fake): the SPIs strongSwan lists
// must be the ones installed. Needs root and strongSwan; skipped otherwise.
func TestStrongSwan(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts strongSwan")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "swanctl")
	if _, err := os.Stat("/usr/lib/ipsec/charon"); err != nil {
		testenv.Missing(t, "strongSwan's charon")
	}
	gi, sw := nstest.New(t, "gi"), nstest.New(t, "sw")
	nstest.Link(t, gi, "v0", []string{"192.0.2.1/24"}, sw, "v0", []string{"192.0.2.2/24"})
	sw.AddLoopbackAddr("10.2.0.1") // kernel-libipsec routes from an inner address
	s := startSwan(t, sw, "")

	for _, tc := range []struct{ ike, esp string }{
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16"},
		{"aes128gcm16-prfsha384-ecp384", "aes128gcm16-ecp384"},
		{"chacha20poly1305-prfsha512-curve25519", "chacha20poly1305-x25519"},
		{"aes256-sha256-modp2048", "aes256-sha256-modp2048"},
	} {
		t.Run(tc.ike, func(t *testing.T) {
			s.t = t
			s.load(tc.ike, tc.esp)
			m, inst := giSide(t, gi, Config{}, 500)
			pa, _ := peerPair(t, tc.ike, tc.esp)
			pa.LocalAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
			pa.RemoteAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}
			if err := m.SetPeers([]Peer{pa}); err != nil {
				t.Fatal(err)
			}
			upWith := func(n int) {
				t.Helper()
				if !nstest.WaitFor(10*time.Second, func() bool { return len(inst.live()) == n && len(m.SAs()) == 1 && len(m.SAs()[0].Children) == n }) {
					t.Fatalf("want %d CHILD SAs; have %d; SAs %+v", n, len(inst.live()), m.SAs())
				}
				time.Sleep(200 * time.Millisecond)
				out, _ := s.swanctl("--list-sas", "--raw")
				for _, c := range inst.live() {
					for _, spi := range []uint32{c.SPIIn, c.SPIOut} {
						if !strings.Contains(out, hex.EncodeToString(spiBytes(spi))) {
							t.Errorf("strongSwan does not list SPI %08x:\n%s", spi, out)
						}
					}
				}
			}

			// goipsec initiates.
			start := time.Now()
			if err := m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			waitInstalled(inst, 1)
			t.Logf("goipsec -> strongSwan IKE_SA_INIT + IKE_AUTH: %v", time.Since(start))
			upWith(1)
			// Rekeys from our side.
			if err := m.Rekey("b", "net"); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { n, d := inst.counts(); return n == 2 && d == 1 }) {
				n, d := inst.counts()
				t.Fatalf("child rekey: %d installs, %d deletes", n, d)
			}
			upWith(1)
			before := m.SAs()[0].SPIi
			if err := m.Rekey("b", ""); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { sas := m.SAs(); return len(sas) == 1 && sas[0].SPIi != before }) {
				t.Fatalf("IKE rekey: %+v", m.SAs())
			}
			// Rekeys from strongSwan's side.
			if out, err := s.swanctl("--rekey", "--child", "net"); err != nil {
				t.Fatalf("swanctl --rekey child: %v\n%s", err, out)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { n, d := inst.counts(); return n == 3 && d == 2 }) {
				n, d := inst.counts()
				t.Fatalf("strongSwan's child rekey: %d installs, %d deletes", n, d)
			}
			if out, err := s.swanctl("--rekey", "--ike", "gi"); err != nil {
				t.Fatalf("swanctl --rekey ike: %v\n%s", err, out)
			}
			time.Sleep(time.Second)
			upWith(1)
			// strongSwan deletes the IKE SA.
			if out, err := s.swanctl("--terminate", "--ike", "gi"); err != nil {
				t.Fatalf("swanctl --terminate: %v\n%s", err, out)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { return len(m.SAs()) == 0 && len(inst.live()) == 0 }) {
				t.Fatalf("after strongSwan's delete: %+v", m.SAs())
			}

			// strongSwan initiates.
			start = time.Now()
			if out, err := s.swanctl("--initiate", "--child", "net"); err != nil {
				t.Fatalf("swanctl --initiate: %v\n%s", err, out)
			}
			waitInstalled(inst, 1)
			t.Logf("strongSwan -> goipsec IKE_SA_INIT + IKE_AUTH (with swanctl): %v", time.Since(start))
			upWith(1)
			s.checkChildKeys(inst)
			// We delete.
			if err := m.Terminate("b", ""); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool {
				out, _ := s.swanctl("--list-sas", "--raw")
				return len(m.SAs()) == 0 && !strings.Contains(out, "ESTABLISHED")
			}) {
				out, _ := s.swanctl("--list-sas")
				t.Fatalf("after our delete: %+v\n%s", m.SAs(), out)
			}
		})
	}
}

// initOnly passes only IKE_SA_INIT requests: an initiator that never
// completes, leaving a half-open IKE SA at the responder.
type initOnly struct{ Transport }

func (o initOnly) Send(pkt []byte, from, to netip.AddrPort) error {
	if len(pkt) < 28 || pkt[18] != 34 || pkt[19]&0x20 != 0 {
		return nil
	}
	return o.Transport.Send(pkt, from, to)
}

// TestStrongSwanNegotiation covers the negotiation paths against strongSwan
// 5.9.8: INVALID_KE_PAYLOAD in both roles, traffic selector narrowing in
// both roles, and a COOKIE demanded by strongSwan above its half-open
// threshold.
func TestStrongSwanNegotiation(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts strongSwan")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "swanctl")
	if _, err := os.Stat("/usr/lib/ipsec/charon"); err != nil {
		testenv.Missing(t, "strongSwan's charon")
	}
	gi, sw := nstest.New(t, "gi"), nstest.New(t, "sw")
	nstest.Link(t, gi, "v0", []string{"192.0.2.1/24"}, sw, "v0", []string{"192.0.2.2/24"})
	sw.AddLoopbackAddr("10.2.0.1")
	sw.AddLoopbackAddr("10.2.1.1")
	s := startSwan(t, sw, "  cookie_threshold = 1\n")

	up := func(t *testing.T, m *Manager, inst *fakeInstaller) ChildSA {
		t.Helper()
		if !nstest.WaitFor(10*time.Second, func() bool { return len(inst.live()) == 1 && len(m.SAs()) == 1 }) {
			t.Fatalf("not up: %+v", m.SAs())
		}
		s.checkChildKeys(inst)
		return inst.live()[0]
	}

	t.Run("invalid-ke-we-initiate", func(t *testing.T) {
		s.t = t
		s.load("aes256gcm16-prfsha256-ecp256", "aes256gcm16")
		m, inst := giSide(t, gi, Config{}, 500)
		if err := m.SetPeers([]Peer{swanPeer(t, "aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16")}); err != nil {
			t.Fatal(err)
		}
		if err := m.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		up(t, m, inst)
		if p := m.SAs()[0].Proposal; p != "aes256gcm16-prfsha256-ecp256" {
			t.Errorf("proposal %q", p)
		}
	})
	t.Run("invalid-ke-swan-initiates", func(t *testing.T) {
		s.t = t
		s.load("aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16")
		m, inst := giSide(t, gi, Config{}, 500)
		if err := m.SetPeers([]Peer{swanPeer(t, "aes256gcm16-prfsha256-ecp256", "aes256gcm16")}); err != nil {
			t.Fatal(err)
		}
		if out, err := s.swanctl("--initiate", "--child", "net"); err != nil {
			t.Fatalf("swanctl --initiate: %v\n%s", err, out)
		}
		up(t, m, inst)
		if p := m.SAs()[0].Proposal; p != "aes256gcm16-prfsha256-ecp256" {
			t.Errorf("proposal %q", p)
		}
	})
	t.Run("swan-narrows", func(t *testing.T) {
		s.t = t
		s.loadTS("aes256gcm16-prfsha256-x25519", "aes256gcm16", "10.2.1.0/24", "10.1.0.0/16")
		m, inst := giSide(t, gi, Config{}, 500)
		if err := m.SetPeers([]Peer{swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")}); err != nil {
			t.Fatal(err)
		}
		trig := &Trigger{Src: mustAddr("10.1.0.5"), Dst: mustAddr("10.2.1.7"), Proto: 1}
		if err := m.Initiate("b", "net", trig); err != nil {
			t.Fatal(err)
		}
		c := up(t, m, inst)
		if !c.RemoteTS.Equal(traffic.MustParseSet("10.2.1.0/24")) || !c.LocalTS.Equal(traffic.MustParseSet("10.1.0.0/16")) {
			t.Errorf("selectors %v === %v", c.LocalTS, c.RemoteTS)
		}
	})
	t.Run("we-narrow", func(t *testing.T) {
		s.t = t
		s.load("aes256gcm16-prfsha256-x25519", "aes256gcm16")
		m, inst := giSide(t, gi, Config{}, 500)
		p := swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		p.Children[0].LocalTS = traffic.MustParseSet("10.1.2.0/24")
		if err := m.SetPeers([]Peer{p}); err != nil {
			t.Fatal(err)
		}
		if out, err := s.swanctl("--initiate", "--child", "net"); err != nil {
			t.Fatalf("swanctl --initiate: %v\n%s", err, out)
		}
		c := up(t, m, inst)
		if !c.LocalTS.Equal(traffic.MustParseSet("10.1.2.0/24")) {
			t.Errorf("local selectors %v", c.LocalTS)
		}
		out, _ := s.swanctl("--list-sas")
		if !strings.Contains(out, "10.1.2.0/24") {
			t.Errorf("strongSwan did not take the narrowed selectors:\n%s", out)
		}
	})
	t.Run("cookie", func(t *testing.T) {
		s.t = t
		s.load("aes256gcm16-prfsha256-x25519", "aes256gcm16")
		// A half-open IKE SA from port 501 puts strongSwan at its threshold.
		ho, _ := giSide(t, gi, Config{NATTPort: 4501}, 501)
		ho.tr = initOnly{ho.tr}
		hp := swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		hp.RemotePort = 500
		if err := ho.SetPeers([]Peer{hp}); err != nil {
			t.Fatal(err)
		}
		if err := ho.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		m, inst := giSide(t, gi, Config{}, 500)
		if err := m.SetPeers([]Peer{swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")}); err != nil {
			t.Fatal(err)
		}
		if err := m.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		up(t, m, inst)
		b, _ := os.ReadFile(filepath.Join(s.dir, "charon.log"))
		if !strings.Contains(string(b), "N(COOKIE)") {
			t.Error("strongSwan did not ask for a cookie; the test did not test it")
		}
	})
	t.Run("cookie-we-demand", func(t *testing.T) {
		s.t = t
		s.load("aes256gcm16-prfsha256-x25519", "aes256gcm16")
		m, inst := giSide(t, gi, Config{CookieThreshold: 1}, 500)
		ghost := swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		ghost.Name, ghost.RemoteAddrs = "ghost", host(mustAddr("192.0.2.9"))
		if err := m.SetPeers([]Peer{swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16"), ghost}); err != nil {
			t.Fatal(err)
		}
		// A ghost's IKE_SA_INIT, built by a manager in step mode, leaves a
		// half-open IKE SA on our side.
		n := &stepNet{t: t, nodes: map[netip.Addr]*Manager{}}
		g := NewManager(Config{Logger: testLogger(t)}, &fakeInstaller{}, stepTransport{n})
		g.step = true
		gp := swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		gp.LocalAddrs, gp.RemoteAddrs = host(mustAddr("192.0.2.9")), host(mustAddr("192.0.2.1"))
		if err := g.SetPeers([]Peer{gp}); err != nil {
			t.Fatal(err)
		}
		if err := g.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		m.HandlePacket(n.queue[0].pkt, n.queue[0].from, n.queue[0].to)
		if !nstest.WaitFor(2*time.Second, func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.halfOpen == 1 }) {
			t.Fatal("no half-open IKE SA")
		}
		if out, err := s.swanctl("--initiate", "--child", "net"); err != nil {
			t.Fatalf("swanctl --initiate: %v\n%s", err, out)
		}
		if !nstest.WaitFor(10*time.Second, func() bool { return len(inst.live()) == 1 }) {
			t.Fatalf("not up: %+v", m.SAs())
		}
		s.checkChildKeys(inst)
		b, _ := os.ReadFile(filepath.Join(s.dir, "charon.log"))
		if !strings.Contains(string(b), "received COOKIE") && !strings.Contains(string(b), "N(COOKIE)") {
			t.Error("we did not ask strongSwan for a cookie")
		}
	})
	t.Run("fragments", func(t *testing.T) {
		s.t = t
		// 100 selectors make strongSwan's IKE_AUTH response larger than
		// its fragment size (1280); a small FragmentSize splits ours.
		var sel []string
		for i := 0; i < 100; i++ {
			// Each holds 10.2.0.1, the address kernel-libipsec routes from.
			sel = append(sel, fmt.Sprintf("10.2.0.0/24[tcp/%d]", 1000+i))
		}
		s.loadTS("aes256gcm16-prfsha256-x25519", "aes256gcm16", strings.Join(sel, ","), "10.1.0.0/16")
		m, inst := giSide(t, gi, Config{FragmentSize: 200}, 500)
		if err := m.SetPeers([]Peer{swanPeer(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")}); err != nil {
			t.Fatal(err)
		}
		if err := m.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		c := up(t, m, inst)
		if len(c.RemoteTS) != 100 {
			t.Errorf("%d remote selectors", len(c.RemoteTS))
		}
		b, _ := os.ReadFile(filepath.Join(s.dir, "charon.log"))
		if !strings.Contains(string(b), "EF(") {
			t.Error("no fragments in the log")
		}
	})
}
