package enginetest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/runbookbot/runbookbot/engine"
)

// MemStore is an in-memory engine.Store for unit tests. It is not durable.
type MemStore struct {
	mu      sync.Mutex
	events  []engine.Event
	byExec  map[string][]int
	sums    map[string]*engine.Summary
	changed chan struct{}
	// FailAppend, when set, makes Append fail with it.
	FailAppend error
}

var _ engine.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{byExec: map[string][]int{}, sums: map[string]*engine.Summary{}, changed: make(chan struct{})}
}

// Append stores events, checking per-execution sequence numbers.
func (s *MemStore) Append(_ context.Context, evs ...engine.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.FailAppend != nil {
		return s.FailAppend
	}
	for _, e := range evs {
		idx := s.byExec[e.ExecutionID]
		want := int64(len(idx)) + 1
		if e.Seq != want {
			return fmt.Errorf("execution %s: event seq %d, want %d", e.ExecutionID, e.Seq, want)
		}
		e.Pos = uint64(len(s.events)) + 1
		s.events = append(s.events, e)
		s.byExec[e.ExecutionID] = append(idx, len(s.events)-1)
		sum := s.sums[e.ExecutionID]
		if sum == nil {
			sum = &engine.Summary{}
			s.sums[e.ExecutionID] = sum
		}
		sum.Apply(e)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// Changed returns a channel closed at the next append.
func (s *MemStore) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Events returns one execution's events.
func (s *MemStore) Events(_ context.Context, id string) ([]engine.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]engine.Event, 0, len(s.byExec[id]))
	for _, i := range s.byExec[id] {
		out = append(out, s.events[i])
	}
	return out, nil
}

// ReadFrom returns events after a position.
func (s *MemStore) ReadFrom(_ context.Context, after uint64, limit int) ([]engine.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if after >= uint64(len(s.events)) {
		return nil, nil
	}
	end := min(len(s.events), int(after)+limit)
	return append([]engine.Event(nil), s.events[after:end]...), nil
}

// LastPos returns the position of the newest event (0 when empty).
func (s *MemStore) LastPos(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.events)), nil
}

// Unfinished lists executions without a finished event.
func (s *MemStore) Unfinished(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, sum := range s.sums {
		if sum.Status != engine.StatusFinished {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Get returns a summary.
func (s *MemStore) Get(_ context.Context, id string) (engine.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, ok := s.sums[id]
	if !ok {
		return engine.Summary{}, engine.ErrNotFound
	}
	return *sum, nil
}

// History filters summaries, newest first.
func (s *MemStore) History(_ context.Context, q engine.HistoryQuery) ([]engine.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []engine.Summary
	for _, sum := range s.sums {
		if q.Match(*sum) {
			out = append(out, *sum)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.After(out[j].StartedAt)
		}
		return out[i].ExecutionID > out[j].ExecutionID
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Close does nothing.
func (s *MemStore) Close() error { return nil }
