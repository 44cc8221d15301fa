package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

func TestAuditFields(t *testing.T) {
	yes := true
	start := tBase.Add(time.Second)
	e := engine.Event{
		ExecutionID: "x", Seq: 7, Pos: 42, Type: engine.EventRollbackFinished, Time: tBase, RunbookName: "rb",
		Trigger:  &engine.TriggerInfo{Type: "alert", Source: "pd", AlertID: "A1", TriggeredBy: "bot", Labels: map[string]string{"sev": "1"}},
		Step:     &engine.StepRecord{Name: "undo", Phase: engine.PhaseRollback, Status: engine.StepFailure, StartTime: &start, DurationMs: 5, Error: "boom", Input: map[string]any{"a": 1}},
		Approval: &engine.ApprovalRecord{ID: "ap", Decision: engine.DecisionReject, Approver: "carol", Critical: true},
		Rollback: &engine.RollbackRecord{Triggered: true, Reason: "step failed", Success: &yes},
		Outcome:  engine.OutcomeRollback,
	}
	kv := AuditFields(e)
	got := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		got[kv[i]] = kv[i+1]
	}
	want := map[string]string{
		"pos": "42", "executionId": "x", "seq": "7", "type": "rollback.finished", "time": "2026-02-01T09:00:00Z",
		"runbookName": "rb", "trigger.type": "alert", "trigger.source": "pd", "trigger.alertId": "A1",
		"trigger.triggeredBy": "bot", "trigger.labels": `{"sev":"1"}`, "step.name": "undo", "step.phase": "rollback",
		"step.index": "0", "step.status": "failure", "step.startTime": "2026-02-01T09:00:01Z", "step.duration": "5",
		"step.error": "boom", "step.input": `{"a":1}`, "approval.id": "ap", "approval.decision": "reject",
		"approval.approver": "carol", "approval.critical": "true", "outcome": "rollback",
		"rollback.triggered": "true", "rollback.reason": "step failed", "rollback.success": "true",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want exactly %v", got, want)
	}
}

// TestAuditEntriesOfAnExecution ships one execution and checks, entry by
// entry, the fields a security team would query.
func TestAuditEntriesOfAnExecution(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	ctx := context.Background()
	src := newMemStore()
	evs := fiveStep("audit-1", 3)
	if err := src.Append(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	stream := testPrefix(t) + "audit"
	if err := NewMirror(src, c, WithStream(stream)).Drain(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := readStream(t, c, stream)
	if len(msgs) != len(evs) {
		t.Fatalf("%d entries for %d events", len(msgs), len(evs))
	}
	byType := map[string][]map[string]any{}
	for i, m := range msgs {
		for k, v := range m.Values {
			if v == "" {
				t.Errorf("entry %d has empty field %s", i, k)
			}
		}
		for _, k := range []string{"pos", "executionId", "seq", "type", "time", "runbookName"} {
			if _, ok := m.Values[k]; !ok {
				t.Errorf("entry %d lacks %s", i, k)
			}
		}
		if m.Values["seq"] != fmt.Sprint(i+1) || m.Values["runbookVersion"] != "2.1.0" || m.Values["auditLevel"] != "full" {
			t.Errorf("entry %d = %v", i, m.Values)
		}
		typ := fmt.Sprint(m.Values["type"])
		byType[typ] = append(byType[typ], m.Values)
	}
	want := map[string][]string{
		"execution.started":  {"trigger.type", "trigger.source", "trigger.alertId", "trigger.triggeredBy", "parameters"},
		"approval.requested": {"approval.id", "approval.step", "approval.requestedAt", "approval.tier"},
		"approval.decided":   {"approval.approver", "approval.decision", "approval.respondedAt"},
		"step.started":       {"step.name", "step.phase", "step.index", "step.status", "step.startTime"},
		"step.finished":      {"step.name", "step.status", "step.endTime", "step.duration", "step.input", "step.output"},
		"execution.finished": {"outcome"},
	}
	for typ, fields := range want {
		if len(byType[typ]) == 0 {
			t.Errorf("no %s entry", typ)
		}
		for _, v := range byType[typ] {
			for _, f := range fields {
				if _, ok := v[f]; !ok {
					t.Errorf("%s entry lacks %s: %v", typ, f, v)
				}
			}
		}
	}
	var params map[string]any
	if err := json.Unmarshal([]byte(fmt.Sprint(byType["execution.started"][0]["parameters"])), &params); err != nil || params["namespace"] != "prod" {
		t.Errorf("parameters = %v (%v)", params, err)
	}
	if got := byType["step.finished"][4]["step.output"]; got != `{"ok":true}` {
		t.Errorf("step.output = %v", got)
	}
	if got := byType["execution.finished"][0]["outcome"]; got != "success" {
		t.Errorf("outcome = %v", got)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(byType["approval.decided"][0]["approval.respondedAt"])); err != nil {
		t.Errorf("respondedAt: %v", err)
	}
}
