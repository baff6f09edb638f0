package config

import (
	"strings"
	"testing"
	"time"
)

// lifetimeConn returns a connection with the given extra lines for the
// connection (indented 4) and the child (indented 8). The connection
// starts on line 2, its child on line 8.
func lifetimeConn(conn, child string) string {
	return "connections:\n" + // 1
		"  c:\n" + // 2
		"    remote_addrs: [192.0.2.2]\n" + // 3
		"    local: {auth: psk, id: a}\n" + // 4
		"    remote: {auth: psk, id: b}\n" + // 5
		conn +
		"    children:\n" +
		"      x:\n" +
		"        local_ts: [10.1.0.0/16]\n" +
		"        remote_ts: [10.2.0.0/16]\n" +
		child +
		"secrets:\n  ike:\n    - {ids: [a, b], secret: 0x0102030405060708090a0b0c0d0e0f10}\n"
}

// TestLifetimeKeys: every lifetime, DPD and uniqueness key of a connection
// and a child is read with strongSwan's meaning.
func TestLifetimeKeys(t *testing.T) {
	c, err := Parse("l.yaml", []byte(lifetimeConn(
		"    rekey_time: 2h\n    over_time: 5m\n    rand_time: 3m\n    reauth_time: 0\n"+
			"    dpd_delay: 10s\n    dpd_timeout: 30s\n    dpd_action: restart\n    close_action: trap\n    unique: replace\n",
		"        rekey_time: 20m\n        life_time: 30m\n        rand_time: 1m\n"+
			"        rekey_bytes: 1000000\n        life_bytes: 2000000\n        rekey_packets: 1000\n        life_packets: 0x1000\n")))
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Connections[0]
	if conn.RekeyTime != 2*time.Hour || conn.OverTime != 5*time.Minute || conn.RandTime != 3*time.Minute || conn.ReauthTime != 0 ||
		conn.DPDDelay != 10*time.Second || conn.DPDTimeout != 30*time.Second || conn.DPDAction != ActionStart || conn.CloseAction != ActionTrap ||
		conn.Unique != UniqueReplace {
		t.Errorf("connection = %+v", conn)
	}
	ch := conn.Children[0]
	if ch.RekeyTime != 20*time.Minute || ch.LifeTime != 30*time.Minute || ch.RandTime != time.Minute ||
		ch.RekeyBytes != 1000000 || ch.LifeBytes != 2000000 || ch.RekeyPackets != 1000 || ch.LifePackets != 0x1000 {
		t.Errorf("child = %+v", ch)
	}
	for _, tc := range []struct {
		in   string
		want Action
	}{{"clear", ActionClear}, {"none", ActionClear}, {"trap", ActionTrap}, {"start", ActionStart}, {"restart", ActionStart}} {
		c, err := Parse("l.yaml", []byte(lifetimeConn("    dpd_action: "+tc.in+"\n    close_action: "+tc.in+"\n", "")))
		if err != nil {
			t.Fatal(err)
		}
		if c.Connections[0].DPDAction != tc.want || c.Connections[0].CloseAction != tc.want {
			t.Errorf("action %s = %v", tc.in, c.Connections[0].DPDAction)
		}
	}
	for _, u := range []Unique{UniqueNo, UniqueNever, UniqueKeep, UniqueReplace} {
		c, err := Parse("l.yaml", []byte(lifetimeConn("    unique: "+u.String()+"\n", "")))
		if err != nil || c.Connections[0].Unique != u {
			t.Errorf("unique %s: %v %v", u, c, err)
		}
	}
}

