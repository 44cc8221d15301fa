package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// memStore is the shared in-memory engine.Store with read failures that
// tests can inject: the mirror's source in tests that must keep appending
// while Redis is down.
type memStore struct {
	*enginetest.MemStore
	failReads atomic.Int64 // ReadFrom fails while > 0, counting down
}

func newMemStore() *memStore { return &memStore{MemStore: enginetest.NewMemStore()} }

var errInjected = errors.New("injected read failure")

func (m *memStore) ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error) {
	for {
		n := m.failReads.Load()
		if n <= 0 {
			break
		}
		if m.failReads.CompareAndSwap(n, n-1) {
			return nil, errInjected
		}
	}
	return m.MemStore.ReadFrom(ctx, after, limit)
}

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
