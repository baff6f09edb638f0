package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// childReq is the initiator's half of creating one CHILD SA, in IKE_AUTH or
// CREATE_CHILD_SA.
type childReq struct {
	cfg      *ChildConfig
	trigger  *Trigger
	old      *child // the CHILD SA being rekeyed, nil for a new one
	spi      uint32 // our inbound SPI
	keID     iana.KEID
	ke       transform.KEInitiator
	tsi, tsr []tsRange
	done     *child // the CHILD SA complete installed
}

// localTS returns the configured local selectors, or this host's outer
// address.
func (s *session) localTS(c *ChildConfig) []tsRange {
	if len(c.LocalTS) > 0 {
		return fromSet(c.LocalTS)
	}
	return []tsRange{hostRange(s.local.Addr(), 0, 0, false)}
}

func (s *session) remoteTS(c *ChildConfig) []tsRange {
	if len(c.RemoteTS) > 0 {
		return fromSet(c.RemoteTS)
	}
	return []tsRange{hostRange(s.remote.Addr(), 0, 0, false)}
}

// request returns the payloads that propose the CHILD SA: [N(REKEY_SA)],
// [N(USE_TRANSPORT_MODE)], N(ESP_TFC_PADDING_NOT_SUPPORTED), SA, [KE],
// TSi, TSr. The Nonce of CREATE_CHILD_SA is the caller's.
func (r *childReq) request(s *session, withKE bool) ([]ikewire.Payload, error) {
	if r.spi == 0 {
		r.spi = s.m.allocSPI(s)
	}
	var pl []ikewire.Payload
	proto := ikewire.ProtoESP
	if r.cfg.protocol() == sa.AH {
		proto = ikewire.ProtoAH
	}
	if r.old != nil {
		// RFC 7296, Section 1.3.3: the SPI we receive on.
		pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyRekeySA, Protocol: proto, SPI: spiBytes(r.old.sa.SPIIn)})
	}
	if r.cfg.Mode == sa.Transport {
		pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyUseTransportMode})
	}
	// RFC 7296, Section 1.3.1: we do not accept TFC padding.
	pl = append(pl, &ikewire.Notify{Type: ikewire.NotifyESPTFCPaddingNotSupported})
	pl = append(pl, &ikewire.SA{Proposals: childOffers(r.cfg, r.spi, withKE)})
	if withKE {
		if r.keID == iana.KENone {
			r.keID = firstKE(r.cfg)
		}
		if r.keID != iana.KENone {
			ke, err := transform.NewKEInitiator(r.keID, s.rand())
			if err != nil {
				return nil, err
			}
			r.ke = ke
			pl = append(pl, &ikewire.KE{Group: uint16(r.keID), Data: ke.Public()})
		}
	}
	if r.old != nil {
		// Rekeying keeps the selectors of the SA (RFC 7296, Section 2.9),
		// unless a reload changed the child so that they are no longer
		// within its configuration: then the new SA takes the configured
		// ones (RFC 7296, Section 2.8: the new SA may have different
		// selectors).
		r.tsi, r.tsr = fromSet(r.old.sa.LocalTS), fromSet(r.old.sa.RemoteTS)
		if !allWithin(r.tsi, s.localTS(r.cfg)) || !allWithin(r.tsr, s.remoteTS(r.cfg)) {
			r.tsi, r.tsr = s.localTS(r.cfg), s.remoteTS(r.cfg)
		}
	} else {
		r.tsi, r.tsr = s.localTS(r.cfg), s.remoteTS(r.cfg)
		if t := r.trigger; t != nil && t.Src.IsValid() && t.Dst.IsValid() {
			// RFC 7296, Section 2.9: the packet that triggered the
			// request goes first, so the responder can narrow to the
			// right policy.
			r.tsi = append([]tsRange{hostRange(t.Src, t.Proto, t.SrcPort, t.HasPorts)}, r.tsi...)
			r.tsr = append([]tsRange{hostRange(t.Dst, t.Proto, t.DstPort, t.HasPorts)}, r.tsr...)
		}
	}
	pl = append(pl, &ikewire.TSi{TrafficSelectors: wireTS(r.tsi)}, &ikewire.TSr{TrafficSelectors: wireTS(r.tsr)})
	return pl, nil
}

