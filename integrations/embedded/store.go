// Package embedded is runbookbot's default event store: a single local
// directory holding an append-only, checksummed log, with no outside server.
//
// Layout of the directory:
//
//	LOCK        flock(2)-held while a process has the store open
//	events.log  the event log (see below)
//
// The log starts with an 8-byte magic string followed by records. Each record
// is one engine.Event encoded as JSON and framed by a 16-byte header:
//
//	uint32 LE  payload length; the top bit is set when more events of the
//	           same Append call follow (so a call is all-or-nothing on replay)
//	uint32 LE  CRC-32C of the length word, the position and the payload
//	uint64 LE  Pos, the event's global position (1, 2, 3, ...)
//
// On Open the log is scanned: the first record that is short, fails its
// checksum or ends inside an unfinished Append call marks a torn write, and
// the log is truncated there (the dropped bytes are first copied to a
// side file, events.log.torn-OFFSET-TIME). Earlier records are never lost
// and the store opens normally.
//
// Append is durable: it returns only after the bytes are fsynced. One writer
// goroutine batches the Appends of all goroutines into a single write and
// fsync (group commit). The writer also assigns Pos and checks that each
// execution's events arrive with consecutive Seq numbers, which catches an
// execution being driven twice.
//
// Reads are served from in-memory indexes rebuilt on Open: the file offset of
// every Pos, the positions of every execution, a Summary per execution kept
// sorted for History, and the set of unfinished executions. Events themselves
// stay on disk and are read back with pread.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/runbookbot/runbookbot/engine"
)

// File names inside the store directory.
const (
	logName  = "events.log"
	lockName = "LOCK"
)

// Errors returned by the store. They are wrapped with details; test them
// with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("embedded: store is closed")
	// ErrLocked is returned by Open when another process (or another Store
	// in this process) has the directory open.
	ErrLocked = errors.New("embedded: store directory is locked")
	// ErrSeq is returned by Append when an execution's events do not
	// continue its sequence: a gap, a duplicate or a replay. The usual cause
	// is two executors driving the same execution.
	ErrSeq = errors.New("embedded: event out of sequence")
	// ErrCorrupt is returned by Open when the log holds a record with a valid
	// checksum that is nevertheless inconsistent, which a torn write cannot
	// explain. Such a log is not repaired automatically.
	ErrCorrupt = errors.New("embedded: corrupt event log")
)

// Store is the embedded engine.Store. It is safe for concurrent use.
type Store struct {
	dir    string
	logger *slog.Logger
	file   *os.File // the log, read with ReadAt and written by the writer
	lock   *os.File // the LOCK file, flocked

	// life guards closed. Every method holds it shared for its duration
	// (Append only while handing its request to the writer); Close takes it
	// exclusively, so it waits for callers in flight.
	life   sync.RWMutex
	closed bool
	// readOnly stores (OpenReadOnly) have no lock, writer or Append.
	readOnly bool

	reqs       chan *request // Appends waiting for the writer
	writerDone chan struct{}

	idx index // in-memory indexes, guarded by idx.mu

	// Writer-owned state (only the writer goroutine touches it once Open
	// returns).
	nextPos uint64 // Pos of the next event to write
	failed  error  // sticky write/sync error: the store refuses new Appends
	buf     []byte // reused batch buffer

	// broken mirrors failed for other goroutines (Writable).
	broken atomic.Pointer[error]

	syncs     atomic.Uint64 // fsyncs of batches, for Stats
	tornBytes int64         // bytes dropped by recovery in Open
}

var _ engine.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger sets where the store reports recovery from a torn write and
// write failures. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// DefaultDir returns the per-user store directory: $XDG_DATA_HOME/runbookbot,
// or ~/.local/share/runbookbot when XDG_DATA_HOME is unset or not absolute.
// It does not create the directory; Open does.
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "runbookbot"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("embedded: no default store directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "runbookbot"), nil
}

