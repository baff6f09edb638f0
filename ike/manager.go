package ike

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/sa"
)

// Manager is the IKEv2 engine: it owns every IKE SA of this host, each
// run by an actor (a goroutine while it has work, see drain), and talks
// to the outside through a
// Transport (datagrams out), HandlePacket (datagrams in), an Installer
// (CHILD SAs) and the Events channel. All methods are safe for concurrent
// use.
type Manager struct {
	cfg  Config
	inst Installer
	tr   Transport
	// step runs every session inline in the caller's goroutine, without
	// timers: tests drive it one message at a time.
	step bool

	mu        sync.Mutex
	peers     []*Peer
	actors    map[*actor]struct{}
	bySPI     map[uint64]*actor   // our IKE SPI -> session
	byInit    map[initKey]*actor  // responder sessions by the peer's SPIi and address
	ikeSPIs   map[uint64]*session // IKE SPIs handed out but not yet registered, by owner
	childSPIs map[uint32]*session // inbound CHILD SA SPIs in use, by owner
	// reserved lists each session's entries in ikeSPIs and childSPIs, so
	// that forgetting an IKE SA frees them without a walk over every SPI.
	reserved map[*session]*reservedSPIs
	// byPeer and byIdent index the actors by the peer configuration and
	// the remote identity of their last snapshot (actor.info), so that
	// INITIAL_CONTACT and the uniqueness policy find the other IKE SAs of
	// one peer without a walk over every IKE SA (see setInfo).
	byPeer  map[string]map[*actor]struct{}
	byIdent map[identKey][]*actor // usually one each: a slice costs less than a map
	// byRemote indexes the actors by peer configuration and remote host,
	// so that an on-demand initiation to one peer of a group connection
	// finds that peer's IKE SA (currentLocked) without a walk over every
	// peer of the group; byChild indexes them by the SPIs of their CHILD
	// SAs, so that an expiry event of the data plane finds its IKE SA
	// (HandleExpire) without a walk over every IKE SA.
	byRemote map[remoteKey][]*actor
	byChild  map[childKey][]*actor
	halfOpen int
	// halfOpenBySrc counts half-open responder SAs by source (see
	// sourceOf) for Config.MaxHalfOpenPerSource.
	halfOpenBySrc map[netip.Prefix]int
	closed        bool
	cookies       cookieSecrets

	events  chan Event
	dropped atomic.Uint64
	panics  atomic.Uint64
	// recvPanics counts the panics of HandlePacket, whose first is logged.
	recvPanics atomic.Uint64
	// refusedResends counts retransmitted requests that did not get the
	// cached response (RFC 7296, Section 2.1; see session.retransmitted).
	refusedResends atomic.Uint64
	counters       counters // for Stats
	wg             sync.WaitGroup
}

type initKey struct {
	spiI uint64
	from netip.AddrPort
}

// identKey is an actor's entry in Manager.byIdent: its peer
// configuration's name and remote identity. Distinguished names compare
// by meaning (Identity.Equal), not by their encoding, so all of one
// peer's DN identities share the key with empty id; the lookup compares
// them with Equal.
type identKey struct {
	peer   string
	idType uint8
	id     string
}

func identKeyOf(info *IKESA) identKey {
	k := identKey{peer: info.Peer, idType: uint8(info.RemoteID.Type)}
	if info.RemoteID.Type != ikewire.ID_DER_ASN1_DN {
		k.id = string(info.RemoteID.Data)
	}
	return k
}

// remoteKey is an actor's entry in Manager.byRemote: its peer
// configuration's name and the peer's address, unmapped.
type remoteKey struct {
	peer   string
	remote netip.Addr
}

// childKey is an entry of an actor in Manager.byChild: the protocol,
// direction and SPI of one of its CHILD SAs. Inbound SPIs are unique
// (allocSPI); outbound SPIs are the peers' choice, so two IKE SAs may
// share one.
type childKey struct {
	proto sa.Protocol
	out   bool
	spi   uint32
}

// childKeysOf appends the byChild keys of info's CHILD SAs to dst.
func childKeysOf(dst []childKey, info *IKESA) []childKey {
	for _, c := range info.Children {
		dst = append(dst, childKey{c.Protocol, false, c.SPIIn}, childKey{c.Protocol, true, c.SPIOut})
	}
	return dst
}

// reservedSPIs are the SPIs one session reserved (see Manager.reserved).
type reservedSPIs struct {
	child []uint32
	ike   []uint64
}

// actor owns one session. Its inputs (datagrams, timer, commands) queue
// in its mailbox, and a goroutine runs only while the mailbox has any
// (drain): an idle established IKE SA keeps no goroutine, no stack and no
// channel buffer, only its session, the snapshot and one timer armed for
// its next deadline. One goroutine at most runs an actor at a time, so
// the session stays single-threaded as with a goroutine per IKE SA.
type actor struct {
	s    *session
	info atomic.Pointer[IKESA]

	// The mailbox, guarded by mu: the inputs waiting, whether a goroutine
	// drains them, and whether the actor has ended (then it takes none).
	mu      sync.Mutex
	queue   []input
	running bool
	ended   bool
	// timer delivers inTimer at timerAt, the session's deadline (zero:
	// not armed); only the draining goroutine arms it.
	timer   *time.Timer
	timerAt time.Time
	// alarm is what the timer's function holds: end empties it, so that
	// a stopped timer the runtime has not dropped yet keeps nothing of
	// the IKE SA alive.
	alarm *atomic.Pointer[actor]

	// peer and ident are the actor's entries in Manager.byPeer and
	// byIdent (indexed says it has them); written under the Manager's
	// lock by the actor's goroutine only.
	peer     string
	ident    identKey
	remote   netip.Addr
	children []childKey // byChild entries, two per CHILD SA, as childKeysOf lists them
	indexed  bool
	spis     []uint64
	init     initKey
	halfOpen bool
	src      netip.Prefix // the source counted in halfOpenBySrc
	dead     bool
	crashed  bool // the session panicked; crash ended it
}

