package policysource

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/goipsec/goipsec/config"
)

// cache is the cache file's content: the documents of the last good
// policy, all of those under the prefix, so that a host whose labels
// changed selects again. Documents hold no secrets (config.ParseFragment
// refuses them), but they decide what is protected, so the file is
// written with mode 0600 and one writable by others is not read.
type cache struct {
	Prefix    string     `json:"prefix"`
	Revision  int64      `json:"revision"`
	Documents []Document `json:"documents"`
}

// maxCacheSize bounds the cache file read at start.
const maxCacheSize = maxDocuments * maxDocumentSize / 16

// writeCache replaces the cache file at path atomically: a new file in the
// same directory, synced, then renamed over the old one.
func writeCache(path string, c cache) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("policysource: cache: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("policysource: cache: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("policysource: cache: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	// CreateTemp makes the file with mode 0600.
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("policysource: cache: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("policysource: cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("policysource: cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("policysource: cache: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename itself survives a crash
		d.Close()
	}
	return nil
}

// readCache reads the cache file at path, written for prefix.
func readCache(path, prefix string) (cache, error) {
	f, err := os.Open(path)
	if err != nil {
		return cache{}, fmt.Errorf("policysource: cache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return cache{}, fmt.Errorf("policysource: cache: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return cache{}, fmt.Errorf("policysource: cache %s is writable by group or others (mode %04o): not used", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCacheSize+1))
	if err != nil {
		return cache{}, fmt.Errorf("policysource: cache: %w", err)
	}
	if len(b) > maxCacheSize {
		return cache{}, fmt.Errorf("policysource: cache %s is larger than %d bytes", path, maxCacheSize)
	}
	var c cache
	if err := json.Unmarshal(b, &c); err != nil {
		return cache{}, fmt.Errorf("policysource: cache %s: %w", path, err)
	}
	if c.Prefix != prefix {
		return cache{}, fmt.Errorf("policysource: cache %s holds prefix %s, not %s", path, c.Prefix, prefix)
	}
	return c, nil
}

// Cached returns local, the local file's configuration, merged with the
// documents of the cache file of its etcd source (policy_sources.etcd.cache)
// as Load would start from them, without contacting the cluster: for
// ipsecd --fail-closed at boot, before the network is up. It returns local
// itself when local names no etcd source. When the cache cannot be read or
// its documents are refused, it returns local and the error, so that the
// caller enforces the local file alone and says why.
func Cached(local *config.Config) (*config.Config, error) {
	e := local.PolicySources.Etcd
	if e == nil {
		return local, nil
	}
	c, err := readCache(e.Cache, e.Prefix)
	if err != nil {
		return local, err
	}
	s := New(Options{Etcd: *e, Logger: slog.New(slog.DiscardHandler)})
	merged, _, err := s.build(local, c.Documents)
	if err != nil {
		return local, fmt.Errorf("policysource: cache %s: %w", e.Cache, err)
	}
	return merged, nil
}
