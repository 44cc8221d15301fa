package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Store keeps what replicas must agree on: which tick of each schedule was
// claimed last, and which schedules are paused. The Redis store and the
// embedded store implement it (integrations/redis, integrations/embedded);
// every implementation passes scheduletest.RunStoreSuite. Pause records are
// opaque to the store.
type Store interface {
	// Claim records tick as the latest tick of the schedule and returns
	// true, when no tick at or after it was claimed before; otherwise it
	// changes nothing and returns false. Of concurrent claims of one tick,
	// exactly one returns true.
	Claim(ctx context.Context, schedule string, tick time.Time) (bool, error)
	// Ticks returns the latest claimed tick of every schedule claimed.
	Ticks(ctx context.Context) (map[string]time.Time, error)
	// SavePause replaces the schedule's pause record.
	SavePause(ctx context.Context, schedule string, record []byte) error
	// Pauses returns the pause record of every schedule that has one.
	Pauses(ctx context.Context) (map[string][]byte, error)
}

// Pause is the last pause or resume of a schedule.
type Pause struct {
	Paused bool      `json:"paused"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// State is what is known of one schedule.
type State struct {
	// Last is the latest claimed tick (zero: never fired).
	Last time.Time
	// Pause is the last pause or resume (zero: never paused).
	Pause Pause
}

// readStates reads every schedule's state from store.
func readStates(ctx context.Context, store Store) (map[string]State, error) {
	ticks, err := store.Ticks(ctx)
	if err != nil {
		return nil, err
	}
	pauses, err := store.Pauses(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]State, len(ticks))
	for name, t := range ticks {
		out[name] = State{Last: t}
	}
	for name, rec := range pauses {
		var p Pause
		if err := json.Unmarshal(rec, &p); err != nil {
			return nil, fmt.Errorf("schedule %s: bad pause record: %w", name, err)
		}
		st := out[name]
		st.Pause = p
		out[name] = st
	}
	return out, nil
}

// MemoryStore is a Store in memory: for one process with nothing to keep
// across restarts (tests, the terminal).
type MemoryStore struct {
	mu     sync.Mutex
	ticks  map[string]time.Time
	pauses map[string][]byte
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{ticks: map[string]time.Time{}, pauses: map[string][]byte{}}
}

// Claim implements Store.
func (m *MemoryStore) Claim(_ context.Context, name string, tick time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if last, ok := m.ticks[name]; ok && !tick.After(last) {
		return false, nil
	}
	m.ticks[name] = tick.UTC()
	return true, nil
}

// Ticks implements Store.
func (m *MemoryStore) Ticks(context.Context) (map[string]time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ticks), nil
}

// SavePause implements Store.
func (m *MemoryStore) SavePause(_ context.Context, name string, rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pauses[name] = slices.Clone(rec)
	return nil
}

// Pauses implements Store.
func (m *MemoryStore) Pauses(context.Context) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.pauses))
	for k, v := range m.pauses {
		out[k] = slices.Clone(v)
	}
	return out, nil
}
