package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// ikeChild is a CHILD SA that IKE installed in the data plane.
type ikeChild struct {
	c   ike.ChildSA // without key material
	in  *sad.InboundSA
	out *sad.OutboundSA // installed by ActivateOutbound
}

// installer implements ike.Installer over the data plane.
type installer struct {
	d *Daemon

	mu       sync.Mutex
	children map[uint32]*ikeChild // by inbound SPI
	// outs counts the children by protocol and outbound SPI (which the
	// peers chose, so two may share one), so that owns answers for an
	// outbound SA without a walk over every CHILD SA.
	outs map[outKey]int
	// lingering holds, by SPI, the inbound SAs of rekeyed CHILD SAs that
	// DeleteSA keeps for inboundGrace.
	lingering map[uint32]*sad.InboundSA
}

// inboundGrace is how long the inbound SA of a CHILD SA that a rekey
// replaced stays after the engine deleted it: the peer switched to the new
// SA just before, and packets it sent on the old one may still be queued
// (make-before-break, RFC 7296, Section 2.8).
const inboundGrace = 3 * time.Second

// InstallSA builds the packet engines of a negotiated CHILD SA and installs
// the inbound SA; the outbound one waits for ActivateOutbound
// (make-before-break rekeying, RFC 7296, Section 2.8).
func (i *installer) InstallSA(c ike.ChildSA) error {
	d := i.d
	p := pairSpec{Protocol: c.Protocol, Mode: c.Mode, Suite: c.Suite, KeyIn: c.KeyIn, KeyOut: c.KeyOut,
		SPIIn: c.SPIIn, SPIOut: c.SPIOut, ESN: c.ESN, Local: c.Local.Addr(), Remote: c.Remote.Addr(),
		LocalTS: c.LocalTS, RemoteTS: c.RemoteTS, ReplayWindow: c.ReplayWindow, Limits: c.Limits, Ref: c.Ref,
		Peer: peerKey(c.Peer, c.RemoteID, c.Remote.Addr())}
	if c.UDPEncap {
		p.RemoteEncapPort = c.RemoteEncapPort
		if p.RemoteEncapPort == 0 {
			p.RemoteEncapPort = d.nattPort()
		}
	}
	in, out, err := d.newPair(p)
	if err != nil {
		return fmt.Errorf("daemon: CHILD SA %s: %w", c.Child, err)
	}
	i.mu.Lock()
	if old := i.lingering[c.SPIIn]; old != nil {
		// The engine reuses the SPI of a replaced SA still in its grace.
		delete(i.lingering, c.SPIIn)
		d.dp.RemoveInbound(old.Protocol, old.SPI)
	}
	i.mu.Unlock()
	if err := d.dp.InstallInbound(in); err != nil {
		return fmt.Errorf("daemon: CHILD SA %s: %w", c.Child, err)
	}
	c.KeyIn, c.KeyOut = nil, nil
	i.mu.Lock()
	i.addLocked(&ikeChild{c: c, in: in, out: out})
	i.mu.Unlock()
	return nil
}

// outKey is an entry of installer.outs.
type outKey struct {
	proto sa.Protocol
	spi   uint32
}

// addLocked puts ch into children, in place of the child of the same
// inbound SPI, and into outs.
func (i *installer) addLocked(ch *ikeChild) {
	i.dropLocked(i.children[ch.c.SPIIn])
	i.children[ch.c.SPIIn] = ch
	if i.outs == nil {
		i.outs = make(map[outKey]int)
	}
	i.outs[outKey{ch.c.Protocol, ch.c.SPIOut}]++
}

// dropLocked takes ch (nil: none) out of children and outs.
func (i *installer) dropLocked(ch *ikeChild) {
	if ch == nil {
		return
	}
	delete(i.children, ch.c.SPIIn)
	k := outKey{ch.c.Protocol, ch.c.SPIOut}
	if i.outs[k]--; i.outs[k] <= 0 {
		delete(i.outs, k)
	}
}

