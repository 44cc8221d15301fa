package redis_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/commands/schedule/scheduletest"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

// openStore connects a new client (a process) to srv.
func openStore(t *testing.T, srv *redistest.Server, prefix string) *redis.Store {
	t.Helper()
	s, err := redis.NewStore(context.Background(), srv.URL(), redis.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSchedulesStoreSuite(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	scheduletest.RunStoreSuite(t, func(t *testing.T, reopen bool) schedule.Store {
		if !reopen {
			n++
		}
		return redis.NewSchedules(openStore(t, srv, fmt.Sprintf("suite%d:", n)))
	})
}

// tickStarter records the ticks a replica fired.
type tickStarter struct {
	mu    sync.Mutex
	ticks []time.Time
}

func (s *tickStarter) Start(_ context.Context, req engine.StartRequest) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks = append(s.ticks, *req.Trigger.Tick)
	return "x", nil
}

func (s *tickStarter) fired() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ticks)
}

func TestTwoReplicasOnRedisFireEachTickOnce(t *testing.T) {
	srv := redistest.Start(t)
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	cat, diags := engine.LoadSources(reg, []string{"r.yaml"}, map[string][]byte{"r.yaml": []byte(`apiVersion: runbooks/v1
kind: Runbook
metadata: {name: report, version: "1"}
trigger: {type: schedule, schedule: "*/15 * * * *"}
steps:
  - {name: say, type: log, action: print, params: {message: hi}}
`)})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := enginetest.NewFakeClock(start)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	replicas := []*tickStarter{{}, {}}
	for _, st := range replicas {
		s := schedule.New(schedule.Config{Store: redis.NewSchedules(openStore(t, srv, "two:")), Starter: st, Clock: clock,
			Catalog: func() *engine.Catalog { return cat }})
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	park := func() {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := clock.WaitTimers(wctx, len(replicas)); err != nil {
			t.Fatalf("replicas did not park: %v", err)
		}
	}
	park()
	for range 24 * 4 {
		clock.Advance(15 * time.Minute)
		park()
	}
	var all []time.Time
	for i, r := range replicas {
		f := r.fired()
		t.Logf("replica %d fired %d ticks", i, len(f))
		all = append(all, f...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Before(all[j]) })
	if len(all) != 96 {
		t.Fatalf("the two replicas fired %d runs in a day of quarter hours, want 96", len(all))
	}
	for i, tick := range all {
		if want := start.Add(time.Duration(i+1) * 15 * time.Minute); !tick.Equal(want) {
			t.Fatalf("run %d is for tick %s, want %s (each tick once)", i, tick, want)
		}
	}
}

func TestIdempotencyKeys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := redis.NewIdempotencyKeys(openStore(t, srv, "idem:"))
	b := redis.NewIdempotencyKeys(openStore(t, srv, "idem:")) // another replica
	if got, err := a.Remember(ctx, "k1", "pending-a", time.Minute); err != nil || got != "pending-a" {
		t.Fatalf("first Remember = %q, %v; want it bound to pending-a", got, err)
	}
	if got, err := b.Remember(ctx, "k1", "pending-b", time.Minute); err != nil || got != "pending-a" {
		t.Fatalf("second Remember from another replica = %q, %v; want the first binding", got, err)
	}
	if err := b.Forget(ctx, "k1", "pending-b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, "k1", "done-a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Remember(ctx, "k1", "pending-b", time.Minute); got != "done-a" {
		t.Fatalf("after Set and a Forget of another value, key is bound to %q, want done-a", got)
	}
	if err := a.Forget(ctx, "k1", "done-a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Remember(ctx, "k1", "pending-b", time.Minute); got != "pending-b" {
		t.Fatalf("after Forget, Remember = %q, want the key free again", got)
	}
}
