package sa

// Stages is the receiving side of an ESP or AH SA split in the two stages
// of RFC 4303, Section 3.4.3 and RFC 4302, Section 3.4.3, where the replay
// window moves only after the integrity check has succeeded.
type Stages interface {
	// Decrypt checks and decapsulates the IP packet buf[start:end] in
	// place, without moving the replay window, and returns the bounds of
	// the result. seq is non-zero exactly when the ICV verified; it must
	// then be passed to Accept even if err is not nil. It may run on many
	// goroutines at once.
	Decrypt(buf []byte, start, end int) (nstart, nend int, seq uint64, err error)
	// Accept moves the replay window to include seq, a number returned by
	// Decrypt, or returns DropReplay if another packet took it first.
	Accept(seq uint64) error
}

// Open runs both stages of s on one packet: Decrypt, then Accept of an
// authentic sequence number, whatever Decrypt then found wrong with the
// payload. A refusal by Accept wins over Decrypt's error. The packet engines'
// Open methods are this; it allocates nothing.
func Open(s Stages, buf []byte, start, end int) (nstart, nend int, err error) {
	nstart, nend, seq, err := s.Decrypt(buf, start, end)
	if seq != 0 {
		if aerr := s.Accept(seq); aerr != nil {
			return 0, 0, aerr
		}
	}
	if err != nil {
		return 0, 0, err
	}
	return nstart, nend, nil
}