// complete installs the CHILD SA the responder accepted. ni and nr are the
// nonces of the exchange.
func (r *childReq) complete(s *session, x *ikeSA, pl []ikewire.Payload, ni, nr []byte, withKE bool) error {
	if n := errorNotify(pl); n != nil {
		return notifyErr(n)
	}
	sap, tsi, tsr := find[*ikewire.SA](pl), find[*ikewire.TSi](pl), find[*ikewire.TSr](pl)
	if sap == nil || tsi == nil || tsr == nil {
		return fmt.Errorf("ike: CHILD SA answer without SA, TSi or TSr: %w", errSyntax)
	}
	suite, spiOut, err := checkChildAnswer(r.cfg, sap, withKE)
	if err != nil {
		return err
	}
	transport := findNotify(pl, ikewire.NotifyUseTransportMode) != nil
	if transport != (r.cfg.Mode == sa.Transport) {
		// RFC 7296, Section 1.3.1: the responder must agree on the mode.
		return fmt.Errorf("ike: the responder did not accept %s mode", r.cfg.Mode)
	}
	gotI, gotR := fromWire(tsi.TrafficSelectors), fromWire(tsr.TrafficSelectors)
	if !allWithin(gotI, r.tsi) || !allWithin(gotR, r.tsr) {
		return fmt.Errorf("ike: the responder's traffic selectors are not within ours: %w", &NotifyError{Type: ikewire.NotifyTSUnacceptable, Local: true})
	}
	if allowed, err := s.authorizeTS(r.cfg, gotR); err != nil || !allWithin(gotR, allowed) {
		// RFC 4301, Section 4.4.3: the responder may not claim traffic
		// that its PAD entry does not give it, or that belongs to
		// another peer.
		return fmt.Errorf("ike: the responder's traffic selectors are not authorized (%v): %w", err, &NotifyError{Type: ikewire.NotifyTSUnacceptable, Local: true})
	}
	var secrets [][]byte
	if suite.ke != iana.KENone {
		ke := find[*ikewire.KE](pl)
		if ke == nil || r.ke == nil || iana.KEID(ke.Group) != suite.ke || r.ke.ID() != suite.ke {
			return fmt.Errorf("ike: the responder's KE payload does not match the chosen method %s", transform.KEName(suite.ke))
		}
		sec, err := r.ke.Finish(ke.Data)
		if err != nil {
			return err
		}
		secrets = append(secrets, sec)
	}
	if suite.hasAddKE() {
		// RFC 9370, Section 2.2.4: the additional key exchanges follow
		// in IKE_FOLLOWUP_KE exchanges, linked by the responder's
		// ADDITIONAL_KEY_EXCHANGE notification; the SA is installed
		// after the last.
		n := findNotify(pl, ikewire.NotifyAdditionalKeyExchange)
		if n == nil || len(n.Data) == 0 {
			for _, sec := range secrets {
				clear(sec)
			}
			return fmt.Errorf("ike: CREATE_CHILD_SA response without ADDITIONAL_KEY_EXCHANGE: %w", errSyntax)
		}
		f := &followupKE{addKE: suite.addKE, ni: ni, nr: bytes.Clone(nr), secrets: secrets, link: bytes.Clone(n.Data),
			child: &childPending{cfg: r.cfg, old: r.old, initiator: true, suite: suite, spiIn: r.spi, spiOut: spiOut, local: gotI, remote: gotR}}
		r.spi = 0 // now owned by the followup
		if r.old != nil {
			r.old.state = childRekeying
		}
		s.startRequest(x, &followupTask{f: f})
		return errFollowup
	}
	ck, err := x.keys.Child(suite.suite, ni, nr, secrets...)
	for _, sec := range secrets {
		clear(sec)
	}
	if err != nil {
		return err
	}
	c := ChildSA{
		SPIIn: r.spi, SPIOut: spiOut,
		KeyIn: bytes.Clone(ck.Inbound(true)), KeyOut: bytes.Clone(ck.Outbound(true)),
		LocalTS: toSet(gotI), RemoteTS: toSet(gotR),
	}
	ck.Destroy()
	r.spi = 0 // now owned by the CHILD SA
	r.done = s.install(r.cfg, c, suite, r.old)
	return nil
}

