package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// The keys of the example: 32 bytes of AES-256 key then a 4-byte salt
// (RFC 4106, Section 8.1), 36 bytes in all, as ip xfrm takes them.
const (
	keyOutHex = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" + "a0a1a2a3"
	keyInHex  = "0xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeffe0e1e2e3e4e5e6e7e8e9eaebecedeeef" + "b0b1b2b3"
)

// example is the configuration of INTERFACES.md with real keys.
const example = `daemon:
  socket: /run/goipsec/ipsecd.sock
  tun: {name: ipsec0, mtu: 1400}
  log: {level: info, format: text}          # or json
  metrics: {listen: 127.0.0.1:9909}         # optional Prometheus endpoint

connections:
  site-b:
    version: 2
    local_addrs: [192.0.2.1]
    remote_addrs: [198.51.100.2]             # or %any on a responder
    proposals: [aes256gcm16-prfsha256-x25519]
    encap: false                              # true forces UDP encapsulation (4500)
    dpd_delay: 30s
    rekey_time: 4h
    local:  {auth: psk, id: gw-a.example}     # auth: psk | pubkey
    remote: {auth: psk, id: gw-b.example}     # pubkey: certs/cacerts keys as in swanctl
    children:
      net:
        mode: tunnel                          # tunnel | transport
        local_ts: [10.1.0.0/16]
        remote_ts: [10.2.0.0/16, 10.3.0.0/16[tcp/443]]
        esp_proposals: [aes256gcm16]          # or ah_proposals: [sha256] for AH
        start_action: trap                    # none | trap | start
        rekey_time: 1h
        replay_window: 1024

policies:                                     # SPD rules that are not connections
  - {name: dns, remote_ts: [10.2.0.53/32[udp/53]], action: bypass}  # bypass | discard

manual_sas:                                   # static keys, no IKE (like ip xfrm / setkey)
  - name: lab
    protocol: esp                             # esp | ah
    mode: tunnel
    local_addr: 192.0.2.1
    remote_addr: 198.51.100.2
    encap: udp                                # udp (port 4500) | none (IP protocol 50/51)
    spi_out: 0x00001001
    spi_in: 0x00002001
    algorithm: aes256gcm16                    # same keywords as esp_proposals / ah_proposals
    key_out: ` + keyOutHex + `
    key_in: ` + keyInHex + `
    local_ts: [10.1.0.0/16]
    remote_ts: [10.2.0.0/16]

secrets:
  ike:
    - {ids: [gw-a.example, gw-b.example], secret: "correct horse battery staple"}   # or secret_file
`

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(strings.TrimPrefix(s, "0x"), "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseExample(t *testing.T) {
	c, err := Parse("ipsecd.yaml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon != (Daemon{
		Socket: "/run/goipsec/ipsecd.sock", TUN: TUN{Name: "ipsec0", MTU: 1400},
		Log: Log{Level: slog.LevelInfo, Format: "text"}, MetricsListen: "127.0.0.1:9909", StateDir: DefaultStateDir,
	}) {
		t.Errorf("daemon = %+v", c.Daemon)
	}

	if len(c.Connections) != 1 {
		t.Fatalf("%d connections", len(c.Connections))
	}
	conn := c.Connections[0]
	if conn.Name != "site-b" || conn.Version != 2 || conn.Encap || conn.DPDDelay != 30*time.Second || conn.RekeyTime != 4*time.Hour {
		t.Errorf("connection = %+v", conn)
	}
	if fmt.Sprint(conn.LocalAddrs, conn.RemoteAddrs) != "[192.0.2.1] [198.51.100.2]" {
		t.Errorf("addrs = %v %v", conn.LocalAddrs, conn.RemoteAddrs)
	}
	if len(conn.Proposals) != 1 {
		t.Fatalf("proposals = %+v", conn.Proposals)
	}
	p := conn.Proposals[0]
	if p.Text != "aes256gcm16-prfsha256-x25519" || p.Parsed.String() != "aes256gcm16-prfsha256-x25519" ||
		len(p.Parsed.KE) != 1 || p.Parsed.KE[0] != iana.KECurve25519 {
		t.Errorf("IKE proposal = %+v", p)
	}
	if conn.Local.Method != AuthPSK || conn.Local.ID != "gw-a.example" || conn.Remote.Method != AuthPSK || conn.Remote.ID != "gw-b.example" {
		t.Errorf("auth = %+v %+v", conn.Local, conn.Remote)
	}
	if len(conn.Children) != 1 {
		t.Fatalf("children = %+v", conn.Children)
	}
	ch := conn.Children[0]
	if ch.Name != "net" || ch.Mode != sa.Tunnel || ch.Protocol != sa.ESP || ch.StartAction != StartTrap ||
		ch.RekeyTime != time.Hour || ch.ReplayWindow != 1024 {
		t.Errorf("child = %+v", ch)
	}
	if ch.LocalTS.String() != "10.1.0.0/16" || ch.RemoteTS.String() != "10.2.0.0/16, 10.3.0.0/16[tcp/443]" {
		t.Errorf("child TS = %s | %s", ch.LocalTS, ch.RemoteTS)
	}
	if len(ch.Proposals) != 1 || fmt.Sprint(ch.Proposals[0].Parsed.Encr) != "[aes256gcm16]" || ch.Proposals[0].Parsed.Encr[0].ID != iana.EncrAESGCM16 ||
		len(ch.Proposals[0].Parsed.KE) != 0 || fmt.Sprint(ch.Proposals[0].Parsed.ESN) != "[false]" {
		t.Errorf("ESP proposals = %+v", ch.Proposals)
	}

	if len(c.Policies) != 1 || c.Policies[0].Name != "dns" || c.Policies[0].Action != PolicyBypass ||
		len(c.Policies[0].LocalTS) != 0 || c.Policies[0].RemoteTS.String() != "10.2.0.53/32[udp/53]" {
		t.Errorf("policies = %+v", c.Policies)
	}

	if len(c.ManualSAs) != 1 {
		t.Fatalf("manual SAs = %+v", c.ManualSAs)
	}
	m := c.ManualSAs[0]
	if m.Name != "lab" || m.Protocol != sa.ESP || m.Mode != sa.Tunnel || !m.UDPEncap ||
		m.LocalAddr != netip.MustParseAddr("192.0.2.1") || m.RemoteAddr != netip.MustParseAddr("198.51.100.2") ||
		m.SPIOut != 0x1001 || m.SPIIn != 0x2001 || m.Suite.Name != "aes256gcm16" || m.ESN || m.ReplayWindow != 1024 ||
		m.LocalTS.String() != "10.1.0.0/16" || m.RemoteTS.String() != "10.2.0.0/16" || m.Limits != (sa.Limits{}) {
		t.Errorf("manual SA = %+v", m)
	}
	if !bytes.Equal(m.KeyOut.Bytes(), mustHex(t, keyOutHex)) || !bytes.Equal(m.KeyIn.Bytes(), mustHex(t, keyInHex)) || m.KeyOut.Len() != 36 {
		t.Error("manual SA keys differ from the file")
	}

	if len(c.Secrets.IKE) != 1 || fmt.Sprint(c.Secrets.IKE[0].IDs) != "[gw-a.example gw-b.example]" ||
		string(c.Secrets.IKE[0].Secret.Bytes()) != "correct horse battery staple" {
		t.Errorf("secrets = %+v", c.Secrets)
	}
}

