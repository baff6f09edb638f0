//go:build amd64 || arm64

package xsk

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config configures Open. The zero value opens a receiving socket on queue
// 0 with rings of 2048 entries and as many frames of 2048 bytes.
type Config struct {
	// Queue is the interface's queue the socket binds to.
	Queue int
	// Frames is the number of UMEM frames; 0 means one per ring entry, or
	// two with both an RX and a TX ring. Frames beyond what the fill ring
	// holds stay unused.
	Frames int
	// FrameSize is the size of one frame, a power of two from 2048 to the
	// page size; 0 means 2048.
	FrameSize int
	// RingSize is the number of entries of each ring, a power of two; 0
	// means 2048.
	RingSize int
	// TX gives the socket a TX ring, and half of the frames (all of them
	// with NoRX) to send from.
	TX bool
	// NoRX leaves out the RX ring (a socket that only sends).
	NoRX bool
}

// Socket is an AF_XDP socket with its own UMEM. Read and Write may each be
// called by one goroutine at a time, and may run concurrently with each
// other; Close may not run concurrently with either.
type Socket struct {
	fd        int
	umem      []byte
	frameSize uint64
	zeroCopy  bool

	fill, comp ring // UMEM fill and completion rings: addresses
	rx, tx     ring // descriptors

	held   []uint64 // frames of the last Read, given back to the fill ring by the next
	txFree []uint64 // frames free to send from
}

// ring is one mapped AF_XDP ring (linux/if_xdp.h): a producer and a
// consumer index, flags, and entries of 8 (address) or 16 bytes
// (struct xdp_desc).
type ring struct {
	mem        []byte
	prod, cons *uint32
	flags      *uint32
	entries    unsafe.Pointer
	mask       uint32
	local      uint32 // our copy of the index we own
	entrySize  uintptr
	isProducer bool
}

func mapRing(fd int, off unix.XDPRingOffset, pgoff int64, n int, entrySize uintptr, producer bool) (ring, error) {
	size := int(off.Desc) + n*int(entrySize)
	mem, err := unix.Mmap(fd, pgoff, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, err
	}
	base := unsafe.Pointer(&mem[0])
	r := ring{
		mem:        mem,
		prod:       (*uint32)(unsafe.Add(base, off.Producer)),
		cons:       (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:      (*uint32)(unsafe.Add(base, off.Flags)),
		entries:    unsafe.Add(base, off.Desc),
		mask:       uint32(n - 1),
		entrySize:  entrySize,
		isProducer: producer,
	}
	if producer {
		r.local = atomic.LoadUint32(r.prod)
	} else {
		r.local = atomic.LoadUint32(r.cons)
	}
	return r, nil
}

// free returns how many entries a producer may write.
func (r *ring) free() uint32 {
	return r.mask + 1 - (r.local - atomic.LoadUint32(r.cons))
}

// ready returns how many entries a consumer may read.
func (r *ring) ready() uint32 { return atomic.LoadUint32(r.prod) - r.local }

func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.entries, uintptr(i&r.mask)*r.entrySize))
}

func (r *ring) desc(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.entries, uintptr(i&r.mask)*r.entrySize))
}

// publish makes the entries up to r.local visible to the kernel.
func (r *ring) publish() {
	if r.isProducer {
		atomic.StoreUint32(r.prod, r.local)
	} else {
		atomic.StoreUint32(r.cons, r.local)
	}
}

func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

func (r *ring) unmap() {
	if r.mem != nil {
		unix.Munmap(r.mem)
		r.mem = nil
	}
}

