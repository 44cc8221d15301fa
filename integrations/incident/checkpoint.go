package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Checkpoints keep the timeline's progress durably: one small document
// written with compare-and-set.
type Checkpoints interface {
	// Load returns the document and its version (nil and 0 when none
	// was saved yet).
	Load(ctx context.Context) (data []byte, version uint64, err error)
	// Save replaces the document if its version is still version, and
	// returns the new version; otherwise it returns ErrConflict.
	Save(ctx context.Context, data []byte, version uint64) (uint64, error)
}

// ErrConflict is returned by Checkpoints.Save when someone else saved
// since the version given.
var ErrConflict = errors.New("checkpoint changed since it was read")

// checkpoint is the timeline's durable state.
type checkpoint struct {
	// Cursor is the Pos of the last event fully handled.
	Cursor uint64 `json:"cursor"`
	// Executions are the open executions that have an incident.
	Executions map[string]*execRecord `json:"executions,omitempty"`
	// Pending is the progress within the event after Cursor.
	Pending *pending `json:"pending,omitempty"`
}

// pending says how far the handling of the event at Pos got: operations
// before Op are done; Op itself was sent (and may or may not have taken
// effect) when InFlight.
type pending struct {
	Pos      uint64    `json:"pos"`
	Op       int       `json:"op"`
	InFlight bool      `json:"inFlight,omitempty"`
	Owner    string    `json:"owner,omitempty"`
	At       time.Time `json:"at,omitzero"`
}

func (c *checkpoint) clone() *checkpoint {
	b, _ := json.Marshal(c)
	var out checkpoint
	_ = json.Unmarshal(b, &out)
	if out.Executions == nil {
		out.Executions = map[string]*execRecord{}
	}
	return &out
}

// MemoryCheckpoints keeps the checkpoint in memory (tests, dev).
type MemoryCheckpoints struct {
	mu      sync.Mutex
	data    []byte
	version uint64
}

// Load returns the document.
func (m *MemoryCheckpoints) Load(context.Context) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...), m.version, nil
}

// Save replaces the document when version matches.
func (m *MemoryCheckpoints) Save(_ context.Context, data []byte, version uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if version != m.version {
		return 0, ErrConflict
	}
	m.data = append([]byte(nil), data...)
	m.version++
	return m.version, nil
}

// FileCheckpoints keeps the checkpoint in a file, replaced atomically
// (write a temporary file, fsync, rename, fsync the directory). The
// version is kept in the file and compared under a lock file, so a second
// process sharing the file gets ErrConflict instead of overwriting newer
// progress.
type FileCheckpoints struct {
	path string
	mu   sync.Mutex
}

// NewFileCheckpoints returns checkpoints kept at path; its directory must
// exist.
func NewFileCheckpoints(path string) *FileCheckpoints { return &FileCheckpoints{path: path} }

type fileDoc struct {
	Version uint64          `json:"version"`
	Data    json.RawMessage `json:"data"`
}

// Load reads the file; a missing file is version 0.
func (f *FileCheckpoints) Load(context.Context) ([]byte, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *FileCheckpoints) load() ([]byte, uint64, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("incident checkpoint: %w", err)
	}
	var d fileDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, 0, fmt.Errorf("incident checkpoint %s is damaged: %w", f.path, err)
	}
	return d.Data, d.Version, nil
}

// Save writes the file when the stored version is version. The compare
// and the write happen under an flock(2) of path.lock, so two processes
// (or two FileCheckpoints) sharing the file take turns.
func (f *FileCheckpoints) Save(_ context.Context, data []byte, version uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	unlock, err := f.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	_, cur, err := f.load()
	if err != nil {
		return 0, err
	}
	if cur != version {
		return 0, ErrConflict
	}
	b, err := json.Marshal(fileDoc{Version: version + 1, Data: data})
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, ".incident-checkpoint-*")
	if err != nil {
		return 0, fmt.Errorf("incident checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("incident checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("incident checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("incident checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return 0, fmt.Errorf("incident checkpoint: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return version + 1, nil
}

// lock takes an exclusive flock on path.lock (created if missing) and
// returns its release.
func (f *FileCheckpoints) lock() (func(), error) {
	lf, err := os.OpenFile(f.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("incident checkpoint lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("incident checkpoint lock: %w", err)
	}
	return func() { lf.Close() }, nil // closing releases the flock
}
