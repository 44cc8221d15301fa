package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// memLeases is an in-memory engine.BatchLeaser whose leases expire on a
// fake clock.
type memLeases struct {
	clock *enginetest.FakeClock
	mu    sync.Mutex
	held  map[string]memLease
	calls int // AcquireAll calls
}

type memLease struct {
	owner string
	until time.Time
}

var _ engine.BatchLeaser = (*memLeases)(nil)

func newMemLeases(clock *enginetest.FakeClock) *memLeases {
	return &memLeases{clock: clock, held: map[string]memLease{}}
}

// holder returns who holds the lease on id now ("" for nobody).
func (m *memLeases) holder(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[id]
	if !ok || !m.clock.Now().Before(l.until) {
		return ""
	}
	return l.owner
}

// tries returns how many times leases were asked for.
func (m *memLeases) tries() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// set gives the lease on id to owner until the given time.
func (m *memLeases) set(id, owner string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held[id] = memLease{owner, until}
}

func (m *memLeases) Acquire(ctx context.Context, id, owner string, ttl time.Duration) (bool, error) {
	st, err := m.AcquireAll(ctx, []string{id}, owner, ttl)
	return st[0].Held, err
}

func (m *memLeases) Renew(ctx context.Context, id, owner string, ttl time.Duration) (bool, error) {
	ok, err := m.RenewAll(ctx, []string{id}, owner, ttl)
	return ok[0], err
}

func (m *memLeases) Release(_ context.Context, id, owner string) (bool, error) {
	if m.holder(id) != owner {
		return false, nil
	}
	m.mu.Lock()
	delete(m.held, id)
	m.mu.Unlock()
	return true, nil
}

func (m *memLeases) AcquireAll(_ context.Context, ids []string, owner string, ttl time.Duration) ([]engine.LeaseState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	now := m.clock.Now()
	out := make([]engine.LeaseState, len(ids))
	for i, id := range ids {
		if l, ok := m.held[id]; ok && l.owner != owner && now.Before(l.until) {
			out[i].Left = l.until.Sub(now)
			continue
		}
		m.held[id] = memLease{owner, now.Add(ttl)}
		out[i].Held = true
	}
	return out, nil
}

func (m *memLeases) RenewAll(_ context.Context, ids []string, owner string, ttl time.Duration) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	out := make([]bool, len(ids))
	for i, id := range ids {
		if l, ok := m.held[id]; ok && l.owner == owner && now.Before(l.until) {
			m.held[id] = memLease{owner, now.Add(ttl)}
			out[i] = true
		}
	}
	return out, nil
}

func (m *memLeases) ReleaseAll(ctx context.Context, ids []string, owner string) error {
	for _, id := range ids {
		if _, err := m.Release(ctx, id, owner); err != nil {
			return err
		}
	}
	return nil
}

const leasedRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: leased, version: "1.0.0"}
trigger: {type: manual}
steps:
  - {name: prepare, type: log, action: print, params: {message: "preparing"}}
  - name: change
    type: log
    action: print
    params: {message: "changing"}
    requiresApproval: {type: manual}