// inboxLen bounds the datagrams waiting for one IKE SA; datagrams beyond
// it are dropped (the peer retransmits). Commands and timers always
// queue.
const inboxLen = 64

// NewManager returns a Manager that sends with tr and installs CHILD SAs
// with inst. It starts no goroutine until an IKE SA exists. Call Close to
// stop it.
func NewManager(cfg Config, inst Installer, tr Transport) *Manager {
	m := &Manager{
		cfg: cfg.withDefaults(), inst: inst, tr: tr,
		actors: map[*actor]struct{}{}, bySPI: map[uint64]*actor{}, byInit: map[initKey]*actor{},
		ikeSPIs: map[uint64]*session{}, childSPIs: map[uint32]*session{}, reserved: map[*session]*reservedSPIs{},
		byPeer: map[string]map[*actor]struct{}{}, byIdent: map[identKey][]*actor{},
		byRemote: map[remoteKey][]*actor{}, byChild: map[childKey][]*actor{},
		halfOpenBySrc: map[netip.Prefix]int{},
	}
	m.events = make(chan Event, m.cfg.EventBuffer)
	m.cookies.init(m.cfg.Rand, m.cfg.Now())
	return m
}

// Events returns the channel of events. Events that do not fit into its
// buffer (Config.EventBuffer) are dropped; DroppedEvents counts them. The
// channel is closed by Close.
func (m *Manager) Events() <-chan Event { return m.events }

// DroppedEvents returns the number of events dropped because the Events
// channel was full.
func (m *Manager) DroppedEvents() uint64 { return m.dropped.Load() }

// Panics returns the number of panics the engine recovered from. Each one
// ended the IKE SA whose goroutine panicked, with its CHILD SAs, and
// nothing else.
func (m *Manager) Panics() uint64 { return m.panics.Load() }

// RefusedRetransmits returns the number of messages that quoted the
// Message ID of a peer's last request but did not get the cached response
// again: from another address, or not the same request (RFC 7296, Section
// 2.1).
func (m *Manager) RefusedRetransmits() uint64 { return m.refusedResends.Load() }

// SetPeers replaces the peer configurations. IKE SAs of peers that are no
// longer configured are deleted; the others take the new configuration of
// their peer by name: CHILD SAs of children that are gone are deleted, the
// others keep running and their next rekey uses the new configuration, and
// an IKE SA whose authenticated identity the peer's RemoteID no longer
// accepts is deleted. Children with StartAction StartStart that are not up
// are initiated.
func (m *Manager) SetPeers(peers []Peer) error {
	ps := make([]*Peer, len(peers))
	names := map[string]bool{}
	for i := range peers {
		p := peers[i]
		if p.Name == "" || names[p.Name] {
			return fmt.Errorf("ike: peer %d: empty or duplicate name %q", i, p.Name)
		}
		names[p.Name] = true
		if err := p.RemoteID.CheckPattern(); err != nil {
			return fmt.Errorf("%w (peer %q)", err, p.Name)
		}
		if p.LocalID.IsPattern() {
			return fmt.Errorf("ike: peer %q: the local identity %s is a pattern", p.Name, p.LocalID)
		}
		p.Children = slices.Clone(p.Children)
		if err := p.check(); err != nil {
			return err
		}
		ps[i] = &p
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.peers = ps
	var gone []*actor
	kept := map[*actor]*Peer{}
	for a := range m.actors {
		if info := a.info.Load(); info != nil && info.Peer != "" {
			if !names[info.Peer] {
				gone = append(gone, a)
			} else {
				kept[a] = m.peerLocked(info.Peer)
			}
		}
	}
	m.mu.Unlock()
	for _, a := range gone {
		m.deliver(a, input{kind: inCommand, cmd: command{kind: cmdTerminate}})
	}
	for a, p := range kept {
		m.deliver(a, input{kind: inCommand, cmd: command{kind: cmdSetPeer, peer: p}})
	}
	for _, p := range ps {
		for _, c := range p.Children {
			if c.StartAction == StartStart {
				if err := m.Initiate(p.Name, c.Name, nil); err != nil {
					m.cfg.Logger.Warn("ike: start action", "peer", p.Name, "child", c.Name, "err", err)
				}
			}
		}
	}
	return nil
}

func (m *Manager) peerLocked(name string) *Peer {
	for _, p := range m.peers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Initiate brings up CHILD SA child of peer (and the IKE SA, if there is
// none): through IKE_SA_INIT and IKE_AUTH, or CREATE_CHILD_SA on an
// existing IKE SA. It does nothing if the child is up or being
// negotiated, so an acquire starts one negotiation per policy. trigger,
// if not nil, is the packet behind an acquire (RFC 7296, Section 2.9); for
// a peer configuration with many remote hosts its destination picks the
// host, and each host gets an IKE SA of its own (onDemandRemote). An
// empty child creates the IKE SA alone if none exists. Initiate returns
// at once; Events reports the outcome.
func (m *Manager) Initiate(peer, child string, trigger *Trigger) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	p := m.peerLocked(peer)
	if p == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownPeer, peer)
	}
	var c *ChildConfig
	if child != "" {
		if c = p.child(child); c == nil {
			m.mu.Unlock()
			return fmt.Errorf("%w %q of peer %q", ErrUnknownChild, child, peer)
		}
	}
	remote := onDemandRemote(p, c, trigger)
	if a := m.currentLocked(peer, remote); a != nil {
		m.mu.Unlock()
		if c != nil {
			m.deliver(a, input{kind: inCommand, cmd: command{kind: cmdInitiate, child: child, trigger: trigger}})
		}
		return nil
	}
	a, err := m.newInitiatorLocked(p, c, trigger, remote)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.deliver(a, input{kind: inTimer})
	return nil
}