// Open opens an AF_XDP socket bound to queue c.Queue of the interface with
// index ifindex: zero-copy if the driver supports it, else copy mode. A
// receiving socket gets frames only once a Program registers it.
func Open(ifindex int, c Config) (*Socket, error) {
	frames, frameSize, ringSize := c.Frames, c.FrameSize, c.RingSize
	if frameSize == 0 {
		frameSize = 2048
	}
	if ringSize == 0 {
		ringSize = 2048
	}
	if frames == 0 {
		frames = ringSize
		if c.TX && !c.NoRX {
			frames = 2 * ringSize
		}
	}
	if ringSize&(ringSize-1) != 0 || frameSize&(frameSize-1) != 0 {
		return nil, errors.New("xsk: ring and frame sizes must be powers of two")
	}
	if c.NoRX && !c.TX {
		return nil, errors.New("xsk: a socket needs an RX or a TX ring")
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("xsk: AF_XDP socket: %w", err)
	}
	s := &Socket{fd: fd, frameSize: uint64(frameSize)}
	fail := func(what string, err error) (*Socket, error) {
		s.Close()
		return nil, fmt.Errorf("xsk: %s: %w", what, err)
	}
	s.umem, err = unix.Mmap(-1, 0, frames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fail("UMEM", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))), Len: uint64(len(s.umem)), Size: uint32(frameSize)}
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fail("XDP_UMEM_REG", err)
	}
	// The kernel wants fill and completion rings for every UMEM.
	for _, o := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o, ringSize); err != nil {
			return fail("UMEM ring", err)
		}
	}
	if !c.NoRX {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_RX_RING, ringSize); err != nil {
			return fail("XDP_RX_RING", err)
		}
	}
	if c.TX {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_TX_RING, ringSize); err != nil {
			return fail("XDP_TX_RING", err)
		}
	}
	var off unix.XDPMmapOffsets
	offLen := uint32(unsafe.Sizeof(off))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&offLen)), 0); errno != 0 {
		return fail("XDP_MMAP_OFFSETS", errno)
	}
	const addrSize, descSize = 8, unsafe.Sizeof(unix.XDPDesc{})
	if s.fill, err = mapRing(fd, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, ringSize, addrSize, true); err != nil {
		return fail("mapping the fill ring", err)
	}
	if s.comp, err = mapRing(fd, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, ringSize, addrSize, false); err != nil {
		return fail("mapping the completion ring", err)
	}
	if !c.NoRX {
		if s.rx, err = mapRing(fd, off.Rx, unix.XDP_PGOFF_RX_RING, ringSize, descSize, false); err != nil {
			return fail("mapping the RX ring", err)
		}
	}
	if c.TX {
		if s.tx, err = mapRing(fd, off.Tx, unix.XDP_PGOFF_TX_RING, ringSize, descSize, true); err != nil {
			return fail("mapping the TX ring", err)
		}
	}
	// Frames: the first half (all, without TX) to the fill ring, the
	// rest to send from.
	rxFrames := frames
	if c.TX {
		rxFrames = frames / 2
		if c.NoRX {
			rxFrames = 0
		}
	}
	for i := range frames {
		a := uint64(i) * s.frameSize
		if i >= rxFrames {
			s.txFree = append(s.txFree, a)
			continue
		}
		if s.fill.free() == 0 {
			continue // more frames than the fill ring holds: left unused
		}
		*s.fill.addr(s.fill.local) = a
		s.fill.local++
	}
	s.fill.publish()
	// Send more than the default 32 packets per system call in copy mode
	// (XDP_MAX_TX_SKB_BUDGET, Linux 6.17); older kernels keep 32.
	if c.TX {
		unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, min(ringSize, 256))
	}
	if err := s.bind(ifindex, c.Queue); err != nil {
		return fail(fmt.Sprintf("binding to interface %d queue %d", ifindex, c.Queue), err)
	}
	return s, nil
}

// bindRetry is how long bind retries while the queue is busy: the kernel
// releases a closed socket's hold on its queue from a work queue, so a
// socket opened right after another closed may find the queue still taken.
const bindRetry = 2 * time.Second

