package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// exchanges returns the exchange types of the requests sent so far, once
// per Message ID (fragments and retransmissions count once).
func (n *stepNet) exchanges(t testing.TB) []ikewire.ExchangeType {
	var out []ikewire.ExchangeType
	seen := map[uint32]bool{}
	for _, d := range n.sent {
		if m := parse(t, d); !m.IsResponse() && !seen[m.MessageID] {
			seen[m.MessageID] = true
			out = append(out, m.Exchange)
		}
	}
	return out
}

// TestAddKE runs IKE_SA_INIT, one IKE_INTERMEDIATE per additional key
// exchange and IKE_AUTH (RFC 9370, Section 2.2.2), with PSK and signature
// authentication, and checks that both sides derive the same CHILD SA keys.
func TestAddKE(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	for _, tc := range []struct {
		ike   string
		inter int
		want  string
	}{
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", 1, "-ke1_mlkem768"},
		{"aes256gcm16-prfsha384-ecp384-ke1_mlkem1024", 1, "-ke1_mlkem1024"},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke2_ecp256", 2, "-ke1_mlkem768-ke2_ecp256"},
		{"aes256-sha256-modp3072-ke3_mlkem768", 1, "-ke3_mlkem768"},
		// draft-ietf-ipsecme-ikev2-mlkem: ML-KEM as the only key exchange.
		{"aes256gcm16-prfsha384-mlkem768", 0, "mlkem768"},
		{"aes256gcm16-prfsha384-mlkem1024-ke1_x25519", 1, "mlkem1024-ke1_x25519"},
	} {
		for _, auth := range []string{"psk", "ecdsa-p256"} {
			t.Run(tc.ike+"/"+auth, func(t *testing.T) {
				pa, pb := peerPair(t, tc.ike, "aes256gcm16")
				if auth != "psk" {
					pa, pb = certPeers(t, pki, auth)
					pa.Proposals, pb.Proposals = mustIKE(t, tc.ike), mustIKE(t, tc.ike)
				}
				p := newStepPair(t, pa, pb, nil)
				if err := p.a.m.Initiate("b", "net", nil); err != nil {
					t.Fatal(err)
				}
				p.net.run(20)
				checkKeys(t, p.a.inst, p.b.inst, 1)
				sa, sb := p.a.m.SAs(), p.b.m.SAs()
				if len(sa) != 1 || len(sb) != 1 || sa[0].State != StateEstablished || sb[0].State != StateEstablished {
					t.Fatalf("SAs %+v and %+v", sa, sb)
				}
				if sa[0].Proposal != sb[0].Proposal || !strings.HasSuffix(sa[0].Proposal, tc.want) {
					t.Errorf("proposals %q and %q, want the suffix %q", sa[0].Proposal, sb[0].Proposal, tc.want)
				}
				xs := p.net.exchanges(t)
				want := []ikewire.ExchangeType{ikewire.IKE_SA_INIT}
				for range tc.inter {
					want = append(want, ikewire.IKE_INTERMEDIATE)
				}
				want = append(want, ikewire.IKE_AUTH)
				if len(xs) != len(want) {
					t.Fatalf("requests %v, want %v", xs, want)
				}
				for i := range xs {
					if xs[i] != want[i] {
						t.Fatalf("requests %v, want %v", xs, want)
					}
				}
				// RFC 9242, Section 3: both sides announce IKE_INTERMEDIATE
				// when additional key exchanges are offered.
				m1, m2 := parse(t, p.net.sent[0]), parse(t, p.net.sent[1])
				for _, m := range []*ikewire.Message{m1, m2} {
					if (findNotify(m.Payloads, ikewire.NotifyIntermediateExchangeSupported) != nil) != strings.Contains(tc.ike, "-ke") {
						t.Errorf("INTERMEDIATE_EXCHANGE_SUPPORTED in %v", m.Header)
					}
				}
				// The CHILD SA works after a rekey with the updated SK_d.
				if err := p.a.m.Rekey("b", "net"); err != nil {
					t.Fatal(err)
				}
				p.net.run(20)
				checkKeys(t, p.a.inst, p.b.inst, 1)
			})
		}
	}
}

