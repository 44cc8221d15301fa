package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

const seedRunbook = "high-memory-pod-remediation"

func staging() map[string]any {
	return map[string]any{"namespace": "staging", "podName": "api-server-abc123", "memoryThreshold": "90"}
}

func production() map[string]any {
	return map[string]any{"namespace": "production", "podName": "api-server-abc123", "memoryThreshold": "90"}
}

// The seed's test_full_execution_gc_resolves_issue: memory drops after GC,
// the runbook completes early and never restarts.
func TestSeedGCResolvesIssue(t *testing.T) {
	c := enginetest.NewCluster()
	c.Memory = enginetest.MemorySequence(95, 85, 70)
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alertmanager", staging())
	h.waitEvent("verify-memory-after-gc to start", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 10*time.Second) // 85
	h.parkAndAdvance(2, 10*time.Second) // 70 → done
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s, want success", got)
	}
	st := h.statuses(id)
	if st["step:verify-memory-after-gc"] != engine.StepSuccess {
		t.Errorf("verify-memory-after-gc = %s, want success", st["step:verify-memory-after-gc"])
	}
	if st["step:rolling-restart"] != engine.StepSkipped {
		t.Errorf("rolling-restart = %s, want skipped", st["step:rolling-restart"])
	}
	if n := c.Called("kubernetes.rolloutRestart"); n != 0 {
		t.Errorf("rolloutRestart called %d times, want 0", n)
	}
	if n := c.Called("http.post"); n != 1 {
		t.Errorf("trigger-gc posted %d times, want 1", n)
	}
}

// The seed's test_full_execution_requires_restart: memory stays high, the
// wait times out (onFailure: continue) and the restart runs.
func TestSeedMemoryStaysHighRestarts(t *testing.T) {
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alertmanager", staging())
	h.waitEvent("verify-memory-after-gc to start", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 60*time.Second)
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s, want success", got)
	}
	st := h.statuses(id)
	if st["step:verify-memory-after-gc"] != engine.StepFailure || st["step:rolling-restart"] != engine.StepSuccess || st["step:verify-restart-success"] != engine.StepSuccess {
		t.Errorf("statuses = %v", st)
	}
	if n := c.Called("kubernetes.rolloutRestart"); n != 1 {
		t.Errorf("rolloutRestart called %d times, want 1", n)
	}
	if len(h.eventsOf(id, engine.EventApprovalRequested)) != 0 {
		t.Errorf("staging restart asked for approval")
	}
	// saveState captured the replica count from the deployment.
	for _, e := range h.eventsOf(id, engine.EventStepFinished) {
		if e.Step.Name == "rolling-restart" {
			if e.Step.State["previousReplicaCount"] != 3 || e.Step.State["previousRevision"] != 4 {
				t.Errorf("saved state = %v", e.Step.State)
			}
		}
	}
}

// The seed's test_rollback_on_restart_failure.
func TestSeedRestartFailsRollsBack(t *testing.T) {
	c := enginetest.NewCluster()
	c.Fail["kubernetes.rolloutRestart"] = enginetest.ErrAPIDown
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alertmanager", staging())
	h.waitEvent("verify-memory-after-gc to start", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 60*time.Second)
	if got := h.outcome(id); got != engine.OutcomeRollback {
		t.Fatalf("outcome = %s, want rollback", got)
	}
	st := h.statuses(id)
	want := map[string]engine.StepStatus{
		"step:rolling-restart":        engine.StepFailure,
		"step:verify-restart-success": engine.StepSkipped,
		"rollback:undo-rollout":       engine.StepSuccess,
		"rollback:restore-replicas":   engine.StepSuccess,
		"rollback:verify-rollback":    engine.StepSuccess,
		"rollback:notify-rollback":    engine.StepSuccess,
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s = %s, want %s", k, st[k], v)
		}
	}
	fin := h.eventsOf(id, engine.EventRollbackFinished)
	if len(fin) != 1 || fin[0].Rollback.Success == nil || !*fin[0].Rollback.Success || fin[0].Rollback.Reason != "step.rolling-restart.failed" {
		t.Fatalf("rollback.finished = %+v", fin)
	}
	notes := c.Notifications()
	if len(notes) != 1 || !contains(notes[0].Message, "Rollback executed for api-server-abc123 in staging") || !contains(notes[0].Message, "Reason: step.rolling-restart.failed") {
		t.Errorf("rollback notification = %+v", notes)
	}
	// undo-rollout received the revision state and restore-replicas the count.
	for _, e := range h.eventsOf(id, engine.EventStepStarted) {
		if e.Step.Name == "restore-replicas" && e.Step.Input["replicas"] != 3 {
			t.Errorf("restore-replicas input = %v", e.Step.Input)
		}
		if e.Step.Name == "undo-rollout" && e.Step.Input["deployment"] != "api-server" {
			t.Errorf("undo-rollout input = %v", e.Step.Input)
		}
	}
}

