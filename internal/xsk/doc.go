// Package xsk is a measuring instrument, not a data path: it lets a
// benchmark take ESP (IP protocol 50) off an interface with AF_XDP and put
// Ethernet frames on it, so that issue 9's question, whether AF_XDP closes
// the gap between raw ESP and ESP in UDP, is answered by figures (see
// docs/performance.md, "AF_XDP on veth, measured").
//
// It loads a small XDP program (assembled here, no compiler needed) that
// redirects unfragmented IPv4 protocol-50 packets, optionally only those for
// one local address, to the AF_XDP socket of their receive queue through an
// XSKMAP and passes everything else to the kernel (XDP_PASS); attaches it
// to an interface through a BPF link (native mode where the driver has it,
// else generic), so that closing the link, or the process ending, detaches
// it; and opens AF_XDP sockets: a UMEM, fill, completion, RX and TX rings
// mapped into memory, read and written in batches.
//
// Only Linux has AF_XDP; the package is built on Linux for amd64 and arm64
// (the program and the system call arguments are laid out for 64-bit
// little-endian machines) and is empty elsewhere. Nothing in the daemon
// imports it: docs/performance.md lists what a data path built on it would
// still need.
package xsk
