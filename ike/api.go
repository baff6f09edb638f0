package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// Installer installs and removes the CHILD SAs the engine negotiates; the
// daemon implements it over the data plane's SAD. Its methods are called
// from the engine's goroutines, possibly concurrently for different IKE
// SAs, and must be safe for concurrent use. They should not block for long.
type Installer interface {
	// InstallSA installs the inbound SA c.SPIIn and prepares the outbound
	// SA c.SPIOut, which carries no traffic until ActivateOutbound. The
	// two steps let the engine make a rekeyed SA before it breaks the old
	// one (RFC 7296, Section 2.8): this host receives on the new SA as
	// soon as it knows its keys, and sends on it only once the peer can
	// receive on it. An error makes the engine delete the CHILD SA. The
	// engine zeroes c.KeyIn and c.KeyOut when InstallSA returns: an
	// Installer that keeps key material must copy it.
	InstallSA(c ChildSA) error
	// ActivateOutbound makes the outbound SA that InstallSA prepared for
	// c (named by c.SPIIn) the one that carries c.Ref's traffic to the
	// peer, replacing the previous outbound SA of the same Ref and peer.
	// An error makes the engine delete the CHILD SA.
	ActivateOutbound(c ChildSA) error
	// DeleteSA removes the inbound SA c.SPIIn and the outbound SA
	// c.SPIOut. An outbound SA that was already replaced by a newer one
	// is gone; the newer one must stay. The peer stopped sending on the
	// SA before the engine deletes it, but packets it sent just before
	// may still be in flight: the Installer may keep the inbound SA for
	// a few seconds (the daemon does) as long as it stops using the
	// outbound one at once.
	DeleteSA(c ChildSA) error
}

// Transport sends IKE messages; the daemon implements it over its UDP
// sockets. Send is called from the engine's goroutines and must be safe for
// concurrent use. Received datagrams are fed to Manager.HandlePacket.
type Transport interface {
	// Send sends the UDP payload pkt from the local address and port from
	// to the remote to. pkt is ready to send: on the NAT-T port it starts
	// with the non-ESP marker. The engine does not retain pkt's memory
	// after Send returns, nor modify it before.
	Send(pkt []byte, from, to netip.AddrPort) error
}

// ChildSA describes a negotiated CHILD SA, both directions, as handed to
// the Installer and shown by Manager.SAs. Key material is only set in the
// values passed to Installer.InstallSA, and zeroed when it returns. Every
// way of printing a ChildSA (fmt's verbs, String, GoString, slog) shows
// "<redacted>" for the keys.
type ChildSA struct {
	// Peer and Child name the configuration (Peer.Name, ChildConfig.Name);
	// Ref is ChildConfig.Ref.
	Peer, Child string
	Ref         uint32
	// Protocol is sa.ESP or sa.AH; Mode tunnel or transport.
	Protocol sa.Protocol
	Mode     sa.Mode
	// SPIIn is the SPI of the inbound SA (which this host chose), SPIOut
	// that of the outbound SA (which the peer chose).
	SPIIn, SPIOut uint32
	// Suite is the negotiated algorithm suite, the same in both
	// directions, as transform.Suite.NewESP and NewAH take it.
	Suite transform.Suite
	// KeyIn and KeyOut are the KEYMAT of each direction, in the layout
	// transform.Suite.KeyLen describes (RFC 7296, Section 2.17).
	KeyIn, KeyOut []byte
	// ESN says whether extended sequence numbers are used (RFC 4303,
	// Section 2.2.1).
	ESN bool
	// KE is the key exchange method used for PFS, iana.KENone without.
	KE iana.KEID
	// AddKE are the Additional Key Exchanges 1 to 7 that followed KE
	// (RFC 9370, Section 2.2.3), iana.KENone for those not negotiated.
	AddKE [7]iana.KEID
	// LocalTS and RemoteTS are the negotiated traffic selectors (RFC 7296,
	// Section 2.9): this host's side and the peer's.
	LocalTS, RemoteTS traffic.Set
	// Local and Remote are the outer addresses (and IKE ports) of this
	// host and of the peer.
	Local, Remote netip.AddrPort
	// UDPEncap says that ESP travels in UDP (RFC 3948) between Local and
	// Remote's addresses on the NAT-T ports given by LocalEncapPort and
	// RemoteEncapPort (the peer's may be translated by a NAT).
	UDPEncap                        bool
	LocalEncapPort, RemoteEncapPort uint16
	// ReplayWindow is ChildConfig.ReplayWindow.
	ReplayWindow int
	// Limits are the lifetimes the data plane enforces
	// (ChildConfig.RekeyBytes and friends). The engine rekeys by time
	// itself, so it sets only the hard time limit.
	Limits sa.Limits
	// Installed is when the engine installed the SA.
	Installed time.Time
	// Replaced is set in the value passed to Installer.DeleteSA when a
	// rekey replaced the SA: the peer sends on the new one, and packets
	// it sent on this one just before may still be in flight.
	Replaced bool
	// RemoteID is the peer's authenticated identity (RFC 7296, Section
	// 3.5): with Peer and Remote's address, it tells the SAs of different
	// peers of one configuration apart.
	RemoteID Identity
}

