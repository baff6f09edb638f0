package swantest

import (
	"fmt"
	"strings"
)

// PSKConn is one IKEv2 connection with one CHILD_SA authenticated by a
// pre-shared key on both sides, in swanctl.conf terms. String renders it
// with its secret as swanctl.conf text for Config.Conn or Charon.Load;
// several may be concatenated, each with a distinct Name.
type PSKConn struct {
	Name         string // connection name; the child is called Name too unless Child is set
	Child        string // child name; empty means Name
	Local        string // local_addrs
	Remote       string // remote_addrs
	LocalID      string // local identity (IDi on the initiator)
	RemoteID     string // remote identity
	PSK          string // the secret, "0x..." for hex
	Proposals    string // IKE proposals, such as "aes256gcm16-prfsha256-x25519"; empty means strongSwan's default
	ESPProposals string // ESP proposals, such as "aes256gcm16-x25519"; empty means strongSwan's default
	LocalTS      string // local_ts, comma separated
	RemoteTS     string // remote_ts, comma separated
	StartAction  string // none, trap or start; empty means none
	Extra        string // extra lines for the connection section; empty means none
	ChildExtra   string // extra lines for the child section; empty means none
}

// String renders the connection and its "secrets" section.
func (c PSKConn) String() string {
	child := c.Child
	if child == "" {
		child = c.Name
	}
	var b strings.Builder
	line := func(indent int, key, val string) {
		if val != "" {
			fmt.Fprintf(&b, "%s%s = %s\n", strings.Repeat("  ", indent), key, val)
		}
	}
	fmt.Fprintf(&b, "connections {\n  %s {\n", c.Name)
	line(2, "version", "2")
	line(2, "local_addrs", c.Local)
	line(2, "remote_addrs", c.Remote)
	line(2, "proposals", c.Proposals)
	if c.Extra != "" {
		b.WriteString(c.Extra + "\n")
	}
	fmt.Fprintf(&b, "    local {\n")
	line(3, "auth", "psk")
	line(3, "id", c.LocalID)
	fmt.Fprintf(&b, "    }\n    remote {\n")
	line(3, "auth", "psk")
	line(3, "id", c.RemoteID)
	fmt.Fprintf(&b, "    }\n    children {\n      %s {\n", child)
	line(4, "mode", "tunnel")
	line(4, "local_ts", c.LocalTS)
	line(4, "remote_ts", c.RemoteTS)
	line(4, "esp_proposals", c.ESPProposals)
	line(4, "start_action", c.StartAction)
	if c.ChildExtra != "" {
		b.WriteString(c.ChildExtra + "\n")
	}
	fmt.Fprintf(&b, "      }\n    }\n  }\n}\n")
	fmt.Fprintf(&b, "secrets {\n  ike-%s {\n", c.Name)
	line(2, "id-local", c.LocalID)
	line(2, "id-remote", c.RemoteID)
	line(2, "secret", c.PSK)
	fmt.Fprintf(&b, "  }\n}\n")
	return b.String()
}
