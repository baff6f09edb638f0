package config

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
)

// Error is one problem in a configuration file. It prints as
//
//	file:line: key: reason
//
// where key is the dotted path of the offending setting, with list indexes
// in brackets: "connections.site-b.children.net.esp_proposals[0]",
// "manual_sas[0].key_out". Line is 0 when the file could not be read at all.
// Reasons never contain key material.
type Error struct {
	File   string
	Line   int
	Key    string
	Reason string
}

func (e *Error) Error() string {
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Key + ": " + e.Reason
}

// errorList holds the errors of one parse, to be joined in line order.
type errorList []*Error

// maxErrors bounds how many errors one parse reports; a badly broken file
// would otherwise bury the first (most useful) ones.
const maxErrors = 50

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	slices.SortStableFunc(l, func(a, b *Error) int { return a.Line - b.Line })
	if len(l) == 1 {
		return l[0]
	}
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// redacted is what every printing method of Secret writes.
const redacted = "<redacted>"

// Secret is key material from the configuration: a pre-shared key or a
// manual SA's key. Every way of printing it (fmt verbs including %x and %#v,
// JSON, text marshalling, slog) writes "<redacted>", so a Config can be
// printed or logged whole. Bytes returns the material itself.
type Secret struct {
	b []byte
}

// NewSecret returns a Secret holding a copy of b.
func NewSecret(b []byte) Secret { return Secret{b: slices.Clone(b)} }

// Bytes returns the key material. The caller must not modify it.
func (s Secret) Bytes() []byte { return s.b }

// Len returns the length of the key material in bytes.
func (s Secret) Len() int { return len(s.b) }

// IsZero reports whether s holds no key material.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

// Equal reports in constant time (for equal lengths) whether s and t hold
// the same material.
func (s Secret) Equal(t Secret) bool { return subtle.ConstantTimeCompare(s.b, t.b) == 1 }

// String returns "<redacted>".
func (s Secret) String() string { return redacted }

// GoString returns "<redacted>".
func (s Secret) GoString() string { return redacted }

// Format writes "<redacted>" whatever the verb.
func (s Secret) Format(f fmt.State, verb rune) { io.WriteString(f, redacted) }

// MarshalJSON returns the JSON string "<redacted>".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "<redacted>".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue returns "<redacted>" for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
