package daemon

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// TestManualSASendCounterPersists restarts the daemon with the same manual
// SA (AES-GCM, whose nonce is the sequence number) and checks that the
// first sequence number after the restart is above the last one sent: after
// a crash (the reservation is all that was saved) and after a clean stop
// (the exact number was saved). The state files never hold the key.
func TestManualSASendCounterPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cfg := manualConfig(t, "a", "")
	cfg.Daemon.StateDir = dir
	nw := conntest.NewNetwork(1024)
	peer := nw.UDP(netip.MustParseAddrPort("192.0.2.2:4500"), 16, 256)
	bufs, sizes, addrs := [][]byte{make([]byte, 2048)}, []int{0}, []netip.AddrPort{{}}

	start := func() (*Daemon, *tuntest.Device) {
		dev := tuntest.New(1400, 16, 256)
		d, err := New(cfg, Options{TUN: dev, UDP: nw.UDP(netip.MustParseAddrPort("192.0.2.1:4500"), 16, 256),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return d, dev
	}
	// send sends one packet through the SA and returns its sequence number
	// as the peer sees it (RFC 4303, Section 2: SPI, then sequence number).
	send := func(dev *tuntest.Device) uint32 {
		t.Helper()
		dev.In <- tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:1000"), netip.MustParseAddrPort("10.2.0.1:2000"), []byte("x"))
		got := make(chan uint32, 1)
		go func() {
			if n, err := peer.Read(bufs, sizes, addrs, 0); err == nil && n == 1 && sizes[0] >= 8 {
				got <- binary.BigEndian.Uint32(bufs[0][4:])
			}
			close(got)
		}()
		select {
		case s, ok := <-got:
			if !ok {
				t.Fatal("the peer got no ESP packet")
			}
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("the peer got nothing")
		}
		return 0
	}

	d1, dev1 := start()
	var last uint32
	for i := range 3 {
		if last = send(dev1); last != uint32(i+1) {
			t.Fatalf("fresh SA: sequence number %d, want %d", last, i+1)
		}
	}
	// A crash: the data plane stops, nothing is saved on the way out.
	d1.dp.Close()

	d2, dev2 := start()
	first := send(dev2)
	if first <= last {
		t.Fatalf("after a crash: first sequence number %d, last sent before %d: nonces repeat", first, last)
	}
	t.Logf("after a crash: last sent %d, first after restart %d", last, first)
	last = send(dev2)
	d2.Close()

	d3, dev3 := start()
	defer d3.Close()
	if first = send(dev3); first != last+1 {
		t.Fatalf("after a clean stop: first sequence number %d, want %d", first, last+1)
	}

	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode: %v, %v; want 0700", fi.Mode(), err)
	}
	if len(files) != 1 {
		t.Fatalf("state files: %v, want one", files)
	}
	b, err := os.ReadFile(filepath.Join(dir, files[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimPrefix(keyAB, "0x")
	if strings.Contains(files[0].Name()+string(b), key[:16]) {
		t.Errorf("state file %s holds the key: %q", files[0].Name(), b)
	}
}

// TestManualSAStateDirNotWritable checks that a manual SA whose suite takes
// its nonce from the sequence number is refused, with an error that says
// why and what to do, when its send counter cannot be saved.
func TestManualSAStateDirNotWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := manualConfig(t, "a", "")
	cfg.Daemon.StateDir = filepath.Join(file, "state") // below a regular file: not even root can create it
	nw := conntest.NewNetwork(16)
	d, err := New(cfg, Options{TUN: tuntest.New(1400, 16, 256), UDP: nw.UDP(netip.MustParseAddrPort("192.0.2.1:4500"), 16, 256),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		d.Close()
		t.Fatal("manual AES-GCM SA installed without a writable state directory")
	}
	for _, want := range []string{"daemon: manual SA lab: refused", "aes256gcm16", "daemon.state_dir", "not a directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestNeedsUniqueNonce checks which suites need the persistent counter.
func TestNeedsUniqueNonce(t *testing.T) {
	for name, want := range map[string]bool{
		"aes256gcm16": true, "chacha20poly1305": true, "aes128gmac": true, "aes128ctr-sha256": true,
		"aes128-sha256": false, "null-sha256": false,
	} {
		s, err := transform.ParseESP(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := needsUniqueNonce(s); got != want {
			t.Errorf("needsUniqueNonce(%s) = %v, want %v", name, got, want)
		}
	}
	s, err := transform.ParseAH("sha256")
	if err != nil {
		t.Fatal(err)
	}
	if needsUniqueNonce(s) {
		t.Error("needsUniqueNonce(AH sha256) = true")
	}
}

// countingOutbound is an outbound engine that only counts.
type countingOutbound struct{ last uint64 }

func (c *countingOutbound) Overhead() (int, int)     { return 0, 0 }
func (c *countingOutbound) NextSeq() (uint64, error) { c.last++; return c.last, nil }
func (c *countingOutbound) LastSeq() uint64          { return c.last }
func (c *countingOutbound) SealSeq(buf []byte, start, end int, seq uint64) (int, int, error) {
	return start, end, nil
}

// TestManualSACounterReservedBeforeUse hands out two and a half blocks of
// sequence numbers and checks that the state file covers each number before
// it is handed out; then it takes the state directory away and checks that
// the SA stops at the end of its reservation instead of going past it.
func TestManualSACounterReservedBeforeUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	store := &seqStore{dir: dir}
	path := store.counterPath(sa.ESP, 0x1001, []byte("key"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := newReservingOutbound(&countingOutbound{}, store, path, 0, false, log)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		t.Helper()
		n, err := store.load(path)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := uint64(1); i < 5*seqBlock/2-10; i++ { // short of the early reservation at 5/2 blocks
		seq, err := r.NextSeq()
		if err != nil || seq != i {
			t.Fatalf("NextSeq = %d, %v; want %d", seq, err, i)
		}
		if i%seqBlock == 0 || i%seqBlock == 1 {
			if next := stored(); next <= seq {
				t.Fatalf("sequence number %d handed out, state file says next %d", seq, next)
			}
		}
	}

	// The state directory goes away (a full or read-only disk), once no
	// write is under way.
	r.mu.Lock()
	r.mu.Unlock()
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir+".gone", filepath.Base(path)))
	if err != nil {
		t.Fatal(err)
	}
	next, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(b), "next ")), 10, 64)
	for {
		seq, err := r.NextSeq()
		if err != nil {
			if err != sa.DropSeqExhausted {
				t.Fatalf("NextSeq error %v, want sa.DropSeqExhausted", err)
			}
			break
		}
		if seq >= next {
			t.Fatalf("sequence number %d handed out beyond the reservation (next %d) after the state was lost", seq, next)
		}
	}
}
