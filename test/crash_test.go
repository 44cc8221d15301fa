package test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/embedded"
)

const childEnv = "RUNBOOKBOT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		crashChild(mode, os.Getenv("RUNBOOKBOT_DATA_DIR"))
		return
	}
	if url := os.Getenv(replicaEnv); url != "" {
		replicaChild(url)
		return
	}
	os.Exit(m.Run())
}

func loadCrashCatalog(tb testing.TB) (*engine.Registry, *engine.Catalog) {
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	// A change that is not safe to repeat and takes until it is stopped
	// (built-in waits are safe to repeat, so they resume instead).
	reg.Register(engine.ActionSpec{Type: "change", Action: "slow", Mutating: true,
		Run: engine.ActionFunc(func(ctx context.Context, _ *engine.Call) (engine.Result, error) {
			<-ctx.Done()
			return engine.Result{}, context.Cause(ctx)
		})})
	cat, diags := engine.LoadPaths(reg, "testdata/crash.yaml")
	if len(diags) > 0 {
		if tb == nil {
			panic(diags)
		}
		tb.Fatal(diags)
	}
	return reg, cat
}

// crashChild starts one execution and prints READY when it has reached the
// point the parent wants to kill it at; then it waits to be killed.
func crashChild(mode, dir string) {
	reg, cat := loadCrashCatalog(nil)
	store, err := embedded.Open(dir)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat})
	ready := make(chan string, 1)
	eng.Subscribe(func(e engine.Event) {
		switch {
		case mode == "approval" && e.Type == engine.EventApprovalRequested,
			mode == "step" && e.Type == engine.EventStepStarted && e.Step.Name == "slow-change",
			mode == "idempotent" && e.Type == engine.EventStepStarted && e.Step.Name == "slow-check":
			ready <- e.ExecutionID
		}
	})
	if _, err := eng.Start(context.Background(), engine.StartRequest{Runbook: "crashy", Params: map[string]any{"mode": mode},
		Trigger: engine.TriggerInfo{TriggeredBy: "alice"}}); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", <-ready)
	select {} // until SIGKILL
}

// killedChild runs the child in mode, kills it with SIGKILL once it is
// READY, and returns the execution id.
func killedChild(t *testing.T, mode, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "RUNBOOKBOT_DATA_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	var id string
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "READY ") {
			t.Fatalf("child said %q", l)
		}
		id = strings.TrimPrefix(l, "READY ")
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("child never became ready")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	return id
}

// restart opens the store the dead process left and resumes on a fake clock.
func restart(t *testing.T, dir string, now time.Time) (*engine.Engine, *enginetest.FakeClock, engine.Store) {
	t.Helper()
	reg, cat := loadCrashCatalog(t)
	store, err := embedded.Open(dir)
	if err != nil {
		t.Fatalf("reopening store: %v", err)
	}
	clock := enginetest.NewFakeClock(now)
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: clock})
	t.Cleanup(func() { eng.Close(); store.Close() })
	n, err := eng.Recover(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1 execution", n, err)
	}
	return eng, clock, store
}

func events(t *testing.T, s engine.Store, id string) []engine.Event {
	t.Helper()
	evs, err := s.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func waitOutcome(t *testing.T, eng *engine.Engine, id string) engine.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := eng.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return out
}

func TestKilledWhileWaitingForApprovalResumes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id := killedChild(t, "approval", dir)
	probe, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	evs := events(t, probe, id)
	probe.Close()
	req := evs[len(evs)-1]
	if req.Type != engine.EventApprovalRequested {
		t.Fatalf("last event before the kill = %s", req.Type)
	}
	// Restart 5 minutes later: escalation (10m) and timeout (30m) keep their
	// original deadlines.
	eng, clock, store := restart(t, dir, req.Approval.RequestedAt.Add(5*time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.WaitTimers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs = events(t, store, id)
		if evs[len(evs)-1].Type == engine.EventApprovalEscalated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no escalation at the original 10m mark; last event %s", evs[len(evs)-1].Type)
		}
		<-time.After(5 * time.Millisecond)
	}
	if esc := evs[len(evs)-1]; !esc.Time.Equal(req.Approval.RequestedAt.Add(10 * time.Minute)) {
		t.Errorf("escalated at %s, want requestedAt+10m", esc.Time)
	}
	if _, err := eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: req.Approval.ID, User: "alice", Verb: engine.DecisionApprove}); err == nil {
		t.Fatal("requester approved their own execution after restart")
	}
	if _, err := eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: req.Approval.ID, User: "bob", Verb: engine.DecisionApprove}); err != nil {
		t.Fatalf("approve after restart: %v", err)
	}
	if got := waitOutcome(t, eng, id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s", got)
	}
	requests := 0
	for _, e := range events(t, store, id) {
		if e.Type == engine.EventApprovalRequested {
			requests++
		}
	}
	if requests != 1 {
		t.Errorf("approval requested %d times, want 1 (kept across the restart)", requests)
	}
}

func TestKilledInsideNonIdempotentStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id := killedChild(t, "step", dir)
	eng, _, store := restart(t, dir, time.Now())
	if got := waitOutcome(t, eng, id); got != engine.OutcomeAborted {
		t.Fatalf("outcome = %s, want aborted (the step's onFailure)", got)
	}
	starts, interrupted := 0, 0
	for _, e := range events(t, store, id) {
		if e.Step != nil && e.Step.Name == "slow-change" {
			if e.Type == engine.EventStepStarted {
				starts++
			}
			if e.Type == engine.EventStepFinished && e.Step.Status == engine.StepInterrupted {
				interrupted++
			}
		}
	}
	if starts != 1 || interrupted != 1 {
		t.Errorf("slow-change started %d times, interrupted %d; want 1 and 1", starts, interrupted)
	}
}

func TestKilledInsideIdempotentStepReruns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id := killedChild(t, "idempotent", dir)
	eng, clock, store := restart(t, dir, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if got := waitOutcome(t, eng, id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s, want success", got)
	}
	var statuses []string
	for _, e := range events(t, store, id) {
		if e.Step != nil && e.Step.Name == "slow-check" {
			statuses = append(statuses, string(e.Type)+":"+string(e.Step.Status))
		}
	}
	want := "step.started:running step.finished:interrupted step.started:running step.finished:success"
	if strings.Join(statuses, " ") != want {
		t.Errorf("slow-check events = %v, want %s", statuses, want)
	}
}
