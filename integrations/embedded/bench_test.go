package embedded

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// BenchmarkAppendConcurrent has 1,000 goroutines each append the 12 events
// of a 5-step execution, one event per Append call (as the executor does:
// persist each transition before acting on it), and reports throughput and
// how many events shared each fsync. One op is one round of 1,000
// executions. The execution-per-call variant appends each execution's 12
// events in a single call.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, perCall := range []bool{false, true} {
		name := "event-per-call"
		if perCall {
			name = "execution-per-call"
		}
		b.Run(name, func(b *testing.B) { benchAppend(b, 1000, perCall) })
	}
}

func benchAppend(b *testing.B, workers int, executionPerCall bool) {
	s := openT(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	// The events are built beforehand: the clock measures the store.
	execs := make([][][]engine.Event, b.N)
	for i := range execs {
		execs[i] = make([][]engine.Event, workers)
		for w := range workers {
			execs[i][w] = stepEvents(fmt.Sprintf("bench-%d-%d", i, w), 5)
		}
	}
	syncs0 := s.Stats().Syncs
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				evs := execs[i][w]
				if executionPerCall {
					if err := s.Append(ctx, evs...); err != nil {
						b.Error(err)
					}
					return
				}
				for _, e := range evs {
					if err := s.Append(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	events := float64(b.N * workers * 12)
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(events/float64(s.Stats().Syncs-syncs0), "events/fsync")
}

// BenchmarkAppendSerial is one goroutine appending one event at a time: the
// latency of a single durable Append (one write + fsync).
func BenchmarkAppendSerial(b *testing.B) {
	s := openT(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		e := ev("serial", int64(i+1), engine.EventStepStarted)
		if err := s.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/append")
}

// The big fixture: 100,000 executions of 12 events (1.2M events), built
// once per test binary run and shared by the read benchmarks.
const (
	bigExecutions = 100_000
	bigRunbooks   = 20
	bigUsers      = 50
)

var (
	bigOnce sync.Once
	bigDir  string
	bigErr  error
	bigT0   = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

// bigStore builds the fixture (once) and opens it.
func bigStore(b *testing.B) *Store {
	b.Helper()
	bigOnce.Do(func() {
		start := time.Now()
		bigDir, bigErr = os.MkdirTemp("", "embedded-bench-")
		if bigErr != nil {
			return
		}
		s, err := Open(bigDir)
		if err != nil {
			bigErr = err
			return
		}
		defer s.Close()
		// A few appenders, 100 executions per call.
		const perCall = 100
		var wg sync.WaitGroup
		errs := make(chan error, runtime.GOMAXPROCS(0))
		for w := range cap(errs) {
			wg.Go(func() {
				for first := w * perCall; first < bigExecutions; first += cap(errs) * perCall {
					var evs []engine.Event
					for i := first; i < first+perCall && i < bigExecutions; i++ {
						evs = append(evs, bigExecution(i)...)
					}
					if err := s.Append(context.Background(), evs...); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		bigErr = <-errs
		st := s.Stats()
		b.Logf("built fixture: %d executions, %d events, %.0f MB log in %v",
			st.Executions, st.Events, float64(st.LogBytes)/1e6, time.Since(start).Round(time.Millisecond))
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	s, err := Open(bigDir)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// bigExecution is execution i of the fixture: 20 runbooks, 50 requesters,
// one start every 30s, outcomes mostly success; the last 100 unfinished.
// Execution 1234 alone runs the runbook "rare".
func bigExecution(i int) []engine.Event {
	id := fmt.Sprintf("exec-%06d", i)
	evs := stepEvents(id, 5)
	rb := fmt.Sprintf("runbook-%02d", i%bigRunbooks)
	if i == 1234 {
		rb = "rare"
	}
	start := bigT0.Add(time.Duration(i) * 30 * time.Second)
	outcome := engine.OutcomeSuccess
	switch i % 10 {
	case 7:
		outcome = engine.OutcomeFailure
	case 9:
		outcome = engine.OutcomeRollback
	}
	for j := range evs {
		evs[j].RunbookName = rb
		evs[j].Time = start.Add(time.Duration(j) * time.Second)
	}
	evs[0].Trigger.TriggeredBy = fmt.Sprintf("user-%02d", i%bigUsers)
	if i%3 == 0 {
		evs[0].Trigger.Type = "manual"
	}
	evs[len(evs)-1].Outcome = outcome
	if i >= bigExecutions-100 {
		evs = evs[:len(evs)-1]
	}
	return evs
}

// BenchmarkHistory queries 100,000 stored executions. One op is one query.
func BenchmarkHistory(b *testing.B) {
	s := bigStore(b)
	defer s.Close()
	day := bigT0.Add(10 * 24 * time.Hour)
	queries := []struct {
		name string
		q    engine.HistoryQuery
	}{
		{"latest-50", engine.HistoryQuery{Limit: 50}},
		{"runbook-limit-50", engine.HistoryQuery{Runbook: "runbook-07", Limit: 50}},
		{"requester+outcome-limit-20", engine.HistoryQuery{Requester: "user-07", Outcome: engine.OutcomeFailure, Limit: 20}},
		{"one-day-window", engine.HistoryQuery{Since: day, Until: day.Add(24 * time.Hour)}},
		{"rare-runbook-full-scan", engine.HistoryQuery{Runbook: "rare"}},
	}
	ctx := context.Background()
	for _, tc := range queries {
		b.Run(tc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				got, err := s.History(ctx, tc.q)
				if err != nil {
					b.Fatal(err)
				}
				n = len(got)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/query")
			b.ReportMetric(float64(n), "results")
		})
	}
}

// BenchmarkReads measures the other read paths on the same 100,000
// executions.
func BenchmarkReads(b *testing.B) {
	s := bigStore(b)
	defer s.Close()
	ctx := context.Background()
	b.Run("Get", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.Get(ctx, fmt.Sprintf("exec-%06d", i%bigExecutions)); err != nil {
				b.Fatal(err)
			}
			i += 7919
		}
	})
	b.Run("Events-12", func(b *testing.B) {
		i := 0
		for b.Loop() {
			evs, err := s.Events(ctx, fmt.Sprintf("exec-%06d", i%(bigExecutions-100)))
			if err != nil || len(evs) != 12 {
				b.Fatalf("%d events, %v", len(evs), err)
			}
			i += 7919
		}
	})
	b.Run("ReadFrom-1000", func(b *testing.B) {
		var after uint64
		for b.Loop() {
			evs, err := s.ReadFrom(ctx, after, 1000)
			if err != nil || len(evs) != 1000 {
				b.Fatalf("%d events, %v", len(evs), err)
			}
			after = (after + 100_003) % 1_000_000
		}
	})
	b.Run("Unfinished", func(b *testing.B) {
		for b.Loop() {
			if un, err := s.Unfinished(ctx); err != nil || len(un) != 100 {
				b.Fatalf("%d unfinished, %v", len(un), err)
			}
		}
	})
}

// BenchmarkOpen reopens the 100,000-execution store: the replay that
// rebuilds the indexes, and the heap the indexes take.
func BenchmarkOpen(b *testing.B) {
	bigStore(b).Close()
	var heap uint64
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		s, err := Open(bigDir)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap = m1.HeapAlloc - m0.HeapAlloc
		s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open")
	b.ReportMetric(float64(heap)/1e6, "MB-heap")
}
