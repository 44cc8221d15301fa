// Package scheduletest is the behaviour every schedule.Store must have, as
// one suite that the memory, embedded and Redis stores all run.
package scheduletest

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands/schedule"
)

// Factory opens a store. reopen is true when the test reopens what it
// wrote before (a restart): the factory returns a store over the same
// data.
type Factory func(t *testing.T, reopen bool) schedule.Store

// RunStoreSuite runs the store tests against factory.
func RunStoreSuite(t *testing.T, factory Factory) {
	t.Run("claims are monotonic", func(t *testing.T) { testMonotonic(t, factory) })
	t.Run("one winner per tick", func(t *testing.T) { testConcurrent(t, factory) })
	t.Run("pause and resume", func(t *testing.T) { testPause(t, factory) })
	t.Run("survives a restart", func(t *testing.T) { testReopen(t, factory) })
}

var t0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

func claim(t *testing.T, s schedule.Store, name string, tick time.Time) bool {
	t.Helper()
	ok, err := s.Claim(context.Background(), name, tick)
	if err != nil {
		t.Fatalf("Claim(%s, %s): %v", name, tick, err)
	}
	return ok
}

func ticks(t *testing.T, s schedule.Store) map[string]time.Time {
	t.Helper()
	got, err := s.Ticks(context.Background())
	if err != nil {
		t.Fatalf("Ticks: %v", err)
	}
	return got
}

func pauses(t *testing.T, s schedule.Store) map[string]string {
	t.Helper()
	got, err := s.Pauses(context.Background())
	if err != nil {
		t.Fatalf("Pauses: %v", err)
	}
	out := map[string]string{}
	for k, v := range got {
		out[k] = string(v)
	}
	return out
}

func testMonotonic(t *testing.T, factory Factory) {
	s := factory(t, false)
	tests := []struct {
		name string
		tick time.Time
		want bool
	}{
		{"first tick", t0, true},
		{"same tick again", t0, false},
		{"an earlier tick", t0.Add(-15 * time.Minute), false},
		{"the next tick", t0.Add(15 * time.Minute), true},
		{"the tick before it", t0, false},
	}
	for _, tc := range tests {
		if got := claim(t, s, "backup", tc.tick); got != tc.want {
			t.Errorf("%s: Claim = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := claim(t, s, "other", t0); !got {
		t.Errorf("another schedule's first claim = false, want true (schedules are independent)")
	}
	st := ticks(t, s)
	if got, want := st["backup"], t0.Add(15*time.Minute); !got.Equal(want) {
		t.Errorf("latest tick = %s, want %s", got, want)
	}
	if got := st["other"]; !got.Equal(t0) {
		t.Errorf("other's latest tick = %s, want %s", got, t0)
	}
}

func testConcurrent(t *testing.T, factory Factory) {
	s := factory(t, false)
	const replicas, n = 8, 20
	var mu sync.Mutex
	won := map[time.Time]int{}
	var wg sync.WaitGroup
	for r := 0; r < replicas; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				tick := t0.Add(time.Duration(i) * time.Minute)
				ok, err := s.Claim(context.Background(), "report", tick)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if ok {
					mu.Lock()
					won[tick]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for tick, n := range won {
		if n != 1 {
			t.Errorf("tick %s claimed %d times, want once", tick, n)
		}
	}
	if got := ticks(t, s)["report"]; !got.Equal(t0.Add((n - 1) * time.Minute)) {
		t.Errorf("latest tick = %s, want the last one claimed", got)
	}
}

func testPause(t *testing.T, factory Factory) {
	s := factory(t, false)
	ctx := context.Background()
	if err := s.SavePause(ctx, "backup", []byte(`{"paused":true,"by":"alice"}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := pauses(t, s), map[string]string{"backup": `{"paused":true,"by":"alice"}`}; !maps.Equal(got, want) {
		t.Errorf("after pause: %v, want %v", got, want)
	}
	claim(t, s, "backup", t0.Add(time.Hour))
	if got := pauses(t, s)["backup"]; got != `{"paused":true,"by":"alice"}` {
		t.Errorf("a claim changed the pause record to %q", got)
	}
	if err := s.SavePause(ctx, "backup", []byte(`{"paused":false,"by":"bob"}`)); err != nil {
		t.Fatal(err)
	}
	if got := pauses(t, s)["backup"]; got != `{"paused":false,"by":"bob"}` {
		t.Errorf("after resume: %q, want the new record", got)
	}
	if _, ok := ticks(t, s)["never-touched"]; ok {
		t.Errorf("Ticks lists a schedule nobody claimed")
	}
}

func testReopen(t *testing.T, factory Factory) {
	s := factory(t, false)
	claim(t, s, "backup", t0)
	if err := s.SavePause(context.Background(), "cleanup", []byte(`{"paused":true}`)); err != nil {
		t.Fatal(err)
	}
	r := factory(t, true)
	if got := ticks(t, r)["backup"]; !got.Equal(t0) {
		t.Errorf("after reopening, latest tick = %s, want %s", got, t0)
	}
	if got := pauses(t, r)["cleanup"]; got != `{"paused":true}` {
		t.Errorf("after reopening, the pause record is %q", got)
	}
	if claim(t, r, "backup", t0) {
		t.Errorf("after reopening, the same tick was claimed again")
	}
}
