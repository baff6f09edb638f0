// Package tuntest is an in-memory twin of a TUN device for tests: packets the
// test puts on In come out of Read in batches, and packets the data plane
// writes are handed to OnWrite or put on Out. It needs no privileges and
// allocates nothing per packet when OnWrite is set.
package tuntest

import (
	"os"
	"sync"

	"github.com/goipsec/goipsec/tun"
)

// Device is a channel-backed tun.Device. Create it with New.
type Device struct {
	// In carries packets to be returned by Read, one IP packet per element.
	// The device copies them; the test may reuse a slice once Read returned it.
	In chan []byte
	// Out receives a copy of every packet written, unless OnWrite is set.
	Out chan []byte
	// OnWrite, if set before the device is used, is called with each written
	// packet instead of sending a copy to Out. The slice is only valid during
	// the call. It may be called from the data plane's writer goroutine.
	OnWrite func(pkt []byte)

	mtu, batch int
	events     chan tun.Event
	closeOnce  sync.Once
	closed     chan struct{}
}

// New returns a device with the given MTU that reads and writes up to batch
// packets per call. In and Out have room for queue packets each.
func New(mtu, batch, queue int) *Device {
	d := &Device{
		In:     make(chan []byte, queue),
		Out:    make(chan []byte, queue),
		mtu:    mtu,
		batch:  batch,
		events: make(chan tun.Event, 1),
		closed: make(chan struct{}),
	}
	d.events <- tun.EventUp
	return d
}

// File returns nil: the device has no file descriptor.
func (d *Device) File() *os.File { return nil }

// Read blocks until a packet is on In, then returns it and any more that are
// already waiting, up to len(bufs). It returns os.ErrClosed after Close.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-d.In:
	case <-d.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-d.In:
		default:
			return n, nil
		}
	}
}

// Write delivers bufs[i][offset:] for each i to OnWrite or Out. It blocks
// while Out is full and returns os.ErrClosed after Close.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		pkt := b[offset:]
		if d.OnWrite != nil {
			d.OnWrite(pkt)
			continue
		}
		select {
		case d.Out <- append([]byte(nil), pkt...):
		case <-d.closed:
			return i, os.ErrClosed
		}
	}
	return len(bufs), nil
}

// MTU returns the MTU given to New.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// Name returns "tuntest".
func (d *Device) Name() (string, error) { return "tuntest", nil }

// Events returns a channel that reports EventUp once.
func (d *Device) Events() <-chan tun.Event { return d.events }

// BatchSize returns the batch size given to New.
func (d *Device) BatchSize() int { return d.batch }

// Close makes Read and Write return os.ErrClosed. It is idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

var _ tun.Device = (*Device)(nil)
