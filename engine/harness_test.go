package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// harness drives the seed's runbook against fakes on a fake clock.
type harness struct {
	t       *testing.T
	eng     *engine.Engine
	store   *enginetest.MemStore
	clock   *enginetest.FakeClock
	cluster *enginetest.Cluster
	events  chan engine.Event
}

var morning = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, cluster *enginetest.Cluster, approvers engine.Approvers, files ...string) *harness {
	t.Helper()
	if len(files) == 0 {
		files = []string{"../runbooks/high-memory-pod-remediation.yaml"}
	}
	reg := cluster.Registry()
	cat, diags := engine.LoadPaths(reg, files...)
	if len(diags) > 0 {
		t.Fatalf("loading %v:\n%v", files, diags)
	}
	h := &harness{t: t, store: enginetest.NewMemStore(), clock: enginetest.NewFakeClock(morning), cluster: cluster, events: make(chan engine.Event, 100000)}
	h.eng = engine.New(engine.Config{Store: h.store, Registry: reg, Catalog: cat, Clock: h.clock, Approvers: approvers, Secrets: secretMap{"adminToken": canary},
		DefaultApprovalTimeout: 30 * time.Minute})
	h.eng.Subscribe(func(e engine.Event) { h.events <- e })
	t.Cleanup(h.eng.Close)
	return h
}

func (h *harness) start(runbook, requester string, params map[string]any) string {
	h.t.Helper()
	id, err := h.eng.Start(context.Background(), engine.StartRequest{Runbook: runbook, Params: params,
		Trigger: engine.TriggerInfo{Type: "alert", Source: "prometheus", AlertID: "alert-12345", TriggeredBy: requester}})
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return id
}

// waitEvent returns the first event (from now on) that matches.
func (h *harness) waitEvent(what string, match func(engine.Event) bool) engine.Event {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-h.events:
			if match(e) {
				return e
			}
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func stepEvent(typ engine.EventType, name string) func(engine.Event) bool {
	return func(e engine.Event) bool { return e.Type == typ && e.Step != nil && e.Step.Name == name }
}

func isType(typ engine.EventType) func(engine.Event) bool {
	return func(e engine.Event) bool { return e.Type == typ }
}

// parkOnWait waits until the named wait step is polling (its deadline and
// poll timers are set) and moves the clock by d.
func (h *harness) parkAndAdvance(timers int, d time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitTimers(ctx, timers); err != nil {
		h.t.Fatalf("waiting for %d timers: %v", timers, err)
	}
	h.clock.Advance(d)
}

// outcome waits for the execution to finish, moving the clock through its
// post-change rollback watch (if it has one) check by check.
func (h *harness) outcome(id string) engine.Outcome {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		out engine.Outcome
		err error
	}
	done := make(chan result, 1)
	wctx, finished := context.WithCancel(ctx)
	defer finished()
	go func() {
		out, err := h.eng.Wait(ctx, id)
		done <- result{out, err}
		finished()
	}()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				h.t.Fatalf("Wait(%s): %v", id, r.err)
			}
			return r.out
		case e := <-h.events:
			if e.ExecutionID == id && (e.Type == engine.EventWatchStarted || e.Type == engine.EventWatchCheck) {
				// Move on once the watch waits for its next check (or
				// the execution finished).
				if h.clock.WaitTimers(wctx, 1) == nil {
					h.clock.Advance(time.Minute)
				}
			}
		}
	}
}

// statuses maps step name to its last recorded status.
func (h *harness) statuses(id string) map[string]engine.StepStatus {
	h.t.Helper()
	evs, err := h.store.Events(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]engine.StepStatus{}
	for _, e := range evs {
		if e.Step != nil {
			out[string(e.Step.Phase)+":"+e.Step.Name] = e.Step.Status
		}
	}
	return out
}

func (h *harness) eventsOf(id string, typ engine.EventType) []engine.Event {
	h.t.Helper()
	evs, _ := h.store.Events(context.Background(), id)
	var out []engine.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// canary is a secret value no event may ever contain.
const canary = "s3cr3t-CANARY-token-7f1c"

type secretMap map[string]any

func (m secretMap) Secret(_ context.Context, name string) (any, error) {
	v, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("no secret %q", name)
	}
	return v, nil
}