// errFollowup is what childReq.complete returns when the CHILD SA waits
// for IKE_FOLLOWUP_KE exchanges (RFC 9370, Section 2.2.4).
var errFollowup = errors.New("ike: the CHILD SA waits for IKE_FOLLOWUP_KE")

// release frees the SPI of a request that did not complete.
func (r *childReq) release(s *session) {
	if r.spi != 0 {
		s.m.freeSPI(r.spi)
		r.spi = 0
	}
	if r.cfg != nil && r.old == nil {
		delete(s.pendingChildren, r.cfg.Name)
	}
}

func (s *session) childFailed(r *childReq, err error) {
	s.log.Warn("ike: CHILD SA not created", "peer", s.peerName(), "child", r.cfg.Name, "err", err)
	r.release(s)
	s.emit(EventChildFailed, r.cfg.Name, nil, err)
}

// install hands a new CHILD SA to the Installer and records it; old is the
// SA it replaces, if any. A new SA sends at once; the caller decides when
// the outbound SA of a rekey starts (ownRekeyDone, peerRekeyDone).
func (s *session) install(cfg *ChildConfig, c ChildSA, suite childSuite, old *child) *child {
	now := s.now()
	c.Peer, c.Child, c.Ref = s.peer.Name, cfg.Name, cfg.Ref
	c.Protocol, c.Mode = cfg.protocol(), cfg.Mode
	c.Suite, c.ESN, c.KE, c.AddKE = suite.suite, suite.esn, suite.ke, suite.addKE
	c.Local, c.Remote = s.local, s.remote
	c.RemoteID = s.remoteID
	c.UDPEncap = s.natLocal || s.natRemote || s.peer.Encap
	if c.UDPEncap {
		c.LocalEncapPort, c.RemoteEncapPort = s.cfg.NATTPort, s.cfg.NATTPort
		if s.natt {
			c.LocalEncapPort, c.RemoteEncapPort = s.local.Port(), s.remote.Port()
		}
	}
	c.ReplayWindow = cfg.ReplayWindow
	c.Installed = now
	ch := &child{cfg: cfg, sa: c, state: childInstalled}
	// Only the op handed to the Installer carries the keys, and the
	// engine zeroes them once installed: the session keeps none for the
	// SA's life.
	ch.sa.KeyIn, ch.sa.KeyOut = nil, nil
	s.scheduleChild(ch, &c, now)
	s.ops = append(s.ops, op{kind: opInstall, child: &c})
	s.children = append(s.children, ch)
	delete(s.pendingChildren, cfg.Name)
	if old != nil {
		s.emit(EventChildRekeyed, cfg.Name, &ch.sa, nil)
	} else {
		s.activate(ch)
		s.emit(EventChildUp, cfg.Name, &ch.sa, nil)
	}
	return ch
}

// setPeer makes p, a reloaded configuration of the session's peer, the
// session's: children that p no longer has are deleted, the others keep
// their SAs and take p's ChildConfig, which their next rekey uses; the IKE
// SA ends if p's RemoteID no longer accepts the authenticated identity.
func (s *session) setPeer(p *Peer) {
	if s.peer == nil || p == nil || p.Name != s.peer.Name {
		return
	}
	if !s.remoteID.IsZero() && !p.RemoteID.Authorizes(s.remoteID, s.remote.Addr()) {
		s.log.Info("ike: the reloaded configuration no longer accepts the peer's identity; deleting the IKE SA", "peer", p.Name, "id", s.remoteID.String())
		s.terminate()
		return
	}
	s.peer = p
	for _, ch := range s.children {
		cfg := p.child(ch.cfg.Name)
		if cfg != nil {
			ch.cfg = cfg
			continue
		}
		if ch.state == childInstalled || ch.state == childReplaced {
			ch.state = childDeleting
			s.queue(&deleteChildTask{c: ch})
		}
	}
}

