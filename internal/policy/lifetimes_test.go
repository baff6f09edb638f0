package policy

import (
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
)

// TestLifetimesToPeers: the lifetime, DPD and uniqueness keys reach the
// engine's peer configuration, with swanctl.conf's 0 (off) translated to
// the engine's negative values and the defaults Parse filled kept.
func TestLifetimesToPeers(t *testing.T) {
	c, err := config.Parse("l.yaml", []byte(`
connections:
  gw:
    remote_addrs: [192.0.2.2]
    local: {auth: psk, id: a}
    remote: {auth: psk, id: b}
    rekey_time: 2h
    reauth_time: 12h
    over_time: 5m
    rand_time: 0
    dpd_delay: 10s
    dpd_timeout: 30s
    dpd_action: trap
    close_action: restart
    unique: replace
    children:
      net:
        local_ts: [10.1.0.0/16]
        remote_ts: [10.2.0.0/16]
        rekey_time: 0
        life_time: 3h
        rekey_bytes: 1000
        rekey_packets: 50
        life_packets: 100
      def:
        local_ts: [10.3.0.0/16]
        remote_ts: [10.4.0.0/16]
secrets:
  ike:
    - {ids: [a, b], secret: s3cr3t-s3cr3t}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Peers[0]
	if p.RekeyTime != 2*time.Hour || p.ReauthTime != 12*time.Hour || p.OverTime != 5*time.Minute || p.RandTime >= 0 || p.DPDDelay != 10*time.Second ||
		p.DPDTimeout != 30*time.Second || p.DPDAction != ike.ActionTrap || p.CloseAction != ike.ActionStart || p.Unique != ike.UniqueReplace {
		t.Errorf("peer = %+v", p)
	}
	net, def := p.Children[0], p.Children[1]
	if net.RekeyTime >= 0 || net.LifeTime != 3*time.Hour || net.RandTime >= 0 || net.RekeyBytes != 1000 || net.LifeBytes != 1100 ||
		net.RekeyPackets != 50 || net.LifePackets != 100 {
		t.Errorf("child net = %+v", net)
	}
	if def.RekeyTime != time.Hour || def.LifeTime != 66*time.Minute || def.RandTime != 6*time.Minute || def.RekeyBytes != 0 || def.LifeBytes != 0 {
		t.Errorf("child def = %+v", def)
	}
}
