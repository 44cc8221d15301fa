package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

func TestSeriesFromEvents(t *testing.T) {
	m := New()
	t0 := time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)
	for _, e := range enginetest.Lifecycle("e1", "restart", "alice", "alert", t0, engine.OutcomeRollback) {
		if e.Step != nil && e.Type == engine.EventStepFinished {
			e.Step.StartTime, e.Step.DurationMs, e.Step.Type = &t0, 2500, "kubernetes"
		}
		m.Observe(e)
	}
	responded := t0.Add(5 * time.Minute)
	m.Observe(engine.Event{Type: engine.EventApprovalDecided, RunbookName: "restart", Approval: &engine.ApprovalRecord{Step: "one", Decision: engine.DecisionApprove, RequestedAt: t0, RespondedAt: &responded}})
	ok := true
	m.Observe(engine.Event{Type: engine.EventRollbackFinished, RunbookName: "restart", Rollback: &engine.RollbackRecord{Reason: "step.one.failed", Success: &ok}})
	m.Gauge("runbookbot_audit_mirror_lag_events", "Events not yet in the audit stream", func() float64 { return 7 })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`runbook_executions_total{outcome="rollback",runbook_name="restart",trigger_type="alert"} 1`,
		`runbook_steps_total{runbook_name="restart",status="success",step_name="one"} 1`,
		`runbook_step_duration_seconds_sum{runbook_name="restart",step_name="one",step_type="kubernetes"} 2.5`,
		`runbook_approval_wait_seconds_sum{runbook_name="restart",step_name="one"} 300`,
		`runbook_approvals_total{decision="approve",runbook_name="restart"} 1`,
		`runbook_rollbacks_total{reason="step.one.failed",runbook_name="restart",success="true"} 1`,
		`runbook_active_executions{runbook_name="restart"} 0`,
		`runbookbot_audit_mirror_lag_events 7`,
		`runbook_execution_duration_seconds_sum{runbook_name="restart"} 3`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// scrape returns the exposition text.
