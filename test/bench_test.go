package test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
)

func noopEngine(tb testing.TB, dir string) (*engine.Engine, engine.Store) {
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	cat, diags := engine.LoadPaths(reg, "testdata/noop.yaml")
	if len(diags) > 0 {
		tb.Fatal(diags)
	}
	store, err := embedded.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat}), store
}

// startMany starts n executions from 64 goroutines and returns their ids.
func startMany(tb testing.TB, eng *engine.Engine, n int, params map[string]any) []string {
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				id, err := eng.Start(context.Background(), engine.StartRequest{Runbook: "noop", Params: params, Trigger: engine.TriggerInfo{TriggeredBy: "bench"}})
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return ids
}

// BenchmarkDurableEvents runs 1,000 concurrent executions of a 5-step no-op
// runbook against the embedded store (fsync, group commit) and reports
// persisted events per second.
func BenchmarkDurableEvents(b *testing.B) {
	const execs = 1000
	eng, store := noopEngine(b, b.TempDir())
	defer store.Close()
	defer eng.Close()
	b.ResetTimer()
	start := time.Now()
	total := 0
	for i := 0; i < b.N; i++ {
		ids := startMany(b, eng, execs, nil)
		for _, id := range ids {
			if out, err := eng.Wait(context.Background(), id); err != nil || out != engine.OutcomeSuccess {
				b.Fatalf("%s: %s %v", id, out, err)
			}
		}
		total += execs * 12 // started, 5 × (started, finished), finished
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkWaitingApprovals parks 10,000 executions on an approval gate and
// reports the heap and goroutines they hold, then approves them all and
// reports goroutines left behind.
func BenchmarkWaitingApprovals(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		eng, store := noopEngine(b, b.TempDir())
		var mu sync.Mutex
		var pending []string
		allParked := make(chan struct{})
		eng.Subscribe(func(e engine.Event) {
			if e.Type == engine.EventApprovalRequested {
				mu.Lock()
				pending = append(pending, e.Approval.ID)
				if len(pending) == n {
					close(allParked)
				}
				mu.Unlock()
			}
		})
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		ids := startMany(b, eng, n, map[string]any{"gate": "true"})
		select {
		case <-allParked:
		case <-time.After(2 * time.Minute):
			b.Fatalf("not all %d executions reached the gate", n)
		}
		runtime.GC()
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		gWaiting := runtime.NumGoroutine() - g0
		heapMB := float64(during.HeapInuse-before.HeapInuse) / (1 << 20)
		var wg sync.WaitGroup
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for j := w; j < n; j += 32 {
					if _, err := eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: pending[j], User: "approver", Verb: engine.DecisionApprove}); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		for _, id := range ids {
			if out, err := eng.Wait(context.Background(), id); err != nil || out != engine.OutcomeSuccess {
				b.Fatalf("%s: %s %v", id, out, err)
			}
		}
		eng.Close()
		store.Close()
		leaked := runtime.NumGoroutine() - g0
		// Goroutines of finished executions exit right after their last
		// event; give the scheduler a bounded moment to retire them.
		for deadline := time.Now().Add(time.Second); leaked > 0 && time.Now().Before(deadline); {
			runtime.Gosched()
			leaked = runtime.NumGoroutine() - g0
		}
		b.ReportMetric(heapMB, "heap-MB")
		b.ReportMetric(float64(gWaiting), "goroutines-waiting")
		b.ReportMetric(float64(max(leaked, 0)), "goroutines-leaked")
		if leaked > 0 {
			b.Errorf("%d goroutines leaked after all executions finished", leaked)
		}
	}
}
