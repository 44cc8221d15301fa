package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

var t0 = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

// testLogger sends the store's log lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openT(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

// ev makes a bare event.
func ev(id string, seq int64, typ engine.EventType) engine.Event {
	return engine.Event{ExecutionID: id, Seq: seq, Type: typ, Time: t0.Add(time.Duration(seq) * time.Second), RunbookName: "rb"}
}

func mustAppend(t testing.TB, s *Store, evs ...engine.Event) {
	t.Helper()
	if err := s.Append(context.Background(), evs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func eventsOf(t testing.TB, s *Store, id string) []engine.Event {
	t.Helper()
	evs, err := s.Events(context.Background(), id)
	if err != nil {
		t.Fatalf("Events(%s): %v", id, err)
	}
	return evs
}

func TestStoreSuite(t *testing.T) {
	enginetest.RunStoreSuite(t, func(t *testing.T) func() engine.Store {
		dir := t.TempDir()
		return func() engine.Store { return openT(t, dir) }
	})
}

func TestSeqValidation(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()

	tests := []struct {
		name      string
		events    []engine.Event
		got, want int64
	}{
		{"new execution must start at 1", []engine.Event{ev("x", 2, engine.EventExecutionStarted)}, 2, 1},
		{"gap", []engine.Event{ev("a", 3, engine.EventStepFinished)}, 3, 2},
		{"duplicate", []engine.Event{ev("a", 1, engine.EventExecutionStarted)}, 1, 2},
		{"gap inside one call", []engine.Event{ev("a", 2, engine.EventStepStarted), ev("a", 4, engine.EventStepFinished)}, 4, 3},
		{"bad event after a good one of another execution", []engine.Event{ev("y", 1, engine.EventExecutionStarted), ev("a", 5, engine.EventStepStarted)}, 5, 2},
	}
	mustAppend(t, s, ev("a", 1, engine.EventExecutionStarted))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Append(ctx, tt.events...)
			if !errors.Is(err, ErrSeq) {
				t.Fatalf("err = %v, want ErrSeq", err)
			}
			var se *SeqError
			if !errors.As(err, &se) || se.Got != tt.got || se.Want != tt.want {
				t.Errorf("err = %#v, want got %d want %d", err, tt.got, tt.want)
			}
			if !strings.Contains(err.Error(), "driven twice") {
				t.Errorf("error %q does not explain itself", err)
			}
		})
	}
	// Rejected calls wrote nothing, not even their valid events.
	if evs := eventsOf(t, s, "a"); len(evs) != 1 {
		t.Errorf("a has %d events, want 1", len(evs))
	}
	if evs := eventsOf(t, s, "y"); len(evs) != 0 {
		t.Errorf("y has %d events from a rejected call", len(evs))
	}
	// A good multi-event call goes through, and Pos stays dense.
	mustAppend(t, s, ev("a", 2, engine.EventStepStarted), ev("a", 3, engine.EventStepFinished), ev("y", 1, engine.EventExecutionStarted))
	all, err := s.ReadFrom(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range all {
		if e.Pos != uint64(i+1) {
			t.Errorf("event %d has Pos %d", i, e.Pos)
		}
	}
	if len(all) != 4 {
		t.Errorf("log has %d events, want 4", len(all))
	}
}

func TestDoubleDriveRejected(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	const n = 20
	var ok, seqErr atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.Append(context.Background(), ev("x", 1, engine.EventExecutionStarted))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrSeq):
				seqErr.Add(1)
			default:
				t.Errorf("Append: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || seqErr.Load() != n-1 {
		t.Errorf("%d appends succeeded and %d got ErrSeq, want 1 and %d", ok.Load(), seqErr.Load(), n-1)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	_, err := Open(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "another runbookbot"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir) // the lock is released by Close
	s.Close()
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir())
	mustAppend(t, s, ev("a", 1, engine.EventExecutionStarted))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	if err := s.Append(ctx, ev("a", 2, engine.EventStepStarted)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := s.Append(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("empty Append after Close: %v", err)
	}
	if _, err := s.Events(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Events after Close: %v", err)
	}
	if _, err := s.ReadFrom(ctx, 0, 10); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadFrom after Close: %v", err)
	}
	if _, err := s.History(ctx, engine.HistoryQuery{}); !errors.Is(err, ErrClosed) {
		t.Errorf("History after Close: %v", err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, err := s.Unfinished(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Unfinished after Close: %v", err)
	}
}

// TestCloseDuringAppends checks that Close lets in-flight Appends finish:
// every Append that returned nil is in the reopened store, every other one
// returned ErrClosed.
func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	const n = 50
	acked := make([]int64, n) // last acknowledged seq per goroutine
	var started, wg sync.WaitGroup
	started.Add(n)
	for g := range n {
		wg.Go(func() {
			id := fmt.Sprintf("g%d", g)
			for seq := int64(1); ; seq++ {
				err := s.Append(context.Background(), ev(id, seq, engine.EventStepStarted))
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("%s: Append: %v", id, err)
					}
					if seq == 1 {
						started.Done()
					}
					return
				}
				acked[g] = seq
				if seq == 1 {
					started.Done()
				}
			}
		})
	}
	started.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openT(t, dir)
	defer s.Close()
	for g := range n {
		evs := eventsOf(t, s, fmt.Sprintf("g%d", g))
		if int64(len(evs)) != acked[g] {
			t.Errorf("g%d: %d events after reopen, %d acknowledged", g, len(evs), acked[g])
		}
	}
}