// TestLifetimeDefaults: strongSwan's defaults: over_time is 10% of
// rekey_time and rand_time is over_time; a child's life_* is its rekey_*
// plus 10%, and its rand_time is life_time - rekey_time. An explicit 0
// rand_time means no jitter.
func TestLifetimeDefaults(t *testing.T) {
	c, err := Parse("l.yaml", []byte(lifetimeConn("", "        rekey_bytes: 1000\n        rekey_packets: 100\n")))
	if err != nil {
		t.Fatal(err)
	}
	conn, ch := c.Connections[0], c.Connections[0].Children[0]
	if conn.OverTime != DefaultIKERekeyTime/10 || conn.RandTime != conn.OverTime || conn.DPDAction != ActionClear ||
		conn.CloseAction != ActionClear || conn.Unique != UniqueNo || conn.DPDTimeout != 0 {
		t.Errorf("connection defaults = %+v", conn)
	}
	if ch.LifeTime != 66*time.Minute || ch.RandTime != 6*time.Minute || ch.LifeBytes != 1100 || ch.LifePackets != 110 {
		t.Errorf("child defaults = %+v", ch)
	}
	c, err = Parse("l.yaml", []byte(lifetimeConn("    rekey_time: 1h\n    rand_time: 0\n", "        rand_time: 0s\n")))
	if err != nil {
		t.Fatal(err)
	}
	if conn, ch := c.Connections[0], c.Connections[0].Children[0]; conn.RandTime != 0 || conn.OverTime != 6*time.Minute || ch.RandTime != 0 {
		t.Errorf("explicit rand_time 0: %v %v", conn.RandTime, ch.RandTime)
	}
	c, err = Parse("l.yaml", []byte(lifetimeConn("    rekey_time: 0\n    reauth_time: 10h\n", "")))
	if err != nil {
		t.Fatal(err)
	}
	if conn := c.Connections[0]; conn.ReauthTime != 10*time.Hour || conn.OverTime != time.Hour || conn.RandTime != time.Hour {
		t.Errorf("reauth_time 10h: over_time %v, rand_time %v", conn.OverTime, conn.RandTime)
	}
	c, err = Parse("l.yaml", []byte(lifetimeConn("", "        rekey_time: 0\n")))
	if err != nil {
		t.Fatal(err)
	}
	if ch := c.Connections[0].Children[0]; ch.LifeTime != 0 || ch.RandTime != 0 {
		t.Errorf("rekey_time 0: life %v rand %v", ch.LifeTime, ch.RandTime)
	}
}

// TestLifetimeErrors: each wrong value is reported with file, line and key.
func TestLifetimeErrors(t *testing.T) {
	for _, tc := range []struct{ conn, child, want string }{
		{"    reauth_time: 1h\n    rand_time: 1h\n", "", "l.yaml:7: connections.c.rand_time: must be smaller than reauth_time"},
		{"    reauth_time: never\n", "", "l.yaml:6: connections.c.reauth_time:"},
		{"    rekey_time: 1h\n    rand_time: 2h\n", "", "l.yaml:7: connections.c.rand_time: must be smaller than rekey_time"},
		{"    over_time: soon\n", "", "l.yaml:6: connections.c.over_time:"},
		{"    dpd_action: hold\n", "", "l.yaml:6: connections.c.dpd_action:"},
		{"    close_action: restarts\n", "", "l.yaml:6: connections.c.close_action:"},
		{"    unique: yes\n", "", "l.yaml:6: connections.c.unique:"},
		{"    dpd_timeout: 30s\n", "", "l.yaml:6: connections.c.dpd_timeout: needs dpd_delay"},
		{"", "        rekey_time: 1h\n        life_time: 1h\n", "l.yaml:11: connections.c.children.x.life_time: must be larger than rekey_time"},
		{"", "        rand_time: 2h\n", "l.yaml:10: connections.c.children.x.rand_time: must be smaller than rekey_time"},
		{"", "        rekey_bytes: 100\n        life_bytes: 50\n", "l.yaml:11: connections.c.children.x.life_bytes: must be larger than rekey_bytes"},
		{"", "        rekey_packets: 100\n        life_packets: 100\n", "l.yaml:11: connections.c.children.x.life_packets: must be larger than rekey_packets"},
		{"", "        rekey_bytes: -1\n", "l.yaml:10: connections.c.children.x.rekey_bytes:"},
		{"", "        life_time: forever\n", "l.yaml:10: connections.c.children.x.life_time:"},
	} {
		_, err := Parse("l.yaml", []byte(lifetimeConn(tc.conn, tc.child)))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q %q: error %v, want %s...", tc.conn, tc.child, err, tc.want)
		}
	}
}