// ActivateOutbound installs the outbound SA that InstallSA prepared for c:
// it replaces the outbound SA of the same bundle and peer.
func (i *installer) ActivateOutbound(c ike.ChildSA) error {
	i.mu.Lock()
	ch := i.children[c.SPIIn]
	i.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("daemon: CHILD SA %s: no SA with inbound SPI %08x to activate", c.Child, c.SPIIn)
	}
	if err := i.d.dp.InstallOutbound(ch.out); err != nil {
		return fmt.Errorf("daemon: CHILD SA %s: %w", c.Child, err)
	}
	return nil
}

// peerKey names the peer of a CHILD SA for the SAD (sad.OutboundSA.Peer):
// its connection, authenticated identity and address. A rekey by the same
// peer replaces its own SA; another peer's SAs are left alone.
func peerKey(conn string, id ike.Identity, addr netip.Addr) string {
	return conn + "|" + id.String() + "|" + addr.Unmap().String()
}

// authorizeTS is the engine's PAD hook (ike.Config.AuthorizeTS): the
// selectors a peer claims are narrowed to its PAD entry (policy.PAD), then
// each one that overlaps the remote selectors another peer's SA holds under
// the same rule is left out (RFC 4301, Section 4.4.3); an error if nothing
// is left.
func (d *Daemon) authorizeTS(conn string, id ike.Identity, addr netip.Addr, child string, claimed traffic.Set) (traffic.Set, error) {
	snap := d.pol.Load()
	if snap == nil {
		return nil, errors.New("daemon: no policy loaded")
	}
	allowed, err := snap.PAD.Authorize(conn, id, addr, child, claimed)
	if err != nil {
		return nil, err
	}
	ref, ok := snap.ChildRef(conn, child)
	if !ok {
		return nil, fmt.Errorf("daemon: no rule for child %s/%s", conn, child)
	}
	// Holder reads the SAs of the claimed addresses, not every peer's SA
	// of the rule (issue 9: one connection for many road warriors).
	key := peerKey(conn, id, addr)
	sadb := d.dp.SAD().Load()
	var free traffic.Set
	var taken []string
	for _, sel := range allowed {
		if sadb.Holder(ref, key, traffic.Set{sel}) != nil {
			taken = append(taken, sel.String())
			continue
		}
		free = append(free, sel)
	}
	if len(free) == 0 {
		return nil, fmt.Errorf("daemon: %s is bound to another peer of %s/%s", strings.Join(taken, ", "), conn, child)
	}
	return free, nil
}

// DeleteSA removes both directions of a CHILD SA; the inbound SA of one
// that a rekey replaced goes inboundGrace later.
func (i *installer) DeleteSA(c ike.ChildSA) error {
	i.d.dp.RemoveOutbound(c.Ref, c.Protocol, c.SPIOut)
	i.mu.Lock()
	defer i.mu.Unlock()
	ch := i.children[c.SPIIn]
	i.dropLocked(ch)
	if !c.Replaced || ch == nil {
		i.d.dp.RemoveInbound(c.Protocol, c.SPIIn)
		return nil
	}
	if i.lingering == nil {
		i.lingering = make(map[uint32]*sad.InboundSA)
	}
	in := ch.in
	i.lingering[c.SPIIn] = in
	time.AfterFunc(inboundGrace, func() {
		i.mu.Lock()
		defer i.mu.Unlock()
		if i.lingering[in.SPI] != in {
			return
		}
		delete(i.lingering, in.SPI)
		if i.d.dp.SAD().Load().Inbound(in.Protocol, in.SPI) == in {
			i.d.dp.RemoveInbound(in.Protocol, in.SPI)
		}
	})
	return nil
}

// child returns the installed CHILD SA with inbound SPI spi.
func (i *installer) child(spi uint32) *ikeChild {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.children[spi]
}

// owns reports whether spi is the inbound or outbound SPI of an IKE child.
func (i *installer) owns(proto sa.Protocol, spi uint32) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if ch := i.children[spi]; ch != nil && ch.c.Protocol == proto {
		return true
	}
	return i.outs[outKey{proto, spi}] > 0
}

// ikeTransport sends IKE messages: from port 4500 over the NAT-T socket the
// data plane shares, otherwise over the port 500 socket.
type ikeTransport struct{ d *Daemon }