// authorizeTS returns the part of claimed, the peer's side of a CHILD SA
// of child c, that Config.AuthorizeTS gives the peer (RFC 4301, Section
// 4.4.3); without the hook, all of it.
func (s *session) authorizeTS(c *ChildConfig, claimed []tsRange) ([]tsRange, error) {
	f := s.cfg.AuthorizeTS
	if f == nil {
		return claimed, nil
	}
	allowed, err := f(s.peerName(), s.remoteID, s.remote.Addr(), c.Name, toSet(claimed))
	if err != nil {
		return nil, err
	}
	return narrow(claimed, fromSet(allowed)), nil
}

// acceptChild is the responder's half of creating a CHILD SA (RFC 7296,
// Sections 1.3.1 and 2.9): it picks the child configuration whose selectors
// intersect the proposed ones, narrows them, selects a proposal and
// installs the SA. It returns the answer's payloads and the installed
// CHILD SA (nil while it waits for IKE_FOLLOWUP_KE, RFC 9370, Section
// 2.2.4), or an error notification with its data. nonce, if not nil, is
// added as Nr.
func (s *session) acceptChild(x *ikeSA, pl []ikewire.Payload, old *child, withKE bool, ni, nr, nonce []byte) ([]ikewire.Payload, *child, ikewire.NotifyType, []byte) {
	sap, tsi, tsr := find[*ikewire.SA](pl), find[*ikewire.TSi](pl), find[*ikewire.TSr](pl)
	if sap == nil || tsi == nil || tsr == nil {
		return nil, nil, ikewire.NotifyInvalidSyntax, nil
	}
	transport := findNotify(pl, ikewire.NotifyUseTransportMode) != nil
	propI, propR := fromWire(tsi.TrafficSelectors), fromWire(tsr.TrafficSelectors)
	cands := []*ChildConfig{}
	if old != nil {
		cands = append(cands, old.cfg)
	} else {
		for i := range s.peer.Children {
			cands = append(cands, &s.peer.Children[i])
		}
	}
	// Prefer a configuration that covers the proposed selectors without
	// narrowing, then any that intersects them (RFC 7296, Section 2.9),
	// and among those the first whose proposals match.
	fullI, fullR := narrow(propI, propI), narrow(propR, propR)
	type cand struct {
		cfg        *ChildConfig
		gotI, gotR []tsRange
	}
	var exact, partial []cand
	for _, c := range cands {
		// TSi is the initiator's side: our remote selectors, within
		// what the PAD gives the peer.
		gi, gr := narrow(propI, s.remoteTS(c)), narrow(propR, s.localTS(c))
		if len(gi) > 0 {
			var err error
			if gi, err = s.authorizeTS(c, gi); err != nil {
				s.log.Info("ike: traffic selectors not authorized", "peer", s.peerName(), "child", c.Name, "err", err)
			}
		}
		switch {
		case len(gi) == 0 || len(gr) == 0:
		case slices.Equal(gi, fullI) && slices.Equal(gr, fullR):
			exact = append(exact, cand{c, gi, gr})
		default:
			partial = append(partial, cand{c, gi, gr})
		}
	}
	if len(exact)+len(partial) == 0 {
		s.log.Info("ike: traffic selectors unacceptable", "peer", s.peerName())
		return nil, nil, ikewire.NotifyTSUnacceptable, nil
	}
	keID := iana.KENone
	ke := find[*ikewire.KE](pl)
	if withKE && ke != nil {
		keID = iana.KEID(ke.Group)
	}
	var cfg *ChildConfig
	var gotI, gotR []tsRange
	var suite childSuite
	var tp ikewire.Proposal
	var keOK, ok bool
	for _, c := range append(exact, partial...) {
		if suite, tp, keOK, ok = selectChild(c.cfg, sap.Proposals, withKE, keID); ok {
			cfg, gotI, gotR = c.cfg, c.gotI, c.gotR
			break
		}
	}
	if !ok {
		s.log.Info("ike: no acceptable CHILD SA proposal", "peer", s.peerName(),
			"offered", offeredText(sap.Proposals), "configured", childConfiguredText(cands...))
		return nil, nil, ikewire.NotifyNoProposalChosen, nil
	}
	if !keOK || (suite.ke != iana.KENone && ke == nil) {
		// RFC 7296, Section 1.3: name the method we want.
		return nil, nil, ikewire.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(suite.ke))
	}
	if suite.hasAddKE() && x != s.sa {
		// A CHILD SA rekey on the IKE SA that our completed rekey
		// replaced, whose Delete we sent: its IKE_FOLLOWUP_KE exchanges
		// (RFC 9370, Section 2.2.4) could not run on it. The peer asks
		// again on the new IKE SA, at once (RFC 7296, Section 2.25).
		return nil, nil, ikewire.NotifyTemporaryFailure, nil
	}
	var secrets [][]byte
	var ours []byte
	if suite.ke != iana.KENone {
		var sec []byte
		var err error
		ours, sec, err = transform.KERespond(suite.ke, ke.Data, s.rand())
		if err != nil {
			return nil, nil, ikewire.NotifyInvalidSyntax, nil
		}
		secrets = append(secrets, sec)
	}
	if cfg.Mode != sa.Transport {
		transport = false // RFC 7296, Section 1.3.1: answer in tunnel mode
	}
	var resp []ikewire.Payload
	if transport {
		resp = append(resp, &ikewire.Notify{Type: ikewire.NotifyUseTransportMode})
	} else if cfg.Mode == sa.Transport {
		for _, sec := range secrets {
			clear(sec)
		}
		return nil, nil, ikewire.NotifyNoProposalChosen, nil
	}
	spiIn := s.m.allocSPI(s)
	resp = append(resp, &ikewire.Notify{Type: ikewire.NotifyESPTFCPaddingNotSupported})
	resp = append(resp, &ikewire.SA{Proposals: []ikewire.Proposal{suite.wire(tp.Num, tp.Protocol, spiBytes(spiIn))}})
	if nonce != nil {
		resp = append(resp, &ikewire.Nonce{Data: nonce})
	}
	if ours != nil {
		resp = append(resp, &ikewire.KE{Group: uint16(suite.ke), Data: ours})
	}
	resp = append(resp, &ikewire.TSi{TrafficSelectors: wireTS(gotI)}, &ikewire.TSr{TrafficSelectors: wireTS(gotR)})
	if suite.hasAddKE() {
		// RFC 9370, Section 2.2.4: wait for the IKE_FOLLOWUP_KE
		// exchanges, linked by our notification; install after the
		// last.
		f := &followupKE{addKE: suite.addKE, ni: bytes.Clone(ni), nr: nr, secrets: secrets,
			link: s.random(followupLinkLen), until: s.now().Add(followupTimeout), on: x,
			child: &childPending{cfg: cfg, old: old, suite: suite, spiIn: spiIn, spiOut: spiValue(tp.SPI), local: gotR, remote: gotI}}
		s.responder = &childResponder{followupResponder{f}}
		if old != nil {
			old.state = childRekeying
		}
		return append(resp, &ikewire.Notify{Type: ikewire.NotifyAdditionalKeyExchange, Data: f.link}), nil, 0, nil
	}
	ck, err := x.keys.Child(suite.suite, ni, nr, secrets...)
	for _, sec := range secrets {
		clear(sec)
	}
	if err != nil {
		s.m.freeSPI(spiIn)
		return nil, nil, ikewire.NotifyNoProposalChosen, nil
	}
	c := ChildSA{
		SPIIn: spiIn, SPIOut: spiValue(tp.SPI),
		KeyIn: bytes.Clone(ck.Inbound(false)), KeyOut: bytes.Clone(ck.Outbound(false)),
		LocalTS: toSet(gotR), RemoteTS: toSet(gotI),
	}
	ck.Destroy()
	return resp, s.install(cfg, c, suite, old), 0, nil
}

