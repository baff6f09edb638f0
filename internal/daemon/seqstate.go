package daemon

// Send counters of manual SAs that survive restarts.
//
// A manual SA has static keys, and the counter-based transforms (AES-GCM,
// ChaCha20-Poly1305, AES-GMAC, AES-CTR) build their nonce from the sequence
// number: a sender that starts again at 1 under the same key repeats nonces,
// which gives away the keystream and, for GCM, the authentication key
// (RFC 4106, Section 3.1: the IV must never repeat for a key; RFC 3686,
// Section 2.1 for CTR). The daemon therefore keeps, per manual SA, the
// first sequence number it may still use ("next N": every number below N
// may have been sent), in a file under daemon.state_dir, and reserves
// numbers ahead in blocks: before the counter passes the reserved limit, the
// new one (current + seqBlock) is written durably (temporary file, fsync,
// rename, fsync of the directory). After a crash the SA resumes past the
// reservation, so past anything it sent (wasting at most one block: 4096
// crashes use up a 32-bit counter); a clean removal or stop writes the exact
// next number.
//
// The file is named by protocol, outbound SPI and a hash of the outbound key,
// never the key: new keys (or a new SPI) start a new counter at 1.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// seqBlock is how many sequence numbers one durable write reserves.
const seqBlock = 1 << 20

// needsUniqueNonce reports whether s builds its nonce from the sequence
// number, so that a repeated sequence number under one key repeats a nonce.
// AES-CBC draws a random IV (RFC 3602, Section 2.4) and AH has none.
func needsUniqueNonce(s transform.Suite) bool {
	return s.Kind == transform.KindAEAD || s.Kind == transform.KindGMAC || s.Encr == iana.EncrAESCTR
}

// seqStore keeps the send counters of manual SAs in a directory, which it
// creates (mode 0700) when the first manual SA needs it.
type seqStore struct {
	dir  string
	once sync.Once
	err  error // why the directory is not usable, if it is not
}

// open creates the directory if needed and checks that it can be written,
// once. A failure is kept and returned every time.
func (s *seqStore) open() error {
	s.once.Do(func() {
		if s.dir == "" {
			s.err = errors.New("daemon: no state directory (daemon.state_dir)")
			return
		}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			s.err = fmt.Errorf("daemon: state directory: %w", err)
			return
		}
		f, err := os.CreateTemp(s.dir, ".probe-*")
		if err != nil {
			s.err = fmt.Errorf("daemon: state directory %s is not writable: %w", s.dir, err)
			return
		}
		f.Close()
		os.Remove(f.Name())
	})
	return s.err
}

// counterPath is the file of the outbound counter of an SA.
func (s *seqStore) counterPath(proto sa.Protocol, spi uint32, key []byte) string {
	h := sha256.New()
	h.Write([]byte("goipsec manual SA send counter\x00"))
	h.Write(key)
	return filepath.Join(s.dir, fmt.Sprintf("seq-%s-%08x-%s", strings.ToLower(proto.String()), spi, hex.EncodeToString(h.Sum(nil)[:16])))
}

// load returns the first number the counter at path may use: 0 (meaning 1)
// if there is no such file.
func (s *seqStore) load(path string) (uint64, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("daemon: send counter: %w", err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "next ")
	n, perr := strconv.ParseUint(v, 10, 64)
	if !ok || perr != nil {
		// Refuse to guess: starting lower could repeat nonces.
		return 0, fmt.Errorf("daemon: send counter %s is corrupt; remove it only with new keys", path)
	}
	return n, nil
}

// store writes next durably: the file says that no number from next on has
// been used.
func (s *seqStore) store(path string, next uint64) error {
	if err := s.open(); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".seq-*")
	if err != nil {
		return fmt.Errorf("daemon: send counter: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = fmt.Fprintf(tmp, "next %d\n", next)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("daemon: send counter: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// reservingOutbound is an outbound engine whose sequence numbers never pass
// what the seqStore has durably reserved.
type reservingOutbound struct {
	sad.Outbound
	store *seqStore
	path  string
	max   uint64 // sa.MaxSeq of the SA
	log   *slog.Logger

	limit   atomic.Uint64 // numbers up to limit are reserved; 0 after release
	trigger atomic.Uint64 // the number at which to reserve the next block early
	mu      sync.Mutex    // serializes writes
	closed  bool
	failed  atomic.Bool // a reservation failed (logged once)
}

// errReleased refuses numbers after release.
var errReleased = errors.New("daemon: manual SA removed")

// newReservingOutbound wraps out, whose counter starts after start, the
// limit loaded from the store, and reserves the first block. It fails if
// the block cannot be written.
func newReservingOutbound(out sad.Outbound, store *seqStore, path string, start uint64, esn bool, log *slog.Logger) (*reservingOutbound, error) {
	// With ESN the last number, 2^64-1, stays unused so that "next"
	// always fits in 64 bits.
	r := &reservingOutbound{Outbound: out, store: store, path: path, max: min(sa.MaxSeq(esn), math.MaxUint64-1), log: log}
	if err := r.reserve(start + 1); err != nil {
		return nil, err
	}
	return r, nil
}

// Unwrap returns the engine, which seals the packets: the data plane finds
// its bare ESP methods through it.
func (r *reservingOutbound) Unwrap() sad.Outbound { return r.Outbound }

// NextSeq hands out the engine's next number once it is reserved. A number
// that cannot be reserved is not used: the packet is dropped with
// sa.DropSeqExhausted.
func (r *reservingOutbound) NextSeq() (uint64, error) {
	seq, err := r.Outbound.NextSeq()
	if err != nil {
		return seq, err
	}
	if seq <= r.limit.Load() {
		if seq == r.trigger.Load() {
			// Half the block is gone: reserve the next one off the data
			// path, so that it rarely waits for the disk.
			go r.reserve(seq + seqBlock/2 + 1)
		}
		return seq, nil
	}
	if err := r.reserve(seq); err != nil {
		if !errors.Is(err, errReleased) && !r.failed.Swap(true) {
			r.log.Error("manual SA stops sending: its send counter cannot be saved", "file", r.path, "err", err)
		}
		return 0, sa.DropSeqExhausted
	}
	return seq, nil
}

// reserve makes sure that numbers up to seq are reserved on disk.
func (r *reservingOutbound) reserve(seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errReleased
	}
	if seq <= r.limit.Load() {
		return nil
	}
	limit := r.max
	if r.max-seq >= seqBlock {
		limit = seq + seqBlock - 1
	}
	if err := r.store.store(r.path, limit+1); err != nil {
		return err
	}
	r.trigger.Store(limit - seqBlock/2)
	r.limit.Store(limit)
	return nil
}

// release stops the counter and writes the last number it handed out, so
// that the next start wastes none. Numbers handed out concurrently are
// either counted or refused.
func (r *reservingOutbound) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.limit.Store(0) // from here on every number takes the slow path and is refused
	last, ok := r.Outbound.(interface{ LastSeq() uint64 })
	if !ok {
		return // the reservation stays: safe, if wasteful
	}
	if err := r.store.store(r.path, last.LastSeq()+1); err != nil {
		r.log.Warn("manual SA: cannot save the send counter on removal; the next start skips the reserved block", "file", r.path, "err", err)
	}
}

// Meter returns the engine's meter, for the data plane's timers.
func (r *reservingOutbound) Meter() *sa.Meter {
	if m, ok := r.Outbound.(interface{ Meter() *sa.Meter }); ok {
		return m.Meter()
	}
	return nil
}
