package swantest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal client of strongSwan's VICI protocol (the Versatile IKE
// Configuration Interface that swanctl speaks), written from its public
// description: a packet is a 32-bit big-endian length, a type byte, for the
// named types a name (8-bit length), then a message made of typed elements.
// It exists so that Initiate times the exchange itself rather than the start
// of a swanctl process, and so that ListSAs reads the binary message exactly
// instead of parsing swanctl's text dump.

// Packet types.
const (
	viciCmdRequest      = 0
	viciCmdResponse     = 1
	viciCmdUnknown      = 2
	viciEventRegister   = 3
	viciEventUnregister = 4
	viciEventConfirm    = 5
	viciEventUnknown    = 6
	viciEvent           = 7
)

// Message element types.
const (
	viciSectionStart = 1
	viciSectionEnd   = 2
	viciKeyValue     = 3
	viciListStart    = 4
	viciListItem     = 5
	viciListEnd      = 6
)

// viciMaxPacket bounds what the client accepts from the daemon.
const viciMaxPacket = 1 << 20

// viciEntry is one element of a decoded message: a key with a value, a list
// or a section.
type viciEntry struct {
	Key  string
	Val  string
	List []string
	Sec  viciMsg
	kind byte
}

// viciMsg is a decoded message, in the order the daemon sent it.
type viciMsg []viciEntry

// get returns the value of key, or "" when it is absent.
func (m viciMsg) get(key string) string {
	for _, e := range m {
		if e.Key == key && e.kind == viciKeyValue {
			return e.Val
		}
	}
	return ""
}

// list returns the list named key, or nil.
func (m viciMsg) list(key string) []string {
	for _, e := range m {
		if e.Key == key && e.kind == viciListStart {
			return e.List
		}
	}
	return nil
}

// section returns the section named key, or nil.
func (m viciMsg) section(key string) viciMsg {
	for _, e := range m {
		if e.Key == key && e.kind == viciSectionStart {
			return e.Sec
		}
	}
	return nil
}

// viciKV is one key and value of a flat request message.
type viciKV struct{ Key, Val string }

func encodeViciMsg(kvs []viciKV) ([]byte, error) {
	var b []byte
	for _, kv := range kvs {
		if len(kv.Key) > 255 || len(kv.Val) > 65535 {
			return nil, fmt.Errorf("swantest: vici key or value too long: %q", kv.Key)
		}
		b = append(b, viciKeyValue, byte(len(kv.Key)))
		b = append(b, kv.Key...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(kv.Val)))
		b = append(b, kv.Val...)
	}
	return b, nil
}

// decodeViciMsg decodes a message body. It returns an error, never panics, on
// malformed input.
func decodeViciMsg(b []byte) (viciMsg, error) {
	d := viciDecoder{b: b}
	m, err := d.section(0)
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, errors.New("swantest: vici message has trailing bytes")
	}
	return m, nil
}

type viciDecoder struct{ b []byte }

var errViciShort = errors.New("swantest: vici message truncated")

func (d *viciDecoder) name() (string, error) {
	if len(d.b) < 1 || len(d.b) < 1+int(d.b[0]) {
		return "", errViciShort
	}
	n := int(d.b[0])
	s := string(d.b[1 : 1+n])
	d.b = d.b[1+n:]
	return s, nil
}

func (d *viciDecoder) value() (string, error) {
	if len(d.b) < 2 {
		return "", errViciShort
	}
	n := int(binary.BigEndian.Uint16(d.b))
	if len(d.b) < 2+n {
		return "", errViciShort
	}
	s := string(d.b[2 : 2+n])
	d.b = d.b[2+n:]
	return s, nil
}

