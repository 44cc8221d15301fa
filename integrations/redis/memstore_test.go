package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// memStore is an in-memory engine.Store: the mirror's source in tests that
// must keep appending while Redis is down.
type memStore struct {
	mu     sync.Mutex
	log    []engine.Event // log[i].Pos == i+1
	byExec map[string][]int
	sums   map[string]engine.Summary

	failReads atomic.Int64 // ReadFrom fails while > 0, counting down
}

func newMemStore() *memStore {
	return &memStore{byExec: map[string][]int{}, sums: map[string]engine.Summary{}}
}

var errInjected = errors.New("injected read failure")

func (m *memStore) Append(_ context.Context, events ...engine.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[string]int64{}
	for _, e := range events {
		last, ok := next[e.ExecutionID]
		if !ok {
			last = int64(len(m.byExec[e.ExecutionID]))
		}
		if e.Seq != last+1 {
			return fmt.Errorf("%w: %s seq %d after %d", ErrSequence, e.ExecutionID, e.Seq, last)
		}
		next[e.ExecutionID] = e.Seq
	}
	for _, e := range events {
		e.Pos = uint64(len(m.log) + 1)
		m.log = append(m.log, e)
		m.byExec[e.ExecutionID] = append(m.byExec[e.ExecutionID], len(m.log)-1)
		s := m.sums[e.ExecutionID]
		s.Apply(e)
		m.sums[e.ExecutionID] = s
	}
	return nil
}

func (m *memStore) Events(_ context.Context, id string) ([]engine.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []engine.Event{}
	for _, i := range m.byExec[id] {
		out = append(out, m.log[i])
	}
	return out, nil
}

func (m *memStore) ReadFrom(_ context.Context, after uint64, limit int) ([]engine.Event, error) {
	for {
		n := m.failReads.Load()
		if n <= 0 {
			break
		}
		if m.failReads.CompareAndSwap(n, n-1) {
			return nil, errInjected
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if after >= uint64(len(m.log)) {
		return nil, nil
	}
	end := min(uint64(len(m.log)), after+uint64(limit))
	return append([]engine.Event(nil), m.log[after:end]...), nil
}

func (m *memStore) LastPos(context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uint64(len(m.log)), nil
}

func (m *memStore) Unfinished(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, s := range m.sums {
		if s.Status != engine.StatusFinished {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *memStore) Get(_ context.Context, id string) (engine.Summary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sums[id]
	if !ok {
		return s, engine.ErrNotFound
	}
	return s, nil
}

func (m *memStore) History(_ context.Context, q engine.HistoryQuery) ([]engine.Summary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bruteHistory(m.sums, q), nil
}

func (m *memStore) Close() error { return nil }

// bruteHistory answers q over every summary: the reference the Redis
// History is checked against.
func bruteHistory(sums map[string]engine.Summary, q engine.HistoryQuery) []engine.Summary {
	out := []engine.Summary{}
	for _, s := range sums {
		if q.Match(s) {
			out = append(out, s)
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
	return out
}

func TestMemStoreSuite(t *testing.T) {
	// The fake must itself be a correct store for the mirror tests to mean
	// anything. Reopening keeps the same memory.
	enginetest.RunStoreSuite(t, func(t *testing.T) func() engine.Store {
		m := newMemStore()
		return func() engine.Store { return m }
	})
}

var tBase = time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)

// fiveStep returns the events of an execution with five steps, one of them
// gated by an approval: started, approval requested/decided, 5 x (step
// started, step finished), finished. 14 events.
func fiveStep(id string, i int) []engine.Event {
	start := tBase.Add(time.Duration(i) * time.Second)
	base := engine.Event{ExecutionID: id, RunbookName: fmt.Sprintf("rb-%d", i%7), RunbookVersion: "2.1.0", AuditLevel: "full"}
	var out []engine.Event
	add := func(typ engine.EventType, f func(*engine.Event)) {
		e := base
		e.Seq = int64(len(out) + 1)
		e.Type = typ
		e.Time = start.Add(time.Duration(len(out)) * time.Millisecond)
		if f != nil {
			f(&e)
		}
		out = append(out, e)
	}
	add(engine.EventExecutionStarted, func(e *engine.Event) {
		e.Trigger = &engine.TriggerInfo{Type: "alert", Source: "alertmanager", AlertID: "a-" + id, TriggeredBy: fmt.Sprintf("user%d", i%5)}
		e.Parameters = map[string]any{"namespace": "prod", "replicas": float64(i % 4)}
	})
	decided := start.Add(time.Second)
	add(engine.EventApprovalRequested, func(e *engine.Event) {
		e.Approval = &engine.ApprovalRecord{ID: "ap-" + id, Step: "s3", RequestedAt: start, Tier: 1}
	})
	add(engine.EventApprovalDecided, func(e *engine.Event) {
		e.Approval = &engine.ApprovalRecord{ID: "ap-" + id, Step: "s3", RequestedAt: start, Approver: "boss", Decision: engine.DecisionApprove, RespondedAt: &decided}
	})
	for s := 1; s <= 5; s++ {
		name := fmt.Sprintf("s%d", s)
		add(engine.EventStepStarted, func(e *engine.Event) {
			e.Step = &engine.StepRecord{Name: name, Phase: engine.PhaseStep, Index: s - 1, Status: engine.StepRunning, StartTime: &start}
		})
		add(engine.EventStepFinished, func(e *engine.Event) {
			end := start.Add(time.Duration(s) * time.Millisecond)
			e.Step = &engine.StepRecord{Name: name, Phase: engine.PhaseStep, Index: s - 1, Status: engine.StepSuccess,
				StartTime: &start, EndTime: &end, DurationMs: int64(s), Input: map[string]any{"k": name}, Output: map[string]any{"ok": true}}
		})
	}
	add(engine.EventExecutionFinished, func(e *engine.Event) { e.Outcome = engine.OutcomeSuccess })
	return out
}
