package ikewire

import "reflect"

// equalMessages compares header and payloads, not Raw; nil and empty
// payload lists are equal.
func equalMessages(a, b *Message) bool {
	if a.Header != b.Header || len(a.Payloads) != len(b.Payloads) {
		return false
	}
	return len(a.Payloads) == 0 || reflect.DeepEqual(a.Payloads, b.Payloads)
}