func TestCanceledContext(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, ev("a", 1, engine.EventExecutionStarted)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append: %v", err)
	}
	if evs := eventsOf(t, s, "a"); len(evs) != 0 {
		t.Errorf("canceled Append wrote %d events", len(evs))
	}
	mustAppend(t, s, ev("a", 1, engine.EventExecutionStarted))
}

func TestBadEvents(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if err := s.Append(ctx, ev("", 1, engine.EventExecutionStarted)); err == nil {
		t.Error("event without execution ID accepted")
	}
	big := ev("a", 1, engine.EventExecutionStarted)
	big.Message = strings.Repeat("x", maxPayload)
	if err := s.Append(ctx, big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversized event: err = %v", err)
	}
	if err := s.Append(ctx); err != nil {
		t.Errorf("empty Append: %v", err)
	}
}

// TestSummaryIsolation checks that summaries share no maps with callers and
// are the same before and after a reopen.
func TestSummaryIsolation(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ctx := context.Background()
	evs := enginetest.Lifecycle("a", "rb", "alice", "manual", t0, engine.OutcomeSuccess)
	evs[0].Parameters = map[string]any{"ns": "prod", "list": []any{"x"}, "n": 3}
	evs[0].Trigger.Labels = map[string]string{"team": "sre"}
	evs[0].Pos = 99 // ignored
	mustAppend(t, s, evs...)
	evs[0].Parameters["ns"] = "changed by caller"
	evs[0].Trigger.Labels["team"] = "changed by caller"
	if evs[0].Pos != 99 {
		t.Error("Append modified the caller's event")
	}

	before, err := s.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if before.Parameters["ns"] != "prod" || before.Trigger.Labels["team"] != "sre" || before.Parameters["n"] != 3.0 {
		t.Errorf("summary follows the caller's maps: %+v", before)
	}
	before.Parameters["ns"] = "changed by reader"
	before.Parameters["list"].([]any)[0] = "changed by reader"
	again, _ := s.Get(ctx, "a")
	if again.Parameters["ns"] != "prod" || again.Parameters["list"].([]any)[0] != "x" {
		t.Errorf("a reader changed the store's summary: %+v", again.Parameters)
	}
	hist, _ := s.History(ctx, engine.HistoryQuery{})
	s.Close()

	s = openT(t, dir)
	defer s.Close()
	after, err := s.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, after) {
		t.Errorf("summary changed across reopen:\n before %+v\n after  %+v", again, after)
	}
	hist2, _ := s.History(ctx, engine.HistoryQuery{})
	if !reflect.DeepEqual(hist, hist2) {
		t.Errorf("history changed across reopen")
	}
}

