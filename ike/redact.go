package ike

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
)

// redactedText stands in for key material wherever a ChildSA is printed.
const redactedText = "<redacted>"

// isKeyField reports whether the ChildSA field name holds key material.
func isKeyField(name string) bool { return name == "KeyIn" || name == "KeyOut" }

// Format prints c as fmt prints a struct, for every verb and flag, with
// "<redacted>" in place of KeyIn and KeyOut, so that no log line or error
// carries key material (STYLE: never log key material).
func (c ChildSA) Format(f fmt.State, verb rune) {
	v := reflect.ValueOf(c)
	t := v.Type()
	sharp := verb == 'v' && f.Flag('#')
	named := sharp || (verb == 'v' && f.Flag('+'))
	sep := " "
	if sharp {
		sep = ", "
		io.WriteString(f, "ike.ChildSA")
	}
	io.WriteString(f, "{")
	format := fmt.FormatString(f, verb)
	for i := range t.NumField() {
		if i > 0 {
			io.WriteString(f, sep)
		}
		name := t.Field(i).Name
		if named {
			io.WriteString(f, name+":")
		}
		if isKeyField(name) {
			if sharp {
				io.WriteString(f, `"`+redactedText+`"`)
			} else {
				io.WriteString(f, redactedText)
			}
			continue
		}
		fmt.Fprintf(f, format, v.Field(i).Interface())
	}
	io.WriteString(f, "}")
}

// String returns c as %v prints it, keys redacted.
func (c ChildSA) String() string { return fmt.Sprint(c) }

// GoString returns c as %#v prints it, keys redacted.
func (c ChildSA) GoString() string { return fmt.Sprintf("%#v", c) }

// LogValue is c for log/slog: its identifying fields, keys redacted.
func (c ChildSA) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("peer", c.Peer), slog.String("child", c.Child), slog.Any("ref", c.Ref),
		slog.String("protocol", c.Protocol.String()), slog.String("mode", c.Mode.String()),
		slog.String("spi_in", fmt.Sprintf("%08x", c.SPIIn)), slog.String("spi_out", fmt.Sprintf("%08x", c.SPIOut)),
		slog.String("suite", c.Suite.Name), slog.Bool("esn", c.ESN),
		slog.String("local_ts", c.LocalTS.String()), slog.String("remote_ts", c.RemoteTS.String()),
		slog.String("local", c.Local.String()), slog.String("remote", c.Remote.String()),
		slog.String("key_in", redactedText), slog.String("key_out", redactedText),
	)
}