// sourceWriter is a UDP socket bound to every address that can send one
// datagram from a chosen local address (conn.UDPConn.WriteFrom).
type sourceWriter interface {
	WriteFrom(b []byte, from, to netip.AddrPort) error
}

// Send sends pkt from the IKE SA's local address from. On the NAT-T socket
// it must not leave it to the routing table: a host with several addresses
// would send from its preferred one rather than the connection's
// local_addrs, and the peer would see the IKE SA move or, before
// IKE_AUTH, no reply at all (RFC 7296, Sections 2.11 and 2.23). A NAT-T
// socket without WriteFrom (an in-memory twin) sends from its own address.
func (t ikeTransport) Send(pkt []byte, from, to netip.AddrPort) error {
	if from.Port() == t.d.nattPort() && t.d.opts.UDP != nil {
		if w, ok := t.d.opts.UDP.(sourceWriter); ok {
			return w.WriteFrom(pkt, from, to)
		}
		return t.d.opts.UDP.Write([][]byte{pkt}, to)
	}
	return t.d.opts.IKE.WriteTo(pkt, from, to)
}

// readIKE feeds datagrams of the port 500 socket to the engine until the
// socket is closed.
func (d *Daemon) readIKE() {
	buf := make([]byte, 65536)
	for {
		n, from, to, err := d.opts.IKE.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, conn.ErrClosed) {
				return
			}
			d.log.Warn("IKE socket", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		d.ike.HandlePacket(buf[:n], from, to)
	}
}

// handleNATT is the data plane's hook for IKE messages on port 4500, which
// arrive with the non-ESP marker: the engine owns it, adding it to what it
// sends from port 4500 and stripping it from what it receives there
// (RFC 3948, Section 2.2). The NAT-T socket is not bound to one address and
// does not report the one a datagram reached, so the local address is
// natLocal's guess. The engine takes the addresses of an authenticated
// message as the IKE SA's new endpoints (RFC 7296, Section 2.23), sends
// from them, and the CHILD SAs it installs after the move to port 4500
// copy them: a wrong guess moves the IKE SA off the connection's
// local_addrs.
func (d *Daemon) handleNATT(pkt []byte, from netip.AddrPort) {
	d.ike.HandlePacket(pkt, from, netip.AddrPortFrom(d.natLocal(from.Addr()), d.nattPort()))
}

// natLocal returns the local address an IKE message from remote on the
// NAT-T socket most likely reached: the single local_addrs of the
// connections whose remote_addrs hold remote, when they agree on one;
// otherwise the source address the routing table gives towards remote
// (IKEConfig.LocalAddr); otherwise the unspecified address. The routing
// table alone got it wrong on a host with several addresses on one link:
// an initiator whose local_addrs is a secondary address moved its IKE SA
// to the primary one with the first answer on port 4500 (issue 8).
func (d *Daemon) natLocal(remote netip.Addr) netip.Addr {
	remote = remote.Unmap()
	var local netip.Addr
	if snap := d.pol.Load(); snap != nil {
		for _, p := range snap.Peers {
			if !inPrefixes(p.RemoteAddrs, remote) {
				continue
			}
			l := singleHost(p.LocalAddrs, remote.Is4())
			if !l.IsValid() || (local.IsValid() && l != local) {
				local = netip.Addr{}
				break
			}
			local = l
		}
	}
	if local.IsValid() {
		return local
	}
	if f := d.opts.IKEConfig.LocalAddr; f != nil {
		if a, err := f(remote); err == nil && a.IsValid() && a.Is4() == remote.Is4() {
			return a
		}
	}
	if remote.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// inPrefixes reports whether a lies in ps; empty ps holds every address.
func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return len(ps) == 0
}

// singleHost returns the one single-address prefix of ps of the IP
// version (4 or 6), or the zero Addr if there is none or more than one.
func singleHost(ps []netip.Prefix, v4 bool) netip.Addr {
	var out netip.Addr
	for _, p := range ps {
		if !p.IsSingleIP() || p.Addr().Is4() != v4 {
			continue
		}
		if out.IsValid() {
			return netip.Addr{}
		}
		out = p.Addr()
	}
	return out
}