// childTask creates (old nil) or rekeys a CHILD SA with CREATE_CHILD_SA
// (RFC 7296, Sections 1.3.1 and 1.3.3).
type childTask struct {
	cfg      *ChildConfig
	trigger  *Trigger
	old      *child
	cr       childReq
	ni       []byte
	retries  int
	prepared bool
}

func (*childTask) exchange() ikewire.ExchangeType { return ikewire.CREATE_CHILD_SA }

func (t *childTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	if t.old != nil && (t.old.state != childInstalled || !s.live(t.old)) {
		return nil, errors.New("ike: the CHILD SA to rekey is gone")
	}
	if !t.prepared {
		t.cr.cfg, t.cr.trigger, t.cr.old = t.cfg, t.trigger, t.old
		t.prepared = true
	}
	if t.old != nil {
		t.old.state = childRekeying
	}
	t.ni = s.random(nonceLen)
	pl, err := t.cr.request(s, true)
	if err != nil {
		return nil, err
	}
	// Insert Ni after the SA payload, before KE and the selectors.
	for i, p := range pl {
		if _, ok := p.(*ikewire.SA); ok {
			pl = append(pl[:i+1], append([]ikewire.Payload{&ikewire.Nonce{Data: t.ni}}, pl[i+1:]...)...)
			break
		}
	}
	return pl, nil
}