// newInitiatorLocked creates the session of a new IKE SA with p that
// brings up child c (nil: the IKE SA alone), to remote or, if it is not
// valid, to p's remote address.
func (m *Manager) newInitiatorLocked(p *Peer, c *ChildConfig, trigger *Trigger, remote netip.Addr) (*actor, error) {
	if !remote.IsValid() {
		remote = firstHost(p.RemoteAddrs)
	}
	if !remote.IsValid() {
		return nil, fmt.Errorf("ike: peer %q has no single remote address to initiate to", p.Name)
	}
	local := firstHost(p.LocalAddrs)
	if !local.IsValid() && m.cfg.LocalAddr != nil {
		if a, err := m.cfg.LocalAddr(remote); err == nil && a.IsValid() {
			local = a.Unmap()
		}
	}
	if !local.IsValid() {
		local = netip.IPv4Unspecified()
		if remote.Is6() {
			local = netip.IPv6Unspecified()
		}
	}
	now := m.cfg.Now()
	s := newSession(m, now)
	s.peer = p
	s.local = netip.AddrPortFrom(local, m.cfg.Port)
	rport := p.RemotePort
	if rport == 0 {
		rport = m.cfg.Port
	}
	s.remote = netip.AddrPortFrom(remote, rport)
	s.sa = &ikeSA{initiator: true, spiI: m.newIKESPILocked(s)}
	s.queue(&initTask{})
	s.queue(&authTask{cr: childReq{cfg: c, trigger: trigger}})
	if c != nil {
		s.pendingChildren[c.Name] = true
	}
	a := m.addActorLocked(s)
	m.registerLocked(a, s.sa.spiI)
	m.counters.started.Add(1)
	return a, nil
}

// onDemandRemote returns the host that a trigger asks for when p is a
// configuration for many peers (remote addresses that are not one host)
// and child c protects the traffic of the peers themselves (transport mode
// or dynamic selectors): the packet's destination, if it lies in p's
// remote addresses. Each such peer gets an IKE SA of its own. Otherwise it
// returns the zero Addr: p's one remote address.
func onDemandRemote(p *Peer, c *ChildConfig, t *Trigger) netip.Addr {
	if t == nil || c == nil || !t.Dst.IsValid() || (c.Mode != sa.Transport && len(c.RemoteTS) > 0) {
		return netip.Addr{}
	}
	if len(p.RemoteAddrs) == 1 && p.RemoteAddrs[0].IsSingleIP() {
		return netip.Addr{}
	}
	if !matchAddr(p.RemoteAddrs, t.Dst) {
		return netip.Addr{}
	}
	return t.Dst.Unmap()
}

// currentLocked returns the live IKE SA with peer, preferring an
// established one; with a valid remote, only one with that remote host,
// found through byRemote among the IKE SAs with that host alone.
func (m *Manager) currentLocked(peer string, remote netip.Addr) *actor {
	var connecting *actor
	check := func(a *actor) bool {
		info := a.info.Load()
		if info == nil || info.Peer != peer || a.dead {
			return false
		}
		if remote.IsValid() && info.Remote.Addr().Unmap() != remote {
			return false
		}
		switch info.State {
		case StateEstablished:
			return true
		case StateConnecting:
			connecting = a
		}
		return false
	}
	if remote.IsValid() {
		for _, a := range m.byRemote[remoteKey{peer, remote}] {
			if check(a) {
				return a
			}
		}
		return connecting
	}
	for a := range m.byPeer[peer] {
		if check(a) {
			return a
		}
	}
	return connecting
}

// Terminate deletes CHILD SA child of peer, or with an empty child the IKE
// SAs with peer and all their CHILD SAs (RFC 7296, Section 1.4.1).
func (m *Manager) Terminate(peer, child string) error {
	return m.toPeer(peer, command{kind: cmdTerminate, child: child})
}

// Rekey rekeys CHILD SA child of peer, or with an empty child the IKE SA
// (RFC 7296, Sections 1.3.2 and 1.3.3).
func (m *Manager) Rekey(peer, child string) error {
	if child == "" {
		return m.toPeer(peer, command{kind: cmdRekeyIKE})
	}
	return m.toPeer(peer, command{kind: cmdRekeyChild, child: child})
}

func (m *Manager) toPeer(peer string, c command) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var as []*actor
	for a := range m.byPeer[peer] {
		if info := a.info.Load(); info != nil && info.Peer == peer {
			as = append(as, a)
		}
	}
	m.mu.Unlock()
	if len(as) == 0 {
		return fmt.Errorf("%w %q (no IKE SA)", ErrUnknownPeer, peer)
	}
	for _, a := range as {
		m.deliver(a, input{kind: inCommand, cmd: c})
	}
	return nil
}

// HandleExpire reacts to a lifetime event of the data plane: a soft limit
// rekeys the CHILD SA, a hard limit deletes it.
func (m *Manager) HandleExpire(e sa.Event) {
	m.mu.Lock()
	var target *actor
	var spiIn uint32
	// The IKE SAs that hold a CHILD SA with this SPI, from byChild: one
	// for an inbound SPI; for an outbound one, which the peers chose,
	// the last of those that hold it.
	for _, a := range m.byChild[childKey{e.Protocol, e.Direction == sa.Outbound, e.SPI}] {
		info := a.info.Load()
		if info == nil {
			continue
		}
		for _, c := range info.Children {
			if c.Protocol == e.Protocol && ((e.Direction == sa.Inbound && c.SPIIn == e.SPI) || (e.Direction == sa.Outbound && c.SPIOut == e.SPI)) {
				target, spiIn = a, c.SPIIn
			}
		}
	}
	m.mu.Unlock()
	if target == nil {
		return
	}
	k := cmdRekeySPI
	if e.Hard {
		k = cmdDeleteSPI
	}
	m.deliver(target, input{kind: inCommand, cmd: command{kind: k, spi: spiIn}})
}

