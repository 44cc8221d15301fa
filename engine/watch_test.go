package engine_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// restartAndWatch runs the seed's runbook down the restart path (memory
// stays high) and returns the harness, the execution and the cluster.
func restartAndWatch(t *testing.T, c *enginetest.Cluster) (*harness, string) {
	t.Helper()
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alertmanager", staging())
	h.waitEvent("verify-memory-after-gc to start", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 60*time.Second)
	return h, id
}

func watchChecks(h *harness, id, cond string) []engine.WatchRecord {
	var out []engine.WatchRecord
	for _, e := range h.eventsOf(id, engine.EventWatchCheck) {
		if e.Watch.Condition == cond {
			out = append(out, *e.Watch)
		}
	}
	return out
}

// The seed's schedule: errorRate over 5m is checked every minute and must
// hold for all six checks; the health check fires after three in a row.
func TestWatchSchedule(t *testing.T) {
	rb, err := engine.LoadRunbook(enginetest.NewCluster().Registry(), "../runbooks/high-memory-pod-remediation.yaml", mustRead(t, "../runbooks/high-memory-pod-remediation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tr := range rb.Rollback.Triggers {
		every, needed := engine.WatchSchedule(tr)
		got[tr.Condition] = every.String() + "×" + string(rune('0'+needed))
	}
	if got["metrics.errorRate > 5%"] != "1m0s×6" || got["healthcheck.failed"] != "10s×3" {
		t.Errorf("schedules = %v", got)
	}
}

// A healthy change is watched for the longest window, then succeeds.
func TestWatchQuietChangeSucceeds(t *testing.T) {
	c := enginetest.NewCluster()
	h, id := restartAndWatch(t, c)
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s, want success", got)
	}
	started := h.eventsOf(id, engine.EventWatchStarted)
	if len(started) != 1 || started[0].Watch.Until == nil || started[0].Watch.Until.Sub(started[0].Time) != 5*time.Minute {
		t.Fatalf("watch.started = %+v", started)
	}
	if n := len(watchChecks(h, id, "metrics.errorRate > 5%")); n != 6 {
		t.Errorf("errorRate checked %d times, want 6 (every minute for 5m)", n)
	}
	fin := h.eventsOf(id, engine.EventWatchFinished)
	if len(fin) != 1 || !strings.Contains(fin[0].Message, "no rollback trigger held during the 5m0s watch") {
		t.Errorf("watch.finished = %+v", fin)
	}
	if n := c.Called("kubernetes.rolloutUndo"); n != 0 {
		t.Errorf("rolled back a healthy change")
	}
}

// A metric that stays bad for the whole window rolls the change back; one
// that is bad only for a while does not.
func TestWatchMetricHeldForWindowRollsBack(t *testing.T) {
	c := enginetest.NewCluster()
	c.ErrorRate = func(int) float64 { return 9 }
	h, id := restartAndWatch(t, c)
	if got := h.outcome(id); got != engine.OutcomeRollback {
		t.Fatalf("outcome = %s, want rollback", got)
	}
	checks := watchChecks(h, id, "metrics.errorRate > 5%")
	if len(checks) != 6 || !checks[5].Fired || checks[4].Fired {
		t.Errorf("checks = %+v; want the sixth to fire", checks)
	}
	rb := h.eventsOf(id, engine.EventRollbackStarted)
	if len(rb) != 1 || rb[0].Rollback.Reason != "metrics.errorRate > 5%" {
		t.Errorf("rollback = %+v", rb)
	}
	if c.Called("kubernetes.rolloutUndo") != 1 {
		t.Errorf("rolloutUndo not called: %v", c.Calls())
	}

	c2 := enginetest.NewCluster()
	c2.ErrorRate = func(n int) float64 {
		if n == 3 {
			return 1 // recovered once in the middle of the window
		}
		return 9
	}
	h2, id2 := restartAndWatch(t, c2)
	if got := h2.outcome(id2); got != engine.OutcomeSuccess {
		t.Fatalf("a metric that recovered during the window: outcome = %s, want success", got)
	}
}

// Three failed health checks in a row fire the rollback; a check that
// cannot be made breaks the run and is reported.
func TestWatchHealthConsecutiveFailures(t *testing.T) {
	c := enginetest.NewCluster()
	c.Health = func(n int) (bool, error) { return n >= 2, nil }
	h, id := restartAndWatch(t, c)
	if got := h.outcome(id); got != engine.OutcomeRollback {
		t.Fatalf("outcome = %s, want rollback", got)
	}
	checks := watchChecks(h, id, "healthcheck.failed")
	last := checks[len(checks)-1]
	if !last.Fired || last.Count != 3 || len(checks) != 5 {
		t.Errorf("health checks = %+v; want 2 healthy then 3 failed, the third firing", checks)
	}

	c2 := enginetest.NewCluster()
	c2.Health = func(int) (bool, error) { return false, errors.New("cluster unreachable") }
	h2, id2 := restartAndWatch(t, c2)
	if got := h2.outcome(id2); got != engine.OutcomePartial {
		t.Fatalf("unverifiable watch: outcome = %s, want partial", got)
	}
	fin := h2.eventsOf(id2, engine.EventExecutionFinished)
	if !strings.Contains(fin[0].Message, "healthcheck.failed could not be checked: reading healthcheck: cluster unreachable") {
		t.Errorf("finished = %q", fin[0].Message)
	}
}

// The watch survives a restart: counts and deadline carry over, so the
// rollback fires at the same check it would have without the restart.
func TestWatchResumesAfterRestart(t *testing.T) {
	c := enginetest.NewCluster()
	c.ErrorRate = func(int) float64 { return 9 }
	h, id := restartAndWatch(t, c)
	// Let three errorRate checks happen, then stop the engine.
	for len(watchChecks(h, id, "metrics.errorRate > 5%")) < 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.clock.WaitTimers(ctx, 1); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		h.clock.Advance(time.Minute)
		h.waitEvent("a watch check", isType(engine.EventWatchCheck))
	}
	h.eng.Close()
	before := watchChecks(h, id, "metrics.errorRate > 5%")

	reg := c.Registry()
	cat, _ := engine.LoadPaths(reg, "../runbooks/high-memory-pod-remediation.yaml")
	eng := engine.New(engine.Config{Store: h.store, Registry: reg, Catalog: cat, Clock: h.clock, Secrets: secretMap{"adminToken": canary}})
	defer eng.Close()
	eng.Subscribe(func(e engine.Event) { h.events <- e })
	h.eng = eng
	if n, err := eng.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if got := h.outcome(id); got != engine.OutcomeRollback {
		t.Fatalf("outcome after restart = %s, want rollback", got)
	}
	after := watchChecks(h, id, "metrics.errorRate > 5%")
	if len(h.eventsOf(id, engine.EventWatchStarted)) != 1 {
		t.Errorf("the watch started again after the restart")
	}
	if len(after) != 6 || after[len(before)].Count != len(before)+1 {
		t.Errorf("checks before restart %d, after %+v: the count did not carry over", len(before), after)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