func (t *childTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	if t.old != nil && t.old.state == childRekeying {
		t.old.state = childInstalled
	}
	if n := findNotify(pl, ikewire.NotifyInvalidKEPayload); n != nil && len(n.Data) == 2 {
		g := iana.KEID(binary.BigEndian.Uint16(n.Data))
		if t.retries < 2 && g != t.cr.keID && offersChildKE(t.cfg, g) {
			// RFC 7296, Section 1.3: a new exchange with the method the
			// responder wants.
			t.retries++
			t.cr.keID = g
			s.queueFront(t)
			return false
		}
	}
	if t.old != nil && errorNotify(pl) != nil && (t.old.peerRekey != nil || !s.live(t.old)) {
		// RFC 7296, Section 2.25.1: the peer rekeyed or deleted the SA
		// while our request crossed theirs, and refused ours
		// (TEMPORARY_FAILURE or CHILD_SA_NOT_FOUND); its rekey or
		// delete stands, ours is moot.
		s.log.Debug("ike: CHILD SA rekey superseded by the peer's", "peer", s.peerName(), "child", t.cfg.Name)
		if s.live(t.old) && t.old.state == childInstalled {
			t.old.state = childReplaced
			t.old.deleteAt = s.now().Add(staleTimeout)
		}
		t.cr.release(s)
		return false
	}
	if findNotify(pl, ikewire.NotifyTemporaryFailure) != nil && x != s.sa && t.retries < 5 {
		// RFC 7296, Section 2.8: the IKE SA was rekeyed while our
		// request was in flight, and the peer refused it on the old
		// one; the CHILD SAs moved to the new IKE SA, so ask there at
		// once.
		t.retries++
		s.queueFront(t)
		return false
	}
	if findNotify(pl, ikewire.NotifyTemporaryFailure) != nil && t.retries < 5 {
		// RFC 7296, Section 2.25: the peer cannot now (another exchange
		// with IKE_FOLLOWUP_KE, its IKE SA going away); retry after a
		// random delay.
		t.retries++
		s.retryAt = s.now().Add(time.Second + s.jitter(40*time.Second))
		s.queueFront(t)
		return false
	}
	if t.old != nil && findNotify(pl, ikewire.NotifyChildSANotFound) != nil {
		// RFC 7296, Section 2.25: the peer no longer has it.
		s.removeChild(t.old, nil)
		t.cr.old = nil
		t.old = nil
		t.cr.release(s)
		s.queue(&childTask{cfg: t.cfg})
		return false
	}
	nonce := find[*ikewire.Nonce](pl)
	var err error
	if nonce == nil && errorNotify(pl) == nil {
		err = fmt.Errorf("ike: CREATE_CHILD_SA response without Nr: %w", errSyntax)
	} else if nonce != nil {
		if err = checkNonce(nonce.Data, x.suite.prf); err == nil {
			err = t.cr.complete(s, x, pl, t.ni, nonce.Data, true)
		}
	} else {
		err = notifyErr(errorNotify(pl))
	}
	if err == errFollowup {
		return false // followupTask finishes the CHILD SA
	}
	if err != nil {
		s.childFailed(&t.cr, err)
		if t.old != nil && t.old.state == childInstalled {
			t.old.rekeyAt = s.now().Add(time.Minute) // try again later
		}
		return false
	}
	if t.old != nil {
		s.ownRekeyDone(t.old, t.cr.done, t.ni, nonce.Data)
	}
	return false
}

