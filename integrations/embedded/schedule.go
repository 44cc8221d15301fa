package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Files beside the event log for schedules and the API's idempotency keys.
const (
	SchedulesFile   = "schedules.json"
	IdempotencyFile = "idempotency.json"
)

// Schedules keeps the scheduler's state in a file of the store directory
// (it implements schedule.Store for the one process that holds the
// store):
//
//	{"ticks": {"<schedule>": "<latest claimed tick, RFC 3339>"},
//	 "pauses": {"<schedule>": <the scheduler's pause record>}}
//
// Every change rewrites the file whole (a temporary file, fsynced, renamed
// over it), so it is either the old state or the new one after a crash.
type Schedules struct {
	mu   sync.Mutex
	path string
	st   scheduleFile
}

type scheduleFile struct {
	Ticks  map[string]time.Time       `json:"ticks"`
	Pauses map[string]json.RawMessage `json:"pauses"`
}

// OpenSchedules reads (or starts) the schedule state in dir. The caller
// holds the directory's store, whose lock keeps other processes out;
// OpenSchedules without it is for reading only.
func OpenSchedules(dir string) (*Schedules, error) {
	s := &Schedules{path: filepath.Join(dir, SchedulesFile)}
	if err := readJSON(s.path, &s.st); err != nil {
		return nil, fmt.Errorf("embedded: schedules: %w", err)
	}
	if s.st.Ticks == nil {
		s.st.Ticks = map[string]time.Time{}
	}
	if s.st.Pauses == nil {
		s.st.Pauses = map[string]json.RawMessage{}
	}
	return s, nil
}

// Claim records tick as the schedule's latest unless a tick at or after it
// was claimed, and reports whether this call claimed it.
func (s *Schedules) Claim(_ context.Context, schedule string, tick time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.st.Ticks[schedule]; ok && !tick.After(last) {
		return false, nil
	}
	prev, had := s.st.Ticks[schedule]
	s.st.Ticks[schedule] = tick.UTC()
	if err := writeJSON(s.path, s.st); err != nil {
		if had {
			s.st.Ticks[schedule] = prev
		} else {
			delete(s.st.Ticks, schedule)
		}
		return false, fmt.Errorf("embedded: claiming a tick of schedule %s: %w", schedule, err)
	}
	return true, nil
}

// Ticks returns the latest claimed tick of every schedule.
func (s *Schedules) Ticks(context.Context) (map[string]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.st.Ticks), nil
}

// SavePause replaces the schedule's pause record.
func (s *Schedules) SavePause(_ context.Context, schedule string, record []byte) error {
	if !json.Valid(record) {
		return fmt.Errorf("embedded: the pause record of schedule %s is not JSON", schedule)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.st.Pauses[schedule]
	s.st.Pauses[schedule] = slices.Clone(record)
	if err := writeJSON(s.path, s.st); err != nil {
		if had {
			s.st.Pauses[schedule] = prev
		} else {
			delete(s.st.Pauses, schedule)
		}
		return fmt.Errorf("embedded: saving the pause of schedule %s: %w", schedule, err)
	}
	return nil
}

// Pauses returns every schedule's pause record.
func (s *Schedules) Pauses(context.Context) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.st.Pauses))
	for k, v := range s.st.Pauses {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

// IdempotencyKeys remembers the API's Idempotency-Keys in a file of the
// store directory, so that a retry after a restart finds the first
// attempt: {"<key>": {"v": "<value>", "exp": "<RFC 3339>"}}, rewritten
// whole on each change; expired keys are dropped when it is written.
type IdempotencyKeys struct {
	mu   sync.Mutex
	path string
	now  func() time.Time
	keys map[string]idemEntry
}

type idemEntry struct {
	Value   string    `json:"v"`
	Expires time.Time `json:"exp"`
}

// OpenIdempotencyKeys reads (or starts) the keys in dir; now tells expiry
// (nil: the wall clock).
func OpenIdempotencyKeys(dir string, now func() time.Time) (*IdempotencyKeys, error) {
	if now == nil {
		now = time.Now
	}
	k := &IdempotencyKeys{path: filepath.Join(dir, IdempotencyFile), now: now, keys: map[string]idemEntry{}}
	if err := readJSON(k.path, &k.keys); err != nil {
		return nil, fmt.Errorf("embedded: idempotency keys: %w", err)
	}
	return k, nil
}

// Remember binds key to value for ttl unless it is bound, and returns what
// key is bound to (value, when this call bound it).
func (k *IdempotencyKeys) Remember(_ context.Context, key, value string, ttl time.Duration) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.keys[key]; ok && k.now().Before(e.Expires) {
		return e.Value, nil
	}
	return value, k.setLocked(key, value, ttl)
}

// Set binds key to value for ttl, whatever it was bound to.
func (k *IdempotencyKeys) Set(_ context.Context, key, value string, ttl time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.setLocked(key, value, ttl)
}

// Forget unbinds key when it is still bound to value.
func (k *IdempotencyKeys) Forget(_ context.Context, key, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.keys[key]
	if !ok || e.Value != value {
		return nil
	}
	delete(k.keys, key)
	if err := k.writeLocked(); err != nil {
		k.keys[key] = e
		return err
	}
	return nil
}

func (k *IdempotencyKeys) setLocked(key, value string, ttl time.Duration) error {
	prev, had := k.keys[key]
	k.keys[key] = idemEntry{Value: value, Expires: k.now().Add(ttl).UTC()}
	if err := k.writeLocked(); err != nil {
		if had {
			k.keys[key] = prev
		} else {
			delete(k.keys, key)
		}
		return err
	}
	return nil
}

func (k *IdempotencyKeys) writeLocked() error {
	now := k.now()
	for key, e := range k.keys {
		if !now.Before(e.Expires) {
			delete(k.keys, key)
		}
	}
	if err := writeJSON(k.path, k.keys); err != nil {
		return fmt.Errorf("embedded: saving idempotency keys: %w", err)
	}
	return nil
}

// readJSON reads path into v; a missing file leaves v as it is.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeJSON replaces path with v atomically and durably.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		return err
	}
	return nil
}
