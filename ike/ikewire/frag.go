package ikewire

import (
	"errors"
	"io"
)

// DefaultMaxFragments is the Reassembler's default bound on Total Fragments.
const DefaultMaxFragments = 128

// Fragment encodes m with inner protected, as SealSK does, and if the result
// is longer than maxLen (the largest IKE message the path carries, without
// IP and UDP headers and the non-ESP marker) splits the encrypted content
// into SKF payloads, each in its own message of at most maxLen bytes and each
// encrypted and authenticated on its own (RFC 7383, Section 2.5). The first
// fragment's Next Payload is the first inner payload's type, the others' is
// zero. m.Payloads must be empty: fragmenting messages that carry
// unprotected payloads is not implemented. IVs are read from rand.
func Fragment(m *Message, inner []Payload, c SKCipher, rand io.Reader, maxLen int) ([][]byte, error) {
	if len(m.Payloads) != 0 {
		return nil, errors.New("ikewire: Fragment: unprotected payloads in a fragmented message are not implemented")
	}
	whole, err := SealSK(m, inner, c, rand)
	if err != nil {
		return nil, err
	}
	if len(whole) <= maxLen {
		// RFC 7383, Section 2.5.1: only messages that do not fit are
		// fragmented.
		return [][]byte{whole}, nil
	}
	pt, err := marshalInner(inner)
	if err != nil {
		return nil, err
	}
	// Each fragment carries the IKE header, the SKF header (generic header,
	// Fragment Number, Total Fragments), IV, content, padding, pad length
	// and ICV.
	bs := c.BlockSize()
	room := maxLen - HeaderLen - genericHeaderLen - 4 - c.IVLen() - c.ICVLen()
	chunk := room/bs*bs - 1
	if chunk < 1 {
		return nil, errors.New("ikewire: Fragment: maxLen too small for the cipher overhead")
	}
	n := (len(pt) + chunk - 1) / chunk
	if n == 0 || n > 0xffff {
		return nil, errors.New("ikewire: Fragment: too many fragments")
	}
	first := inner[0].PayloadType() // len(pt) > 0, so inner is not empty.
	frags := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		part := pt[i*chunk : min((i+1)*chunk, len(pt))]
		p := &SKF{Number: uint16(i + 1), Total: uint16(n)}
		if i == 0 {
			p.NextPayload = first
		}
		f, err := sealPlaintext(m, p, part, c, rand)
		if err != nil {
			return nil, err
		}
		frags = append(frags, f)
	}
	return frags, nil
}

// Reassembler collects the SKF fragments of one message (RFC 7383,
// Section 2.6) and returns its inner payloads once all have arrived. It
// holds the fragments of one Message ID at a time; the caller, which owns
// message IDs, calls Reset to give up on a message. The zero value is ready
// to use. A Reassembler is not safe for concurrent use.
type Reassembler struct {
	// MaxFragments bounds Total Fragments; zero means DefaultMaxFragments.
	MaxFragments int
	// MaxLen bounds the total decrypted content; zero means MaxMessageLen.
	MaxLen int

	active    bool
	messageID uint32
	exchange  ExchangeType
	first     PayloadType
	frags     [][]byte
	have      int
	size      int
}

// Reset discards the fragments collected so far.
func (r *Reassembler) Reset() {
	r.active, r.frags, r.have, r.size, r.first = false, nil, 0, 0, PayloadNone
}

// Add verifies and decrypts the SKF payload of m, a message from Parse, and
// stores its content. When the last missing fragment arrives it returns the
// inner payloads of the reassembled message and done true, and forgets the
// fragments. Fragments whose integrity check fails are dropped before they
// are stored (RFC 7383, Section 2.6); so are fragments of another Message ID
// or exchange than the one being collected, fragments with more than
// MaxFragments in total and fragments announcing fewer Total Fragments than
// seen before. A fragment announcing more restarts the collection
// (Section 2.6: the sender reduced the fragment size). Duplicates are
// ignored. Errors are *ParseError values.
func (r *Reassembler) Add(m *Message, c SKCipher) (inner []Payload, done bool, err error) {
	if len(m.Payloads) == 0 {
		return nil, false, syntaxErr("Reassembler: message has no SKF payload")
	}
	f, ok := m.Payloads[len(m.Payloads)-1].(*SKF)
	if !ok {
		return nil, false, syntaxErr("Reassembler: the last payload is not SKF")
	}
	maxFrags := r.MaxFragments
	if maxFrags <= 0 {
		maxFrags = DefaultMaxFragments
	}
	maxLen := r.MaxLen
	if maxLen <= 0 {
		maxLen = MaxMessageLen
	}
	switch {
	case int(f.Total) > maxFrags:
		return nil, false, drop("Reassembler: too many fragments")
	case r.active && (m.MessageID != r.messageID || m.Exchange != r.exchange):
		return nil, false, drop("Reassembler: fragment of another message")
	case r.active && int(f.Total) < len(r.frags):
		return nil, false, drop("Reassembler: fragment with fewer Total Fragments than seen before")
	}
	content, err := openPlaintext(m.Raw, len(f.Body), c)
	if err != nil {
		return nil, false, err
	}
	if !r.active || int(f.Total) > len(r.frags) {
		r.Reset()
		r.active, r.messageID, r.exchange = true, m.MessageID, m.Exchange
		r.frags = make([][]byte, f.Total)
	}
	i := int(f.Number) - 1
	if r.frags[i] != nil {
		return nil, false, nil
	}
	if r.size+len(content) > maxLen {
		r.Reset()
		return nil, false, drop("Reassembler: reassembled message too long")
	}
	r.frags[i] = content
	r.size += len(content)
	r.have++
	if f.Number == 1 {
		r.first = f.NextPayload
	}
	if r.have < len(r.frags) {
		return nil, false, nil
	}
	all := make([]byte, 0, r.size)
	for _, p := range r.frags {
		all = append(all, p...)
	}
	first := r.first
	r.Reset()
	inner, err = parseChain(all, first, false)
	if err != nil {
		return nil, false, err
	}
	return inner, true, nil
}
