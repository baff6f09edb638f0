package ikewire

// ParseError is the error of every parsing and SK-opening function in this
// package. Notify says how the receiver should react (RFC 7296, Section 2.21):
// a non-zero Notify is the notification the error maps to (INVALID_SYNTAX,
// UNSUPPORTED_CRITICAL_PAYLOAD, INVALID_MAJOR_VERSION) with Data as its
// Notification Data; zero means the message is to be dropped silently (a
// truncated header, an IKE header length that disagrees with the datagram, a
// failed integrity check).
type ParseError struct {
	// Notify is the Notify Message Type the error maps to, or 0 for a
	// silent drop.
	Notify NotifyType
	// Data is the Notification Data to send with Notify; nil for none.
	// For UNSUPPORTED_CRITICAL_PAYLOAD it is the one-octet payload type
	// (RFC 7296, Section 3.10.1).
	Data []byte
	// Reason is a human-readable description for logs.
	Reason string
}

// Error returns the reason, prefixed with the package name.
func (e *ParseError) Error() string { return "ikewire: " + e.Reason }

// drop returns an error for a message that is dropped without a response.
func drop(reason string) *ParseError { return &ParseError{Reason: reason} }

// syntaxErr returns an error that maps to INVALID_SYNTAX.
func syntaxErr(reason string) *ParseError {
	return &ParseError{Notify: NotifyInvalidSyntax, Reason: reason}
}
