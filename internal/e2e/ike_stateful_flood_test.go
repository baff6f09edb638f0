package e2e

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
)

// floodMessage returns one malformed IKE message for the live IKE SA
// spiI/spiR, built from r: a request to the responder or a message of
// either kind to the initiator (toInitiator), with a Message ID from 0 to
// 5 (the IKE SA's previous, current and next ones shortly after IKE_AUTH),
// and one of the encodings: no payloads, a truncated message, an SK
// payload of random bytes (it fails the integrity check), a chain of
// garbage payloads, or an SKF fragment with random numbering.
func floodMessage(r *rand.Rand, spiI, spiR uint64, toInitiator bool) []byte {
	exchanges := []byte{34, 35, 36, 37, 43, 44} // IKE_SA_INIT .. INFORMATIONAL, IKE_INTERMEDIATE, IKE_FOLLOWUP_KE
	var flags byte = 0x08                       // I: from the original initiator
	if toInitiator {
		flags = 0
		if r.IntN(2) == 0 {
			flags = 0x20 // R
		}
	}
	body := make([]byte, r.IntN(200))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	next := byte(0)
	length := 28 + len(body)
	switch r.IntN(5) {
	case 0: // no payloads
		body, length = nil, 28
	case 1: // truncated: the header claims more than is sent
		next = 46
		length += 1 + r.IntN(100)
	case 2: // an SK payload whose ICV cannot match
		next = 46
		if len(body) < 4 {
			body = append(body, 0, 0, 0, 0)
		}
		body[0] = byte(r.IntN(50))
		body[1] = 0
		binary.BigEndian.PutUint16(body[2:], uint16(len(body)))
	case 3: // garbage payload chain
		next = byte(r.IntN(60))
	case 4: // an SKF fragment (RFC 7383) with random numbering
		next = 53
		for len(body) < 8 {
			body = append(body, 0)
		}
		body[0] = byte(r.IntN(50))
		body[1] = 0
		binary.BigEndian.PutUint16(body[2:], uint16(len(body)))
		binary.BigEndian.PutUint16(body[4:], uint16(r.IntN(4)))
		binary.BigEndian.PutUint16(body[6:], uint16(r.IntN(4)))
	}
	b := make([]byte, 28, 28+len(body))
	binary.BigEndian.PutUint64(b[0:], spiI)
	binary.BigEndian.PutUint64(b[8:], spiR)
	b[16] = next
	b[17] = 0x20
	b[18] = exchanges[r.IntN(len(exchanges))]
	b[19] = flags
	binary.BigEndian.PutUint32(b[20:], uint32(r.IntN(6)))
	binary.BigEndian.PutUint32(b[24:], uint32(length))
	return append(b, body...)
}

// TestIKELiveStatefulFlood sends 8,000 malformed IKE messages that carry
// the live IKE SA's SPIs (read with "ipsecctl sas --json") and Message IDs
// around the current ones to two running goipsec daemons while a ping runs
// through their tunnel: to the responder from a third namespace, from the
// initiator's address and to its NAT-T port behind the non-ESP marker, and
// to the initiator from the responder's side. Both daemons must keep
// running with no recovered panic, at least 90% of the echo requests must
// be answered, and the IKE SA must still work: "ipsecctl rekey" of the
// CHILD SA succeeds afterwards.
func TestIKELiveStatefulFlood(t *testing.T) {
	requireBins(t)
	a, b, _ := ikeTopology(t, false, "tunnel")
	atk := nstest.New(t, "f")
	nstest.Link(t, atk, "eth0", []string{"198.51.100.3/24"}, b.ns, "eth1", []string{"198.51.100.2/24"})
	target := netip.MustParseAddr("198.51.100.2")
	psk := newPSK()
	p := ikeProposals[0]
	ca := ikeConn{ike: p.ike, child: []string{p.esp}, mode: "tunnel", start: "trap", localID: "a.e2e.example", remoteID: "b.e2e.example", psk: psk}
	cb := ca
	cb.start, cb.localID, cb.remoteID = "none", ca.remoteID, ca.localID
	a.startDaemon(t, ikeConfig(a, b, ca))
	b.startDaemon(t, ikeConfig(b, a, cb))
	mustPing(t, a.ns, a.inner, b.inner, 3)
	liveB, childB := b.waitEstablished(t, 5*time.Second)
	_, childA := a.waitEstablished(t, 5*time.Second)
	spiI, spiR := uint64(liveB.SPIi), uint64(liveB.SPIr)

	type sink struct {
		c           *net.UDPConn
		marker      bool // prefix the non-ESP marker (RFC 3948, Section 2.2)
		toInitiator bool
	}
	sinks := []sink{
		{c: udpSender(t, atk, netip.AddrPortFrom(target, 500))},
		{c: udpSender(t, atk, netip.AddrPortFrom(target, 4500)), marker: true},
		{c: udpSender(t, a.ns, netip.AddrPortFrom(b.outer, 500))},
		{c: udpSender(t, b.ns, netip.AddrPortFrom(a.outer, 500)), toInitiator: true},
	}

	// One ping through the tunnel for the whole flood: 60 echo requests
	// 0.1 s apart.
	const pings = 60
	var pingOut string
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		pingOut, _ = a.ns.Run("ping", "-n", "-c", strconv.Itoa(pings), "-i", "0.1", "-W", "2", "-I", a.inner.String(), b.inner.String())
	}()

	r := rand.New(rand.NewPCG(7, 7))
	const total, waves = 8000, 5
	start := time.Now()
	for w := range waves {
		for i := range total / waves {
			s := sinks[r.IntN(len(sinks))]
			msg := floodMessage(r, spiI, spiR, s.toInitiator)
			if s.marker {
				msg = append([]byte{0, 0, 0, 0}, msg...)
			}
			s.c.Write(msg) // ICMP errors from earlier sends may fail a write; the next goes on
			if i%20 == 19 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		if w < waves-1 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("sent %d malformed messages with the live SPIs in %v", total, time.Since(start).Round(time.Millisecond))
	<-pinged

	for _, h := range []*host{a, b} {
		h.checkAlive(t)
		if st := h.status(t); st.Panics.IKE != 0 || st.Panics.Dataplane != 0 {
			t.Errorf("[%s] status reports panics: %+v", h.ns.Name, st.Panics)
		}
	}
	recv := 0
	if m := receivedRE.FindStringSubmatch(pingOut); m != nil {
		recv, _ = strconv.Atoi(m[2])
	}
	t.Logf("ping through the tunnel during the flood: %d of %d answered", recv, pings)
	if recv*10 < pings*9 {
		t.Errorf("ping through the tunnel: %d of %d answered, want at least 90%%:\n%s", recv, pings, pingOut)
	}
	for _, h := range []*host{a, b} {
		ike, _, ok := established(h.trySAs())
		if !ok || uint64(ike.SPIi) != spiI || uint64(ike.SPIr) != spiR {
			t.Fatalf("[%s] the live IKE SA did not survive the flood: %+v", h.ns.Name, h.trySAs())
		}
	}
	rekeyChild(t, a, b, childA, childB)
	mustPing(t, a.ns, a.inner, b.inner, 3)
	for _, h := range []*host{a, b} {
		h.checkAlive(t)
		if st := h.status(t); st.Panics.IKE != 0 {
			t.Errorf("[%s] status reports %d IKE panics", h.ns.Name, st.Panics.IKE)
		}
	}
}