func TestHistoryOrderAndUnfinished(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ctx := context.Background()
	// Same start time: ties break on execution ID, newest-first means
	// descending. Appended out of order on purpose.
	for _, id := range []string{"b", "c", "a"} {
		mustAppend(t, s, enginetest.Lifecycle(id, "rb", "u", "manual", t0, "")...)
	}
	mustAppend(t, s, enginetest.Lifecycle("old", "rb", "u", "manual", t0.Add(-time.Hour), "")...)
	mustAppend(t, s, enginetest.Lifecycle("new", "rb", "u", "manual", t0.Add(time.Hour), engine.OutcomeSuccess)...)
	check := func(s *Store) {
		t.Helper()
		hist, err := s.History(ctx, engine.HistoryQuery{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range hist {
			ids = append(ids, h.ExecutionID)
		}
		if got := strings.Join(ids, " "); got != "new c b a old" {
			t.Errorf("History order = %s", got)
		}
		un, err := s.Unfinished(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(un, " "); got != "old a b c" {
			t.Errorf("Unfinished = %s, want oldest first", got)
		}
	}
	check(s)
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	check(s)
	st := s.Stats()
	if st.Executions != 5 || st.Unfinished != 4 || st.Events != 4*3+4 || st.TornBytes != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestDefaultDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	tests := []struct{ xdg, want string }{
		{"/data/xdg", "/data/xdg/runbookbot"},
		{"relative/ignored", filepath.Join(home, ".local/share/runbookbot")},
		{"", filepath.Join(home, ".local/share/runbookbot")},
	}
	for _, tt := range tests {
		t.Setenv("XDG_DATA_HOME", tt.xdg)
		got, err := DefaultDir()
		if err != nil || got != tt.want {
			t.Errorf("XDG_DATA_HOME=%q: DefaultDir() = %q, %v; want %q", tt.xdg, got, err, tt.want)
		}
	}
}

// TestFoldEventCoversApply guards decodeFold and foldOf, which keep only
// the fields engine.Summary.Apply reads today: events with every field set
// must fold into the same summary whether decoded whole or through them. If
// Apply starts reading another field, this fails (or panics on a nil
// pointer) and foldEvent and foldOf need that field.
func TestFoldEventCoversApply(t *testing.T) {
	types := []engine.EventType{
		engine.EventExecutionStarted, engine.EventStepStarted, engine.EventStepFinished,
		engine.EventApprovalRequested, engine.EventApprovalEscalated, engine.EventApprovalVote,
		engine.EventApprovalDecided, engine.EventApprovalRefused, engine.EventRollbackStarted,
		engine.EventRollbackFinished, engine.EventCancelRequested, engine.EventExecutionFinished,
		"some.future.type",
	}
	statuses := []engine.StepStatus{engine.StepSuccess, engine.StepFailure, engine.StepSkipped, engine.StepInterrupted, engine.StepRunning}
	for _, typ := range types {
		for _, st := range statuses {
			var e engine.Event
			fillValue(reflect.ValueOf(&e).Elem(), 0)
			e.Type, e.Step.Status, e.Pos = typ, st, 0
			payload, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := decodeEvent(payload, 3)
			if err != nil {
				t.Fatal(err)
			}
			fold, err := decodeFold(payload, 3)
			if err != nil {
				t.Fatal(err)
			}
			// Append's shortcut for events without maps.
			bare := e
			bare.Trigger, bare.Parameters = nil, nil
			bare.Time = time.Now().In(time.FixedZone("X", 3600)) // monotonic, not UTC
			barePayload, _ := json.Marshal(bare)
			bareWhole, _ := decodeEvent(barePayload, 3)
			bareFold, err := foldOf(&bare, barePayload)
			if err != nil {
				t.Fatal(err)
			}
			// Start from a summary with history so that every branch has
			// something to change.
			var a, b, c, d engine.Summary
			for _, s := range []*engine.Summary{&a, &b, &c, &d} {
				s.Apply(ev("x", 1, engine.EventExecutionStarted))
				s.Apply(ev("x", 2, engine.EventStepStarted))
			}
			a.Apply(whole)
			b.Apply(fold)
			c.Apply(bareWhole)
			d.Apply(bareFold)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s/%s: decodeFold differs:\n whole %+v\n fold  %+v", typ, st, a, b)
			}
			if !reflect.DeepEqual(c, d) {
				t.Errorf("%s/%s: foldOf differs:\n whole %+v\n fold  %+v", typ, st, c, d)
			}
		}
	}
}

// fillValue sets every field reachable from v to a non-zero value.
func fillValue(v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("v%d", depth))
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(7 + depth))
	case reflect.Uint64, reflect.Uint32, reflect.Uint:
		v.SetUint(uint64(7 + depth))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillValue(v.Elem(), depth+1)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(t0.Add(time.Duration(depth) * time.Minute)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillValue(v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillValue(v.Index(0), depth+1)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fillValue(k, depth+1)
		val := reflect.New(v.Type().Elem()).Elem()
		if val.Kind() == reflect.Interface {
			val.Set(reflect.ValueOf("value"))
		} else {
			fillValue(val, depth+1)
		}
		m.SetMapIndex(k, val)
		v.Set(m)
	}
}
