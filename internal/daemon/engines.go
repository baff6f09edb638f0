package daemon

import (
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// pairSpec describes both directions of an SA, statically keyed or
// negotiated, in the terms the packet engines and the SAD need.
type pairSpec struct {
	Protocol          sa.Protocol
	Mode              sa.Mode
	Suite             transform.Suite
	KeyIn, KeyOut     []byte
	SPIIn, SPIOut     uint32
	ESN               bool
	Local, Remote     netip.Addr // outer addresses
	RemoteEncapPort   uint16     // 0: no UDP encapsulation (RFC 3948)
	LocalTS, RemoteTS traffic.Set
	ReplayWindow      int
	Limits            sa.Limits
	Ref               uint32 // the SPD bundle the outbound SA serves
	Peer              string // who holds the keys (sad.OutboundSA.Peer)
	// StartSeq is the last sequence number the outbound SA already used
	// (esp.Config.StartSeq); 0 for a fresh SA.
	StartSeq uint64
}

// newPair builds the packet engines of both directions and wraps them for
// the SAD. It installs nothing.
func (d *Daemon) newPair(p pairSpec) (*sad.InboundSA, *sad.OutboundSA, error) {
	in := &sad.InboundSA{Protocol: p.Protocol, SPI: p.SPIIn, Mode: p.Mode, Local: p.LocalTS, Remote: p.RemoteTS, LocalAddr: p.Local}
	out := &sad.OutboundSA{Protocol: p.Protocol, SPI: p.SPIOut, Mode: p.Mode, Ref: p.Ref, Encap: sad.EncapNone, Remote: netip.AddrPortFrom(p.Remote, 0),
		LocalAddr: p.Local, LocalTS: p.LocalTS, RemoteTS: p.RemoteTS, Peer: p.Peer}
	if p.RemoteEncapPort != 0 {
		out.Encap, out.Remote = sad.EncapUDP, netip.AddrPortFrom(p.Remote, p.RemoteEncapPort)
	}
	var err error
	switch p.Protocol {
	case sa.ESP:
		in.SA, out.SA, err = d.espPair(p)
	case sa.AH:
		in.SA, out.SA, err = d.ahPair(p)
	default:
		err = fmt.Errorf("protocol %v not supported", p.Protocol)
	}
	if err != nil {
		return nil, nil, err
	}
	return in, out, nil
}

func (d *Daemon) espPair(p pairSpec) (*esp.Inbound, *esp.Outbound, error) {
	tin, err := p.Suite.NewESP(p.KeyIn)
	if err != nil {
		return nil, nil, err
	}
	tout, err := p.Suite.NewESP(p.KeyOut)
	if err != nil {
		return nil, nil, err
	}
	base := esp.Config{Mode: p.Mode, ESN: p.ESN, Local: p.Local, Remote: p.Remote, ReplayWindow: p.ReplayWindow,
		Limits: p.Limits, OnEvent: d.dp.OnSAEvent, Now: d.opts.Now, EncapUDP: p.RemoteEncapPort != 0}
	cin, cout := base, base
	cin.SPI, cin.Transform = p.SPIIn, tin
	cout.SPI, cout.Transform, cout.StartSeq = p.SPIOut, tout, p.StartSeq
	i, err := esp.NewInbound(cin)
	if err != nil {
		return nil, nil, err
	}
	o, err := esp.NewOutbound(cout)
	if err != nil {
		return nil, nil, err
	}
	return i, o, nil
}

func (d *Daemon) ahPair(p pairSpec) (*ah.Inbound, *ah.Outbound, error) {
	tin, err := p.Suite.NewAH(p.KeyIn)
	if err != nil {
		return nil, nil, err
	}
	tout, err := p.Suite.NewAH(p.KeyOut)
	if err != nil {
		return nil, nil, err
	}
	base := ah.Config{Mode: p.Mode, ESN: p.ESN, Local: p.Local, Remote: p.Remote, ReplayWindow: p.ReplayWindow,
		Limits: p.Limits, OnEvent: d.dp.OnSAEvent, Now: d.opts.Now}
	cin, cout := base, base
	cin.SPI, cin.Integrity = p.SPIIn, tin
	cout.SPI, cout.Integrity, cout.StartSeq = p.SPIOut, tout, p.StartSeq
	i, err := ah.NewInbound(cin)
	if err != nil {
		return nil, nil, err
	}
	o, err := ah.NewOutbound(cout)
	if err != nil {
		return nil, nil, err
	}
	return i, o, nil
}
