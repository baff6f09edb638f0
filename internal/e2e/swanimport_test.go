package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/swanconf"
	"github.com/goipsec/goipsec/internal/swantest"
)

// TestSwanctlImportInterop converts host a's side of a site-to-site PSK
// tunnel, written as strongSwan's swanctl.conf, with swanconf (what
// swanctl2goipsec does), runs goipsec with the result and charon with the
// mirror configuration on host b, and pings through the tunnel: goipsec's
// trap policy starts IKE.
func TestSwanctlImportInterop(t *testing.T) {
	requireBins(t)
	a, b, dir := ikeTopology(t, false, "tunnel")
	psk := newPSK()
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	swantest.Start(t, b.ns, swantest.Config{Conn: swanConn(a, b, ike, esp, psk)})

	swan := swantest.PSKConn{
		Name: connName, Child: childName,
		Local: a.outer.String(), Remote: b.outer.String(),
		LocalID: "a.e2e.example", RemoteID: "b.e2e.example", PSK: psk,
		Proposals: ike, ESPProposals: esp,
		LocalTS: a.net.String(), RemoteTS: b.net.String(), StartAction: "trap",
	}.String()
	swanFile := filepath.Join(dir, "swanctl.conf")
	if err := os.WriteFile(swanFile, []byte(swan), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := swanconf.ConvertFile(swanFile, swanconf.Options{Dir: filepath.Dir(a.conf)})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Notes {
		t.Errorf("not carried over: %s", n)
	}
	// swanctl.conf has no daemon settings (strongSwan keeps them in
	// strongswan.conf); the test's own go first.
	conf := "daemon:\n  socket: \"" + a.sock + "\"\n  tun: {name: ipsec0, mtu: 1400}\n" + string(res.YAML)
	a.startDaemon(t, conf)
	mustPing(t, a.ns, a.inner, b.inner, 3)
	a.waitEstablished(t, 5*time.Second)
}