// TestRedacted checks that no printing of a Config shows key material.
func TestRedacted(t *testing.T) {
	c, err := Parse("ipsecd.yaml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c),
		fmt.Sprintf("%x", c.ManualSAs[0].KeyOut), fmt.Sprintf("%X", c.ManualSAs[0].KeyIn), fmt.Sprintf("%q", c.Secrets),
		fmt.Sprint(c.ManualSAs), string(js),
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("config", "sa", c.ManualSAs[0], "key", c.ManualSAs[0].KeyIn)
	outputs = append(outputs, logBuf.String())
	secrets := []string{
		strings.TrimPrefix(keyOutHex, "0x")[:16], strings.TrimPrefix(keyInHex, "0x")[:16],
		"000102030405", "f0f1f2f3", "correct horse", "0 1 2 3 4 5", "[0 1 2 3", "\\x00\\x01",
		// base64 of the start of the keys, for JSON []byte encodings
		"AAECAwQFBgc", "8PHy8/T1",
	}
	for i, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %d shows key material %q: %s", i, s, out)
			}
		}
		if !strings.Contains(out, "redacted") { // JSON escapes < and >
			t.Errorf("output %d has no <redacted>: %.200s", i, out)
		}
	}
}

// TestErrors parses broken files and checks the file:line: key: prefix of
// one of the errors. Each input differs from a valid file in one place.
func TestErrors(t *testing.T) {
	// A valid manual SA to break, one line at a time (line numbers from 1).
	manual := func(lines ...string) string {
		base := []string{
			"manual_sas:",                  // 1
			"  - name: lab",                // 2
			"    protocol: esp",            // 3
			"    mode: tunnel",             // 4
			"    local_addr: 192.0.2.1",    // 5
			"    remote_addr: 192.0.2.2",   // 6
			"    spi_out: 0x1001",          // 7
			"    spi_in: 0x2001",           // 8
			"    algorithm: aes256gcm16",   // 9
			"    key_out: " + keyOutHex,    // 10
			"    key_in: " + keyInHex,      // 11
			"    local_ts: [10.1.0.0/16]",  // 12
			"    remote_ts: [10.2.0.0/16]", // 13
		}
		for _, l := range lines {
			// "N: text" replaces line N; "N-" deletes it; "+text" appends.
			switch {
			case strings.HasPrefix(l, "+"):
				base = append(base, l[1:])
			case strings.HasSuffix(l, "-"):
				var n int
				fmt.Sscanf(l, "%d-", &n)
				base[n-1] = "    # deleted"
			default:
				var n int
				fmt.Sscanf(l, "%d:", &n)
				base[n-1] = l[strings.Index(l, ":")+2:]
			}
		}
		return strings.Join(base, "\n") + "\n"
	}
	// A valid connection to break.
	conn := func(child string) string {
		return `connections:
  c:
    local: {auth: psk}
    remote: {auth: psk}
    children:
      x:
` + child + `
secrets: {ike: [{ids: [a, b], secret: s3cret}]}
`
	}
	tests := []struct {
		name, in, want string
	}{
		{"unknown top", "deamon: {}\n", "f.yaml:1: deamon: unknown key"},
		{"unknown daemon key", "daemon:\n  sokcet: /x\n", "f.yaml:2: daemon.sokcet: unknown key"},
		{"relative socket", "daemon:\n  socket: x.sock\n", "f.yaml:2: daemon.socket: must be an absolute path"},
		{"tun name", "daemon:\n  tun: {name: this-name-is-too-long}\n", "f.yaml:2: daemon.tun.name: invalid interface name"},
		{"mtu", "daemon:\n  tun:\n    mtu: 100\n", "f.yaml:3: daemon.tun.mtu: must be between 576 and 65535"},
		{"mtu text", "daemon:\n  tun:\n    mtu: big\n", "f.yaml:3: daemon.tun.mtu: \"big\": not a decimal"},
		{"log level", "daemon:\n  log: {level: loud}\n", "f.yaml:2: daemon.log.level: must be debug, info, warn or error"},
		{"log format", "daemon:\n  log:\n    format: xml\n", "f.yaml:3: daemon.log.format: must be text or json"},
		{"metrics", "daemon:\n  metrics: {listen: localhost}\n", "f.yaml:2: daemon.metrics.listen: must be host:port"},
		{"on_stop", "daemon:\n  log: {level: info}\n  on_stop: wipe\n", "f.yaml:3: daemon.on_stop: must be keep or clear, not \"wipe\""},
		{"daemon list", "daemon: [a]\n", "f.yaml:1: daemon: must be a mapping"},
		{"duplicate", "daemon: {}\ndaemon: {}\n", "f.yaml:2: daemon: duplicate key (first at line 1)"},
		{"syntax", "daemon:\n  socket: [\n", "f.yaml:2: (syntax): YAML:"},
		{"syntax tab", "daemon:\n\tsocket: /x\n", "f.yaml:2: (syntax): YAML: found character that cannot start any token"},
		{"syntax multi-line selectors", "policies:\n  - name: p\n    local_ts: [10.0.0.0/8,\n       10.1.0.0/16[tcp/80]]\n", "f.yaml:2: (syntax): YAML: did not find expected ',' or ']' (quote selectors with [protocol/port]"},
		{"two documents", "daemon: {}\n---\ndaemon: {}\n", "f.yaml:2: (document): only one YAML document"},
		{"merge key", "x: &x {socket: /a}\ndaemon:\n  <<: *x\n", "f.yaml:1: x: unknown key"},

		{"ikev1", "connections:\n  c:\n    version: 1\n", "f.yaml:3: connections.c.version: IKEv1 is not supported"},
		{"bad addr", "connections:\n  c:\n    local_addrs: [192.0.2.1, 'bad addr']\n", "f.yaml:3: connections.c.local_addrs[1]: \"bad addr\" is not"},
		{"ike proposal", "connections:\n  c:\n    proposals: [aes256gcm16-prfsha256-x25519, aes256gcm16-x25519]\n", "f.yaml:3: connections.c.proposals[1]: IKE proposal \"aes256gcm16-x25519\" has no PRF; add one, as in \"aes256gcm16-prfsha256-x25519\""},
		{"ike proposal keyword", "connections:\n  c:\n    proposals:\n      - aes128-sha256-modp1024\n", "f.yaml:4: connections.c.proposals[0]: weak algorithm refused (RFC 8247): IKE proposal \"aes128-sha256-modp1024\": MODP-1024, group 2 (RFC 8247, Section 2.4: SHOULD NOT) is refused"},
		{"ike proposal additional KE", "connections:\n  c:\n    proposals: [aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke2_none, aes256gcm16-prfsha256-x25519-ke1_mlkem9]\n", "f.yaml:3: connections.c.proposals[1]: unknown algorithm \"mlkem9\": not a key exchange keyword (in \"ke1_mlkem9\" of proposal \"aes256gcm16-prfsha256-x25519-ke1_mlkem9\")"},
		{"ike proposal no KE", "connections:\n  c:\n    proposals: aes128-sha256\n", "f.yaml:3: connections.c.proposals[0]: IKE proposal \"aes128-sha256\" has no key exchange method, as in"},
		{"dpd", "connections:\n  c:\n    dpd_delay: soon\n", "f.yaml:3: connections.c.dpd_delay: \"soon\": invalid duration"},
		{"encap", "connections:\n  c:\n    encap: maybe\n", "f.yaml:3: connections.c.encap: must be true or false"},
		{"auth", "connections:\n  c:\n    local: {auth: eap}\n", "f.yaml:3: connections.c.local.auth: must be psk or pubkey"},
		{"no children", "connections:\n  c:\n    version: 2\n", "f.yaml:2: connections.c.children: required"},
		{"bad conn name", "connections:\n  'a b': {}\n", "f.yaml:2: connections.\"a b\": invalid name"},
		{"pubkey no certs", "connections:\n  c:\n    local:\n      auth: pubkey\n", "f.yaml:3: connections.c.local.certs: required for auth: pubkey"},
		{"psk with certs", "connections:\n  c:\n    remote:\n      auth: psk\n      cacerts: [ca.pem]\n", "f.yaml:5: connections.c.remote.cacerts: certs and cacerts are for auth: pubkey"},
		{"psk no secret", "connections:\n  c:\n    local:\n      auth: psk\n      id: a\n    remote: {auth: psk, id: b}\n    children: {x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16}}\n",
			"f.yaml:4: connections.c.local.auth: psk needs a secret"},
		{"child unknown key", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposal: [aes256gcm16]"),
			"f.yaml:9: connections.c.children.x.esp_proposal: unknown key"},
		{"esp proposal", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposals: [aes256gcm16, aes128-md5]"),
			"f.yaml:9: connections.c.children.x.esp_proposals[1]: weak algorithm refused (RFC 8247): ESP proposal \"aes128-md5\": HMAC-MD5-96"},
		{"esp proposal extra", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposals:\n          - aes256gcm16-x25519-sha256"),
			"f.yaml:10: connections.c.children.x.esp_proposals[0]: ESP suite \"aes256gcm16-sha256\": aes256gcm16 is a combined-mode algorithm and takes no integrity algorithm (RFC 7296, Section 3.3) (in ESP proposal \"aes256gcm16-x25519-sha256\")"},
		{"esp gcm with integ", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposals: [aes256gcm16-sha256]"),
			"f.yaml:9: connections.c.children.x.esp_proposals[0]: ESP suite \"aes256gcm16-sha256\": aes256gcm16 is a combined-mode algorithm"},
		{"esp additional KE without KE", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposals: [aes256gcm16-x25519-ke1_mlkem768, aes256gcm16-ke1_mlkem768]"),
			"f.yaml:9: connections.c.children.x.esp_proposals[1]: ESP proposal \"aes256gcm16-ke1_mlkem768\": additional key exchanges (keN_) need a key exchange method for PFS, as in \"aes256gcm16-x25519-ke1_mlkem768\""},
		{"esp additional KE unknown", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposals: [aes256gcm16-x25519-ke1_mlkem9]"),
			"f.yaml:9: connections.c.children.x.esp_proposals[0]: unknown algorithm \"mlkem9\": not a key exchange keyword (in \"ke1_mlkem9\" of proposal \"aes256gcm16-x25519-ke1_mlkem9\")"},
		{"esp and ah", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        esp_proposals: [aes256gcm16]\n        ah_proposals: [sha256]"),
			"f.yaml:10: connections.c.children.x.ah_proposals: a child has esp_proposals or ah_proposals, not both"},
		{"child ts", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16, dynamic]"),
			"f.yaml:8: connections.c.children.x.remote_ts[1]: \"dynamic\" is resolved by IKE and is not supported here yet"},
		{"child ts missing", conn("        local_ts: [10.1.0.0/16]"),
			"f.yaml:6: connections.c.children.x.remote_ts: required"},
		{"start action", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        start_action: route"),
			"f.yaml:9: connections.c.children.x.start_action: must be none, trap or start"},
		{"replay window", conn("        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]\n        replay_window: 16"),
			"f.yaml:9: connections.c.children.x.replay_window: must be between 32 and 1048576"},
		{"child ts empty", conn("        local_ts: []\n        remote_ts: [10.2.0.0/16]"),
			"f.yaml:7: connections.c.children.x.local_ts: must list at least one traffic selector"},
		{"child mode", conn("        mode: beet\n        local_ts: [10.1.0.0/16]\n        remote_ts: [10.2.0.0/16]"),
			"f.yaml:7: connections.c.children.x.mode: must be tunnel or transport"},

		{"policy action", "policies:\n  - {name: p, action: allow}\n", "f.yaml:2: policies[0].action: must be bypass or discard"},
		{"policy no action", "policies:\n  - name: p\n  - name: q\n", "f.yaml:2: policies[0].action: required"},
		{"policy no name", "policies:\n  - {action: bypass}\n", "f.yaml:2: policies[0].name: required"},
		{"policy ts", "policies:\n  - name: p\n    action: bypass\n    local_ts: [10.0.0.0/8[tcp/http]]\n", "f.yaml:4: policies[0].local_ts[0]: selector \"10.0.0.0/8[tcp/http]\": invalid port"},
		{"policy dup", "policies:\n  - {name: p, action: bypass}\n  - name: p\n    action: discard\n", "f.yaml:3: policies[1].name: name \"p\" is already used by policies[0]"},
		{"policies map", "policies:\n  p: {}\n", "f.yaml:2: policies: must be a list"},

		{"manual unknown key", manual("+    spi: 0x1000"), "f.yaml:14: manual_sas[0].spi: unknown key"},
		{"manual spi reserved", manual("7:     spi_out: 255"), "f.yaml:7: manual_sas[0].spi_out: SPI 255 is reserved"},
		{"manual spi zero", manual("8:     spi_in: 0"), "f.yaml:8: manual_sas[0].spi_in: SPI 0 is reserved"},
		{"manual spi big", manual("8:     spi_in: 0x100000000"), "f.yaml:8: manual_sas[0].spi_in: \"0x100000000\": too large"},
		{"manual spi octal", manual("8:     spi_in: 0o7777"), "f.yaml:8: manual_sas[0].spi_in: \"0o7777\": not a decimal"},
		{"manual algorithm", manual("9:     algorithm: aes256"), "f.yaml:9: manual_sas[0].algorithm: \"aes256\": ESP suite"},
		{"manual algorithm unknown", manual("9:     algorithm: rot13"), "f.yaml:9: manual_sas[0].algorithm: \"rot13\": unknown algorithm"},
		{"manual key short", manual("10:     key_out: 0x0011"), "f.yaml:10: manual_sas[0].key_out: must be 36 bytes (72 hex digits) for aes256gcm16, not 2 bytes"},
		{"manual key not hex", manual("11:     key_in: 0xzz"), "f.yaml:11: manual_sas[0].key_in: must be hexadecimal"},
		{"manual key no 0x", manual("11:     key_in: " + strings.TrimPrefix(keyInHex, "0x")), "f.yaml:11: manual_sas[0].key_in: must be hexadecimal starting with 0x"},
		{"manual key missing", manual("11-"), "f.yaml:2: manual_sas[0].key_in: required"},
		{"manual equal keys", manual("11:     key_in: " + keyOutHex), "f.yaml:11: manual_sas[0].key_in: equal to key_out: the same key in both directions reuses nonces"},
		{"state_dir relative", "daemon:\n  state_dir: var/lib/goipsec\n", "f.yaml:2: daemon.state_dir: must be an absolute path"},
		{"manual ah keys", manual("3:     protocol: ah", "9:     algorithm: sha256", "+    encap: none"),
			"f.yaml:10: manual_sas[0].key_out: must be 32 bytes (64 hex digits) for sha256, not 36 bytes"},
		{"manual ah udp", manual("3:     protocol: ah", "9:     algorithm: sha256", "+    encap: udp"), "f.yaml:14: manual_sas[0].encap: AH cannot be UDP-encapsulated"},
		{"manual encap", manual("+    encap: tcp"), "f.yaml:14: manual_sas[0].encap: must be udp or none"},
		{"manual addr", manual("5:     local_addr: 192.0.2.300"), "f.yaml:5: manual_sas[0].local_addr: \"192.0.2.300\" is not a unicast IP address"},
		{"manual family", manual("6:     remote_addr: 2001:db8::1"), "f.yaml:6: manual_sas[0].remote_addr: local_addr and remote_addr must be of the same address family"},
		{"manual tunnel ts", manual("13-"), "f.yaml:2: manual_sas[0].remote_ts: required in tunnel mode"},
		{"manual transport ts", manual("4:     mode: transport"), "f.yaml:13: manual_sas[0].remote_ts: in transport mode the selectors must be the SA's own address"},
		{"manual empty ts", manual("12:     local_ts: []"), "f.yaml:12: manual_sas[0].local_ts: must list at least one"},
		{"manual replay", manual("+    replay_window: 2000000"), "f.yaml:14: manual_sas[0].replay_window: must be between 32 and 1048576"},
		{"manual esn", manual("+    esn: 1"), "f.yaml:14: manual_sas[0].esn: must be true or false"},
		{"manual lifetime", manual("+    lifetime: {soft: {packets: 10}, hard: {packets: 5}}"), "f.yaml:14: manual_sas[0].lifetime.soft.packets: soft limit is larger"},
		{"manual lifetime key", manual("+    lifetime: {soft: {minutes: 10}}"), "f.yaml:14: manual_sas[0].lifetime.soft.minutes: unknown key"},
		{"manual dup spi", manual("+  - {name: lab2, local_addr: 192.0.2.1, remote_addr: 192.0.2.2, mode: transport, spi_out: 0x3001, spi_in: 0x2001, algorithm: aes256gcm16, key_out: " + keyOutHex + ", key_in: " + keyInHex + "}"),
			"f.yaml:14: manual_sas[1].spi_in: SPI 0x00002001 is already the spi_in of manual_sas[0]"},
		{"manual dup name", "policies: [{name: lab, action: discard}]\n" + manual(), "f.yaml:3: manual_sas[0].name: name \"lab\" is already used by policies[0]"},
		{"manual empty", "manual_sas:\n  -\n", "f.yaml:2: manual_sas[0]: empty manual SA"},

		{"secret missing", "secrets:\n  ike:\n    - ids: [a]\n", "f.yaml:3: secrets.ike[0].secret: required"},
		{"secret both", "secrets:\n  ike:\n    - secret: x\n      secret_file: /nonexistent\n", "f.yaml:4: secrets.ike[0].secret_file:"},
		{"secret hex", "secrets:\n  ike:\n    - secret: 0xnothex\n", "f.yaml:3: secrets.ike[0].secret: invalid hex after 0x"},
		{"secret file missing", "secrets:\n  ike:\n    - secret_file: /nonexistent/psk\n", "f.yaml:3: secrets.ike[0].secret_file: cannot read /nonexistent/psk"},
		{"secret unknown", "secrets:\n  xauth: []\n", "f.yaml:2: secrets.xauth: unknown key"},
		{"secret without ids", "secrets:\n  ike:\n    - secret: x\n", "f.yaml:3: secrets.ike[0].ids: required"},
	}
	for _, tt := range tests {
		_, err := Parse("f.yaml", []byte(tt.in))
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: error %T is not a *config.Error", tt.name, err)
		}
		found := false
		for _, line := range strings.Split(err.Error(), "\n") {
			found = found || strings.HasPrefix(line, tt.want)
		}
		if !found {
			t.Errorf("%s:\n got %v\nwant %s...", tt.name, err, tt.want)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "f.yaml:") || strings.Count(line, ": ") < 2 {
				t.Errorf("%s: error line %q is not file:line: key: reason", tt.name, line)
			}
			for _, k := range []string{"0001020304", "f0f1f2f3", "s3cret"} {
				if strings.Contains(line, k) {
					t.Errorf("%s: error shows key material: %s", tt.name, line)
				}
			}
		}
	}
}