func (t *childTask) abort(s *session) {
	if t.old != nil && t.old.state == childRekeying {
		t.old.state = childInstalled
	}
	if t.prepared {
		t.cr.release(s)
	} else if t.old == nil {
		delete(s.pendingChildren, t.cfg.Name)
	}
}

func (t *childTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }

// moved starts a CHILD SA rekey that the end of the old IKE SA cut short
// again on the new one (RFC 7296, Section 2.8; should the peer have
// answered it, it drops what that answer made, see forgetUnconfirmed).
func (t *childTask) moved(s *session) {
	if s.state == StateEstablished && t.old != nil && s.live(t.old) {
		if t.old.state == childRekeying {
			t.old.state = childInstalled
		}
		s.queueFront(t)
		return
	}
	t.abort(s)
}

// respondCreateChild answers CREATE_CHILD_SA: a new CHILD SA, a CHILD SA
// rekey (N(REKEY_SA)) or an IKE SA rekey (an SA payload for IKE).
func (s *session) respondCreateChild(x *ikeSA, pl []ikewire.Payload) ([]ikewire.Payload, func()) {
	errResp := func(t ikewire.NotifyType, data []byte) ([]ikewire.Payload, func()) {
		return []ikewire.Payload{&ikewire.Notify{Type: t, Data: data}}, nil
	}
	sap, nonce := find[*ikewire.SA](pl), find[*ikewire.Nonce](pl)
	if sap == nil || nonce == nil {
		return errResp(ikewire.NotifyInvalidSyntax, nil)
	}
	// A CHILD SA rekey that crossed our rekey of the IKE SA is answered
	// on the old IKE SA, with its SK_d: the CHILD SAs move to the new one
	// either way (RFC 7296, Section 2.8), and should the peer not get the
	// answer before the old IKE SA goes, it asks again on the new one.
	rekeyOnOld := x == s.old && sap.Proposals[0].Protocol != ikewire.ProtoIKE && findNotify(pl, ikewire.NotifyRekeySA) != nil
	if (x != s.sa && !rekeyOnOld) || s.state == StateDeleting {
		// RFC 7296, Section 2.25: this IKE SA is going away.
		return errResp(ikewire.NotifyTemporaryFailure, nil)
	}
	if err := checkNonce(nonce.Data, x.suite.prf); err != nil {
		s.log.Info("ike: refusing CREATE_CHILD_SA", "peer", s.peerName(), "err", err)
		return errResp(ikewire.NotifyInvalidSyntax, nil)
	}
	if sap.Proposals[0].Protocol == ikewire.ProtoIKE {
		return s.respondIKERekey(x, pl)
	}
	var old *child
	if n := findNotify(pl, ikewire.NotifyRekeySA); n != nil {
		old = s.childByOutSPI(spiValue(n.SPI))
		if old != nil && old.state == childReplaced {
			s.forgetUnconfirmed(old)
		}
		switch {
		case old == nil || old.state == childReplaced:
			// RFC 7296, Section 2.25.1: no such SA (any more).
			return errResp(ikewire.NotifyChildSANotFound, nil)
		case old.state == childDeleting:
			// RFC 7296, Section 2.25.1: we are deleting it; our Delete
			// reaches the peer and ends its rekey.
			return errResp(ikewire.NotifyTemporaryFailure, nil)
		}
		// childRekeying: a simultaneous rekey, answered as usual; the
		// nonces decide which new SA stays once both are done (RFC
		// 7296, Sections 2.8.1 and 2.25.1).
	}
	if s.responder != nil {
		// RFC 7296, Section 2.25: one exchange with IKE_FOLLOWUP_KE
		// (RFC 9370, Section 2.2.4) at a time; the peer retries.
		s.log.Info("ike: CREATE_CHILD_SA refused with TEMPORARY_FAILURE: an exchange using IKE_FOLLOWUP_KE (RFC 9370) is in progress, a collision this engine does not resolve yet; the peer retries",
			"peer", s.peerName())
		return errResp(ikewire.NotifyTemporaryFailure, nil)
	}
	nr := s.random(nonceLen)
	resp, nw, nt, data := s.acceptChild(x, pl, old, true, nonce.Data, nr, nr)
	if nt != 0 {
		return errResp(nt, data)
	}
	if s.responder != nil {
		return resp, nil // finishChild installs the SA (RFC 9370, Section 2.2.4)
	}
	if old != nil && nw != nil {
		s.peerRekeyDone(old, nw, nonce.Data, nr)
	}
	return resp, nil
}