// The seed's test_approval_required_for_production, with the approval given
// by a second person.
func TestSeedProductionNeedsApproval(t *testing.T) {
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alice", production())
	h.waitEvent("verify-memory-after-gc to start", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 60*time.Second)
	req := h.waitEvent("approval request", isType(engine.EventApprovalRequested))
	a := req.Approval
	if a.Step != "rolling-restart" || a.Name != "production-restart-approval" || len(a.Approvers) != 2 || a.Deadline == nil || a.Deadline.Sub(a.RequestedAt) != 15*time.Minute {
		t.Fatalf("approval request = %+v", a)
	}
	if a.Channels[0].Channel != "#incidents" || !a.Actions.Reject[0].RequiresComment {
		t.Errorf("channels/actions not carried: %+v %+v", a.Channels, a.Actions)
	}
	if c.Called("kubernetes.rolloutRestart") != 0 {
		t.Fatal("restart ran before approval")
	}
	res, err := h.eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: a.ID, User: "bob", Verb: engine.DecisionApprove})
	if err != nil || !res.Final {
		t.Fatalf("Decide = %+v, %v", res, err)
	}
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s, want success", got)
	}
	dec := h.eventsOf(id, engine.EventApprovalDecided)
	if len(dec) != 1 || dec[0].Approval.Approver != "bob" || dec[0].Approval.Decision != engine.DecisionApprove || dec[0].Approval.RespondedAt == nil {
		t.Fatalf("decision = %+v", dec)
	}
	if c.Called("kubernetes.rolloutRestart") != 1 {
		t.Errorf("restart did not run after approval")
	}
	// A second click is answered, not acted on.
	if _, err := h.eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: a.ID, User: "carol", Verb: engine.DecisionApprove}); !errors.Is(err, engine.ErrAlreadyDecided) {
		t.Errorf("second decision err = %v, want ErrAlreadyDecided", err)
	}
}

func (h *harness) toApproval(params map[string]any, requester string) (string, *engine.ApprovalRecord) {
	h.t.Helper()
	id := h.start(seedRunbook, requester, params)
	h.waitEvent("verify-memory-after-gc to start", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 60*time.Second)
	req := h.waitEvent("approval request", isType(engine.EventApprovalRequested))
	return id, req.Approval
}

func TestSeedApprovalTimeoutRejects(t *testing.T) {
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil)
	id, a := h.toApproval(production(), "alice")
	h.parkAndAdvance(2, 15*time.Minute)
	dec := h.waitEvent("timeout decision", isType(engine.EventApprovalDecided))
	if dec.Approval.Decision != engine.DecisionTimeout || dec.Approval.ID != a.ID {
		t.Fatalf("decision = %+v", dec.Approval)
	}
	if !dec.Time.Equal(a.RequestedAt.Add(15 * time.Minute)) {
		t.Errorf("timed out at %s, want 15m after the request", dec.Time)
	}
	if got := h.outcome(id); got != engine.OutcomeAborted {
		t.Errorf("outcome = %s, want aborted", got)
	}
	if c.Called("kubernetes.rolloutRestart") != 0 {
		t.Error("restart ran after a timed-out approval")
	}
	if st := h.statuses(id); st["step:rolling-restart"] != engine.StepFailure {
		t.Errorf("rolling-restart = %s, want failure (rejected)", st["step:rolling-restart"])
	}
}

func TestSeedEscalationTiers(t *testing.T) {
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil)
	_, a := h.toApproval(production(), "alice")
	h.parkAndAdvance(2, 5*time.Minute)
	e1 := h.waitEvent("first escalation", isType(engine.EventApprovalEscalated))
	if e1.Approval.Tier != 1 || e1.Approval.Notify[0] != "oncall-secondary" || !e1.Time.Equal(a.RequestedAt.Add(5*time.Minute)) {
		t.Errorf("first escalation = %+v at %s", e1.Approval, e1.Time)
	}
	h.parkAndAdvance(2, 5*time.Minute)
	e2 := h.waitEvent("second escalation", isType(engine.EventApprovalEscalated))
	if e2.Approval.Tier != 2 || e2.Approval.Notify[0] != "engineering-manager" || !e2.Time.Equal(a.RequestedAt.Add(10*time.Minute)) {
		t.Errorf("second escalation = %+v at %s", e2.Approval, e2.Time)
	}
	// Only the timeout is left.
	h.parkAndAdvance(1, 5*time.Minute)
	h.waitEvent("timeout", isType(engine.EventApprovalDecided))
}

func TestSeedSelfApprovalRefused(t *testing.T) {
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil)
	id, a := h.toApproval(production(), "alice")
	_, err := h.eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: a.ID, User: "alice", Verb: engine.DecisionApprove})
	if !errors.Is(err, engine.ErrSelfApproval) {
		t.Fatalf("self-approval err = %v, want ErrSelfApproval", err)
	}
	ref := h.eventsOf(id, engine.EventApprovalRefused)
	if len(ref) != 1 || ref[0].Actor != "alice" || ref[0].AuditLevel != "warning" {
		t.Fatalf("refusal not audited: %+v", ref)
	}
	if c.Called("kubernetes.rolloutRestart") != 0 {
		t.Fatal("restart ran on a self-approval")
	}
	// The approval is still open: someone else can approve.
	if _, err := h.eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: a.ID, User: "bob", Verb: engine.DecisionApprove}); err != nil {
		t.Fatalf("approval by bob: %v", err)
	}
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Errorf("outcome = %s", got)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0))
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
