package main

// The generator: N IKE SAs, each with one CHILD SA, opened by at most C
// workers at a time. Every IKE SA is one ike.Manager with one peer (the
// target), so that each SA has an identity of its own (the first IKE SA of
// each client carries INITIAL_CONTACT, RFC 7296, Section 2.4, as a real
// client's would). The Managers share a pool of connected UDP sockets,
// each with its own source port (and, with several -local addresses, its
// own source address), each with a second socket for UDP encapsulation
// (RFC 3948), to which IKE moves when either side sees a NAT or fakes one
// (RFC 7296, Section 2.23; strongSwan with kernel-libipsec does); one
// reader per socket hands each datagram to the Manager that owns the IKE
// SPI in it. CHILD SAs are negotiated but never
// installed: the Installer does nothing, so the generator's cost is the
// IKE exchange alone.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// loadConfig is what one run does.
type loadConfig struct {
	Target      netip.AddrPort // the responder
	NATTPort    uint16         // the responder's port of UDP encapsulation
	Locals      []netip.Addr   // source addresses, round robin over the sockets; empty: chosen by the kernel
	N           int            // IKE SAs to open
	Concurrency int            // handshakes in flight at most
	Sockets     int            // UDP sockets (source ports); 0: min(N, 256)
	IKE         []transform.IKEProposal
	ESP         []transform.ESPProposal
	PSK         []byte
	IDFormat    string       // the initiators' identities, fmt with the SA's index
	RemoteID    ike.Identity // the responder's identity; zero: any
	LocalNet    netip.Prefix // each CHILD SA proposes one /32 (/128) of it as TSi
	RemoteTS    traffic.Set  // the CHILD SAs' TSr
	Timeout     time.Duration
	Retransmit  time.Duration // first retransmission timeout
	Logger      *slog.Logger
}

// result is the outcome of one run.
type result struct {
	N           int              `json:"n"`
	Concurrency int              `json:"concurrency"`
	Sockets     int              `json:"sockets"`
	OK          int              `json:"established"`
	Failed      int              `json:"failed"`
	Failures    map[string]int   `json:"failures,omitempty"`
	Seconds     float64          `json:"seconds"`
	Rate        float64          `json:"handshakes_per_s"`
	Latency     latencySummary   `json:"latency_ms"`
	CPUSeconds  float64          `json:"generator_cpu_s"`
	latencies   []time.Duration  // of the established ones
	managers    []*ike.Manager   // the established IKE SAs, held until closeFn
	closeFn     func()           // closes the managers and the sockets
	perFailure  map[string]error // one example per reason
}

type latencySummary struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// nopInstaller accepts every CHILD SA and installs nothing.
type nopInstaller struct{}

func (nopInstaller) InstallSA(ike.ChildSA) error        { return nil }
func (nopInstaller) ActivateOutbound(ike.ChildSA) error { return nil }
func (nopInstaller) DeleteSA(ike.ChildSA) error         { return nil }

// router hands received datagrams to the Manager owning the initiator SPI.
type router struct {
	mu    sync.RWMutex
	bySPI map[uint64]*ike.Manager
}

func (r *router) add(spi uint64, m *ike.Manager) {
	r.mu.Lock()
	r.bySPI[spi] = m
	r.mu.Unlock()
}

func (r *router) get(spi uint64) *ike.Manager {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.bySPI[spi]
}

// udpSock is a pair of connected UDP sockets shared by several IKE SAs:
// one to the responder's IKE port, one to its NAT-T port.
type udpSock struct {
	ike, natt conn
}

type conn struct {
	c      *net.UDPConn
	local  netip.AddrPort
	remote netip.AddrPort
	marker bool // NAT-T: IKE messages start with the non-ESP marker
}

func dial(local netip.Addr, remote netip.AddrPort) (conn, error) {
	var laddr *net.UDPAddr
	if local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return conn{}, err
	}
	la := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return conn{c: c, local: netip.AddrPortFrom(la.Addr().Unmap(), la.Port()), remote: remote}, nil
}

// transport is one Manager's ike.Transport: it registers the SPIs of its
// IKE_SA_INIT requests with the router before sending.
type transport struct {
	s *udpSock
	r *router
	m *ike.Manager
}

// Offsets in the IKE header (RFC 7296, Section 3.1).
const (
	hdrLen      = 28
	offExchange = 18
	exSAInit    = 34
)