// bind binds to the queue in zero-copy mode, else in copy mode.
func (s *Socket) bind(ifindex, queue int) error {
	deadline := time.Now().Add(bindRetry)
	for {
		sa := &unix.SockaddrXDP{Flags: unix.XDP_ZEROCOPY | unix.XDP_USE_NEED_WAKEUP, Ifindex: uint32(ifindex), QueueID: uint32(queue)}
		err := unix.Bind(s.fd, sa)
		if err == nil {
			s.zeroCopy = true
			return nil
		}
		if err != unix.EBUSY {
			sa.Flags = unix.XDP_COPY | unix.XDP_USE_NEED_WAKEUP
			if err = unix.Bind(s.fd, sa); err == nil {
				return nil
			}
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ZeroCopy reports whether the socket is bound in zero-copy mode (the
// driver's DMA lands in the UMEM) rather than copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// Read returns up to len(frames) received frames, waiting up to timeout
// when none is ready (0: do not wait). frames[i] is a view into the UMEM,
// valid until the next Read. Frames of the previous Read go back to the
// kernel first.
func (s *Socket) Read(frames [][]byte, timeout time.Duration) (int, error) {
	if s.rx.mem == nil {
		return 0, errors.New("xsk: socket has no RX ring")
	}
	for _, a := range s.held {
		// The fill ring has room for every frame: there are no more
		// frames than entries in it.
		*s.fill.addr(s.fill.local) = a &^ (s.frameSize - 1)
		s.fill.local++
	}
	s.held = s.held[:0]
	s.fill.publish()
	n := s.rx.ready()
	if n == 0 && timeout > 0 {
		// With XDP_USE_NEED_WAKEUP, poll also wakes the driver when it
		// asked for more fill entries.
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(timeout.Milliseconds())); err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("xsk: poll: %w", err)
		}
		n = s.rx.ready()
	} else if s.fill.needWakeup() {
		unix.Recvfrom(s.fd, nil, unix.MSG_DONTWAIT)
	}
	n = min(n, uint32(len(frames)))
	for i := range n {
		d := s.rx.desc(s.rx.local)
		frames[i] = s.umem[d.Addr : d.Addr+uint64(d.Len)]
		s.held = append(s.held, d.Addr)
		s.rx.local++
	}
	s.rx.publish()
	return int(n), nil
}

// Write copies frames (complete link-layer frames) into free UMEM frames,
// puts them on the TX ring and has the kernel send them. It returns how
// many it queued, fewer than len(frames) when no UMEM frame or ring entry is
// free; the caller retries the rest.
func (s *Socket) Write(frames [][]byte) (int, error) {
	if s.tx.mem == nil {
		return 0, errors.New("xsk: socket has no TX ring")
	}
	// Frames the kernel has sent come back on the completion ring.
	for n := s.comp.ready(); n > 0; n-- {
		s.txFree = append(s.txFree, *s.comp.addr(s.comp.local))
		s.comp.local++
	}
	s.comp.publish()
	queued := 0
	for _, f := range frames {
		if len(s.txFree) == 0 || s.tx.free() == 0 {
			break
		}
		if uint64(len(f)) > s.frameSize {
			return queued, fmt.Errorf("xsk: frame of %d bytes, more than the %d of a UMEM frame", len(f), s.frameSize)
		}
		a := s.txFree[len(s.txFree)-1]
		s.txFree = s.txFree[:len(s.txFree)-1]
		copy(s.umem[a:], f)
		*s.tx.desc(s.tx.local) = unix.XDPDesc{Addr: a, Len: uint32(len(f))}
		s.tx.local++
		queued++
	}
	s.tx.publish()
	if !s.zeroCopy || s.tx.needWakeup() {
		return queued, s.kick()
	}
	return queued, nil
}

// maxKicks bounds the system calls of one Write in copy mode.
const maxKicks = 64

// kick has the kernel send what is on the TX ring. Copy mode sends only
// inside a system call, a budget of frames at a time, and answers EAGAIN
// while frames are left on the ring (or the device is busy).
func (s *Socket) kick() error {
	for range maxKicks {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0, unix.ENOBUFS:
			return nil
		case unix.EAGAIN, unix.EBUSY:
			if atomic.LoadUint32(s.tx.cons) == s.tx.local {
				return nil
			}
		default:
			return fmt.Errorf("xsk: sendto: %w", errno)
		}
	}
	return nil
}

// Stats returns the kernel's counters for the socket (XDP_STATISTICS).
func (s *Socket) Stats() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	l := uint32(unsafe.Sizeof(st))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0); errno != 0 {
		return st, fmt.Errorf("xsk: XDP_STATISTICS: %w", errno)
	}
	return st, nil
}

// Close closes the socket and unmaps its rings and UMEM.
func (s *Socket) Close() error {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		r.unmap()
	}
	if s.umem != nil {
		unix.Munmap(s.umem)
		s.umem = nil
	}
	return nil
}