// Open opens the store in dir, creating the directory and the log if
// needed, locking the directory against other processes, and rebuilding the
// indexes from the log. A torn write at the end of the log is truncated (and
// reported to the logger), never fatal.
func Open(dir string, opts ...Option) (*Store, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if dir == "" {
		return nil, errors.New("embedded: empty store directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: create store directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:        dir,
		logger:     o.logger,
		lock:       lock,
		reqs:       make(chan *request, 4096),
		writerDone: make(chan struct{}),
		nextPos:    1,
	}
	s.idx.init()
	if err := s.openLog(); err != nil {
		s.file.Close() // nil-safe: (*os.File).Close on nil returns an error
		unlock(lock)
		return nil, err
	}
	go s.run()
	return s, nil
}

// ErrReadOnly is returned by Append on a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("embedded: store opened read-only")

// OpenReadOnly opens a snapshot of the store in dir without taking its lock,
// so a running bot's history can be read (runbookbot history) while it
// writes. It sees what was written when it opened; Append returns
// ErrReadOnly.
func OpenReadOnly(dir string) (*Store, error) {
	path := filepath.Join(dir, logName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	s := &Store{dir: dir, logger: slog.New(slog.DiscardHandler), file: f, readOnly: true, nextPos: 1}
	s.idx.init()
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("embedded: stat log: %w", err)
	}
	if fi.Size() <= int64(len(magic)) {
		s.idx.end = fi.Size()
		return s, nil
	}
	if err := s.replay(fi.Size()); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// openLog opens or creates the log file and replays it into the indexes.
func (s *Store) openLog() error {
	path := filepath.Join(s.dir, logName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("embedded: open log: %w", err)
	}
	s.file = f
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("embedded: stat log: %w", err)
	}
	if fi.Size() < int64(len(magic)) {
		// New log, or one torn while its header was being written.
		head := make([]byte, fi.Size())
		if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
			return fmt.Errorf("embedded: read log header: %w", err)
		}
		if !strings.HasPrefix(magic, string(head)) {
			return fmt.Errorf("%w: %s does not start with the runbookbot log header", ErrCorrupt, path)
		}
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("embedded: init log: %w", err)
		}
		if _, err := f.WriteAt([]byte(magic), 0); err != nil {
			return fmt.Errorf("embedded: init log: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("embedded: init log: %w", err)
		}
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.idx.end = int64(len(magic))
		return nil
	}
	return s.replay(fi.Size())
}

// Close stops accepting Appends, waits for the writer to finish the batches
// already handed to it, closes the log and releases the directory lock.
// Calls after the first return nil.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	s.closed = true
	if s.readOnly {
		s.life.Unlock()
		return s.file.Close()
	}
	close(s.reqs)
	s.life.Unlock()

	<-s.writerDone
	err := s.file.Close()
	if uerr := unlock(s.lock); err == nil {
		err = uerr
	}
	return err
}

// enter marks the start of a read call; it fails once the store is closed.
// The caller must call s.life.RUnlock when done.
func (s *Store) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Stats describes the store, for metrics and tests.
type Stats struct {
	Events     uint64 // events in the log
	Executions int    // executions known
	Unfinished int    // executions without execution.finished
	LogBytes   int64  // size of the log file
	Syncs      uint64 // batches fsynced since Open (group commits)
	TornBytes  int64  // bytes of a torn tail dropped by Open
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	return Stats{
		Events:     uint64(len(s.idx.offsets)),
		Executions: len(s.idx.execs),
		Unfinished: len(s.idx.unfinished),
		LogBytes:   s.idx.end,
		Syncs:      s.syncs.Load(),
		TornBytes:  s.tornBytes,
	}
}

// lockDir takes an exclusive, non-blocking flock on dir/LOCK and records the
// holder's pid in it. The kernel drops the lock when the process dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "unknown pid"
		if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another runbookbot (%s); stop it or use another directory",
				ErrLocked, dir, holder)
		}
		return nil, fmt.Errorf("embedded: lock %s: %w", path, err)
	}
	// Best effort: the pid only makes the error above friendlier.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// unlock releases the flock by closing the file; the LOCK file stays.
func unlock(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}

// syncDir fsyncs a directory so that a created or renamed entry in it is
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("embedded: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("embedded: sync dir %s: %w", dir, err)
	}
	return nil
}

// Writable reports whether the store takes new events: nil, or why not
// (opened read-only, closed, or a failed write or fsync made it refuse
// Appends until it is reopened). Readiness checks use it.
func (s *Store) Writable(context.Context) error {
	s.life.RLock()
	defer s.life.RUnlock()
	switch {
	case s.readOnly:
		return errors.New("the embedded store is open read-only")
	case s.closed:
		return errors.New("the embedded store is closed")
	}
	if err := s.broken.Load(); err != nil {
		return *err
	}
	return nil
}
