package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// parkedRunbook stops at an approval gate that needs two approvers, so a
// test can record one vote and ask a restarted engine about it without
// changing anything.
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

// replicaConfig wires an engine to s with leases, as serve does.
func replicaConfig(tb testing.TB, s *Store, owner string, ttl time.Duration, clock engine.Clock) engine.Config {
	tb.Helper()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	cat, diags := engine.LoadSources(reg, []string{"parked.yaml"}, map[string][]byte{"parked.yaml": []byte(parkedRunbook)})
	if len(diags) > 0 {
		tb.Fatal(diags)
	}
	return engine.Config{Store: s, Registry: reg, Catalog: cat, Approvers: parkedTeam, Clock: clock,
		Leases: s, Owner: owner, LeaseTTL: ttl}
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

// approvable reports whether the approval is open on eng: a second vote by
// pete is answered "already voted" (the gate is live and remembers his
// vote, so paula's approval would be accepted). The probe records nothing.
func approvable(eng *engine.Engine, approvalID string) error {
	_, err := eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: approvalID, User: "pete", Verb: engine.DecisionApprove})
	if !errors.Is(err, engine.ErrAlreadyVoted) {
		return fmt.Errorf("%s: %v, want %v", approvalID, err, engine.ErrAlreadyVoted)
	}
	return nil
}

// awaitApprovable returns once Active lists every execution and each of
// approvals is approvable.
func awaitApprovable(tb testing.TB, eng *engine.Engine, approvals []string) {
	tb.Helper()
	eventually(tb, time.Minute, "every execution to be active", func() bool { return len(eng.Active()) >= len(approvals) })
	eachOf(tb, len(approvals), 8, func(i int) error { return approvable(eng, approvals[i]) })
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

// A clean shutdown releases the leases of parked executions: a new process
// can approve them at once, long before the old leases would have expired.
func TestCleanRestartTakesOverAtOnce(t *testing.T) {
	srv := sharedRedis(t)
	ctx := context.Background()
	prefix := testPrefix(t)
	const ttl = time.Hour // waiting for expiry would time the test out
	old, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	first := engine.New(replicaConfig(t, old, "first", ttl, nil))
	approvals := parkMany(t, first, 3)
	first.Close()
	for _, a := range approvals {
		if owner, _, err := old.LeaseHolder(ctx, engine.ExecutionOf(a)); err != nil || owner != "" {
			t.Fatalf("after Close the lease on %s is held by %q (%v)", a, owner, err)
		}
	}

	s, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	second := engine.New(replicaConfig(t, s, "second", ttl, nil))
	defer second.Close()
	if n, err := second.Recover(ctx); err != nil || n != len(approvals) {
		t.Fatalf("Recover = %d, %v; want %d", n, err, len(approvals))
	}
	for _, a := range approvals {
		if err := approvable(second, a); err != nil {
			t.Fatal(err)
		}
	}
	res, err := second.Decide(ctx, engine.DecisionRequest{ApprovalID: approvals[0], User: "paula", Verb: engine.DecisionApprove})
	if err != nil || !res.Final {
		t.Fatalf("paula's approval after the restart: %+v, %v", res, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := second.Wait(wctx, engine.ExecutionOf(approvals[0])); err != nil || out != engine.OutcomeSuccess {
		t.Fatalf("outcome %s, %v", out, err)
	}
}

// After a crash the leases stay with the dead process: a new one resumes
// nothing at start, retries on its clock, and takes each execution over
// once its lease has expired, without another Recover.
func TestCrashTakenOverWhenLeaseExpires(t *testing.T) {
	srv := sharedRedis(t)
	ctx := context.Background()
	prefix := testPrefix(t)
	const ttl = 500 * time.Millisecond
	dead, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	crashed := engine.New(replicaConfig(t, dead, "crashed", ttl, nil))
	approvals := parkMany(t, crashed, 2)
	// The crash: the process loses its connection and renews nothing more.
	// (Its engine is closed at the end only to stop its goroutines; with
	// the connection gone it releases nothing.)
	dead.Close()
	defer crashed.Close()

	s, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clock := enginetest.NewFakeClock(time.Now())
	eng := engine.New(replicaConfig(t, s, "restarted", ttl, clock))
	defer eng.Close()
	if n, err := eng.Recover(ctx); err != nil || n != 0 {
		t.Fatalf("Recover = %d, %v; want 0 (the leases are still held)", n, err)
	}
	if _, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: approvals[0], User: "paula", Verb: engine.DecisionApprove}); !errors.Is(err, engine.ErrNotActive) {
		t.Fatalf("decision while the dead lease holds: %v, want %v", err, engine.ErrNotActive)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := clock.WaitTimers(wctx, 1); err != nil {
		t.Fatalf("no retry scheduled on the engine's clock: %v", err)
	}
	// Redis expires the leases on its own time; the engine's retry is due
	// on its clock at the expiry it was told.
	eventually(t, 10*time.Second, "the dead process's leases to expire", func() bool {
		for _, a := range approvals {
			if owner, _, _ := s.LeaseHolder(ctx, engine.ExecutionOf(a)); owner == "crashed" {
				return false
			}
		}
		return true
	})
	clock.Advance(2 * ttl)
	eventually(t, 10*time.Second, "the executions to be taken over", func() bool { return len(eng.Active()) == len(approvals) })
	for _, a := range approvals {
		if err := approvable(eng, a); err != nil {
			t.Fatal(err)
		}
		if owner, _, err := s.LeaseHolder(ctx, engine.ExecutionOf(a)); err != nil || owner != "restarted" {
			t.Fatalf("lease on %s held by %q (%v), want restarted", a, owner, err)
		}
	}
}

// BenchmarkRestartApprovable parks 10,000 executions at an approval gate,
// stops the engine cleanly, and measures how long a new process (store
// connected, engine started, Recover) takes until every one of them is
// approvable again.
func BenchmarkRestartApprovable(b *testing.B) {
	const n = 10_000
	srv := sharedRedis(b)
	ctx := context.Background()
	prefix := testPrefix(b)
	s, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	defer dropPrefix(b, srv.Client(b), prefix)
	eng := engine.New(replicaConfig(b, s, "fixture", 0, nil))
	approvals := parkMany(b, eng, n)
	eng.Close()
	s.Close()
	var total time.Duration
	resumed := 0
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		s, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		eng := engine.New(replicaConfig(b, s, fmt.Sprintf("restart-%d", i), 0, nil))
		if resumed, err = eng.Recover(ctx); err != nil {
			b.Fatal(err)
		}
		awaitApprovable(b, eng, approvals)
		total += time.Since(start)
		b.StopTimer()
		eng.Close()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-until-all-approvable")
	b.ReportMetric(float64(resumed), "resumed-by-Recover")
}
