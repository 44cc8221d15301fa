package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// writeRunbook writes a runbook into a temp dir and returns the path.
func writeRunbook(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rb.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const gatedRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: gated, version: "2.0.0"}
trigger: {type: manual}
parameters:
  - {name: target, type: string, required: true}
steps:
  - name: prepare
    type: log
    action: print
    params: {message: "token {{ secrets.adminToken }} for {{ target }}"}
  - name: change
    type: log
    action: print
    params: {message: "changing {{ target }}"}
    requiresApproval: {type: manual}
approvals:
  - name: change-approval
    trigger: {step: change}
    workflow:
      timeout: 15m
      approvers:
        - {type: role, value: oncall-primary, required: true}
        - {type: team, value: platform-team, minApprovals: 2}
      actions:
        approve: [{label: Approve, value: approve}]
        reject:
          - {label: "Reject - Investigate First", value: reject, requiresComment: true}
          - {label: "Reject - Wrong Service", value: reject-wrong-service}
  - name: emergency-bypass
    type: override
    permissions: [{role: sre-lead}]
    auditLevel: critical
    requiresJustification: true
`

var team = enginetest.Approvers{
	Members: map[string][]string{"oncall-primary": {"olga"}, "platform-team": {"olga", "pete", "paula"}},
	Bypass:  []string{"sam"},
}

func gatedHarness(t *testing.T) (*harness, string, *engine.ApprovalRecord) {
	h := newHarness(t, enginetest.NewCluster(), team, writeRunbook(t, gatedRunbook))
	id := h.start("gated", "alice", map[string]any{"target": "checkout"})
	req := h.waitEvent("approval", isType(engine.EventApprovalRequested))
	return h, id, req.Approval
}

func decide(h *harness, id, user string, verb engine.Decision, value, comment string) (engine.DecisionResult, error) {
	return h.eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: id, User: user, Verb: verb, Value: value, Comment: comment})
}

func TestRequiredApproverAndMinApprovals(t *testing.T) {
	h, id, a := gatedHarness(t)
	// An outsider is refused and the refusal is audited.
	if _, err := decide(h, a.ID, "mallory", engine.DecisionApprove, "", ""); !errors.Is(err, engine.ErrNotApprover) {
		t.Fatalf("outsider err = %v", err)
	}
	// pete counts for platform-team (1 of 2) but the required on-call is missing.
	res, err := decide(h, a.ID, "pete", engine.DecisionApprove, "", "")
	if err != nil || res.Final || !strings.Contains(res.Needed, "oncall-primary") || !strings.Contains(res.Needed, "platform-team") {
		t.Fatalf("after pete: %+v, %v", res, err)
	}
	if _, err := decide(h, a.ID, "pete", engine.DecisionApprove, "", ""); !errors.Is(err, engine.ErrAlreadyVoted) {
		t.Fatalf("double vote err = %v", err)
	}
	// olga is on-call and in the team: both requirements are now met.
	res, err = decide(h, a.ID, "olga", engine.DecisionApprove, "", "")
	if err != nil || !res.Final {
		t.Fatalf("after olga: %+v, %v", res, err)
	}
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Errorf("outcome = %s", got)
	}
	if n := len(h.eventsOf(id, engine.EventApprovalRefused)); n != 1 {
		t.Errorf("%d refusals audited, want 1", n)
	}
	if n := len(h.eventsOf(id, engine.EventApprovalVote)); n != 1 {
		t.Errorf("%d partial votes recorded, want 1", n)
	}
}

func TestRejectNeedsCommentThenAborts(t *testing.T) {
	h, id, a := gatedHarness(t)
	if _, err := decide(h, a.ID, "olga", engine.DecisionReject, "reject", ""); !errors.Is(err, engine.ErrCommentRequired) {
		t.Fatalf("reject without comment err = %v", err)
	}
	if _, err := decide(h, a.ID, "olga", engine.DecisionReject, "reject", "check the heap dump first"); err != nil {
		t.Fatal(err)
	}
	if got := h.outcome(id); got != engine.OutcomeAborted {
		t.Errorf("outcome = %s, want aborted", got)
	}
	for _, e := range h.eventsOf(id, engine.EventStepFinished) {
		if e.Step.Name == "change" && (e.Step.Status != engine.StepFailure || !strings.Contains(e.Step.Error, "rejected by olga: check the heap dump first")) {
			t.Errorf("change step = %+v", e.Step)
		}
	}
}

func TestRejectWithoutCommentWhenButtonAllows(t *testing.T) {
	h, id, a := gatedHarness(t)
	if _, err := decide(h, a.ID, "paula", engine.DecisionReject, "reject-wrong-service", ""); err != nil {
		t.Fatalf("reject-wrong-service needs no comment: %v", err)
	}
	if got := h.outcome(id); got != engine.OutcomeAborted {
		t.Errorf("outcome = %s", got)
	}
}

func TestEmergencyBypass(t *testing.T) {
	h, id, a := gatedHarness(t)
	if _, err := decide(h, a.ID, "pete", engine.DecisionBypass, "", "prod is down"); !errors.Is(err, engine.ErrNotApprover) {
		t.Fatalf("bypass by pete err = %v", err)
	}
	if _, err := decide(h, a.ID, "sam", engine.DecisionBypass, "", " "); !errors.Is(err, engine.ErrJustificationRequired) {
		t.Fatalf("bypass without justification err = %v", err)
	}
	if _, err := decide(h, a.ID, "sam", engine.DecisionBypass, "", "checkout is down for everyone"); err != nil {
		t.Fatal(err)
	}
	if got := h.outcome(id); got != engine.OutcomeSuccess {
		t.Errorf("outcome = %s", got)
	}
	dec := h.eventsOf(id, engine.EventApprovalDecided)
	if len(dec) != 1 || dec[0].AuditLevel != "critical" || dec[0].Approval.Decision != engine.DecisionBypass || dec[0].Approval.Comment != "checkout is down for everyone" {
		t.Errorf("bypass decision = %+v", dec)
	}
	ref := h.eventsOf(id, engine.EventApprovalRefused)
	if len(ref) != 1 || ref[0].AuditLevel != "critical" {
		t.Errorf("refused bypass not audited as critical: %+v", ref)
	}
}

// No secret value reaches an event, an error or the parameters.
func TestSecretsNeverRecorded(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: leaky, version: "1"}
trigger: {type: manual}
parameters:
  - {name: apiKey, type: string, sensitive: true, required: true}
steps:
  - name: use-it
    type: log
    action: print
    params:
      header: "Bearer {{ secrets.adminToken }}"
      key: "{{ apiKey }}"
  - name: fail-with-it
    type: log
    action: print
    params:
      fail: "server said: token {{ secrets.adminToken }} expired (key {{ apiKey }})"
`
	h := newHarness(t, enginetest.NewCluster(), nil, writeRunbook(t, body))
	id := h.start("leaky", "alice", map[string]any{"apiKey": "param-CANARY-9931"})
	h.outcome(id)
	evs, _ := h.store.Events(context.Background(), id)
	raw, _ := json.Marshal(evs)
	for _, secret := range []string{canary, "param-CANARY-9931"} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("secret %q leaked into the event log: %s", secret, raw)
		}
	}
	// A value rendered from a secret is secret as a whole.
	if !strings.Contains(string(raw), `"header":"[REDACTED]"`) || !strings.Contains(string(raw), `"error":"[REDACTED]"`) {
		t.Errorf("expected masked values in the log: %s", raw)
	}
	sum, _ := h.store.Get(context.Background(), id)
	if sum.Parameters["apiKey"] != engine.Mask {
		t.Errorf("sensitive parameter shown as %v", sum.Parameters["apiKey"])
	}
}