var errPath = errors.New("ikeload: the engine wants another peer address than the responder's (a NAT that changes the responder's address is not supported)")

// Send sends from the socket of from's port. The engine moves IKE to
// NAT-T by sending from its NATTPort to the peer's address with that same
// port number (RFC 7296, Section 2.23); the NAT-T socket is connected to
// the responder's real NAT-T port, as any NAT would translate it.
func (t *transport) Send(pkt []byte, from, to netip.AddrPort) error {
	if to.Addr() != t.s.ike.remote.Addr() {
		return errPath
	}
	c := &t.s.ike
	if from.Port() == t.s.natt.local.Port() {
		c = &t.s.natt
	}
	if !c.marker && len(pkt) >= hdrLen && pkt[offExchange] == exSAInit {
		t.r.add(binary.BigEndian.Uint64(pkt), t.m)
	}
	_, err := c.c.Write(pkt)
	return err
}

// read feeds the datagrams of c to their Managers until the socket closes.
func (r *router) read(c *conn, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 65536)
	off := 0
	if c.marker {
		off = 4 // RFC 3948, Section 2.2; HandlePacket strips it
	}
	for {
		n, err := c.c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors on a connected socket
		}
		if n < off+hdrLen {
			continue
		}
		if m := r.get(binary.BigEndian.Uint64(buf[off:])); m != nil {
			m.HandlePacket(buf[:n], c.remote, c.local) // copies what it keeps
		}
	}
}

// tsAddr returns the i-th address of p (wrapping within p) as a prefix of
// one address.
func tsAddr(p netip.Prefix, i int) netip.Prefix {
	b := p.Masked().Addr().AsSlice()
	off := uint64(i)
	if host := len(b)*8 - p.Bits(); host < 64 {
		off %= uint64(1) << host
	}
	if len(b) == 4 {
		binary.BigEndian.PutUint32(b, binary.BigEndian.Uint32(b)+uint32(off))
	} else {
		binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+off)
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, a.BitLen())
}

// run opens the IKE SAs and returns when every one is established or has
// failed; the established ones stay up until result.closeFn.
func run(ctx context.Context, cfg loadConfig) (*result, error) {
	if cfg.N <= 0 || cfg.Concurrency <= 0 {
		return nil, errors.New("ikeload: -n and -c must be positive")
	}
	nsock := cfg.Sockets
	if nsock <= 0 {
		nsock = min(cfg.N, 256)
	}
	nsock = min(nsock, cfg.N)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &router{bySPI: make(map[uint64]*ike.Manager, cfg.N)}
	var readers sync.WaitGroup
	socks := make([]*udpSock, 0, nsock)
	closeSocks := func() {
		for _, s := range socks {
			s.ike.c.Close()
			s.natt.c.Close()
		}
		readers.Wait()
	}
	natt := netip.AddrPortFrom(cfg.Target.Addr(), cfg.NATTPort)
	if cfg.NATTPort == 0 {
		natt = netip.AddrPortFrom(cfg.Target.Addr(), 4500)
	}
	for i := range nsock {
		var local netip.Addr
		if len(cfg.Locals) > 0 {
			local = cfg.Locals[i%len(cfg.Locals)]
		}
		s := &udpSock{}
		var err error
		if s.ike, err = dial(local, cfg.Target); err == nil {
			if s.natt, err = dial(s.ike.local.Addr(), natt); err != nil {
				s.ike.c.Close()
			}
		}
		if err != nil {
			closeSocks()
			return nil, fmt.Errorf("ikeload: socket %d: %w", i, err)
		}
		s.natt.marker = true
		socks = append(socks, s)
		readers.Add(2)
		go r.read(&s.ike, &readers)
		go r.read(&s.natt, &readers)
	}

	res := &result{N: cfg.N, Concurrency: cfg.Concurrency, Sockets: nsock, Failures: map[string]int{}, perFailure: map[string]error{}}
	var mu sync.Mutex // guards res's slices and maps
	var cpu0 = cpuTime()
	start := time.Now()
	next := atomic.Int64{}
	var workers sync.WaitGroup
	for range cfg.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.N || ctx.Err() != nil {
					return
				}
				m, d, err := one(ctx, cfg, r, socks[i%len(socks)], i)
				mu.Lock()
				if err != nil {
					reason := reasonOf(err)
					res.Failures[reason]++
					if res.perFailure[reason] == nil {
						res.perFailure[reason] = err
					}
					res.Failed++
				} else {
					res.OK++
					res.latencies = append(res.latencies, d)
					res.managers = append(res.managers, m)
				}
				mu.Unlock()
			}
		}()
	}
	workers.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.CPUSeconds = (cpuTime() - cpu0).Seconds()
	if res.Seconds > 0 {
		res.Rate = float64(res.OK) / res.Seconds
	}
	res.Latency = summarize(res.latencies)
	res.closeFn = func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, m := range res.managers {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				m.Close()
				<-sem
			}()
		}
		wg.Wait()
		closeSocks()
	}
	return res, ctx.Err()
}