// acquire starts IKE for a PROTECT rule that has no SA, once per policy (the
// data plane rate-limits acquires and the engine ignores a child that is
// already being negotiated).
func (d *Daemon) acquire(ev dataplane.Event) {
	if d.ike == nil {
		return
	}
	d.mu.Lock()
	ch, ok := d.snap.ChildByRef(ev.Ref)
	trapped := ok && d.traps[ch.Conn+"/"+ch.Child]
	if ok && ch.Group {
		d.timeNegotiationLocked(ev)
	}
	d.mu.Unlock()
	if !ok || (ch.Start == config.StartNone && !trapped) {
		return
	}
	tr := &ike.Trigger{Src: ev.Packet.Src, Dst: ev.Packet.Dst, Proto: ev.Packet.Proto, SrcPort: ev.Packet.SrcPort, DstPort: ev.Packet.DstPort, HasPorts: ev.Packet.HasPorts}
	if err := d.ike.Initiate(ch.Conn, ch.Child, tr); err != nil {
		d.log.Warn("acquire: initiate failed", "child", ch.Conn+"/"+ch.Child, "err", err)
	}
}

// watchIKE logs the engine's events and forwards them to subscribers.
func (d *Daemon) watchIKE() {
	for ev := range d.ike.Events() {
		name := ev.Peer
		if ev.Child != "" {
			name += "/" + ev.Child
		}
		fields := map[string]string{"name": name}
		var typ string
		switch ev.Kind {
		case ike.EventIKEUp:
			typ = ctlapi.EventIKEUp
		case ike.EventIKEDown:
			typ = ctlapi.EventIKEDown
		case ike.EventIKERekeyed:
			typ = ctlapi.EventIKERekeyed
		case ike.EventChildUp:
			typ = ctlapi.EventChildUp
		case ike.EventChildDown, ike.EventChildFailed:
			typ = ctlapi.EventChildDown
		case ike.EventChildRekeyed:
			typ = ctlapi.EventChildRekeyed
		case ike.EventAuthFailed:
			typ = ctlapi.EventAuthFailed
		case ike.EventChildTrap:
			d.setTrap(name, true)
			d.log.Info("ike: trap re-installed after the peer's death or close", "name", name)
			continue
		default:
			continue
		}
		switch ev.Kind {
		case ike.EventChildUp:
			d.setTrap(name, false)
			d.childUp(ev.SPIIn)
		case ike.EventChildDown, ike.EventIKEDown:
			d.childDown()
		}
		switch ev.Kind {
		case ike.EventIKEDown, ike.EventAuthFailed, ike.EventChildFailed:
			d.refused(ev)
		}
		if ev.SPIIn != 0 {
			fields["spi_in"], fields["spi_out"] = fmt.Sprintf("%08x", ev.SPIIn), fmt.Sprintf("%08x", ev.SPIOut)
		}
		if ev.Err != nil {
			fields["reason"] = ev.Err.Error()
		}
		if ev.Err != nil {
			d.log.Warn("ike", "event", ev.Kind.String(), "name", name, "err", ev.Err)
		} else {
			d.log.Info("ike", "event", ev.Kind.String(), "name", name)
		}
		d.events.publish(ctlapi.Event{Type: typ, Time: d.opts.Now(), Fields: fields})
	}
}

// setTrap arms or disarms the trap of child ("conn/child"), see
// Daemon.traps.
func (d *Daemon) setTrap(child string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !on {
		delete(d.traps, child)
		return
	}
	if d.traps == nil {
		d.traps = map[string]bool{}
	}
	d.traps[child] = true
}

// sameConnections reports whether two configurations have the same
// connections and secrets, as far as a reload is concerned.
func sameConnections(a, b *config.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	return fmt.Sprintf("%+v", a.Connections) == fmt.Sprintf("%+v", b.Connections) && secretsEqual(a.Secrets, b.Secrets)
}

func secretsEqual(a, b config.Secrets) bool {
	if len(a.IKE) != len(b.IKE) {
		return false
	}
	for i := range a.IKE {
		if !a.IKE[i].Secret.Equal(b.IKE[i].Secret) || strings.Join(a.IKE[i].IDs, ",") != strings.Join(b.IKE[i].IDs, ",") {
			return false
		}
	}
	return true
}
