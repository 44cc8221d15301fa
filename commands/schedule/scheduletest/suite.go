// Package scheduletest is the behaviour every schedule.Store must have, as
// one suite that the memory, embedded and Redis stores all run.
package scheduletest

import (
	"context"
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

func states(t *testing.T, s schedule.Store) map[string]schedule.State {
	t.Helper()
	st, err := s.States(context.Background())
	if err != nil {
		t.Fatalf("States: %v", err)
	}
	return st
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
	st := states(t, s)
	if got, want := st["backup"].Last, t0.Add(15*time.Minute); !got.Equal(want) {
		t.Errorf("Last = %s, want %s", got, want)
	}
	if got := st["other"].Last; !got.Equal(t0) {
		t.Errorf("other's Last = %s, want %s", got, t0)
	}
}

func testConcurrent(t *testing.T, factory Factory) {
	s := factory(t, false)
	const replicas, ticks = 8, 20
	var mu sync.Mutex
	won := map[time.Time]int{}
	var wg sync.WaitGroup
	for r := 0; r < replicas; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ticks; i++ {
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
	if got := states(t, s)["report"].Last; !got.Equal(t0.Add((ticks - 1) * time.Minute)) {
		t.Errorf("Last = %s, want the last tick", got)
	}
}

func testPause(t *testing.T, factory Factory) {
	s := factory(t, false)
	ctx := context.Background()
	if err := s.SetPause(ctx, "backup", schedule.Pause{Paused: true, By: "alice", At: t0}); err != nil {
		t.Fatal(err)
	}
	got := states(t, s)["backup"].Pause
	if !got.Paused || got.By != "alice" || !got.At.Equal(t0) {
		t.Errorf("after pause: %+v, want paused by alice at %s", got, t0)
	}
	claim(t, s, "backup", t0.Add(time.Hour))
	if got := states(t, s)["backup"]; !got.Pause.Paused || !got.Last.Equal(t0.Add(time.Hour)) {
		t.Errorf("a claim while paused changed the pause or was lost: %+v", got)
	}
	if err := s.SetPause(ctx, "backup", schedule.Pause{Paused: false, By: "bob", At: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got = states(t, s)["backup"].Pause
	if got.Paused || got.By != "bob" || !got.At.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("after resume: %+v, want resumed by bob", got)
	}
	if _, ok := states(t, s)["never-touched"]; ok {
		t.Errorf("States lists a schedule nobody claimed or paused")
	}
}

func testReopen(t *testing.T, factory Factory) {
	s := factory(t, false)
	claim(t, s, "backup", t0)
	if err := s.SetPause(context.Background(), "cleanup", schedule.Pause{Paused: true, By: "carol", At: t0}); err != nil {
		t.Fatal(err)
	}
	r := factory(t, true)
	st := states(t, r)
	if !st["backup"].Last.Equal(t0) {
		t.Errorf("after reopening, Last = %s, want %s", st["backup"].Last, t0)
	}
	if !st["cleanup"].Pause.Paused {
		t.Errorf("after reopening, the pause is lost")
	}
	if claim(t, r, "backup", t0) {
		t.Errorf("after reopening, the same tick was claimed again")
	}
}
