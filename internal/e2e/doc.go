// Package e2e holds goipsec's end-to-end tests: the real ipsecd and ipsecctl
// binaries, built once per test run, protect traffic between network
// namespaces joined by veth pairs, and the tests check what happens on the
// wire and in the daemons' counters.
//
// The package has no code of its own outside its tests. The tests need root
// (network namespaces, TUN devices, raw sockets); without it they skip, or
// fail under CI=true. See the _test.go files for the cases:
//
//   - matrix_test.go: ESP and AH, tunnel and transport, IPv4 and IPv6, ESP in
//     UDP and over IP: ping and a 10 MB TCP transfer with a checksum;
//   - policy_test.go: BYPASS, DISCARD and PROTECT rules side by side;
//   - attack_test.go: spoofed inner sources (the inbound selector check of
//     RFC 4301, Section 5.2) and a flood of malformed, unknown, forged and
//     replayed packets during a ping;
//   - scapy_test.go: scapy, an independent implementation, decrypts what
//     goipsec puts on the wire and seals a packet that goipsec must accept;
//   - service_test.go: ipsecd under systemd's notify protocol, the unit file,
//     make install, and the .deb of make dist installed, started through its
//     unit's ExecStart, removed and purged in a throwaway root.
package e2e
