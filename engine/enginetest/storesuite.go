package enginetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// StoreFactory makes a fresh, empty storage for one test and returns a
// function that opens it. Calling open again (after Close) must see what was
// written before: that is how the suite checks durability.
type StoreFactory func(t *testing.T) (open func() engine.Store)

// RunStoreSuite runs the behaviour every engine.Store must have.
func RunStoreSuite(t *testing.T, factory StoreFactory) {
	t.Run("AppendAndRead", func(t *testing.T) { testAppendRead(t, factory) })
	t.Run("Durable", func(t *testing.T) { testDurable(t, factory) })
	t.Run("ReadFromCursor", func(t *testing.T) { testReadFrom(t, factory) })
	t.Run("History", func(t *testing.T) { testHistory(t, factory) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, factory) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, factory) })
	t.Run("ReopenEmpty", func(t *testing.T) { testReopenEmpty(t, factory) })
}

// testReopenEmpty: a store closed before anything was written must accept
// and keep appends after it is opened again.
func testReopenEmpty(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	open := factory(t)
	if err := open().Close(); err != nil {
		t.Fatal(err)
	}
	s := open()
	if err := s.Append(ctx, Lifecycle("r1", "rb", "alice", "manual", t0, engine.OutcomeSuccess)...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	evs, err := s.Events(ctx, "r1")
	if err != nil || len(evs) != 4 {
		t.Fatalf("after reopening: %d events, %v", len(evs), err)
	}
}

var t0 = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

// Lifecycle returns the events of a small execution: started, one step,
// finished with outcome (or unfinished when outcome is "").
func Lifecycle(id, runbook, requester, trigger string, start time.Time, outcome engine.Outcome) []engine.Event {
	base := engine.Event{ExecutionID: id, RunbookName: runbook, RunbookVersion: "1.0.0"}
	ev := func(seq int64, typ engine.EventType, d time.Duration) engine.Event {
		e := base
		e.Seq, e.Type, e.Time = seq, typ, start.Add(d)
		return e
	}
	started := ev(1, engine.EventExecutionStarted, 0)
	started.Trigger = &engine.TriggerInfo{Type: trigger, TriggeredBy: requester}
	started.Parameters = map[string]any{"namespace": "staging"}
	s1 := ev(2, engine.EventStepStarted, time.Second)
	s1.Step = &engine.StepRecord{Name: "one", Phase: engine.PhaseStep, Status: engine.StepRunning}
	s2 := ev(3, engine.EventStepFinished, 2*time.Second)
	s2.Step = &engine.StepRecord{Name: "one", Phase: engine.PhaseStep, Status: engine.StepSuccess, Output: map[string]any{"n": 1.0}}
	out := []engine.Event{started, s1, s2}
	if outcome != "" {
		f := ev(4, engine.EventExecutionFinished, 3*time.Second)
		f.Outcome = outcome
		out = append(out, f)
	}
	return out
}

func testAppendRead(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	s := factory(t)()
	defer s.Close()
	evs := Lifecycle("exec-a", "rb", "alice", "manual", t0, engine.OutcomeSuccess)
	for _, e := range evs {
		if err := s.Append(ctx, e); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	got, err := s.Events(ctx, "exec-a")
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(got) != len(evs) {
		t.Fatalf("got %d events, want %d", len(got), len(evs))
	}
	for i := range got {
		if got[i].Seq != evs[i].Seq || got[i].Type != evs[i].Type {
			t.Errorf("event %d = %d %s, want %d %s", i, got[i].Seq, got[i].Type, evs[i].Seq, evs[i].Type)
		}
		if got[i].Pos == 0 {
			t.Errorf("event %d has no Pos", i)
		}
	}
	if got[2].Step == nil || got[2].Step.Output["n"] != 1.0 {
		t.Errorf("step output not kept: %+v", got[2].Step)
	}
	sum, err := s.Get(ctx, "exec-a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if sum.Outcome != engine.OutcomeSuccess || sum.Status != engine.StatusFinished || sum.Trigger.TriggeredBy != "alice" {
		t.Errorf("summary = %+v", sum)
	}
}

func testDurable(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	open := factory(t)
	s := open()
	if err := s.Append(ctx, Lifecycle("done", "rb", "alice", "manual", t0, engine.OutcomeFailure)...); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := s.Append(ctx, Lifecycle("open", "rb", "bob", "alert", t0.Add(time.Minute), "")...); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open()
	defer s.Close()
	got, err := s.Events(ctx, "done")
	if err != nil || len(got) != 4 {
		t.Fatalf("after reopen: %d events, err %v", len(got), err)
	}
	un, err := s.Unfinished(ctx)
	if err != nil {
		t.Fatalf("Unfinished: %v", err)
	}
	if len(un) != 1 || un[0] != "open" {
		t.Errorf("Unfinished = %v, want [open]", un)
	}
	// Appends continue after reopen, and positions keep growing.
	next := engine.Event{ExecutionID: "open", Seq: 4, Type: engine.EventExecutionFinished, Time: t0.Add(2 * time.Minute), RunbookName: "rb", Outcome: engine.OutcomeAborted}
	if err := s.Append(ctx, next); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	all, err := s.ReadFrom(ctx, 0, 100)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if len(all) != 8 {
		t.Fatalf("ReadFrom gave %d events, want 8", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Pos <= all[i-1].Pos {
			t.Fatalf("positions not increasing: %d then %d", all[i-1].Pos, all[i].Pos)
		}
	}
	if un, _ := s.Unfinished(ctx); len(un) != 0 {
		t.Errorf("Unfinished after finish = %v", un)
	}
}

func testReadFrom(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	s := factory(t)()
	defer s.Close()
	for i := 0; i < 10; i++ {
		if err := s.Append(ctx, Lifecycle(fmt.Sprintf("e%d", i), "rb", "u", "manual", t0, engine.OutcomeSuccess)...); err != nil {
			t.Fatal(err)
		}
	}
	var cursor uint64
	var seen int
	perExec := map[string]int64{}
	for {
		batch, err := s.ReadFrom(ctx, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		if len(batch) > 7 {
			t.Fatalf("batch of %d exceeds limit 7", len(batch))
		}
		for _, e := range batch {
			if e.Pos <= cursor {
				t.Fatalf("pos %d not after cursor %d", e.Pos, cursor)
			}
			if e.Seq != perExec[e.ExecutionID]+1 {
				t.Fatalf("%s: seq %d after %d", e.ExecutionID, e.Seq, perExec[e.ExecutionID])
			}
			perExec[e.ExecutionID] = e.Seq
			cursor = e.Pos
			seen++
		}
	}
	if seen != 40 {
		t.Errorf("read %d events, want 40", seen)
	}
}

func testHistory(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	s := factory(t)()
	defer s.Close()
	type row struct {
		id, rb, who, trig string
		at                time.Duration
		out               engine.Outcome
	}
	rows := []row{
		{"h1", "restart", "alice", "manual", 0, engine.OutcomeSuccess},
		{"h2", "restart", "bob", "alert", time.Hour, engine.OutcomeRollback},
		{"h3", "cleanup", "alice", "manual", 2 * time.Hour, engine.OutcomeSuccess},
		{"h4", "restart", "alice", "manual", 3 * time.Hour, ""},
	}
	for _, r := range rows {
		if err := s.Append(ctx, Lifecycle(r.id, r.rb, r.who, r.trig, t0.Add(r.at), r.out)...); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(q engine.HistoryQuery) []string {
		t.Helper()
		got, err := s.History(ctx, q)
		if err != nil {
			t.Fatalf("History(%+v): %v", q, err)
		}
		out := []string{}
		for _, g := range got {
			out = append(out, g.ExecutionID)
		}
		return out
	}
	tests := []struct {
		name string
		q    engine.HistoryQuery
		want []string
	}{
		{"all newest first", engine.HistoryQuery{}, []string{"h4", "h3", "h2", "h1"}},
		{"by runbook", engine.HistoryQuery{Runbook: "restart"}, []string{"h4", "h2", "h1"}},
		{"by outcome", engine.HistoryQuery{Outcome: engine.OutcomeSuccess}, []string{"h3", "h1"}},
		{"by trigger", engine.HistoryQuery{TriggerType: "alert"}, []string{"h2"}},
		{"by requester", engine.HistoryQuery{Requester: "alice"}, []string{"h4", "h3", "h1"}},
		{"since", engine.HistoryQuery{Since: t0.Add(90 * time.Minute)}, []string{"h4", "h3"}},
		{"until", engine.HistoryQuery{Until: t0.Add(90 * time.Minute)}, []string{"h2", "h1"}},
		{"limit", engine.HistoryQuery{Limit: 2}, []string{"h4", "h3"}},
		{"combined", engine.HistoryQuery{Runbook: "restart", Requester: "alice", Outcome: engine.OutcomeSuccess}, []string{"h1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(tt.q)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	sum, err := s.Get(ctx, "h4")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status == engine.StatusFinished || sum.Outcome != "" {
		t.Errorf("unfinished summary = %+v", sum)
	}
}

func testConcurrent(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	s := factory(t)()
	defer s.Close()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for _, e := range Lifecycle(fmt.Sprintf("c%d", i), "rb", "u", "manual", t0, engine.OutcomeSuccess) {
				if err := s.Append(ctx, e); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		got, err := s.Events(ctx, fmt.Sprintf("c%d", i))
		if err != nil || len(got) != 4 {
			t.Fatalf("c%d: %d events, err %v", i, len(got), err)
		}
		for j, e := range got {
			if e.Seq != int64(j+1) {
				t.Fatalf("c%d: event %d has seq %d", i, j, e.Seq)
			}
		}
	}
	all, err := s.History(ctx, engine.HistoryQuery{})
	if err != nil || len(all) != n {
		t.Fatalf("History: %d, err %v", len(all), err)
	}
}

func testNotFound(t *testing.T, factory StoreFactory) {
	ctx := context.Background()
	s := factory(t)()
	defer s.Close()
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Get(nope) err = %v, want ErrNotFound", err)
	}
	evs, err := s.Events(ctx, "nope")
	if err != nil || len(evs) != 0 {
		t.Errorf("Events(nope) = %v, %v; want empty", evs, err)
	}
}
