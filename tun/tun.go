// Package tun is the data plane's edge to the operating system's TUN device.
// It re-exports the device interface of golang.zx2c4.com/wireguard/tun, whose
// Linux implementation reads and writes batches of packets and uses the
// virtio-net header for segmentation offloads: TCP (and UDP) super-packets
// that the kernel hands to the device are split into MTU-sized packets on
// Read (TSO/USO), and packets written in one batch are coalesced back into
// super-packets on Write (GRO). That is most of a userspace tunnel's speed.
//
// tun/tuntest holds an in-memory twin for tests.
package tun

import (
	"fmt"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is a TUN device that reads and writes batches of IP packets. Read and
// Write take an offset: the packet starts at bufs[i][offset:], and the bytes
// before it are headroom the device may use (the Linux device writes its
// 10-byte virtio-net header there, so offset must be at least Offset). Write
// may coalesce packets into bufs[i] up to cap(bufs[i]), so buffers handed to
// Write should have room behind the packet (64 KiB in total is enough).
//
// Read and Write may each be called by one goroutine at a time; Read and Write
// may run concurrently with each other.
type Device = wgtun.Device

// Event is a device state change reported on Device.Events.
type Event = wgtun.Event

// Device events.
const (
	EventUp        = wgtun.EventUp
	EventDown      = wgtun.EventDown
	EventMTUUpdate = wgtun.EventMTUUpdate
)

// Offset is the least headroom that Read and Write need in front of each
// packet: room for the virtio-net header of the Linux device, rounded up.
const Offset = 16

// MaxSegmentSize is the largest super-packet a device with offloads reads or
// writes, and so the buffer size Write needs for coalescing.
const MaxSegmentSize = 65535

// ErrTooManySegments is returned by Read when a super-packet splits into more
// packets than bufs has room for; the read is lost but the device is fine.
var ErrTooManySegments = wgtun.ErrTooManySegments

// Create opens (creating if needed) the TUN device name with the given MTU,
// with segmentation offloads enabled when the kernel supports them. The
// caller must bring the link up and route traffic into it.
func Create(name string, mtu int) (Device, error) {
	d, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: create %q: %w", name, err)
	}
	return d, nil
}
