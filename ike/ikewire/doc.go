// Package ikewire is the IKEv2 message codec (RFC 7296, Section 3): the IKE
// header, every payload as a plain struct, the Encrypted (SK) payload with its
// cryptography (Section 3.14, RFC 5282, RFC 7634) and IKE fragmentation with
// Encrypted Fragment (SKF) payloads (RFC 7383).
//
// Parsing is strict in the sense of RFC 7296, Section 2.21: every error is a
// *ParseError that says which notification it maps to, or that the message is
// to be dropped silently. Reserved fields are ignored on receive and sent as
// zero. The package does no I/O and keeps no state except in a Reassembler.
//
// Parsed payloads alias the bytes of Message.Raw (or, for decrypted payloads,
// a buffer private to the call that produced them): callers must not modify
// them.
package ikewire
