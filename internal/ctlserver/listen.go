package ctlserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// staleProbeTimeout bounds the check for a live daemon on an existing socket.
const staleProbeTimeout = time.Second

// maxSocketPath is the longest path a unix socket can be bound to on Linux
// (sun_path holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Listen creates the control socket at path and listens on it. It creates
// the socket's directory (mode 0755) if needed. The socket gets mode 0600
// before it appears under its name, so no other user can connect even for a
// moment. An existing socket is removed only if nothing answers on it (a
// stale socket left by a daemon that crashed); if a daemon answers, or the
// path is something other than a socket, Listen refuses.
//
// Closing the listener removes the socket, unless another one has replaced
// it since.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("ctlserver: empty socket path")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("ctlserver: socket path %s is longer than %d bytes", path, maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ctlserver: creating the socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}

	// Bind in a private directory (MkdirTemp makes it 0700), set the mode,
	// then link the socket to its name: there is no moment when the socket
	// is reachable with a wider mode.
	tmpDir, err := os.MkdirTemp(dir, ".s")
	if err != nil {
		return nil, fmt.Errorf("ctlserver: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("ctlserver: socket path %s is too long to create safely (the temporary name %s is over %d bytes)", path, tmp, maxSocketPath)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ctlserver: listening on %s: %w", path, err)
	}
	ul.SetUnlinkOnClose(false) // we unlink the published name ourselves
	if err := os.Chmod(tmp, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("ctlserver: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			ul.Close()
			return nil, fmt.Errorf("ctlserver: %s appeared while starting; is another ipsecd starting?", path)
		}
		// A file system without hard links: rename, which would replace
		// a file created since removeStale looked.
		if err := os.Rename(tmp, path); err != nil {
			ul.Close()
			return nil, fmt.Errorf("ctlserver: %w", err)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("ctlserver: %w", err)
	}
	return &listener{UnixListener: ul, path: path, fi: fi}, nil
}

// removeStale removes the socket at path if nothing answers on it. It fails
// if a daemon answers or the path is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ctlserver: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("ctlserver: %s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("ctlserver: another ipsecd is already listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("ctlserver: checking for a live daemon on %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ctlserver: removing stale socket: %w", err)
	}
	return nil
}

// listener is the control socket. It reports its published path as its
// address and removes that path on Close.
type listener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo // the socket as published, to recognise it on Close

	once     sync.Once
	closeErr error
}

// Addr returns the socket's path.
func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops listening and removes the socket if it is still ours.
func (l *listener) Close() error {
	l.once.Do(func() {
		l.closeErr = l.UnixListener.Close()
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return l.closeErr
}