// Trigger describes the packet behind an acquire: the initiator proposes
// its addresses, protocol and ports as the first traffic selectors (RFC
// 7296, Section 2.9), so the responder can pick the right policy.
type Trigger struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	HasPorts         bool
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	EventIKEUp        EventKind = iota + 1 // an IKE SA was established
	EventIKEDown                           // an IKE SA ended (Err says why if not deleted normally)
	EventIKERekeyed                        // an IKE SA was replaced by a new one
	EventChildUp                           // a CHILD SA was installed
	EventChildDown                         // a CHILD SA was deleted
	EventChildRekeyed                      // a CHILD SA was replaced by a new one
	EventAuthFailed                        // authentication failed (either side)
	EventChildFailed                       // a CHILD SA could not be created (Err says why)
	// EventChildTrap asks the owner to re-install the trap policy of
	// Child, whose IKE SA ended by Peer.DPDAction or Peer.CloseAction
	// ActionTrap: the next packet of its policy should call Initiate.
	EventChildTrap
)

// String returns the event's name, such as "child_up".
func (k EventKind) String() string {
	switch k {
	case EventIKEUp:
		return "ike_up"
	case EventIKEDown:
		return "ike_down"
	case EventIKERekeyed:
		return "ike_rekeyed"
	case EventChildUp:
		return "child_up"
	case EventChildDown:
		return "child_down"
	case EventChildRekeyed:
		return "child_rekeyed"
	case EventAuthFailed:
		return "auth_failed"
	case EventChildFailed:
		return "child_failed"
	case EventChildTrap:
		return "child_trap"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is sent on Manager.Events.
type Event struct {
	Kind EventKind
	// Peer and Child name the configurations concerned (Child is empty
	// for IKE SA events).
	Peer, Child string
	// SPIi and SPIr are the IKE SA's SPIs.
	SPIi, SPIr uint64
	// SPIIn and SPIOut are the CHILD SA's SPIs for child events.
	SPIIn, SPIOut uint32
	// Remote is the peer's IKE endpoint, the zero value if not known: a
	// peer configuration for many hosts (RemoteAddrs a prefix) has one
	// IKE SA per host, which Peer alone does not tell apart.
	Remote netip.AddrPort
	// Err is the cause of a failure, nil otherwise.
	Err error
}

// String describes the event for logs.
func (e Event) String() string {
	s := fmt.Sprintf("%s peer=%q", e.Kind, e.Peer)
	if e.Child != "" {
		s += fmt.Sprintf(" child=%q spi_in=%08x spi_out=%08x", e.Child, e.SPIIn, e.SPIOut)
	}
	if e.Err != nil {
		s += " err=" + e.Err.Error()
	}
	return s
}

// IKESAState is the state of an IKE SA in a snapshot.
type IKESAState uint8

// IKE SA states.
const (
	StateConnecting  IKESAState = iota + 1 // IKE_SA_INIT or IKE_AUTH in progress
	StateEstablished                       // authenticated
	StateDeleting                          // being deleted
	StateDead                              // gone
)

// String returns the state in capitals, as strongSwan prints it.
func (s IKESAState) String() string {
	switch s {
	case StateConnecting:
		return "CONNECTING"
	case StateEstablished:
		return "ESTABLISHED"
	case StateDeleting:
		return "DELETING"
	case StateDead:
		return "DEAD"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// IKESA is a snapshot of one IKE SA and its CHILD SAs, for `ipsecctl sas`.
type IKESA struct {
	Peer       string
	State      IKESAState
	Initiator  bool // this host is the original initiator
	SPIi, SPIr uint64
	// Local and Remote are the IKE endpoints; NATLocal and NATRemote say
	// whether a NAT was detected in front of either side (RFC 7296,
	// Section 2.23).
	Local, Remote       netip.AddrPort
	NATLocal, NATRemote bool
	LocalID, RemoteID   Identity
	Proposal            string // the negotiated IKE proposal, strongSwan syntax
	Established         time.Time
	RekeyAt             time.Time
	Children            []ChildSA // without key material
}

// NotifyError is the error of a negotiation that the peer refused with an
// error notification, or that this host refused with one (RFC 7296,
// Section 3.10.1).
type NotifyError struct {
	Type ikewire.NotifyType
	// Local is true when this host sent the notification.
	Local bool
}

// Error says who refused with which notification.
func (e *NotifyError) Error() string {
	if e.Local {
		return "ike: refused the peer with " + e.Type.String()
	}
	return "ike: the peer refused with " + e.Type.String()
}

// Errors that events carry.
var (
	// ErrPeerDead means the peer did not answer a request after every
	// retransmission (RFC 7296, Section 2.4).
	ErrPeerDead = errors.New("ike: the peer does not respond")
	// ErrExpired means the IKE SA reached its hard lifetime (RekeyTime
	// + OverTime) without being rekeyed, or a CHILD SA its LifeTime.
	ErrExpired = errors.New("ike: hard lifetime reached")
	// ErrHalfOpenTimeout means IKE_SA_INIT and IKE_AUTH did not complete
	// within Config.HalfOpenTimeout.
	ErrHalfOpenTimeout = errors.New("ike: the IKE SA was not established in time")
	// ErrAuthFailed means the peer's AUTH payload or identity was wrong,
	// or the peer said AUTHENTICATION_FAILED.
	ErrAuthFailed = errors.New("ike: authentication failed")
	// ErrClosed is returned by Manager methods after Close.
	ErrClosed = errors.New("ike: manager closed")
	// ErrInternal ends an IKE SA whose goroutine panicked: the engine
	// recovered, deleted its CHILD SAs and forgot it (Manager.Panics
	// counts these).
	ErrInternal = errors.New("ike: internal error (recovered panic)")
	// ErrUnknownPeer and ErrUnknownChild are returned by Initiate and
	// friends for names that SetPeers did not configure.
	ErrUnknownPeer  = errors.New("ike: unknown peer")
	ErrUnknownChild = errors.New("ike: unknown child")
)
