package schedule

import (
	"context"
	"sync"
	"time"
)

// Store keeps what replicas must agree on: which tick of each schedule was
// claimed last, and which schedules are paused. The Redis store and the
// embedded store implement it (integrations/redis, integrations/embedded);
// every implementation passes scheduletest.RunStoreSuite.
type Store interface {
	// Claim records tick as the latest tick of the schedule and returns
	// true, when no tick at or after it was claimed before; otherwise it
	// changes nothing and returns false. Of concurrent claims of one tick,
	// exactly one returns true.
	Claim(ctx context.Context, schedule string, tick time.Time) (bool, error)
	// SetPause records that the schedule was paused or resumed.
	SetPause(ctx context.Context, schedule string, p Pause) error
	// States returns what is known of every schedule that was claimed or
	// paused, by name.
	States(ctx context.Context) (map[string]State, error)
}

// Pause is the last pause or resume of a schedule.
type Pause struct {
	Paused bool      `json:"paused"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// State is what a Store knows of one schedule.
type State struct {
	// Last is the latest claimed tick (zero: never fired).
	Last time.Time `json:"last,omitzero"`
	// Pause is the last pause or resume (zero: never paused).
	Pause Pause `json:"pause,omitzero"`
}

// MemoryStore is a Store in memory: for one process with nothing to keep
// across restarts (tests, the terminal).
type MemoryStore struct {
	mu     sync.Mutex
	states map[string]State
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{states: map[string]State{}} }

// Claim implements Store.
func (m *MemoryStore) Claim(_ context.Context, name string, tick time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.states[name]
	if !st.Last.IsZero() && !tick.After(st.Last) {
		return false, nil
	}
	st.Last = tick.UTC()
	m.states[name] = st
	return true, nil
}

// SetPause implements Store.
func (m *MemoryStore) SetPause(_ context.Context, name string, p Pause) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.states[name]
	p.At = p.At.UTC()
	st.Pause = p
	m.states[name] = st
	return nil
}

// States implements Store.
func (m *MemoryStore) States(context.Context) (map[string]State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]State, len(m.states))
	for k, v := range m.states {
		out[k] = v
	}
	return out, nil
}
