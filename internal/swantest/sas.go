package swantest

import (
	"fmt"
	"strconv"
)

// IKESA is one IKE SA as charon lists it (the vici "list-sa" event). String
// fields hold strongSwan's names, for example EncrAlg "AES_GCM_16", PRFAlg
// "PRF_HMAC_SHA2_256", DHGroup "CURVE_25519"; a field charon did not report
// is empty or zero (IntegAlg for an AEAD, for example).
type IKESA struct {
	Name        string // connection name
	UniqueID    string // charon's unique id of the IKE SA
	State       string // CREATED, CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
	Initiator   bool   // this side initiated the IKE SA
	LocalHost   string
	LocalPort   int
	LocalID     string
	RemoteHost  string
	RemotePort  int
	RemoteID    string
	SPIi        uint64 // initiator's IKE SPI
	SPIr        uint64 // responder's IKE SPI
	NATRemote   bool   // the peer is behind NAT (always true with kernel-libipsec, which forces UDP encapsulation)
	EncrAlg     string
	EncrKeysize int
	IntegAlg    string
	PRFAlg      string
	DHGroup     string
	Children    []ChildSA
}

// ChildSA is one CHILD_SA of an IKESA.
type ChildSA struct {
	Name        string // child config name
	UniqueID    string
	ReqID       string
	State       string // INSTALLED, REKEYED, DELETING, ...
	Mode        string // TUNNEL, TRANSPORT
	Protocol    string // ESP, AH
	Encap       bool   // ESP in UDP (RFC 3948)
	SPIIn       uint32
	SPIOut      uint32
	EncrAlg     string
	EncrKeysize int
	IntegAlg    string
	DHGroup     string // set only when the SA was created with a key exchange (PFS rekey)
	ESN         bool   // extended sequence numbers, RFC 4303, Section 2.2.1
	BytesIn     uint64
	PacketsIn   uint64
	BytesOut    uint64
	PacketsOut  uint64
	LocalTS     []string
	RemoteTS    []string
}

// Child returns the first child SA named name in state INSTALLED, or nil.
func (s *IKESA) Child(name string) *ChildSA {
	for i := range s.Children {
		if s.Children[i].Name == name && s.Children[i].State == "INSTALLED" {
			return &s.Children[i]
		}
	}
	return nil
}

// parseIKESAs converts one list-sa event: a section per IKE SA, named by
// its connection.
func parseIKESAs(m viciMsg) ([]IKESA, error) {
	var out []IKESA
	for _, e := range m {
		if e.kind != viciSectionStart {
			continue
		}
		s, err := parseIKESA(e.Key, e.Sec)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func parseIKESA(name string, m viciMsg) (IKESA, error) {
	p := numParser{}
	s := IKESA{
		Name:        name,
		UniqueID:    m.get("uniqueid"),
		State:       m.get("state"),
		Initiator:   m.get("initiator") == "yes",
		LocalHost:   m.get("local-host"),
		LocalPort:   p.int(m, "local-port"),
		LocalID:     m.get("local-id"),
		RemoteHost:  m.get("remote-host"),
		RemotePort:  p.int(m, "remote-port"),
		RemoteID:    m.get("remote-id"),
		SPIi:        p.hex(m, "initiator-spi", 64),
		SPIr:        p.hex(m, "responder-spi", 64),
		NATRemote:   m.get("nat-remote") == "yes",
		EncrAlg:     m.get("encr-alg"),
		EncrKeysize: p.int(m, "encr-keysize"),
		IntegAlg:    m.get("integ-alg"),
		PRFAlg:      m.get("prf-alg"),
		DHGroup:     m.get("dh-group"),
	}
	for _, e := range m.section("child-sas") {
		if e.kind != viciSectionStart {
			continue
		}
		c := e.Sec
		s.Children = append(s.Children, ChildSA{
			Name:        c.get("name"),
			UniqueID:    c.get("uniqueid"),
			ReqID:       c.get("reqid"),
			State:       c.get("state"),
			Mode:        c.get("mode"),
			Protocol:    c.get("protocol"),
			Encap:       c.get("encap") == "yes",
			SPIIn:       uint32(p.hex(c, "spi-in", 32)),
			SPIOut:      uint32(p.hex(c, "spi-out", 32)),
			EncrAlg:     c.get("encr-alg"),
			EncrKeysize: p.int(c, "encr-keysize"),
			IntegAlg:    c.get("integ-alg"),
			DHGroup:     c.get("dh-group"),
			ESN:         c.get("esn") == "1",
			BytesIn:     p.uint(c, "bytes-in"),
			PacketsIn:   p.uint(c, "packets-in"),
			BytesOut:    p.uint(c, "bytes-out"),
			PacketsOut:  p.uint(c, "packets-out"),
			LocalTS:     c.list("local-ts"),
			RemoteTS:    c.list("remote-ts"),
		})
	}
	if p.err != nil {
		return IKESA{}, fmt.Errorf("swantest: IKE SA %s: %w", name, p.err)
	}
	return s, nil
}

// numParser parses optional numeric fields, remembering the first error.
type numParser struct{ err error }

func (p *numParser) uint(m viciMsg, key string) uint64 {
	v := m.get(key)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return n
}

func (p *numParser) int(m viciMsg, key string) int {
	return int(p.uint(m, key))
}

func (p *numParser) hex(m viciMsg, key string, bits int) uint64 {
	v := m.get(key)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 16, bits)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return n
}
