package ike

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/traffic"
)

// TestChildSAFormatRedactsKeys: no fmt verb, String, GoString or slog
// handler prints the keys of a ChildSA.
func TestChildSAFormatRedactsKeys(t *testing.T) {
	keyIn := bytes.Repeat([]byte{0xA5}, 36)
	keyOut := bytes.Repeat([]byte{0x5A}, 36)
	c := ChildSA{Peer: "p", Child: "c", SPIIn: 0x1234, SPIOut: 0x5678, KeyIn: keyIn, KeyOut: keyOut,
		LocalTS: traffic.MustParseSet("10.1.0.0/16")}
	leaks := func(s string) bool {
		for _, k := range [][]byte{keyIn, keyOut} {
			for _, enc := range []string{hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)), fmt.Sprint(k), string(k), fmt.Sprintf("%#v", k), strings.Repeat(fmt.Sprintf(" %d", k[0]), 3), strings.Repeat(fmt.Sprintf("%x", k[0]), 3)} {
				if strings.Contains(s, enc) {
					return true
				}
			}
		}
		return false
	}
	var outs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outs = append(outs, fmt.Sprintf(f, c), fmt.Sprintf(f, &c))
	}
	outs = append(outs, c.String(), c.GoString(), fmt.Sprint(c), fmt.Sprintf("%v", []ChildSA{c}))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("sa", "child", c, "ptr", &c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("sa", "child", c)
	outs = append(outs, buf.String())
	for _, s := range outs {
		if leaks(s) {
			t.Errorf("key material printed: %s", s)
		}
	}
	for _, s := range []string{fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), buf.String()} {
		if !strings.Contains(s, redactedText) || !strings.Contains(s, "5678") && !strings.Contains(s, "22136") {
			t.Errorf("want %s and the SPI in %s", redactedText, s)
		}
	}
	if !strings.HasPrefix(fmt.Sprintf("%#v", c), "ike.ChildSA{Peer:\"p\"") {
		t.Errorf("%%#v = %#v", c)
	}
}

// keepingInstaller keeps the ChildSA values it is given without copying,
// to see what the engine leaves in them.
type keepingInstaller struct{ fakeInstaller }

func (k *keepingInstaller) InstallSA(c ChildSA) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.installed = append(k.installed, c)
	return nil
}

// TestChildKeysZeroedAfterInstall: the engine zeroes the keys it handed to
// InstallSA once it returns, and its sessions keep no copy.
func TestChildKeysZeroedAfterInstall(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	for _, nd := range []*node{p.a, p.b} {
		nd.m.inst = &keepingInstaller{}
	}
	p.establish(t)
	for _, nd := range []*node{p.a, p.b} {
		ki := nd.m.inst.(*keepingInstaller)
		if len(ki.installed) != 1 {
			t.Fatalf("installed %d CHILD SAs", len(ki.installed))
		}
		c := ki.installed[0]
		if len(c.KeyIn) == 0 || len(c.KeyOut) == 0 {
			t.Fatalf("no keys handed to InstallSA: %d, %d bytes", len(c.KeyIn), len(c.KeyOut))
		}
		if !allZero(c.KeyIn) || !allZero(c.KeyOut) {
			t.Errorf("keys not zeroed after InstallSA returned")
		}
		nd.m.mu.Lock()
		for a := range nd.m.actors {
			for _, ch := range a.s.children {
				if ch.sa.KeyIn != nil || ch.sa.KeyOut != nil {
					t.Errorf("session keeps CHILD keys of %08x", ch.sa.SPIIn)
				}
			}
		}
		nd.m.mu.Unlock()
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