func TestMultipleErrors(t *testing.T) {
	in := "daemon:\n  tun: {mtu: 1}\n  log: {level: x}\npolicies: [{name: p}]\n"
	_, err := Parse("f.yaml", []byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"f.yaml:2: daemon.tun.mtu:", "f.yaml:3: daemon.log.level:", "f.yaml:4: policies[0].action:"}
	if len(lines) != len(want) {
		t.Fatalf("errors:\n%v", err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 2 {
		t.Errorf("errors.As found %+v", ce)
	}
}

// TestDaemonOnStop checks daemon.on_stop: keep by default, clear when asked.
func TestDaemonOnStop(t *testing.T) {
	for in, want := range map[string]OnStop{"": OnStopKeep, "daemon: {on_stop: keep}\n": OnStopKeep, "daemon: {on_stop: clear}\n": OnStopClear} {
		c, err := Parse("f.yaml", []byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if c.Daemon.OnStop != want {
			t.Errorf("%q: on_stop = %v, want %v", in, c.Daemon.OnStop, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "daemon:\n", "{}\n"} {
		c, err := Parse("f.yaml", []byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if c.Daemon.Socket != DefaultSocket || c.Daemon.StateDir != DefaultStateDir || c.Daemon.TUN != (TUN{"ipsec0", 1400}) || c.Daemon.Log != (Log{Level: slog.LevelInfo, Format: "text"}) || c.Daemon.MetricsListen != "" {
			t.Errorf("%q: daemon = %+v", in, c.Daemon)
		}
	}
	c, err := Parse("f.yaml", []byte(`
connections:
  c:
    remote_addrs: "%any, gw.example.org"
    local: {auth: pubkey, certs: gw.pem}
    remote: {auth: pubkey, cacerts: [/etc/ca.pem]}
    children:
      x: {local_ts: "10.0.0.0/8", remote_ts: "0.0.0.0/0[icmp/8], ::/0"}
      y:
        mode: transport
        local_ts: [192.0.2.1]
        remote_ts: [192.0.2.2]
        ah_proposals: [sha256, sha384-ecp384-esn, default]
manual_sas:
  - {name: t, mode: transport, protocol: ah, local_addr: 2001:db8::1, remote_addr: 2001:db8::2,
     spi_out: 4096, spi_in: 0X1001, algorithm: sha256, key_out: 0x`+strings.Repeat("ab", 32)+`, key_in: 0x`+strings.Repeat("cd", 32)+`,
     esn: yes, lifetime: {soft: {bytes: 1000000, time: 1d}, hard: {bytes: 2000000, packets: 0x10000, time: 36h}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Connections[0]
	if conn.Version != 2 || conn.RekeyTime != DefaultIKERekeyTime || len(conn.Proposals) != 1 || !conn.Proposals[0].Default {
		t.Errorf("connection defaults = %+v", conn)
	}
	if fmt.Sprint(conn.RemoteAddrs) != "[%any gw.example.org]" || len(conn.LocalAddrs) != 0 {
		t.Errorf("addrs = %v", conn.RemoteAddrs)
	}
	if conn.Local.Certs[0] != "gw.pem" || conn.Remote.CACerts[0] != "/etc/ca.pem" {
		t.Errorf("cert paths = %v %v", conn.Local.Certs, conn.Remote.CACerts)
	}
	x, y := conn.Children[0], conn.Children[1]
	if x.Mode != sa.Tunnel || x.Protocol != sa.ESP || len(x.Proposals) != 1 || !x.Proposals[0].Default || x.StartAction != StartNone ||
		x.RekeyTime != DefaultChildRekeyTime || x.ReplayWindow != DefaultReplayWindow || x.RemoteTS.String() != "0.0.0.0/0[icmp/8], ::/0" {
		t.Errorf("child defaults = %+v", x)
	}
	if y.Mode != sa.Transport || y.Protocol != sa.AH || len(y.Proposals) != 3 {
		t.Fatalf("child y = %+v", y)
	}
	if p := y.Proposals[1].Parsed; p.String() != "sha384-ecp384-esn" || len(p.Encr) != 0 || len(p.KE) != 1 || p.KE[0] != iana.KEECP384 || fmt.Sprint(p.ESN) != "[true]" {
		t.Errorf("AH proposal = %+v", p)
	}
	m := c.ManualSAs[0]
	if m.UDPEncap || m.SPIOut != 4096 || m.SPIIn != 0x1001 || !m.ESN || m.Protocol != sa.AH || m.Suite.Name != "sha256" {
		t.Errorf("manual SA = %+v", m)
	}
	if m.LocalTS.String() != "2001:db8::1/128" || m.RemoteTS.String() != "2001:db8::2/128" {
		t.Errorf("transport TS defaults = %s %s", m.LocalTS, m.RemoteTS)
	}
	want := sa.Limits{
		Soft: sa.Lifetime{Bytes: 1000000, Time: 24 * time.Hour},
		Hard: sa.Lifetime{Bytes: 2000000, Packets: 65536, Time: 36 * time.Hour},
	}
	if m.Limits != want {
		t.Errorf("limits = %+v", m.Limits)
	}
}

func TestRelativeCertPaths(t *testing.T) {
	c, err := Parse("/etc/goipsec/ipsecd.yaml", []byte(`
connections:
  c:
    local: {certs: [gw.pem]}
    remote: {cacerts: [ca/root.pem]}
    children: {x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Connections[0].Local.Certs[0] != "/etc/goipsec/gw.pem" || c.Connections[0].Remote.CACerts[0] != "/etc/goipsec/ca/root.pem" {
		t.Errorf("paths = %v %v", c.Connections[0].Local.Certs, c.Connections[0].Remote.CACerts)
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "psk")
	if err := os.WriteFile(good, []byte("0sc2VjcmV0IGtleQ==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "psk-open")
	if err := os.WriteFile(open, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o640); err != nil { // no umask on Chmod
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ipsecd.yaml")
	in := "secrets:\n  ike:\n    - {ids: [a], secret_file: psk}\n"
	if err := os.WriteFile(cfg, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Secrets.IKE[0]; string(s.Secret.Bytes()) != "secret key" || s.File != good {
		t.Errorf("secret from file = %q (%s)", s.Secret.Bytes(), s.File)
	}

	in = "secrets:\n  ike:\n    - {ids: [a], secret: x}\n    - ids: [b]\n      secret_file: psk-open\n"
	_, err = Parse(cfg, []byte(in))
	want := cfg + ":5: secrets.ike[1].secret_file: " + open + " is accessible by group or others (mode 0640)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"gw.key": 0o600, "open.key": 0o644} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "ipsecd.yaml")
	conn := func(local, remote string) string {
		return "connections:\n  c:\n    local: " + local + "\n    remote: " + remote +
			"\n    children: {x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16}}\n"
	}
	c, err := Parse(cfg, []byte(conn("{auth: pubkey, certs: [gw.pem], key: gw.key}", "{auth: pubkey, cacerts: [ca.pem]}")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Connections[0].Local.Key; got != filepath.Join(dir, "gw.key") {
		t.Errorf("key = %q", got)
	}
	for _, tc := range []struct{ local, remote, want string }{
		{"{auth: pubkey, certs: [gw.pem], key: open.key}", "{auth: pubkey, cacerts: [ca.pem]}",
			cfg + ":3: connections.c.local.key: " + filepath.Join(dir, "open.key") + " is accessible by group or others (mode 0644)"},
		{"{auth: pubkey, certs: [gw.pem], key: none.key}", "{auth: pubkey, cacerts: [ca.pem]}",
			cfg + ":3: connections.c.local.key: cannot read " + filepath.Join(dir, "none.key")},
		{"{auth: psk, key: gw.key}", "{auth: psk}", cfg + ":3: connections.c.local.key: the private key is for local auth: pubkey only"},
		{"{auth: psk}", "{auth: pubkey, cacerts: [ca.pem], key: gw.key}", cfg + ":4: connections.c.remote.key: the private key is for local auth: pubkey only"},
	} {
		_, err := Parse(cfg, []byte(conn(tc.local, tc.remote)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant %s", err, tc.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load("/nonexistent/ipsecd.yaml")
	var ce *Error
	if !errors.As(err, &ce) || err.Error() != "/nonexistent/ipsecd.yaml:0: (file): cannot read: no such file or directory" {
		t.Errorf("Load = %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second}, {"4h", 4 * time.Hour}, {"1d", 24 * time.Hour}, {"1.5d", 36 * time.Hour},
		{"30m", 30 * time.Minute}, {"1h30m", 90 * time.Minute}, {"3600", time.Hour}, {"0", 0},
	}
	for _, tt := range tests {
		if got, err := parseDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "-1h", "+4h", "1w", "d", "1e3d", "NaNd", "infd", "4000d", "1y"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) succeeded", in)
		}
	}
}

func TestSelectorsMatchTraffic(t *testing.T) {
	c, err := Parse("f.yaml", []byte("policies:\n  - {name: dns, remote_ts: [10.2.0.53/32[udp/53]], action: bypass}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := traffic.MustParseSet("10.2.0.53/32[udp/53]"); !c.Policies[0].RemoteTS.Equal(want) {
		t.Errorf("remote_ts = %v", c.Policies[0].RemoteTS)
	}
}

func TestAliasBudget(t *testing.T) {
	var b strings.Builder
	// Children that alias a large child: 300 x 1000 selectors once
	// expanded, more than maxNodes, refused rather than walked.
	b.WriteString("connections:\n  c:\n    local: {auth: psk}\n    remote: {auth: psk}\n    children:\n")
	b.WriteString("      c0: &c {local_ts: [" + strings.TrimSuffix(strings.Repeat("10.0.0.0/8,", 1000), ",") + "], remote_ts: [0.0.0.0/0]}\n")
	for i := 1; i < 300; i++ {
		fmt.Fprintf(&b, "      c%d: *c\n", i)
	}
	_, err := Parse("f.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("got %.300v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add("")
	f.Add("daemon: {tun: {mtu: 1500}}\n")
	f.Add("policies:\n  - {name: p, local_ts: '10.0.0.0/8[tcp/80-90]', action: discard}\n")
	f.Add("manual_sas:\n  - {name: t, mode: transport, protocol: ah, local_addr: ::1, remote_addr: ::2, spi_out: 256, spi_in: 257, algorithm: sha256, key_out: 0x00, key_in: 0x00}\n")
	f.Add("connections: {c: {proposals: 'aes128-sha256-x25519, aes256gcm16-prfsha384-ecp384', children: {x: {local_ts: 10.0.0.0/8, remote_ts: '::/0', esp_proposals: aes128-sha1-esn-noesn-modp3072}}}}\n")
	f.Add("a: &a [*a]\n")
	f.Add("x: &x {a: 1}\ndaemon:\n  <<: *x\n")
	f.Fuzz(func(t *testing.T, in string) {
		if strings.Contains(in, "secret_file") {
			return // keep the fuzzer away from the file system
		}
		c, err := Parse("f.yaml", []byte(in))
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml:") || strings.Count(line, ": ") < 2 {
					t.Fatalf("error line %q is not file:line: key: reason", line)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		_ = fmt.Sprintf("%+v", c)
	})
}

func TestQuoteFlowSelectors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"remote_ts: [10.2.0.0/16, 10.3.0.0/16[tcp/443]]\n", "remote_ts: [10.2.0.0/16, \"10.3.0.0/16[tcp/443]\"]\n"},
		{"  - {name: dns, remote_ts: [10.2.0.53/32[udp/53]], action: bypass}  # c\n", "  - {name: dns, remote_ts: [\"10.2.0.53/32[udp/53]\"], action: bypass}  # c\n"},
		{"x: {local_ts: [::/0[ipv6-icmp/128]], remote_ts: [0.0.0.0/0[icmp/8],1.2.3.4[udp]]}", "x: {local_ts: [\"::/0[ipv6-icmp/128]\"], remote_ts: [\"0.0.0.0/0[icmp/8]\",\"1.2.3.4[udp]\"]}"},
		// Unchanged: already quoted, other keys, lists that do not close, comments.
		{"remote_ts: [\"10.3.0.0/16[tcp/443]\"]\n", ""},
		{"proposals: [10.3.0.0/16[tcp/443]]\n", ""},
		{"remote_ts: [10.0.0.0/8,\n  10.3.0.0/16[tcp/443]]\n", ""},
		{"# remote_ts: [10.3.0.0/16[tcp/443] # ]\n", ""},
		{"secret: 'x remote_ts: [1.2.3.4[tcp]]'\n", ""},
		{"  - {name: \"p\", remote_ts: [1.2.3.4[tcp]]}\n", ""},
		{"my_remote_ts: [1.2.3.4[tcp]]\n", ""},
	}
	for _, tt := range tests {
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if got := string(quoteFlowSelectors([]byte(tt.in))); got != want {
			t.Errorf("quoteFlowSelectors(%q) =\n%q, want\n%q", tt.in, got, want)
		}
	}
}

func TestDaemonIKE(t *testing.T) {
	c, err := Parse("ike.yaml", []byte("daemon:\n  ike: {retransmit_timeout: 2s, retransmit_tries: 3, half_open_timeout: 10s, cookie_threshold: -1,\n    max_half_open: 200, max_half_open_per_source: 3, cookie_lifetime: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := IKETimers{RetransmitTimeout: 2 * time.Second, RetransmitTries: 3, HalfOpenTimeout: 10 * time.Second, CookieThreshold: -1,
		MaxHalfOpen: 200, MaxHalfOpenPerSource: 3, CookieLifetime: 30 * time.Second}
	if c.Daemon.IKE != want {
		t.Fatalf("daemon.ike = %+v, want %+v", c.Daemon.IKE, want)
	}
	_, err = Parse("ike.yaml", []byte("daemon:\n  ike:\n    retransmit_tries: 99\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "ike.yaml:3: daemon.ike.retransmit_tries:") {
		t.Fatalf("out of range: %v", err)
	}
	for _, tc := range []struct{ in, want string }{
		{"daemon:\n  ike:\n    max_half_open: 0\n", "ike.yaml:3: daemon.ike.max_half_open:"},
		{"daemon:\n  ike:\n\n    max_half_open_per_source: -2\n", "ike.yaml:4: daemon.ike.max_half_open_per_source:"},
		{"daemon:\n  ike:\n    cookie_lifetime: soon\n", "ike.yaml:3: daemon.ike.cookie_lifetime:"},
	} {
		if _, err := Parse("ike.yaml", []byte(tc.in)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %s...", tc.in, err, tc.want)
		}
	}
}

// TestChildProposalAddKE: child proposals take strongSwan's keN_<method>
// and keN_none keywords for the additional key exchanges of CHILD SAs made
// with CREATE_CHILD_SA (RFC 9370, Section 2.2.3). The IDs are IANA's
// "Transform Type 4" values: Curve25519 31, ML-KEM-768 36, 256-bit ECP 19.
func TestChildProposalAddKE(t *testing.T) {
	p, err := parseChildProposal("aes256gcm16-x25519-ke1_mlkem768-ke2_none-ke2_ecp256", false)
	if err != nil {
		t.Fatal(err)
	}
	if q := p.Parsed; len(q.KE) != 1 || q.KE[0] != 31 || len(q.AddKE[0]) != 1 || q.AddKE[0][0] != 36 ||
		len(q.AddKE[1]) != 2 || q.AddKE[1][0] != 0 || q.AddKE[1][1] != 19 || q.String() != "aes256gcm16-x25519-ke1_mlkem768-ke2_none-ke2_ecp256" {
		t.Errorf("%+v", p)
	}
	if p, err := parseChildProposal("sha256-ecp256-ke1_mlkem1024", true); err != nil || len(p.Parsed.AddKE[0]) != 1 || p.Parsed.AddKE[0][0] != 37 {
		t.Errorf("AH: %+v %v", p, err)
	}
}

// TestIdentityPatternCheck: identity patterns as strongSwan writes them
// pass, malformed ones are refused with file:line, so that ipsecd --check
// catches them.
func TestIdentityPatternCheck(t *testing.T) {
	conf := func(id string) string {
		return "connections:\n  c:\n    local: {auth: psk}\n    remote:\n      auth: psk\n      id: " + id + "\n" +
			"    children: {x: {local_ts: [10.1.0.0/16], remote_ts: [10.2.0.0/16]}}\nsecrets: {ike: [{ids: [a, gw.example.org], secret: s3cret}]}\n"
	}
	for _, id := range []string{`"*.example.org"`, `"*@example.org"`, `"@*.example.org"`, `"C=CH, O=Example, CN=*"`, `"%any"`, `gw.example.org`, `""`} {
		if _, err := Parse("id.yaml", []byte(conf(id))); err != nil {
			t.Errorf("id %s: %v", id, err)
		}
	}
	for _, id := range []string{`"gw.*.example.org"`, `"**.example.org"`, `"gw*"`, `"C=CH, CN=moon*"`, `"@#01*"`} {
		_, err := Parse("id.yaml", []byte(conf(id)))
		if err == nil || !strings.HasPrefix(err.Error(), "id.yaml:6: connections.c.remote.id:") {
			t.Errorf("id %s: error %v, want id.yaml:6: connections.c.remote.id: ...", id, err)
		}
	}
	_, err := Parse("id.yaml", []byte(strings.Replace(conf("b"), "local: {auth: psk}", "local: {auth: psk, id: \"*.example.org\"}", 1)))
	if err == nil || !strings.HasPrefix(err.Error(), "id.yaml:3: connections.c.local.id:") {
		t.Errorf("a local pattern: %v", err)
	}
}

// TestConfigModeInlineSecrets checks that Load refuses a configuration file
// that holds secrets itself (a PSK, manual SA keys) while group or others
// may read it, naming the file, the first secret and the fix, and that it
// loads once the mode is 0600 or 0400, or when the secret is in a
// secret_file.
func TestConfigModeInlineSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // no umask on Chmod
			t.Fatal(err)
		}
		return p
	}
	psk := "daemon: {tun: {name: x}}\nsecrets:\n  ike:\n    - {ids: [a, b], secret: hunter2}\n"
	for _, tc := range []struct {
		name, text string
		key        string
		line       int
	}{
		{"psk", psk, "secrets.ike[0].secret", 4},
		{"manual", example, "manual_sas[0].key_out", 41},
	} {
		p := write(tc.name+".yaml", tc.text, 0o644)
		_, err := Load(p)
		want := fmt.Sprintf("%s:%d: %s: the file holds secrets", p, tc.line, tc.key)
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "(mode 0644): chmod 600 "+p) {
			t.Errorf("%s: Load = %v\nwant %s... (mode 0644): chmod 600 %s", tc.name, err, want, p)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error quotes the secret: %v", err)
		}
		for _, mode := range []os.FileMode{0o600, 0o400} {
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); err != nil {
				t.Errorf("%s: mode %04o: %v", tc.name, mode, err)
			}
		}
	}
	// Without inline secrets the mode is not the configuration's concern.
	write("psk", "hunter2\n", 0o600)
	p := write("file.yaml", "secrets:\n  ike:\n    - {ids: [a, b], secret_file: psk}\n", 0o644)
	if _, err := Load(p); err != nil {
		t.Errorf("secret_file, config mode 0644: %v", err)
	}
}

// TestManualSAEqualKeysRefused checks that a manual SA with the same key in
// both directions is refused at the key_in line: both directions would use
// the same nonces under one key.
func TestManualSAEqualKeysRefused(t *testing.T) {
	in := strings.Replace(example, "key_in: "+keyInHex, "key_in: "+keyOutHex, 1)
	_, err := Parse("f.yaml", []byte(in))
	want := "f.yaml:42: manual_sas[0].key_in: equal to key_out"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Parse = %v\nwant %s...", err, want)
	}
	if strings.Contains(err.Error(), strings.TrimPrefix(keyOutHex, "0x")[:16]) {
		t.Errorf("the error quotes the key: %v", err)
	}
}