// section decodes elements until SECTION_END (depth > 0) or the end of the
// message (depth 0).
func (d *viciDecoder) section(depth int) (viciMsg, error) {
	if depth > 32 {
		return nil, errors.New("swantest: vici sections nested too deep")
	}
	var m viciMsg
	for len(d.b) > 0 {
		t := d.b[0]
		d.b = d.b[1:]
		switch t {
		case viciSectionEnd:
			if depth == 0 {
				return nil, errors.New("swantest: vici section end without start")
			}
			return m, nil
		case viciSectionStart:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			sec, err := d.section(depth + 1)
			if err != nil {
				return nil, err
			}
			m = append(m, viciEntry{Key: k, Sec: sec, kind: t})
		case viciKeyValue:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			m = append(m, viciEntry{Key: k, Val: v, kind: t})
		case viciListStart:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			e := viciEntry{Key: k, kind: t}
			for {
				if len(d.b) < 1 {
					return nil, errViciShort
				}
				it := d.b[0]
				d.b = d.b[1:]
				if it == viciListEnd {
					break
				}
				if it != viciListItem {
					return nil, fmt.Errorf("swantest: vici element %d inside a list", it)
				}
				v, err := d.value()
				if err != nil {
					return nil, err
				}
				e.List = append(e.List, v)
			}
			m = append(m, e)
		default:
			return nil, fmt.Errorf("swantest: unknown vici element %d", t)
		}
	}
	if depth > 0 {
		return nil, errViciShort
	}
	return m, nil
}

// viciConn is one connection to a charon's vici socket. It is not safe for
// concurrent use.
type viciConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialVici(path string, deadline time.Time) (*viciConn, error) {
	c, err := net.DialTimeout("unix", path, time.Until(deadline))
	if err != nil {
		return nil, fmt.Errorf("swantest: vici: %w", err)
	}
	c.SetDeadline(deadline)
	return &viciConn{c: c, r: bufio.NewReader(c)}, nil
}

func (v *viciConn) Close() error { return v.c.Close() }

func (v *viciConn) send(typ byte, name string, body []byte) error {
	p := make([]byte, 4, 6+len(name)+len(body))
	p = append(p, typ, byte(len(name)))
	p = append(p, name...)
	p = append(p, body...)
	binary.BigEndian.PutUint32(p, uint32(len(p)-4))
	_, err := v.c.Write(p)
	return err
}

// recv reads one packet and returns its type, name (for named types) and body.
func (v *viciConn) recv() (typ byte, name string, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(v.r, hdr[:]); err != nil {
		return 0, "", nil, fmt.Errorf("swantest: vici read: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > viciMaxPacket {
		return 0, "", nil, fmt.Errorf("swantest: vici packet length %d", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(v.r, p); err != nil {
		return 0, "", nil, fmt.Errorf("swantest: vici read: %w", err)
	}
	typ, p = p[0], p[1:]
	switch typ {
	case viciEvent, viciCmdRequest, viciEventRegister, viciEventUnregister:
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return 0, "", nil, errViciShort
		}
		name, p = string(p[1:1+int(p[0])]), p[1+int(p[0]):]
	}
	return typ, name, p, nil
}

// call sends a command and returns its response. Events named event are
// registered for the duration of the call and passed to onEvent.
func (v *viciConn) call(cmd string, req []viciKV, event string, onEvent func(viciMsg) error) (viciMsg, error) {
	if event != "" {
		if err := v.send(viciEventRegister, event, nil); err != nil {
			return nil, fmt.Errorf("swantest: vici: %w", err)
		}
		typ, _, _, err := v.recv()
		if err != nil {
			return nil, err
		}
		if typ != viciEventConfirm {
			return nil, fmt.Errorf("swantest: vici: registering event %q: reply type %d", event, typ)
		}
	}
	body, err := encodeViciMsg(req)
	if err != nil {
		return nil, err
	}
	if err := v.send(viciCmdRequest, cmd, body); err != nil {
		return nil, fmt.Errorf("swantest: vici: %w", err)
	}
	for {
		typ, name, body, err := v.recv()
		if err != nil {
			return nil, err
		}
		switch typ {
		case viciCmdResponse:
			return decodeViciMsg(body)
		case viciCmdUnknown:
			return nil, fmt.Errorf("swantest: vici: unknown command %q", cmd)
		case viciEvent:
			if name != event || onEvent == nil {
				continue
			}
			m, err := decodeViciMsg(body)
			if err != nil {
				return nil, err
			}
			if err := onEvent(m); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("swantest: vici: unexpected packet type %d during %q", typ, cmd)
		}
	}
}