func (s *session) childByOutSPI(spi uint32) *child {
	for _, c := range s.children {
		if c.sa.SPIOut == spi {
			return c
		}
	}
	return nil
}

// removeChild deletes a CHILD SA from the Installer and the session.
func (s *session) removeChild(c *child, err error) {
	for i, d := range s.children {
		if d == c {
			s.children = append(s.children[:i], s.children[i+1:]...)
			gone := c.sa
			gone.Replaced = c.rekeyed && !c.redundant
			s.ops = append(s.ops, op{kind: opDelete, child: &gone})
			if c.state != childReplaced && !c.rekeyed && !c.redundant {
				s.emit(EventChildDown, c.cfg.Name, &c.sa, err)
			}
			s.m.freeSPI(c.sa.SPIIn)
			return
		}
	}
}

// deleteChildTask deletes a CHILD SA with INFORMATIONAL (RFC 7296, Section
// 1.4.1).
type deleteChildTask struct {
	c        *child
	replaced bool
}

func (*deleteChildTask) exchange() ikewire.ExchangeType { return ikewire.INFORMATIONAL }

func (t *deleteChildTask) build(s *session, x *ikeSA) ([]ikewire.Payload, error) {
	if !s.live(t.c) {
		return nil, errors.New("ike: the CHILD SA is already gone")
	}
	proto := ikewire.ProtoESP
	if t.c.sa.Protocol == sa.AH {
		proto = ikewire.ProtoAH
	}
	return []ikewire.Payload{&ikewire.Delete{Protocol: proto, SPIs: []uint32{t.c.sa.SPIIn}}}, nil
}

func (t *deleteChildTask) process(s *session, x *ikeSA, m *ikewire.Message, pl []ikewire.Payload) bool {
	if t.replaced {
		t.c.rekeyed = true
	}
	s.removeChild(t.c, nil)
	return false
}

func (t *deleteChildTask) abort(s *session) {}

func (t *deleteChildTask) giveUp(s *session, x *ikeSA) { s.peerGone(x) }

// moved sends the Delete again on the new IKE SA (RFC 7296, Section 2.8).
func (t *deleteChildTask) moved(s *session) {
	if s.state == StateEstablished && s.live(t.c) {
		s.queueFront(t)
	}
}

func (s *session) hasChildPtr(c *child) bool {
	for _, d := range s.children {
		if d == c {
			return true
		}
	}
	return false
}

// childInfo returns the CHILD SAs for a snapshot, without keys.
func (s *session) childInfo() []ChildSA {
	var out []ChildSA
	for _, c := range s.children {
		v := c.sa
		v.LocalTS = append(traffic.Set(nil), v.LocalTS...)
		v.RemoteTS = append(traffic.Set(nil), v.RemoteTS...)
		out = append(out, v)
	}
	return out
}