`

// leaseRig is a store, a fake clock and in-memory leases shared by the
// engines ("processes") of a test.
type leaseRig struct {
	t      *testing.T
	store  *enginetest.MemStore
	clock  *enginetest.FakeClock
	leases *memLeases
}

func newLeaseRig(t *testing.T) *leaseRig {
	clock := enginetest.NewFakeClock(time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC))
	return &leaseRig{t: t, store: enginetest.NewMemStore(), clock: clock, leases: newMemLeases(clock)}
}

// engine starts a process named owner. Its leases last an hour, so that
// its own renewals (on the wall clock) never matter here.
func (r *leaseRig) engine(owner string) *engine.Engine {
	r.t.Helper()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	cat, diags := engine.LoadSources(reg, []string{"leased.yaml"}, map[string][]byte{"leased.yaml": []byte(leasedRunbook)})
	if len(diags) > 0 {
		r.t.Fatal(diags)
	}
	eng := engine.New(engine.Config{Store: r.store, Registry: reg, Catalog: cat, Clock: r.clock,
		Leases: r.leases, Owner: owner, LeaseTTL: time.Hour})
	r.t.Cleanup(eng.Close)
	return eng
}

// park starts n executions on eng and waits until each waits for approval.
func (r *leaseRig) park(eng *engine.Engine, n int) []string {
	r.t.Helper()
	gates := make(chan string, n)
	defer eng.Subscribe(func(e engine.Event) {
		if e.Type == engine.EventApprovalRequested {
			gates <- e.ExecutionID
		}
	})()
	for range n {
		if _, err := eng.Start(context.Background(), engine.StartRequest{Runbook: "leased", Trigger: engine.TriggerInfo{TriggeredBy: "alice"}}); err != nil {
			r.t.Fatal(err)
		}
	}
	ids := make([]string, 0, n)
	for range n {
		select {
		case id := <-gates:
			ids = append(ids, id)
		case <-time.After(10 * time.Second):
			r.t.Fatalf("%d of %d executions reached their gate", len(ids), n)
		}
	}
	return ids
}

// crash hands the leases of ids to a process that will never renew them,
// valid for d more on the clock.
func (r *leaseRig) crash(ids []string, owner string, d time.Duration) {
	for _, id := range ids {
		r.leases.set(id, owner, r.clock.Now().Add(d))
	}
}

// eventually polls cond for up to ten seconds.
func (r *leaseRig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // poll interval, bounded by the deadline
	}
}

func TestCloseReleasesTheLeasesOfParkedExecutions(t *testing.T) {
	r := newLeaseRig(t)
	first := r.engine("first")
	ids := r.park(first, 3)
	before, _ := r.store.LastPos(context.Background())
	first.Close()
	for _, id := range ids {
		if h := r.leases.holder(id); h != "" {
			t.Errorf("after Close the lease on %s is held by %q", id, h)
		}
	}
	if after, _ := r.store.LastPos(context.Background()); after != before {
		t.Errorf("Close recorded %d events; it records nothing", after-before)
	}
	second := r.engine("second")
	if n, err := second.Recover(context.Background()); err != nil || n != len(ids) {
		t.Fatalf("Recover = %d, %v; want %d at once", n, err, len(ids))
	}
	if got := second.Active(); len(got) != len(ids) {
		t.Errorf("active after restart: %v", got)
	}
}

func TestRecoverTakesOverWhenADeadOwnersLeaseExpires(t *testing.T) {
	r := newLeaseRig(t)
	first := r.engine("first")
	ids := r.park(first, 3)
	first.Close()
	r.crash(ids, "dead", 15*time.Second)

	eng := r.engine("restarted")
	if n, err := eng.Recover(context.Background()); err != nil || n != 0 {
		t.Fatalf("Recover = %d, %v; want 0 while the dead owner's leases last", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.clock.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("no retry on the engine's clock: %v", err)
	}
	r.clock.Advance(15*time.Second - time.Millisecond)
	if got := eng.Active(); len(got) != 0 {
		t.Fatalf("took %v over before the leases expired", got)
	}
	r.clock.Advance(time.Second)
	r.eventually("the executions to be taken over", func() bool { return len(eng.Active()) == len(ids) })
	for _, id := range ids {
		if h := r.leases.holder(id); h != "restarted" {
			t.Errorf("lease on %s held by %q", id, h)
		}
	}
}

func TestRecoverLeavesALiveOwnersExecutionsAlone(t *testing.T) {
	r := newLeaseRig(t)
	first := r.engine("first")
	ids := r.park(first, 2)
	first.Close()
	r.crash(ids, "alive", 15*time.Second)

	eng := r.engine("other")
	if n, err := eng.Recover(context.Background()); err != nil || n != 0 {
		t.Fatalf("Recover = %d, %v; want 0", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.clock.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("no retry on the engine's clock: %v", err)
	}
	tries := r.leases.tries()
	r.clock.Advance(10 * time.Second)
	r.crash(ids, "alive", 15*time.Second) // its owner renews
	r.clock.Advance(6 * time.Second)      // past the expiry the engine was told
	r.eventually("the retry at the old expiry", func() bool { return r.leases.tries() == tries+1 })
	for _, id := range ids {
		if h := r.leases.holder(id); h != "alive" {
			t.Errorf("lease on %s held by %q, want its live owner", id, h)
		}
	}
	if got := eng.Active(); len(got) != 0 {
		t.Errorf("took %v over from a live owner", got)
	}
}

// Recover running twice at once (start-up and Watch) resumes each
// execution once.
func TestConcurrentRecoversResumeOnce(t *testing.T) {
	r := newLeaseRig(t)
	first := r.engine("first")
	ids := r.park(first, 20)
	first.Close()
	eng := r.engine("restarted")
	var wg sync.WaitGroup
	counts := make(chan int, 4)
	for range 4 {
		wg.Go(func() {
			n, err := eng.Recover(context.Background())
			if err != nil {
				t.Error(err)
			}
			counts <- n
		})
	}
	wg.Wait()
	close(counts)
	total := 0
	for n := range counts {
		total += n
	}
	if total != len(ids) {
		t.Errorf("the Recovers resumed %d executions in all, want %d", total, len(ids))
	}
	if got := eng.Active(); len(got) != len(ids) {
		t.Errorf("active: %d, want %d", len(got), len(ids))
	}
}

// A decision that reaches a process not driving its execution, while the
// lease is free (the driver stopped and nobody took over yet), takes the
// execution over and is applied there instead of answering "not active".
func TestDecisionTakesOverAnExecutionWithAFreeLease(t *testing.T) {
	r := newLeaseRig(t)
	a := r.engine("replica-a")
	ids := r.park(a, 1)
	a.Close() // releases the lease; nothing resumes it yet
	b := r.engine("replica-b")
	evs, err := r.store.Events(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var approval string
	for _, e := range evs {
		if e.Type == engine.EventApprovalRequested {
			approval = e.Approval.ID
		}
	}
	res, err := b.Decide(context.Background(), engine.DecisionRequest{ApprovalID: approval, User: "bob", Verb: engine.DecisionApprove})
	if err != nil {
		t.Fatalf("decision on a stopped replica's execution: %v", err)
	}
	if r.leases.holder(ids[0]) != "replica-b" {
		t.Errorf("lease held by %q, want replica-b (took it over)", r.leases.holder(ids[0]))
	}
	_ = res
}