// TestAddKEOptional negotiates optional additional key exchanges
// (keN_none, RFC 9370, Section 2.2.1).
func TestAddKEOptional(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		inter int
	}{
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-prfsha256-x25519", 0},
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-x25519-ke1_none-ke1_mlkem768", 0},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-prfsha256-x25519-ke1_mlkem768", 1},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke2_none-ke2_ecp256", "aes256gcm16-prfsha256-x25519-ke1_mlkem768", 1},
	} {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			pa, pb := peerPair(t, tc.a, "aes256gcm16")
			pb.Proposals = mustIKE(t, tc.b)
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			checkKeys(t, p.a.inst, p.b.inst, 1)
			n := 0
			for _, x := range p.net.exchanges(t) {
				if x == ikewire.IKE_INTERMEDIATE {
					n++
				}
			}
			if n != tc.inter {
				t.Errorf("%d IKE_INTERMEDIATE exchanges, want %d (%v, %q)", n, tc.inter, p.net.exchanges(t), p.a.m.SAs()[0].Proposal)
			}
			if got := p.a.m.SAs()[0].Proposal; got != p.b.m.SAs()[0].Proposal {
				t.Errorf("proposals differ: %q and %q", got, p.b.m.SAs()[0].Proposal)
			}
		})
	}
}

// TestAddKEMismatch: a required additional key exchange the peer does not
// offer is NO_PROPOSAL_CHOSEN.
func TestAddKEMismatch(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16-prfsha256-x25519"},
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-x25519-ke1_mlkem768"},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16-prfsha256-x25519-ke1_mlkem1024"},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16-prfsha256-x25519-ke2_mlkem768"},
	} {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			pa, pb := peerPair(t, tc.a, "aes256gcm16")
			pb.Proposals = mustIKE(t, tc.b)
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(10)
			var ne *NotifyError
			evs := p.a.events()
			if len(evs) == 0 || !errors.As(evs[len(evs)-1].Err, &ne) || ne.Type != ikewire.NotifyNoProposalChosen {
				t.Fatalf("events %v", evs)
			}
			if len(p.a.m.SAs())+len(p.b.m.SAs()) != 0 {
				t.Fatal("an IKE SA is left")
			}
		})
	}
}

// TestAddKEInvalidKERetry: INVALID_KE_PAYLOAD for the first key exchange
// works as without additional ones (RFC 7296, Section 1.2).
func TestAddKEInvalidKERetry(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519-ecp256-ke1_mlkem768", "aes256gcm16")
	pb.Proposals = mustIKE(t, "aes256gcm16-prfsha256-ecp256-ke1_mlkem768")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if got := p.a.m.SAs()[0].Proposal; !strings.Contains(got, "ecp256-ke1_mlkem768") {
		t.Errorf("proposal %q", got)
	}
}

// TestAddKEIntAuthTampered: AUTH covers the IntAuth chain (RFC 9242,
// Section 3.3.2), so a responder whose IntAuth_i differs from the
// initiator's refuses the initiator's AUTH.
func TestAddKEIntAuthTampered(t *testing.T) {
	for _, which := range []string{"i", "r", "swapped"} {
		t.Run(which, func(t *testing.T) {
			pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16")
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			for range 4 { // IKE_SA_INIT and IKE_INTERMEDIATE
				p.net.deliver()
			}
			p.b.m.mu.Lock()
			for a := range p.b.m.actors {
				switch which {
				case "i":
					a.s.intAuthI[0] ^= 1
				case "r":
					a.s.intAuthR[len(a.s.intAuthR)-1] ^= 0x80
				}
				if which == "swapped" {
					a.s.intAuthI, a.s.intAuthR = a.s.intAuthR, a.s.intAuthI
				}
			}
			p.b.m.mu.Unlock()
			p.net.run(10)
			checkNothing(t, p)
		})
	}
}

