package ike

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// logTo returns a tweak for newStepPair that sends B's log to buf.
func logTo(buf *lockedBuffer) func(a, b *Config) {
	return func(_, b *Config) { b.Logger = slog.New(slog.NewTextHandler(buf, nil)) }
}

// TestRefusedIKEProposalLogged: a responder that answers
// NO_PROPOSAL_CHOSEN to IKE_SA_INIT logs what the initiator offered and
// what it has configured, in strongSwan syntax.
func TestRefusedIKEProposalLogged(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pa.Proposals = mustIKE(t, "aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048")
	pb.Proposals = mustIKE(t, "chacha20poly1305-prfsha384-ecp384")
	logB := &lockedBuffer{}
	p := newStepPair(t, pa, pb, logTo(logB))
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	wantSubstrings(t, logB.String(), `msg="ike: no acceptable IKE proposal"`,
		`offered="[aes256gcm16-prfsha256-x25519, aes128-sha256-prfsha256-modp2048]"`,
		`configured=[chacha20poly1305-prfsha384-ecp384]`)
}

// TestRefusedChildProposalLogged: the same for a CHILD SA, in IKE_AUTH
// and in CREATE_CHILD_SA (with its key exchanges).
func TestRefusedChildProposalLogged(t *testing.T) {
	t.Run("IKE_AUTH", func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16-aes128gcm16")
		pb.Children[0].Proposals = mustESP(t, "aes128-sha256")
		logB := &lockedBuffer{}
		p := newStepPair(t, pa, pb, logTo(logB))
		p.establish(t)
		wantSubstrings(t, logB.String(), `msg="ike: no acceptable CHILD SA proposal"`,
			`offered=[aes256gcm16-aes128gcm16]`, `configured=[aes128-sha256]`)
	})
	t.Run("CREATE_CHILD_SA", func(t *testing.T) {
		pa, pb := childAddKEPair(t, "aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem1024")
		logB := &lockedBuffer{}
		p := newStepPair(t, pa, pb, logTo(logB))
		p.establish(t)
		if err := p.a.m.Initiate("b", "host", nil); err != nil {
			t.Fatal(err)
		}
		p.net.run(20)
		wantSubstrings(t, logB.String(), `msg="ike: no acceptable CHILD SA proposal"`,
			`offered=[aes256gcm16-x25519-ke1_mlkem768]`, `configured=[aes256gcm16-x25519-ke1_mlkem1024]`)
	})
}

// TestRefusedAnswerNamesProposals: an initiator that cannot accept the
// responder's choice says what was chosen and what it has configured.
func TestRefusedAnswerNamesProposals(t *testing.T) {
	ours := mustIKE(t, "aes256gcm16-prfsha256-x25519")
	ans := ikeOffer(mustIKE(t, "aes128-sha256-modp2048")[0])
	ans.num = 1
	_, _, err := checkIKEAnswer(ours, &ikewire.SA{Proposals: []ikewire.Proposal{ans.wire()}})
	if err == nil {
		t.Fatal("an answer that was not offered is accepted")
	}
	wantSubstrings(t, err.Error(), "aes128-sha256-prfsha256-modp2048", "configured [aes256gcm16-prfsha256-x25519]")

	c := &ChildConfig{Name: "net", Proposals: mustESP(t, "aes256gcm16")}
	cans := childOffer(mustESP(t, "aes128-sha256-esn")[0], c.protocol(), false)
	cans.num, cans.spi = 1, spiBytes(0xc0ffee01)
	_, _, err = checkChildAnswer(c, &ikewire.SA{Proposals: []ikewire.Proposal{cans.wire()}}, false)
	if err == nil {
		t.Fatal("a child answer that was not offered is accepted")
	}
	wantSubstrings(t, err.Error(), "aes128-sha256-esn", "configured [aes256gcm16]")
}

func wantSubstrings(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%q lacks %q", got, w)
		}
	}
}