func TestCancelInterruptsRunningStep(t *testing.T) {
	c := enginetest.NewCluster()
	c.Block["kubernetes.rolloutRestart"] = true
	c.Started = make(chan string, 10)
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alice", staging())
	h.waitEvent("verify", stepEvent(engine.EventStepStarted, "verify-memory-after-gc"))
	h.parkAndAdvance(2, 60*time.Second)
	for name := range c.Started {
		if name == "kubernetes.rolloutRestart" {
			break
		}
	}
	if err := h.eng.Cancel(context.Background(), id, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := h.outcome(id); got != engine.OutcomeAborted {
		t.Fatalf("outcome = %s, want aborted", got)
	}
	st := h.statuses(id)
	if st["step:rolling-restart"] != engine.StepFailure || st["step:verify-restart-success"] != engine.StepSkipped {
		t.Errorf("statuses = %v", st)
	}
	if len(h.eventsOf(id, engine.EventCancelRequested)) != 1 {
		t.Error("cancel not recorded")
	}
	if err := h.eng.Cancel(context.Background(), id, "bob"); !errors.Is(err, engine.ErrFinished) {
		t.Errorf("second cancel err = %v", err)
	}
}

func TestPreconditionOutcomes(t *testing.T) {
	t.Run("abort", func(t *testing.T) {
		c := enginetest.NewCluster()
		c.Fail["kubernetes.checkDeploymentReady"] = errors.New("Insufficient ready replicas: 1 < 2")
		h := newHarness(t, c, nil)
		id := h.start(seedRunbook, "alice", staging())
		if got := h.outcome(id); got != engine.OutcomeAborted {
			t.Fatalf("outcome = %s", got)
		}
		if c.Called("http.post") != 0 {
			t.Error("steps ran after a failed abort precondition")
		}
	})
	t.Run("requestApproval outside the change window", func(t *testing.T) {
		c := enginetest.NewCluster()
		c.Memory = enginetest.MemorySequence(50)
		h := newHarness(t, c, nil)
		h.clock.Advance(13 * time.Hour) // 23:00 UTC
		id := h.start(seedRunbook, "alice", staging())
		req := h.waitEvent("approval", isType(engine.EventApprovalRequested))
		if req.Approval.Step != "check-change-window" || req.Approval.Phase != engine.PhasePrecondition || !strings.Contains(req.Approval.Reason, "outside change window") {
			t.Fatalf("approval = %+v", req.Approval)
		}
		if _, err := decide(h, req.Approval.ID, "bob", engine.DecisionApprove, "", ""); err != nil {
			t.Fatal(err)
		}
		if got := h.outcome(id); got != engine.OutcomeSuccess {
			t.Errorf("outcome = %s", got)
		}
	})
}

func TestPartialWhenToleratedStepFails(t *testing.T) {
	c := enginetest.NewCluster()
	c.Fail["kubernetes.execCommand"] = errors.New("exec not allowed")
	c.Memory = enginetest.MemorySequence(50)
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alice", staging())
	if got := h.outcome(id); got != engine.OutcomePartial {
		t.Fatalf("outcome = %s, want partial", got)
	}
}

func TestStepTimeoutOnClock(t *testing.T) {
	c := enginetest.NewCluster()
	c.Block["http.post"] = true
	c.Memory = enginetest.MemorySequence(50)
	h := newHarness(t, c, nil)
	id := h.start(seedRunbook, "alice", staging())
	h.waitEvent("gc", stepEvent(engine.EventStepStarted, "trigger-gc"))
	h.parkAndAdvance(1, 10*time.Second)
	fin := h.waitEvent("gc finished", stepEvent(engine.EventStepFinished, "trigger-gc"))
	if fin.Step.Status != engine.StepFailure || !strings.Contains(fin.Step.Error, "step timed out after 10s") || fin.Step.DurationMs != 10000 {
		t.Fatalf("trigger-gc = %+v", fin.Step)
	}
	if got := h.outcome(id); got != engine.OutcomePartial {
		t.Errorf("outcome = %s", got)
	}
}

func TestStartValidation(t *testing.T) {
	h := newHarness(t, enginetest.NewCluster(), nil, "../runbooks/high-memory-pod-remediation.yaml")
	tests := []struct {
		name   string
		rb     string
		params map[string]any
		want   string
	}{
		{"unknown runbook", "high-memory-pod-remediaton", nil, `did you mean "high-memory-pod-remediation"`},
		{"missing required", seedRunbook, map[string]any{"namespace": "staging"}, "parameter podName: is required"},
		{"unknown parameter", seedRunbook, map[string]any{"namespace": "x", "podName": "p", "podname": "q"}, `did you mean "podName"`},
		{"bad integer", seedRunbook, map[string]any{"namespace": "x", "podName": "p", "maxRestarts": "two"}, `"two" is not a whole number`},
		{"trigger condition", seedRunbook, map[string]any{"namespace": "production-critical", "podName": "p"}, "namespace notIn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.eng.Start(context.Background(), engine.StartRequest{Runbook: tt.rb, Params: tt.params})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Sensitive parameter values are never logged, so an execution resumed
// after a restart stops instead of running with the mask; notification
// messages reach the notifier with secrets masked.
func TestSensitiveParametersAcrossRestartAndNotifications(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: sensitive, version: "1"}
trigger: {type: manual}
parameters:
  - {name: apiKey, type: string, sensitive: true, required: true}
steps:
  - name: tell
    type: notification
    action: send
    params: {channels: ["slack"], message: "key {{ apiKey }} token {{ secrets.adminToken }}"}
  - name: gate
    type: log
    action: print
    params: {message: "{{ apiKey }}"}
    requiresApproval: {type: manual}
`
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil, writeRunbook(t, body))
	id := h.start("sensitive", "alice", map[string]any{"apiKey": "param-CANARY-77"})
	h.waitEvent("approval", isType(engine.EventApprovalRequested))
	notes := c.Notifications()
	if len(notes) != 1 || strings.Contains(notes[0].Message, "param-CANARY-77") || strings.Contains(notes[0].Message, canary) {
		t.Fatalf("notification leaked a secret: %+v", notes)
	}
	h.eng.Close()
	cat, _ := engine.LoadPaths(c.Registry(), writeRunbook(t, body))
	eng := engine.New(engine.Config{Store: h.store, Registry: c.Registry(), Catalog: cat, Clock: h.clock})
	defer eng.Close()
	if n, err := eng.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := eng.Wait(ctx, id); err != nil || out != engine.OutcomeAborted {
		t.Fatalf("outcome after restart = %s, %v; want aborted", out, err)
	}
	fin := h.eventsOf(id, engine.EventExecutionFinished)
	if len(fin) != 1 || !strings.Contains(fin[0].Message, "sensitive parameter apiKey is not kept across a restart") {
		t.Errorf("finished = %+v", fin)
	}
}

// A runbook edited while an execution waited (steps renamed or moved) is
// not replayed against the wrong steps: the execution stops and says why.
func TestResumeAgainstAnEditedRunbook(t *testing.T) {
	c := enginetest.NewCluster()
	h := newHarness(t, c, team, writeRunbook(t, gatedRunbook))
	id := h.start("gated", "alice", map[string]any{"target": "checkout"})
	h.waitEvent("approval", isType(engine.EventApprovalRequested))
	h.eng.Close()
	edited := strings.Replace(strings.Replace(gatedRunbook, "name: prepare", "name: get-ready", 1), `version: "2.0.0"`, `version: "2.1.0"`, 1)
	cat, diags := engine.LoadPaths(c.Registry(), writeRunbook(t, edited))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng := engine.New(engine.Config{Store: h.store, Registry: c.Registry(), Catalog: cat, Clock: h.clock, Approvers: team})
	defer eng.Close()
	if _, err := eng.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := eng.Wait(ctx, id); err != nil || out != engine.OutcomeAborted {
		t.Fatalf("outcome = %s, %v; want aborted", out, err)
	}
	fin := h.eventsOf(id, engine.EventExecutionFinished)
	if len(fin) != 1 || !strings.Contains(fin[0].Message, `changed (v2.0.0 → v2.1.0)`) || !strings.Contains(fin[0].Message, `"prepare"`) {
		t.Errorf("finished = %+v", fin)
	}
}