// TestAddKEIKERekey rekeys an IKE SA with additional key exchanges in
// IKE_FOLLOWUP_KE exchanges (RFC 9370, Section 2.2.4), from either side,
// and checks that the new IKE SA's SK_d agrees through a CHILD SA rekey.
func TestAddKEIKERekey(t *testing.T) {
	for _, tc := range []struct {
		ike      string
		followup int
	}{
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768", 1},
		{"aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke2_ecp256", 2},
		{"aes256gcm16-prfsha384-mlkem1024", 0},
	} {
		for _, from := range []string{"a", "b"} {
			t.Run(tc.ike+"/"+from, func(t *testing.T) {
				pa, pb := peerPair(t, tc.ike, "aes256gcm16")
				p := newStepPair(t, pa, pb, nil)
				if err := p.a.m.Initiate("b", "net", nil); err != nil {
					t.Fatal(err)
				}
				p.net.run(20)
				before := p.a.m.SAs()[0]
				sent := len(p.net.sent)
				var err error
				if from == "a" {
					err = p.a.m.Rekey("b", "")
				} else {
					err = p.b.m.Rekey("a", "")
				}
				if err != nil {
					t.Fatal(err)
				}
				p.net.run(20)
				n := 0
				seen := map[uint32]bool{}
				for _, d := range p.net.sent[sent:] {
					if m := parse(t, d); m.Exchange == ikewire.IKE_FOLLOWUP_KE && !m.IsResponse() && !seen[m.MessageID] {
						seen[m.MessageID] = true
						n++
					}
				}
				if n != tc.followup {
					t.Errorf("%d IKE_FOLLOWUP_KE exchanges, want %d", n, tc.followup)
				}
				after, bs := p.a.m.SAs(), p.b.m.SAs()
				if len(after) != 1 || len(bs) != 1 || after[0].SPIi == before.SPIi || after[0].SPIi != bs[0].SPIi || after[0].SPIr != bs[0].SPIr {
					t.Fatalf("after the rekey: A %+v, B %+v", after, bs)
				}
				if after[0].Proposal != before.Proposal {
					t.Errorf("proposal %q, was %q", after[0].Proposal, before.Proposal)
				}
				if len(p.a.m.bySPI) != 1 || len(p.b.m.bySPI) != 1 {
					t.Fatalf("old SPIs still routed: %d, %d", len(p.a.m.bySPI), len(p.b.m.bySPI))
				}
				if err := p.a.m.Rekey("b", "net"); err != nil {
					t.Fatal(err)
				}
				p.net.run(20)
				checkKeys(t, p.a.inst, p.b.inst, 1)
			})
		}
	}
}

// TestAddKEFollowupAbandoned: a responder forgets an IKE SA rekey whose
// IKE_FOLLOWUP_KE does not come (RFC 9370, Section 2.2.4) and keeps the IKE
// SA.
func TestAddKEFollowupAbandoned(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	if err := p.a.m.Rekey("b", ""); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // CREATE_CHILD_SA request
	p.net.deliver() // response with ADDITIONAL_KEY_EXCHANGE
	p.net.drop()    // the IKE_FOLLOWUP_KE request is lost, and so is A
	p.b.m.mu.Lock()
	var pending bool
	for a := range p.b.m.actors {
		pending = pendingFollowup(a.s) != nil
	}
	p.b.m.mu.Unlock()
	if !pending {
		t.Fatal("B keeps no rekey state")
	}
	p.a.m.Close()
	p.net.queue = nil
	p.advance(followupTimeout)
	p.b.m.mu.Lock()
	for a := range p.b.m.actors {
		if pendingFollowup(a.s) != nil {
			t.Error("B kept the abandoned rekey")
		}
	}
	p.b.m.mu.Unlock()
	if sas := p.b.m.SAs(); len(sas) != 1 || sas[0].State != StateEstablished {
		t.Fatalf("B's IKE SA: %+v", sas)
	}
}

