package metrics

import (
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
