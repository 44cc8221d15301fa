package schedule_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// runbook is a schedule runbook of one log step.
func runbook(name, trigger string) string {
	return fmt.Sprintf(`apiVersion: runbooks/v1
kind: Runbook
metadata: {name: %s, version: "1.0.0"}
trigger: %s
parameters:
  - name: target
    type: string
    default: nightly
steps:
  - name: say
    type: log
    action: print
    params: {message: "tick for {{ target }}"}
`, name, trigger)
}

func catalog(t *testing.T, files ...string) *engine.Catalog {
	t.Helper()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	srcs := map[string][]byte{}
	var order []string
	for i, f := range files {
		n := fmt.Sprintf("rb%d.yaml", i)
		order = append(order, n)
		srcs[n] = []byte(f)
	}
	cat, diags := engine.LoadSources(reg, order, srcs)
	if len(diags) > 0 {
		t.Fatalf("loading runbooks: %v", diags)
	}
	return cat
}

// starter records what the scheduler starts.
type starter struct {
	mu   sync.Mutex
	reqs []engine.StartRequest
	n    int
}

func (s *starter) Start(_ context.Context, req engine.StartRequest) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	s.n++
	return fmt.Sprintf("exec-%d", s.n), nil
}

func (s *starter) requests() []engine.StartRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]engine.StartRequest(nil), s.reqs...)
}

// ticks lists the ticks of the recorded runs, sorted, as "15:04" in UTC.
func ticks(reqs []engine.StartRequest) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Trigger.Tick.UTC().Format("01-02 15:04"))
	}
	sort.Strings(out)
	return out
}

// rig runs schedulers on one fake clock.
type rig struct {
	t     *testing.T
	clock *enginetest.FakeClock
	store schedule.Store
	cat   *engine.Catalog
	// running is how many schedulers are parked on the clock when idle.
	running int
}

var day0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newRig(t *testing.T, cat *engine.Catalog) *rig {
	return &rig{t: t, clock: enginetest.NewFakeClock(day0), store: schedule.NewMemoryStore(), cat: cat}
}

// start runs a scheduler (a replica) until the returned stop is called or
// the test ends, and waits until it is parked on the clock.
func (r *rig) start(st schedule.Starter, opts ...func(*schedule.Config)) (*schedule.Scheduler, func()) {
	r.t.Helper()
	cfg := schedule.Config{Store: r.store, Starter: st, Clock: r.clock, Catalog: func() *engine.Catalog { return r.cat },
		Platform: "slack", Channel: "#ops"}
	for _, o := range opts {
		o(&cfg)
	}
	s := schedule.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r.running++
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("Run: %v", err)
		}
		r.running--
	}
	r.t.Cleanup(stop)
	r.park()
	return s, stop
}

// park waits until every running scheduler waits on the clock.
func (r *rig) park() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.clock.WaitTimers(ctx, r.running); err != nil {
		r.t.Fatalf("schedulers did not park on the clock: %v (%d timers, want %d)", err, r.clock.Timers(), r.running)
	}
}

// run moves the clock forward by d in steps of step, letting the
// schedulers handle each step before the next.
func (r *rig) run(d, step time.Duration) {
	r.t.Helper()
	for moved := time.Duration(0); moved < d; moved += step {
		r.clock.Advance(step)
		r.park()
	}
}

func sources(reqs []engine.StartRequest) string {
	var b strings.Builder
	for _, r := range reqs {
		b.WriteString(r.Trigger.Source + "\n")
	}
	return b.String()
}