// TestIntAuthInput checks the octets the IntAuth chain covers against the
// IKE_INTERMEDIATE request on the wire, laid out as RFC 9242, Section
// 3.3.1, Figure 1 says: the IKE header and the Encrypted payload header as
// sent but with Length fields that count only the plaintext, then the
// decrypted inner payloads without IV, padding, Pad Length and ICV.
func TestIntAuthInput(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16")
	p := newStepPair(t, pa, pb, func(a, b *Config) { a.FragmentSize, b.FragmentSize = 3000, 3000 })
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // IKE_SA_INIT request
	p.net.deliver() // IKE_SA_INIT response
	d := p.net.queue[0]
	m := parse(t, d)
	if m.Exchange != ikewire.IKE_INTERMEDIATE || len(p.net.queue) != 1 {
		t.Fatalf("expected one IKE_INTERMEDIATE datagram, got %v", m.Header)
	}
	var opener ikewire.SKCipher
	p.b.m.mu.Lock()
	for a := range p.b.m.actors {
		opener = openerOf(a.s.sa)
	}
	p.b.m.mu.Unlock()
	sk := m.Payloads[len(m.Payloads)-1].(*ikewire.SK)
	buf := bytes.Clone(m.Raw)
	ivOff := len(buf) - len(sk.Body)
	if err := opener.Open(buf, ivOff); err != nil {
		t.Fatal(err)
	}
	pt := buf[ivOff+opener.IVLen() : len(buf)-opener.ICVLen()]
	pt = pt[:len(pt)-1-int(pt[len(pt)-1])] // padding and Pad Length
	// A: the header and the SK payload header with adjusted lengths.
	want := bytes.Clone(m.Raw[:ivOff])
	binary.BigEndian.PutUint32(want[24:28], uint32(len(want)+len(pt)))
	binary.BigEndian.PutUint16(want[len(want)-2:], uint16(4+len(pt)))
	want = append(want, pt...)
	inner, err := ikewire.OpenSK(m, opener)
	if err != nil {
		t.Fatal(err)
	}
	got, err := intAuthInput(m.Header, inner)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("IntAuth input\n got %x\nwant %x", got[:64], want[:64])
	}
}

// TestAddKEOffer checks the transforms of an offer with additional key
// exchanges: Transform Types 6 and 7 (RFC 9370, Section 2.2.1) after the
// others, NONE (0) for an optional one, with the IANA IDs of the "Transform
// Type 4 - Key Exchange Method Transform IDs" registry (ML-KEM-768 is 36,
// Curve25519 31, 256-bit random ECP 19; AES-GCM-16 is 20, PRF_HMAC_SHA2_256 5).
func TestAddKEOffer(t *testing.T) {
	o := ikeOffer(mustIKE(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none-ke2_ecp256")[0])
	type tr struct {
		typ ikewire.TransformType
		id  uint16
	}
	want := []tr{{1, 20}, {2, 5}, {4, 31}, {6, 36}, {6, 0}, {7, 19}}
	w := o.wire()
	if len(w.Transforms) != len(want) {
		t.Fatalf("transforms %+v", w.Transforms)
	}
	for i, x := range w.Transforms {
		if (tr{x.Type, x.ID}) != want[i] {
			t.Errorf("transform %d: %d/%d, want %d/%d", i, x.Type, x.ID, want[i].typ, want[i].id)
		}
	}
	// The answer names one transform per negotiated type and leaves out
	// the exchanges that were not chosen.
	s, ok := matchIKE(o, parseOffer(w), 0)
	if !ok || s.addKE[0] != 36 || s.addKE[1] != 19 || s.addKE[2] != 0 {
		t.Fatalf("matchIKE: %+v %v", s, ok)
	}
	// Our ke1 is optional: a peer without it matches with NONE.
	theirs := ikeOffer(mustIKE(t, "aes256gcm16-prfsha256-x25519-ke2_ecp256-ke2_none")[0])
	if s, ok := matchIKE(o, theirs, 0); !ok || s.addKE[0] != 0 || s.addKE[1] != 19 {
		t.Errorf("optional ke1: %+v %v", s, ok)
	}
	theirs = ikeOffer(mustIKE(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem1024-ke2_ecp256")[0])
	if _, ok := matchIKE(o, theirs, 0); ok {
		t.Error("matched with different required ke1 methods")
	}
}

// pendingFollowup returns the key exchanges of the responder task waiting
// for IKE_FOLLOWUP_KE, nil when none waits.
func pendingFollowup(s *session) *followupKE {
	switch r := s.responder.(type) {
	case *childResponder:
		return r.f
	case *ikeRekeyResponder:
		return r.f
	}
	return nil
}