// SAs returns a snapshot of the IKE SAs and their CHILD SAs, without key
// material, ordered by peer name.
func (m *Manager) SAs() []IKESA {
	m.mu.Lock()
	var out []IKESA
	for a := range m.actors {
		if info := a.info.Load(); info != nil && info.State != StateDead {
			out = append(out, *info)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b IKESA) int {
		if c := strings.Compare(a.Peer, b.Peer); c != 0 {
			return c
		}
		return a.Established.Compare(b.Established)
	})
	return out
}

// Close deletes every IKE SA (sending a Delete without waiting for the
// answer), removes their CHILD SAs from the Installer, stops the
// goroutines and closes the Events channel.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	as := make([]*actor, 0, len(m.actors))
	for a := range m.actors {
		as = append(as, a)
	}
	m.mu.Unlock()
	for _, a := range as {
		m.deliver(a, input{kind: inCommand, cmd: command{kind: cmdCloseNotify}})
	}
	m.wg.Wait()
	close(m.events)
	return nil
}

// HandlePacket feeds a received UDP payload to the engine: pkt arrived
// from the peer address from at the local address to. On the NAT-T port
// pkt starts with the non-ESP marker (RFC 3948, Section 2.2); NAT
// keepalives and ESP packets there are ignored. The engine copies what it
// keeps, so the caller may reuse pkt's memory when HandlePacket returns.
// Malformed input is dropped and never builds state (RFC 7296, Section
// 2.21).
func (m *Manager) HandlePacket(pkt []byte, from, to netip.AddrPort) {
	// The reader's goroutine belongs to the caller: a panic while parsing
	// or admitting a message drops that message only, and is counted with
	// the actors' (Panics).
	defer func() {
		if r := recover(); r != nil {
			m.panics.Add(1)
			if m.recvPanics.Add(1) == 1 { // the first with its stack; then counted
				m.cfg.Logger.Error("ike: panic while receiving a message; the message is dropped (further ones are only counted)",
					"from", from.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}
	}()
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if to.Port() == m.cfg.NATTPort {
		if len(pkt) < iana.NonESPMarkerLen || pkt[0]|pkt[1]|pkt[2]|pkt[3] != 0 {
			return // a keepalive or ESP
		}
		pkt = pkt[iana.NonESPMarkerLen:]
	}
	h, err := ikewire.ParseHeader(pkt)
	if err != nil {
		return
	}
	pkt = bytes.Clone(pkt)
	a := m.route(pkt, &h, from, to)
	if a == nil {
		return
	}
	m.deliver(a, input{kind: inPacket, pkt: pkt, from: from, to: to})
}

// route finds the actor of the IKE SA a message with header h belongs to,
// or creates a responder for a new IKE_SA_INIT request; nil drops the
// message. The lock is released even if admission panics, so the Manager
// stays usable (see HandlePacket).
func (m *Manager) route(pkt []byte, h *ikewire.Header, from, to netip.AddrPort) *actor {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if h.Exchange == ikewire.IKE_SA_INIT && !h.IsResponse() && h.IsInitiator() && h.SPIr == 0 {
		if a := m.byInit[initKey{h.SPIi, from}]; a != nil {
			return a
		}
		return m.newResponderLocked(pkt, h, from, to)
	}
	our := h.SPIi
	if h.IsInitiator() {
		our = h.SPIr
	}
	return m.bySPI[our]
}

// newResponderLocked creates the session for a new IKE_SA_INIT request, or
// answers statelessly: with a COOKIE above the half-open threshold (RFC
// 7296, Section 2.6), NO_PROPOSAL_CHOSEN without a peer configuration.
func (m *Manager) newResponderLocked(pkt []byte, h *ikewire.Header, from, to netip.AddrPort) *actor {
	msg, err := ikewire.Parse(pkt)
	if err != nil {
		return nil // RFC 7296, Section 2.21.1: dropped, nothing kept
	}
	if h.MessageID != 0 {
		return nil
	}
	nonce := find[*ikewire.Nonce](msg.Payloads)
	if nonce == nil || find[*ikewire.SA](msg.Payloads) == nil || find[*ikewire.KE](msg.Payloads) == nil {
		return nil
	}
	// RFC 7296, Section 2.6: above the threshold, and before any limit
	// turns a request away, the initiator must prove that it receives at
	// its address: a request from a spoofed source then costs one
	// stateless reply and takes no slot.
	src := sourceOf(from.Addr())
	perSrc := m.halfOpenBySrc[src]
	full := m.halfOpen >= m.cfg.MaxHalfOpen || (m.cfg.MaxHalfOpenPerSource > 0 && perSrc >= m.cfg.MaxHalfOpenPerSource)
	if m.cfg.CookieThreshold > 0 && (m.halfOpen >= m.cfg.CookieThreshold || full) {
		var got []byte
		if n, ok := msg.Payloads[0].(*ikewire.Notify); ok && n.Type == ikewire.NotifyCookie {
			got = n.Data
		}
		now := m.cfg.Now()
		if !m.cookies.valid(got, nonce.Data, from.Addr(), h.SPIi, now, m.cfg.CookieSecretLifetime) {
			want := m.cookies.make(nonce.Data, from.Addr(), h.SPIi, now, m.cfg.CookieSecretLifetime)
			if b, err := initErrorMessage(h, ikewire.NotifyCookie, want); err == nil {
				m.sendNow(b, to, from)
			}
			return nil
		}
	}
	if full {
		// The source proved its address (or cookies are off): it, or
		// everyone, has too many half-open IKE SAs. Dropped without an
		// answer; the initiator retransmits (RFC 7296, Section 2.6).
		m.cfg.Logger.Debug("ike: half-open limit, IKE_SA_INIT dropped", "from", from, "source_half_open", perSrc, "half_open", m.halfOpen)
		return nil
	}
	var cands []*Peer
	for _, p := range m.peers {
		if matchAddr(p.LocalAddrs, to.Addr()) && matchAddr(p.RemoteAddrs, from.Addr()) {
			cands = append(cands, p)
		}
	}
	if len(cands) == 0 {
		if b, err := initErrorMessage(h, ikewire.NotifyNoProposalChosen, nil); err == nil {
			m.sendNow(b, to, from)
		}
		return nil
	}
	s := newSession(m, m.cfg.Now())
	s.cands = cands
	s.local, s.remote = to, from
	s.sa = &ikeSA{spiI: h.SPIi, spiR: m.newIKESPILocked(s)}
	a := m.addActorLocked(s)
	m.registerLocked(a, s.sa.spiR)
	a.init = initKey{h.SPIi, from}
	m.byInit[a.init] = a
	a.halfOpen = true
	a.src = src
	m.counters.started.Add(1)
	m.halfOpen++
	m.halfOpenBySrc[src]++
	return a
}

// halfOpenDoneLocked stops counting a as half-open.
func (m *Manager) halfOpenDoneLocked(a *actor) {
	if !a.halfOpen {
		return
	}
	a.halfOpen = false
	m.halfOpen--
	if n := m.halfOpenBySrc[a.src] - 1; n > 0 {
		m.halfOpenBySrc[a.src] = n
	} else {
		delete(m.halfOpenBySrc, a.src)
	}
}

// sourceOf returns the source that Config.MaxHalfOpenPerSource counts: the
// IPv4 address, or the IPv6 /64, since one IPv6 host usually holds a whole
// /64 (RFC 7421).
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// cookieSecrets are the secrets COOKIE values are made with (RFC 7296,
// Section 2.6): the current one, and the previous one, which is still
// accepted for one lifetime after it was replaced. The first byte of a
// cookie says which version of the secret made it. Guarded by the
// Manager's lock.
type cookieSecrets struct {
	rand    io.Reader
	cur     [32]byte
	prev    [32]byte
	ver     byte // version of cur; prev is ver-1
	hasPrev bool
	since   time.Time // when cur was drawn
}

func (c *cookieSecrets) init(r io.Reader, now time.Time) {
	c.rand, c.since = r, now
	c.draw()
}

func (c *cookieSecrets) draw() {
	if _, err := io.ReadFull(c.rand, c.cur[:]); err != nil {
		panic("ike: reading randomness: " + err.Error())
	}
}

// rotate draws a new secret once the current one is lifetime old; the
// current one becomes the previous one, unless it is already two
// lifetimes old (it would have been refused by now).
func (c *cookieSecrets) rotate(now time.Time, lifetime time.Duration) {
	if lifetime <= 0 || now.Sub(c.since) < lifetime {
		return
	}
	c.prev, c.hasPrev = c.cur, now.Sub(c.since) < 2*lifetime
	if !c.hasPrev {
		clear(c.prev[:])
	}
	c.ver++
	c.since = now
	c.draw()
}

// make returns the cookie for an initiator, made with the current secret.
func (c *cookieSecrets) make(ni []byte, ip netip.Addr, spiI uint64, now time.Time, lifetime time.Duration) []byte {
	c.rotate(now, lifetime)
	return cookieOf(c.ver, &c.cur, ni, ip, spiI)
}

// valid reports whether got is the cookie of the current or, during one
// lifetime after the rotation, the previous secret.
func (c *cookieSecrets) valid(got, ni []byte, ip netip.Addr, spiI uint64, now time.Time, lifetime time.Duration) bool {
	c.rotate(now, lifetime)
	if len(got) == 0 {
		return false
	}
	var want []byte
	switch {
	case got[0] == c.ver:
		want = cookieOf(c.ver, &c.cur, ni, ip, spiI)
	case c.hasPrev && got[0] == c.ver-1:
		want = cookieOf(c.ver-1, &c.prev, ni, ip, spiI)
	default:
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}

// cookieOf returns <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi |
// <secret>) (RFC 7296, Section 2.6).
func cookieOf(ver byte, secret *[32]byte, ni []byte, ip netip.Addr, spiI uint64) []byte {
	h := sha256.New()
	h.Write(ni)
	h.Write(ip.AsSlice())
	binary.Write(h, binary.BigEndian, spiI)
	h.Write(secret[:])
	return h.Sum([]byte{ver})
}

func (m *Manager) sendNow(b []byte, from, to netip.AddrPort) {
	if from.Port() == m.cfg.NATTPort {
		b = append([]byte{0, 0, 0, 0}, b...)
	}
	if err := m.tr.Send(b, from, to); err != nil {
		m.cfg.Logger.Debug("ike: send", "to", to, "err", err)
	}
}

func (m *Manager) addActorLocked(s *session) *actor {
	a := &actor{s: s}
	if !m.step {
		m.wg.Add(1) // until the actor ends (see end); Close waits
	}
	m.actors[a] = struct{}{}
	m.setInfoLocked(a, s.snapshot())
	return a
}

// setInfo publishes a new snapshot of a's session and keeps the indexes
// by peer and remote identity up to date. Only a's goroutine calls it
// (or the creator of a, before a runs).
func (m *Manager) setInfo(a *actor, info *IKESA) {
	if a.indexedAs(info) {
		a.info.Store(info) // the common case: the indexes stay
		return
	}
	m.mu.Lock()
	m.setInfoLocked(a, info)
	m.mu.Unlock()
}

func (m *Manager) setInfoLocked(a *actor, info *IKESA) {
	a.info.Store(info)
	if a.dead {
		return // forget took it out of the indexes
	}
	if a.indexedAs(info) {
		return
	}
	m.unindexLocked(a)
	a.peer, a.ident, a.remote, a.indexed = info.Peer, identKeyOf(info), info.Remote.Addr().Unmap(), true
	a.children = childKeysOf(a.children[:0], info)
	addTo(m.byPeer, a.peer, a)
	m.byIdent[a.ident] = append(m.byIdent[a.ident], a)
	rk := remoteKey{a.peer, a.remote}
	m.byRemote[rk] = append(m.byRemote[rk], a)
	for _, k := range a.children {
		m.byChild[k] = append(m.byChild[k], a)
	}
}

// indexedAs reports whether a's index entries are those of info (without
// building its keys).
func (a *actor) indexedAs(info *IKESA) bool {
	if !a.indexed || info.Peer != a.peer || uint8(info.RemoteID.Type) != a.ident.idType ||
		(info.RemoteID.Type != ikewire.ID_DER_ASN1_DN && string(info.RemoteID.Data) != a.ident.id) ||
		info.Remote.Addr().Unmap() != a.remote || 2*len(info.Children) != len(a.children) {
		return false
	}
	for i, c := range info.Children {
		in, out := a.children[2*i], a.children[2*i+1]
		if in.proto != c.Protocol || in.spi != c.SPIIn || out.spi != c.SPIOut {
			return false
		}
	}
	return true
}

func (m *Manager) unindexLocked(a *actor) {
	if !a.indexed {
		return
	}
	removeFrom(m.byPeer, a.peer, a)
	dropFrom(m.byIdent, a.ident, a)
	dropFrom(m.byRemote, remoteKey{a.peer, a.remote}, a)
	for _, k := range a.children {
		dropFrom(m.byChild, k, a)
	}
	a.indexed = false
}

// dropFrom removes a from the list of k in idx, and the list when empty.
func dropFrom[K comparable](idx map[K][]*actor, k K, a *actor) {
	if l := without(idx[k], a); len(l) > 0 {
		idx[k] = l
	} else {
		delete(idx, k)
	}
}

func addTo(idx map[string]map[*actor]struct{}, k string, a *actor) {
	set := idx[k]
	if set == nil {
		set = map[*actor]struct{}{}
		idx[k] = set
	}
	set[a] = struct{}{}
}

func removeFrom(idx map[string]map[*actor]struct{}, k string, a *actor) {
	if set := idx[k]; set != nil {
		delete(set, a)
		if len(set) == 0 {
			delete(idx, k)
		}
	}
}

func (m *Manager) registerLocked(a *actor, spi uint64) {
	m.unreserveIKELocked(spi)
	m.bySPI[spi] = a
	a.spis = append(a.spis, spi)
}

// deliver hands an input to the actor: inline in step mode; otherwise
// queued, dropping datagrams when inboxLen are waiting, and a goroutine
// starts draining the mailbox unless one is.
func (m *Manager) deliver(a *actor, in input) {
	if m.step {
		if !a.dead {
			m.run(a, in)
		}
		return
	}
	a.mu.Lock()
	if a.ended || (in.kind == inPacket && len(a.queue) >= inboxLen) {
		a.mu.Unlock()
		return
	}
	a.queue = append(a.queue, in)
	if a.running {
		a.mu.Unlock()
		return
	}
	a.running = true
	a.mu.Unlock()
	go m.drain(a)
}

// drain is the actor's goroutine while it has work: it feeds the session
// its inputs one at a time and executes the effects; when the mailbox is
// empty it arms the timer for the session's next deadline and ends. When
// the session ends, the actor ends with it (Close waits for that).
func (m *Manager) drain(a *actor) {
	defer func() {
		// run recovers the session's own panics; this catches the rest
		// (computing the deadline), so the goroutine never takes the
		// process down.
		if r := recover(); r != nil {
			m.crash(a, r)
			m.end(a)
		}
	}()
	armed := false
	for {
		a.mu.Lock()
		if a.dead {
			a.mu.Unlock()
			m.end(a)
			return
		}
		if len(a.queue) == 0 {
			if !armed {
				// Arm the timer while this goroutine still owns the
				// session, then look at the mailbox again.
				a.mu.Unlock()
				m.arm(a)
				armed = true
				continue
			}
			a.running = false
			a.queue = nil // an idle IKE SA keeps no buffer
			a.mu.Unlock()
			return
		}
		in := a.queue[0]
		a.queue[0] = input{}
		a.queue = a.queue[1:]
		a.mu.Unlock()
		armed = false
		m.run(a, in)
	}
}

// arm sets a's timer to the session's next deadline, if it changed. A
// timer that fires early or late only costs a tick that finds nothing to
// do or a later one; drain rearms it after every input.
func (m *Manager) arm(a *actor) {
	d := a.s.deadline()
	a.mu.Lock()
	same := d.Equal(a.timerAt)
	a.timerAt = d
	a.mu.Unlock()
	if same {
		return
	}
	if d.IsZero() {
		if a.timer != nil {
			a.timer.Stop()
		}
		return
	}
	wait := max(d.Sub(m.cfg.Now()), 0)
	if a.timer == nil {
		alarm := new(atomic.Pointer[actor])
		alarm.Store(a)
		a.alarm = alarm
		a.timer = time.AfterFunc(wait, func() {
			if a := alarm.Load(); a != nil {
				a.s.m.fire(a)
			}
		})
		return
	}
	a.timer.Reset(wait)
}

// fire is a's timer going off: it queues inTimer, and forgets the
// deadline it was armed for, so that the next arm sets it again even to
// the same time.
func (m *Manager) fire(a *actor) {
	a.mu.Lock()
	a.timerAt = time.Time{}
	a.mu.Unlock()
	m.deliver(a, input{kind: inTimer})
}

// end marks the actor ended: it takes no more input, its timer stops,
// and Close stops waiting for it.
func (m *Manager) end(a *actor) {
	a.mu.Lock()
	if a.ended {
		a.mu.Unlock()
		return
	}
	a.ended, a.running, a.queue = true, false, nil
	a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
		a.alarm.Store(nil)
	}
	m.wg.Done()
}

// run lets the session handle one input and executes the effects. A panic
// in either ends this IKE SA alone (see crash).
func (m *Manager) run(a *actor, in input) {
	defer func() {
		if r := recover(); r != nil {
			m.crash(a, r)
		}
	}()
	if a.crashed {
		return
	}
	ops := a.s.handle(in)
	for _, o := range ops {
		if a.crashed {
			return // a nested run (install failure) panicked
		}
		m.exec(a, o)
	}
	if a.halfOpen && a.s.state != StateConnecting {
		m.mu.Lock()
		m.halfOpenDoneLocked(a)
		m.mu.Unlock()
	}
	m.setInfo(a, a.s.snapshot())
}

func (m *Manager) exec(a *actor, o op) {
	switch o.kind {
	case opSend:
		if err := m.tr.Send(o.pkt, o.from, o.to); err != nil {
			m.cfg.Logger.Debug("ike: send", "to", o.to, "err", err)
		}
	case opInstall:
		err := m.inst.InstallSA(*o.child)
		// The keys now live in the data plane's transforms only; the
		// engine's copy goes (the session kept none, see session.install).
		clear(o.child.KeyIn)
		clear(o.child.KeyOut)
		if err != nil {
			m.cfg.Logger.Warn("ike: installing CHILD SA", "peer", o.child.Peer, "child", o.child.Child, "err", err)
			m.run(a, input{kind: inCommand, cmd: command{kind: cmdInstallFailed, spi: o.child.SPIIn}})
		}
	case opActivate:
		if err := m.inst.ActivateOutbound(*o.child); err != nil {
			m.cfg.Logger.Warn("ike: activating outbound CHILD SA", "peer", o.child.Peer, "child", o.child.Child, "err", err)
			m.run(a, input{kind: inCommand, cmd: command{kind: cmdInstallFailed, spi: o.child.SPIIn}})
		}
	case opDelete:
		if err := m.inst.DeleteSA(*o.child); err != nil {
			m.cfg.Logger.Debug("ike: deleting CHILD SA", "peer", o.child.Peer, "child", o.child.Child, "err", err)
		}
	case opEvent:
		m.cfg.Logger.Info("ike: "+o.ev.String(), "spi_i", fmt.Sprintf("%016x", o.ev.SPIi), "spi_r", fmt.Sprintf("%016x", o.ev.SPIr))
		m.emitNow(o.ev)
	case opRegister:
		m.mu.Lock()
		m.registerLocked(a, o.spi)
		m.mu.Unlock()
	case opUnregister:
		m.mu.Lock()
		if m.bySPI[o.spi] == a {
			delete(m.bySPI, o.spi)
		}
		m.mu.Unlock()
	case opInitialContact, opReplace:
		m.closeDuplicates(a, o.id, o.kind == opReplace)
	case opDone:
		m.forget(a)
	case opRestart:
		m.restart(a.s.peerName(), o.names)
	case opReauth:
		m.reauth(a, o.names)
	case opRetire:
		m.retire(a, o.spi)
	}
}

// forget removes a from the Manager's tables and frees every SPI its
// session holds.
func (m *Manager) forget(a *actor) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a.dead = true
	for _, spi := range a.spis {
		if m.bySPI[spi] == a {
			delete(m.bySPI, spi)
		}
	}
	if m.byInit[a.init] == a {
		delete(m.byInit, a.init)
	}
	m.halfOpenDoneLocked(a)
	if r := m.reserved[a.s]; r != nil {
		for _, spi := range r.child {
			delete(m.childSPIs, spi)
		}
		for _, spi := range r.ike {
			delete(m.ikeSPIs, spi)
		}
		delete(m.reserved, a.s)
	}
	m.unindexLocked(a)
	delete(m.actors, a)
}

// crash ends actor a after its goroutine panicked with r: it logs the panic
// once with its stack, counts it, deletes the IKE SA's CHILD SAs from the
// Installer, frees its SPIs, forgets it and reports EventIKEDown with
// ErrInternal. It trusts nothing of the session but its list of CHILD SAs,
// sends nothing to the peer (which finds the IKE SA gone by its own
// liveness checks, RFC 7296, Section 2.4) and touches no other IKE SA.
func (m *Manager) crash(a *actor, r any) {
	if a.crashed {
		return
	}
	a.crashed = true
	m.panics.Add(1)
	info := a.info.Load()
	if info == nil {
		info = &IKESA{}
	}
	m.cfg.Logger.Error("ike: panic in an IKE SA; ending it and its CHILD SAs",
		"peer", info.Peer, "spi_i", fmt.Sprintf("%016x", info.SPIi), "spi_r", fmt.Sprintf("%016x", info.SPIr),
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	s := a.s
	children := s.children
	s.children = nil
	s.state = StateDead
	for _, c := range children {
		m.safely(func() error {
			if c.state != childReplaced && !c.rekeyed && !c.redundant {
				m.emitNow(Event{Kind: EventChildDown, Peer: info.Peer, Child: c.cfg.Name, SPIi: info.SPIi, SPIr: info.SPIr, SPIIn: c.sa.SPIIn, SPIOut: c.sa.SPIOut, Err: ErrInternal})
			}
			return m.inst.DeleteSA(c.sa)
		}, "deleting CHILD SA")
	}
	for _, x := range s.ikeSAs() {
		if x != nil && x.keys != nil {
			m.safely(func() error { x.keys.Destroy(); return nil }, "destroying keys")
		}
	}
	if s.responder != nil {
		m.safely(func() error { s.dropResponder(); return nil }, "dropping IKE_FOLLOWUP_KE state")
	}
	m.forget(a)
	m.emitNow(Event{Kind: EventIKEDown, Peer: info.Peer, SPIi: info.SPIi, SPIr: info.SPIr, Err: ErrInternal})
	dead := *info
	dead.State, dead.Children = StateDead, nil
	m.setInfo(a, &dead)
}

// safely runs f, the cleanup of a crashed IKE SA, so that a second panic
// (an Installer that panics again) is logged and does not stop the
// cleanup.
func (m *Manager) safely(f func() error, what string) {
	defer func() {
		if r := recover(); r != nil {
			m.cfg.Logger.Error("ike: panic while cleaning up after a panic", "what", what, "panic", fmt.Sprint(r))
		}
	}()
	if err := f(); err != nil {
		m.cfg.Logger.Debug("ike: cleanup after a panic", "what", what, "err", err)
	}
}

// emitNow queues e on the Events channel, or counts it as dropped.
func (m *Manager) emitNow(e Event) {
	select {
	case m.events <- e:
	default:
		m.dropped.Add(1)
	}
}

// allocSPI returns a fresh inbound CHILD SA SPI: random, at least 256
// (RFC 4303, Section 2.1), unused.
func (m *Manager) allocSPI(owner *session) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b [4]byte
	for {
		if _, err := io.ReadFull(m.cfg.Rand, b[:]); err != nil {
			panic("ike: reading randomness: " + err.Error())
		}
		spi := binary.BigEndian.Uint32(b[:])
		if _, used := m.childSPIs[spi]; spi >= 256 && !used {
			m.childSPIs[spi] = owner
			r := m.reservedBy(owner)
			r.child = append(r.child, spi)
			return spi
		}
	}
}

func (m *Manager) freeSPI(spi uint32) {
	m.mu.Lock()
	if owner := m.childSPIs[spi]; owner != nil {
		delete(m.childSPIs, spi)
		if r := m.reserved[owner]; r != nil {
			r.child = without(r.child, spi)
		}
	}
	m.mu.Unlock()
}

// reservedBy returns the list of owner's reserved SPIs, creating it.
func (m *Manager) reservedBy(owner *session) *reservedSPIs {
	r := m.reserved[owner]
	if r == nil {
		r = &reservedSPIs{}
		m.reserved[owner] = r
	}
	return r
}

// unreserveIKELocked frees the reservation of IKE SPI spi (it was
// registered or released).
func (m *Manager) unreserveIKELocked(spi uint64) {
	owner := m.ikeSPIs[spi]
	if owner == nil {
		return
	}
	delete(m.ikeSPIs, spi)
	if r := m.reserved[owner]; r != nil {
		r.ike = without(r.ike, spi)
	}
}

// without removes v from s, not keeping the order.
func without[T comparable](s []T, v T) []T {
	if i := slices.Index(s, v); i >= 0 {
		s[i] = s[len(s)-1]
		s = s[:len(s)-1]
	}
	return s
}

// newIKESPI returns a fresh, non-zero, unused IKE SPI, reserved for owner.
func (m *Manager) newIKESPI(owner *session) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.newIKESPILocked(owner)
}