// failure is why one IKE SA did not come up.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string {
	if f.err == nil {
		return f.reason
	}
	return f.reason + ": " + f.err.Error()
}

func (f *failure) Unwrap() error { return f.err }

func reasonOf(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.reason
	}
	return "error"
}

// one opens IKE SA i with its CHILD SA and waits for the outcome.
func one(ctx context.Context, cfg loadConfig, r *router, s *udpSock, i int) (*ike.Manager, time.Duration, error) {
	tr := &transport{s: s, r: r}
	m := ike.NewManager(ike.Config{
		Logger:            cfg.Logger,
		Port:              s.ike.local.Port(),
		NATTPort:          s.natt.local.Port(),
		RetransmitTimeout: cfg.Retransmit,
		KeepaliveInterval: -1,
		EventBuffer:       8,
	}, nopInstaller{}, tr)
	tr.m = m
	psk := cfg.PSK
	peer := ike.Peer{
		Name:        "load",
		LocalAddrs:  []netip.Prefix{netip.PrefixFrom(s.ike.local.Addr(), s.ike.local.Addr().BitLen())},
		RemoteAddrs: []netip.Prefix{netip.PrefixFrom(cfg.Target.Addr(), cfg.Target.Addr().BitLen())},
		RemotePort:  cfg.Target.Port(),
		Proposals:   cfg.IKE,
		LocalID:     ike.ParseIdentity(fmt.Sprintf(cfg.IDFormat, i)),
		RemoteID:    cfg.RemoteID,
		PSK:         func(_, _ ike.Identity) []byte { return psk },
		RekeyTime:   -1,
		Children: []ike.ChildConfig{{
			Name:      "load",
			Mode:      sa.Tunnel,
			LocalTS:   traffic.Set{{Prefix: tsAddr(cfg.LocalNet, i), PortHi: 0xffff}},
			RemoteTS:  cfg.RemoteTS,
			Protocol:  sa.ESP,
			Proposals: cfg.ESP,
			RekeyTime: -1,
		}},
	}
	if err := m.SetPeers([]ike.Peer{peer}); err != nil {
		m.Close()
		return nil, 0, &failure{"config", err}
	}
	t0 := time.Now()
	if err := m.Initiate("load", "load", nil); err != nil {
		m.Close()
		return nil, 0, &failure{"initiate", err}
	}
	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	for {
		select {
		case e := <-m.Events():
			switch e.Kind {
			case ike.EventChildUp:
				return m, time.Since(t0), nil
			case ike.EventAuthFailed:
				m.Close()
				return nil, 0, &failure{"auth_failed", e.Err}
			case ike.EventChildFailed:
				m.Close()
				return nil, 0, &failure{"child_failed", e.Err}
			case ike.EventIKEDown:
				m.Close()
				reason := "ike_down"
				if errors.Is(e.Err, ike.ErrPeerDead) {
					reason = "no_response"
				} else if e.Err != nil {
					var n *ike.NotifyError
					if errors.As(e.Err, &n) {
						reason = "notify_" + n.Type.String()
					}
				}
				return nil, 0, &failure{reason, e.Err}
			}
		case <-timer.C:
			m.Close()
			return nil, 0, &failure{"timeout", fmt.Errorf("no CHILD SA after %v", cfg.Timeout)}
		case <-ctx.Done():
			m.Close()
			return nil, 0, &failure{"interrupted", ctx.Err()}
		}
	}
}

// summarize returns the percentiles of ds in milliseconds (nearest rank).
func summarize(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	p := func(q float64) float64 {
		k := int(q*float64(len(s)) + 0.999999)
		k = min(max(k, 1), len(s))
		return float64(s[k-1]) / float64(time.Millisecond)
	}
	return latencySummary{P50: p(0.50), P90: p(0.90), P99: p(0.99), Max: float64(s[len(s)-1]) / float64(time.Millisecond)}
}
