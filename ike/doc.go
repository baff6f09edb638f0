// Package ike is the IKEv2 engine (RFC 7296): it negotiates, authenticates
// (pre-shared keys, Section 2.15) and rekeys IKE SAs and the CHILD SAs
// (ESP and AH) they create, and hands the CHILD SAs to an Installer.
//
// A Manager owns every IKE SA of this host. Each IKE SA is a session owned
// by one goroutine; its core, session.handle, maps one input (a datagram, a
// timer, a command) to a list of effects (datagrams to send, SAs to install
// or delete, events) and does no I/O, so tests step two peers one message
// at a time. The owner of the Manager supplies the I/O through small
// interfaces it declares here: Transport sends datagrams, HandlePacket
// takes the received ones, Installer installs CHILD SAs. The engine never
// imports the configuration file's package or the data plane; the daemon
// translates between them (Peer, ChildConfig, ChildSA, Trigger).
//
// What is implemented: IKE_SA_INIT with INVALID_KE_PAYLOAD retry and
// COOKIEs (Sections 1.2, 2.6), NAT detection and the move to port 4500
// (Section 2.23), NAT keepalives (RFC 3948), IKE fragmentation (RFC 7383),
// IKE_AUTH with pre-shared keys and the first CHILD SA, CREATE_CHILD_SA for
// new CHILD SAs (with PFS), make-before-break CHILD SA and IKE SA
// rekeying (Section 2.8: the responder of a CHILD SA rekey sends on the new
// SA only once the initiator's next request shows that it receives on
// it), collisions of rekeys and deletes resolved as Sections 2.8.1, 2.8.2
// and 2.25 prescribe (the rekey with the lowest nonce is redundant),
// INFORMATIONAL
// with Delete and liveness checks, retransmission with exponential backoff,
// the response cache, traffic selector narrowing (Section 2.9) and
// transport mode; additional key exchanges for the IKE SA (RFC 9370, such
// as ML-KEM after X25519) in IKE_INTERMEDIATE exchanges (RFC 9242) and, when
// it is rekeyed, in IKE_FOLLOWUP_KE exchanges; additional key exchanges
// for CHILD SAs created or rekeyed with CREATE_CHILD_SA, in IKE_FOLLOWUP_KE
// exchanges (RFC 9370, Section 2.2.4; the first CHILD SA, of IKE_AUTH, has
// no key exchange); and ML-KEM as the only key exchange. A responder keeps
// one exchange waiting for IKE_FOLLOWUP_KE at a time and answers another
// CREATE_CHILD_SA request meanwhile with TEMPORARY_FAILURE (RFC 7296,
// Section 2.25). Collisions of rekeys that use IKE_FOLLOWUP_KE are
// resolved by the nonces of their CREATE_CHILD_SA exchanges as soon as a
// side knows all four, before further key exchanges (tasks.go lists the
// rules). Not implemented: EAP authentication, configuration payloads,
// MOBIKE and redirects.
package ike