func (m *Manager) newIKESPILocked(owner *session) uint64 {
	var b [8]byte
	for {
		if _, err := io.ReadFull(m.cfg.Rand, b[:]); err != nil {
			panic("ike: reading randomness: " + err.Error())
		}
		spi := binary.BigEndian.Uint64(b[:])
		_, reserved := m.ikeSPIs[spi]
		if spi != 0 && m.bySPI[spi] == nil && !reserved {
			m.ikeSPIs[spi] = owner
			r := m.reservedBy(owner)
			r.ike = append(r.ike, spi)
			return spi
		}
	}
}

func (m *Manager) releaseIKESPI(spi uint64) {
	m.mu.Lock()
	m.unreserveIKELocked(spi)
	m.mu.Unlock()
}

// hasOtherSA reports whether another established IKE SA with s's peer
// exists (for INITIAL_CONTACT, RFC 7296, Section 2.4: the only IKE SA
// between the two identities). A peer configuration that names one remote
// identity is one peer whatever address it speaks from; one that names
// none or a pattern (a policy group's, a responder for many) is as many
// peers as remote hosts, and only an IKE SA with the same host counts, so
// that an IKE SA with one host of a group does not keep INITIAL_CONTACT
// from another.
func (m *Manager) hasOtherSA(s *session) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	established := func(a *actor) bool {
		if a.s == s {
			return false
		}
		info := a.info.Load()
		return info != nil && info.Peer == s.peerName() && info.State == StateEstablished
	}
	if s.peer != nil && (s.peer.RemoteID.IsZero() || s.peer.RemoteID.IsPattern()) {
		return slices.ContainsFunc(m.byRemote[remoteKey{s.peerName(), s.remote.Addr().Unmap()}], established)
	}
	for a := range m.byPeer[s.peerName()] {
		if established(a) {
			return true
		}
	}
	return false
}

// snapshot returns the session as an IKESA value.
func (s *session) snapshot() *IKESA {
	v := &IKESA{
		Peer: s.peerName(), State: s.state,
		Local: s.local, Remote: s.remote, NATLocal: s.natLocal, NATRemote: s.natRemote,
		LocalID: s.localID, RemoteID: s.remoteID,
		Established: s.established, RekeyAt: s.rekeyAt,
		Children: s.childInfo(),
	}
	if s.sa != nil {
		v.Initiator, v.SPIi, v.SPIr = s.sa.initiator, s.sa.spiI, s.sa.spiR
		if s.sa.keys != nil {
			v.Proposal = s.sa.suite.String()
		}
	}
	return v
}