func scrape(tb testing.TB, m *Metrics) string {
	tb.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

// runbookSeries keeps the runbook_* lines (not the process's own).
func runbookSeries(text string) string {
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "runbook_") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestLogTotalsSurviveRestartsAndAgreeAcrossReplicas(t *testing.T) {
	st := enginetest.NewMemStore()
	t0 := time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)
	add := func(evs []engine.Event) {
		if err := st.Append(context.Background(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	add(enginetest.Lifecycle("a", "restart", "alice", "alert", t0, engine.OutcomeSuccess))
	add(enginetest.Lifecycle("b", "restart", "bob", "manual", t0, engine.OutcomeFailure))
	running := enginetest.Lifecycle("c", "restart", "carol", "alert", t0, "")
	add(running)
	add([]engine.Event{{ExecutionID: "c", Seq: 4, Type: engine.EventApprovalRequested, RunbookName: "restart", Time: t0.Add(4 * time.Second),
		Approval: &engine.ApprovalRecord{ID: "ap1", Step: "two", RequestedAt: t0.Add(4 * time.Second)}}})

	first := New(FromLog(st))
	before := runbookSeries(scrape(t, first))
	for _, want := range []string{
		`runbook_executions_total{outcome="success",runbook_name="restart",trigger_type="alert"} 1`,
		`runbook_executions_total{outcome="failure",runbook_name="restart",trigger_type="manual"} 1`,
		`runbook_active_executions{runbook_name="restart"} 1`,
		`runbook_approvals_pending{runbook_name="restart"} 1`,
		`runbook_approval_oldest_pending_timestamp_seconds{runbook_name="restart"} 1.769767204e+09`,
		`runbook_execution_duration_seconds_count{runbook_name="restart"} 2`,
	} {
		if !strings.Contains(before, want) {
			t.Errorf("first scrape lacks %s\n%s", want, before)
		}
	}
	// A restarted process, and a second replica on the same store, export
	// exactly what the first did: no reset, no double count.
	restarted, replica := New(FromLog(st)), New(FromLog(st))
	if got := runbookSeries(scrape(t, restarted)); got != before {
		t.Errorf("after a restart:\n%s\nwant\n%s", got, before)
	}
	_ = scrape(t, replica)
	// The running execution finishes, driven by whichever replica: both
	// count it once.
	add([]engine.Event{
		{ExecutionID: "c", Seq: 5, Type: engine.EventApprovalDecided, RunbookName: "restart", Time: t0.Add(64 * time.Second),
			Approval: &engine.ApprovalRecord{ID: "ap1", Step: "two", Decision: engine.DecisionApprove, RequestedAt: t0.Add(4 * time.Second), RespondedAt: ptr(t0.Add(64 * time.Second))}},
		{ExecutionID: "c", Seq: 6, Type: engine.EventExecutionFinished, RunbookName: "restart", Time: t0.Add(70 * time.Second), Outcome: engine.OutcomeSuccess},
	})
	a, b := runbookSeries(scrape(t, restarted)), runbookSeries(scrape(t, replica))
	if a != b {
		t.Errorf("replicas disagree:\n%s\n---\n%s", a, b)
	}
	for _, want := range []string{
		`runbook_executions_total{outcome="success",runbook_name="restart",trigger_type="alert"} 2`,
		`runbook_active_executions{runbook_name="restart"} 0`,
		`runbook_approvals_pending{runbook_name="restart"} 0`,
		`runbook_approval_wait_seconds_sum{runbook_name="restart",step_name="two"} 60`,
	} {
		if !strings.Contains(a, want) {
			t.Errorf("after the finish, lacks %s\n%s", want, a)
		}
	}
	if strings.Contains(a, "runbook_approval_oldest_pending_timestamp_seconds{") {
		t.Errorf("no approval is pending, yet the oldest pending one is exported:\n%s", a)
	}
	// Observe is ignored when reading the log: subscribing it too cannot
	// double count.
	for _, e := range enginetest.Lifecycle("d", "restart", "x", "alert", t0, engine.OutcomeSuccess) {
		replica.Observe(e)
	}
	if got := runbookSeries(scrape(t, replica)); got != a {
		t.Errorf("Observe changed a log-fed registry")
	}
}

func TestPrimedSeriesStartAtZero(t *testing.T) {
	m := New(FromLog(enginetest.NewMemStore()))
	cat := &engine.Catalog{Runbooks: map[string]*engine.Runbook{"restart": {Metadata: engine.Metadata{Name: "restart"},
		Trigger: engine.Trigger{Type: "alert"}, Steps: []*engine.Step{{Name: "one"}}}}}
	m.Prime(cat)
	text := scrape(t, m)
	for _, want := range []string{
		`runbook_executions_total{outcome="failure",runbook_name="restart",trigger_type="alert"} 0`,
		`runbook_executions_total{outcome="rollback",runbook_name="restart",trigger_type="manual"} 0`,
		`runbook_steps_total{runbook_name="restart",status="failure",step_name="one"} 0`,
		`runbook_active_executions{runbook_name="restart"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %s", want)
		}
	}
}

func TestUnreadableLogKeepsTheLastValues(t *testing.T) {
	st := &failing{MemStore: enginetest.NewMemStore()}
	if err := st.Append(context.Background(), enginetest.Lifecycle("a", "r", "u", "manual", time.Now(), engine.OutcomeSuccess)...); err != nil {
		t.Fatal(err)
	}
	m := New(FromLog(st))
	before := runbookSeries(scrape(t, m))
	st.fail = true
	text := scrape(t, m)
	if runbookSeries(text) != before || !strings.Contains(text, "runbookbot_metrics_log_errors_total 1") {
		t.Errorf("a failed read changed the values or was not counted:\n%s", text)
	}
}

type failing struct {
	*enginetest.MemStore
	fail bool
}

func (f *failing) ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error) {
	if f.fail {
		return nil, errors.New("store down")
	}
	return f.MemStore.ReadFrom(ctx, after, limit)
}

func ptr[T any](v T) *T { return &v }
