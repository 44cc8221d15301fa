package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/embedded"
)

// parkedRunbook stops at an approval gate that needs two approvers, so a
// fixture can record one vote per execution and a restarted engine can be
// asked about that vote without changing anything.
const parkedRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: parked, version: "1.0.0"}
trigger: {type: manual}
steps:
  - {name: prepare, type: log, action: print, params: {message: "preparing"}}
  - name: change
    type: log
    action: print
    params: {message: "changing"}
    requiresApproval: {type: manual}
approvals:
  - name: change-approval
    trigger: {step: change}
    workflow:
      timeout: 24h
      approvers:
        - {type: team, value: platform-team, minApprovals: 2}
`

var parkedTeam = enginetest.Approvers{Members: map[string][]string{"platform-team": {"pete", "paula"}}}

func parkedConfig(tb testing.TB, store engine.Store) engine.Config {
	tb.Helper()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	cat, diags := engine.LoadSources(reg, []string{"parked.yaml"}, map[string][]byte{"parked.yaml": []byte(parkedRunbook)})
	if len(diags) > 0 {
		tb.Fatal(diags)
	}
	return engine.Config{Store: store, Registry: reg, Catalog: cat, Approvers: parkedTeam}
}

// parkMany starts n executions of the parked runbook, waits until all of
// them wait at their gate, and has pete approve each (one vote of two). It
// returns the approval ids.
func parkMany(tb testing.TB, eng *engine.Engine, n int) []string {
	tb.Helper()
	var mu sync.Mutex
	var approvals []string
	all := make(chan struct{})
	unsubscribe := eng.Subscribe(func(e engine.Event) {
		if e.Type != engine.EventApprovalRequested {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		approvals = append(approvals, e.Approval.ID)
		if len(approvals) == n {
			close(all)
		}
	})
	defer unsubscribe()
	ctx := context.Background()
	eachOf(tb, n, 64, func(int) error {
		_, err := eng.Start(ctx, engine.StartRequest{Runbook: "parked", Trigger: engine.TriggerInfo{TriggeredBy: "alice"}})
		return err
	})
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		tb.Fatalf("not all %d executions reached their gate", n)
	}
	eachOf(tb, n, 32, func(i int) error {
		res, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: approvals[i], User: "pete", Verb: engine.DecisionApprove})
		if err == nil && res.Final {
			err = fmt.Errorf("pete's vote alone decided %s", approvals[i])
		}
		return err
	})
	return approvals
}

// awaitApprovable returns once every approval is open on eng: Active lists
// all n executions and a second vote by pete on each is answered "already
// voted" (the gate is live and remembers his vote; paula's approval would
// be accepted). The probe records nothing.
func awaitApprovable(tb testing.TB, eng *engine.Engine, approvals []string) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(eng.Active()) < len(approvals) {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d executions active after a minute", len(eng.Active()), len(approvals))
		}
		time.Sleep(time.Millisecond) // poll interval, bounded by the deadline
	}
	ctx := context.Background()
	eachOf(tb, len(approvals), 8, func(i int) error {
		_, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: approvals[i], User: "pete", Verb: engine.DecisionApprove})
		if !errors.Is(err, engine.ErrAlreadyVoted) {
			return fmt.Errorf("%s after restart: %v, want %v", approvals[i], err, engine.ErrAlreadyVoted)
		}
		return nil
	})
}

// eachOf calls f(0..n-1) from workers goroutines and fails tb on the first
// error.
func eachOf(tb testing.TB, n, workers int, f func(i int) error) {
	tb.Helper()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// BenchmarkRestartApprovable parks 10,000 executions at an approval gate,
// stops the engine cleanly, and measures how long a new process (store
// opened, engine started, Recover) takes until every one of them is
// approvable again.
func BenchmarkRestartApprovable(b *testing.B) {
	const n = 10_000
	dir := b.TempDir()
	store, err := embedded.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	eng := engine.New(parkedConfig(b, store))
	approvals := parkMany(b, eng, n)
	eng.Close()
	store.Close()
	ctx := context.Background()
	var total time.Duration
	resumed := 0
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		store, err := embedded.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		eng := engine.New(parkedConfig(b, store))
		if resumed, err = eng.Recover(ctx); err != nil {
			b.Fatal(err)
		}
		awaitApprovable(b, eng, approvals)
		total += time.Since(start)
		b.StopTimer()
		eng.Close()
		store.Close()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-until-all-approvable")
	b.ReportMetric(float64(resumed), "resumed-by-Recover")
}
