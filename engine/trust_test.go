package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// lintSource loads one file from memory with the fake cluster's registry.
func lintSource(t *testing.T, reg *engine.Registry, body string) engine.Diagnostics {
	t.Helper()
	_, diags := engine.LoadSources(reg, []string{"rb.yaml"}, map[string][]byte{"rb.yaml": []byte(body)})
	return diags
}

func wantDiag(t *testing.T, diags engine.Diagnostics, line int, substr string) {
	t.Helper()
	for _, d := range diags {
		if strings.Contains(d.Message, substr) && (line == 0 || d.Line == line) {
			return
		}
	}
	t.Errorf("no diagnostic at line %d containing %q; got:\n%v", line, substr, diags)
}

const minimal = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: tiny, version: "1"}
steps:
  - name: hello
    type: log
    action: print
    params: {message: hi}
`

// A runbook without trigger: is started by hand, as the seed's executor
// defaults; it is not a lint error.
func TestTriggerMayBeOmitted(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	cat, diags := engine.LoadSources(reg, []string{"rb.yaml"}, map[string][]byte{"rb.yaml": []byte(minimal)})
	if len(diags) > 0 {
		t.Fatalf("a runbook without trigger did not load: %v", diags)
	}
	if got := cat.Runbooks["tiny"].Trigger.Type; got != "manual" {
		t.Errorf("trigger.type = %q, want manual", got)
	}
}

// A second YAML document is refused where it starts, whether or not it
// parses — never silently ignored.
func TestSecondDocumentRefused(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	for name, second := range map[string]string{
		"broken": "---\nsteps: [unclosed\n",
		"valid":  "---\n" + strings.Replace(minimal, "tiny", "other", 1),
	} {
		t.Run(name, func(t *testing.T) {
			diags := lintSource(t, reg, minimal+second)
			wantDiag(t, diags, 9, "a second YAML document starts here")
		})
	}
}

// Oversized files are refused at once, naming the limit.
func TestFileSizeLimit(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	big := minimal + "# " + strings.Repeat("x", engine.MaxFileSize) + "\n"
	start := time.Now()
	diags := lintSource(t, reg, big)
	wantDiag(t, diags, 1, "may be at most 1 MiB")
	_ = start
}

// Live roots that nothing answers are lint errors naming the root and what
// would answer it; a parameter named like a live root cannot hide it.
func TestLiveRootsMustBeAnswerable(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: watch, version: "1"}
parameters:
  - {name: deployment, type: string}
steps:
  - name: wait
    type: wait
    action: until
    params:
      condition: "metrics.errorRate < 1 && healthcheck.failed == false"
  - name: check
    type: log
    action: print
    params: {ready: "{{ deployment.status.readyReplicas }}"}
`
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	reg.Unavailable("metrics", "set PROMETHEUS_URL or RUNBOOKBOT_METRICS_CONFIG")
	diags := lintSource(t, reg, body)
	wantDiag(t, diags, 11, `nothing in this configuration answers metrics.errorRate`)
	wantDiag(t, diags, 11, `healthcheck.failed`)
	for _, d := range diags {
		if strings.Contains(d.Message, "metrics.errorRate") && !strings.Contains(d.Hint, "PROMETHEUS_URL") {
			t.Errorf("hint does not say what would answer metrics: %+v", d)
		}
	}
	wantDiag(t, diags, 15, `reads the parameter "deployment", which hides the live deployment data`)

	// With the integrations registered, the same runbook is still refused
	// for the shadowing parameter, and only for it.
	diags = lintSource(t, enginetest.NewCluster().Registry(), body)
	if len(diags) != 1 {
		t.Errorf("want only the shadowing error, got:\n%v", diags)
	}
}

// Unbounded programs are refused when compiled.
func TestHugeRangesRefused(t *testing.T) {
	if _, err := engine.CompileCondition("len(reduce(1..100000, #acc + string(#), '')) > 0"); err == nil || !strings.Contains(err.Error(), "range 1..100000 has 100000 elements") {
		t.Errorf("err = %v", err)
	}
	if _, err := engine.CompileCondition("all(1..100, # > 0)"); err != nil {
		t.Errorf("a small range was refused: %v", err)
	}
}

// A condition that runs longer than its step's timeout fails the step
// instead of running on and reporting ok.
func TestConditionCannotOutrunItsStep(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: slow, version: "1"}
parameters:
  - {name: n, type: integer, default: 100000}
steps:
  - name: spin
    type: log
    action: print
    timeout: 300ms
    condition: "len(reduce(1..n, #acc + string(#), '')) > 0"
    params: {message: never}
`
	c := enginetest.NewCluster()
	reg := c.Registry()
	cat, diags := engine.LoadSources(reg, []string{"rb.yaml"}, map[string][]byte{"rb.yaml": []byte(body)})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	store := enginetest.NewMemStore()
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat})
	defer eng.Close()
	start := time.Now()
	id, err := eng.Start(context.Background(), engine.StartRequest{Runbook: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := eng.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v (after %s)", err, time.Since(start))
	}
	if out != engine.OutcomeFailure {
		t.Fatalf("outcome = %s, want failure", out)
	}
	evs, _ := store.Events(context.Background(), id)
	var stepErr string
	for _, e := range evs {
		if e.Type == engine.EventStepFinished && e.Step.Name == "spin" {
			stepErr = e.Step.Error
		}
	}
	if !strings.Contains(stepErr, "ran longer than its step's time limit") {
		t.Errorf("step error = %q", stepErr)
	}
}

// Values derived from a secret through any filter are secret as a whole:
// none of their forms reaches the event log.
func TestDerivedSecretsNeverRecorded(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: derived, version: "1"}
steps:
  - name: use
    type: log
    action: print
    params:
      upper: "{{ secrets.adminToken | upper }}"
      lower: "{{ secrets.adminToken | lower }}"
      head: "{{ secrets.adminToken | trunc(5) }}"
      two: "{{ secrets.adminToken | trunc(2) }}"
      quoted: "{{ secrets.adminToken | quote }}"
      json: "{{ secrets.adminToken | json }}"
      url: "https://api.example.com/v1/{{ secrets.adminToken | lower }}/x?q={{ secrets.adminToken }}"
    saveState:
      - {key: kept, value: "{{ secrets.adminToken | upper }}"}
  - name: fail
    type: log
    action: print
    params:
      fail: "bad token {{ secrets.adminToken | trunc(9) }}"
`
	h := newHarness(t, enginetest.NewCluster(), nil, writeRunbook(t, body))
	id := h.start("derived", "alice", nil)
	if out := h.outcome(id); out != engine.OutcomeFailure {
		t.Fatalf("outcome = %s", out)
	}
	evs, _ := h.store.Events(context.Background(), id)
	raw, _ := json.Marshal(evs)
	for _, leak := range []string{canary, strings.ToUpper(canary), strings.ToLower(canary), canary[:5], canary[:9], `"s3"`} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("derived secret %q reached the event log: %s", leak, raw)
		}
	}
	if !strings.Contains(string(raw), `"two":"[REDACTED]"`) {
		t.Errorf("a two-character cut of the secret is not masked: %s", raw)
	}
}

// Built-in waits are safe to repeat: after a restart a sleep resumes with
// the time it has left instead of failing the execution.
func TestSleepResumesAfterRestart(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: nap, version: "1"}
steps:
  - name: nap
    type: wait
    action: sleep
    params: {duration: 10m}
  - name: after
    type: log
    action: print
    params: {message: awake}
`
	c := enginetest.NewCluster()
	h := newHarness(t, c, nil, writeRunbook(t, body))
	id := h.start("nap", "alice", nil)
	h.parkAndAdvance(1, 4*time.Minute) // the sleep is running; 6 minutes left
	h.eng.Close()

	cat, _ := engine.LoadPaths(c.Registry(), writeRunbook(t, body))
	eng := engine.New(engine.Config{Store: h.store, Registry: c.Registry(), Catalog: cat, Clock: h.clock})
	defer eng.Close()
	if n, err := eng.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * time.Minute) // exactly what was left
	out, err := eng.Wait(ctx, id)
	if err != nil || out != engine.OutcomeSuccess {
		t.Fatalf("outcome after restart = %s, %v; want success", out, err)
	}
	var reason string
	for _, e := range h.eventsOf(id, engine.EventStepFinished) {
		if e.Step.Name == "nap" && e.Step.Status == engine.StepInterrupted {
			reason = e.Step.Reason
		}
	}
	if !strings.Contains(reason, "resuming it where it was") {
		t.Errorf("interrupted reason = %q", reason)
	}
}

// A wait/until whose condition cannot be answered fails at once instead of
// polling to its timeout.
func TestWaitUntilUnanswerableFailsAtOnce(t *testing.T) {
	body := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: broken-wait, version: "1"}
parameters:
  - {name: n, type: string, default: "x"}
steps:
  - name: wait
    type: wait
    action: until
    params:
      condition: "int(n) > 3"
      timeout: 60s
      pollInterval: 10s
`
	h := newHarness(t, enginetest.NewCluster(), nil, writeRunbook(t, body))
	id := h.start("broken-wait", "alice", nil)
	if out := h.outcome(id); out != engine.OutcomeFailure {
		t.Fatalf("outcome = %s", out)
	}
	fin := h.eventsOf(id, engine.EventStepFinished)
	if len(fin) != 1 || !strings.Contains(fin[0].Step.Error, "cannot be checked") || fin[0].Step.DurationMs != 0 {
		t.Errorf("step = %+v", fin[0].Step)
	}
}

// slowApprovers answers approver questions only when released, as a chat
// platform's user-group lookup might.
type slowApprovers struct {
	engine.Approvers
	asked   chan struct{}
	release chan struct{}
}

func (s slowApprovers) Satisfies(ctx context.Context, user string, ref engine.ApproverRef) (bool, error) {
	select {
	case s.asked <- struct{}{}:
	default:
	}
	<-s.release
	return s.Approvers.Satisfies(ctx, user, ref)
}

// Deciding asks the directory outside the execution's lock: a slow lookup
// does not hold up the execution (here, a cancel) meanwhile.
func TestDecideDoesNoIOUnderTheRunLock(t *testing.T) {
	slow := slowApprovers{Approvers: team, asked: make(chan struct{}, 1), release: make(chan struct{})}
	h := newHarness(t, enginetest.NewCluster(), slow, writeRunbook(t, gatedRunbook))
	id := h.start("gated", "alice", map[string]any{"target": "checkout"})
	a := h.waitEvent("approval", isType(engine.EventApprovalRequested)).Approval
	decided := make(chan error, 1)
	go func() {
		_, err := decide(h, a.ID, "olga", engine.DecisionApprove, "", "")
		decided <- err
	}()
	<-slow.asked
	cancelled := make(chan error, 1)
	go func() { cancelled <- h.eng.Cancel(context.Background(), id, "alice") }()
	select {
	case err := <-cancelled:
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		close(slow.release)
		t.Fatal("Cancel waited for the approver lookup: Decide holds the run's lock during I/O")
	}
	close(slow.release)
	if err := <-decided; err == nil {
		t.Errorf("a vote on a cancelled execution was accepted")
	}
	if out := h.outcome(id); out != engine.OutcomeAborted {
		t.Errorf("outcome = %s, want aborted", out)
	}
}

// brokenGroupApprovers cannot answer for one group (its chat group did not
// resolve) but can for the others.
type brokenGroupApprovers struct {
	engine.Approvers
	broken string
}

func (b brokenGroupApprovers) Satisfies(ctx context.Context, user string, ref engine.ApproverRef) (bool, error) {
	if ref.Value == b.broken {
		return false, errors.New("chat group of " + b.broken + " could not be resolved")
	}
	return b.Approvers.Satisfies(ctx, user, ref)
}

// An approver group that cannot be resolved refuses only those who depend
// on it: someone qualifying through another approver still votes.
func TestUnresolvableApproverGroupDeniesOnlyItsDependants(t *testing.T) {
	ap := brokenGroupApprovers{Approvers: team, broken: "oncall-primary"}
	h := newHarness(t, enginetest.NewCluster(), ap, writeRunbook(t, gatedRunbook))
	h.start("gated", "alice", map[string]any{"target": "checkout"})
	a := h.waitEvent("approval", isType(engine.EventApprovalRequested)).Approval
	res, err := decide(h, a.ID, "pete", engine.DecisionApprove, "", "")
	if err != nil {
		t.Fatalf("pete (platform-team) was refused because oncall-primary could not be resolved: %v", err)
	}
	if res.Final {
		t.Errorf("one vote decided an approval that needs the required oncall-primary approver")
	}
	if _, err := decide(h, a.ID, "zed", engine.DecisionApprove, "", ""); err == nil || !strings.Contains(err.Error(), "could not be resolved") {
		t.Errorf("someone in no group: err = %v, want the resolution failure explained", err)
	}
}

// A scheduled runbook must get every required parameter from a default or
// trigger.parameters; trigger.parameters must name real parameters.
func TestScheduleParameters(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	body := func(params string) string {
		return `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: nightly, version: "1"}
trigger:
  type: schedule
  schedule: "0 3 * * *"
` + params + `parameters:
  - {name: namespace, type: string, required: true}
  - {name: keep, type: integer, default: 3}
steps:
  - name: hello
    type: log
    action: print
    params: {message: "{{ namespace }}"}
`
	}
	wantDiag(t, lintSource(t, reg, body("")), 5, "parameter namespace is required and nothing supplies it")
	if d := lintSource(t, reg, body("  parameters: {namespace: staging}\n")); len(d) != 0 {
		t.Errorf("trigger.parameters supplying the value: %v", d)
	}
	d := lintSource(t, reg, body("  parameters: {namespace: staging, namespce: x, keep: many}\n"))
	wantDiag(t, d, 0, "trigger.parameters.namespce is not a parameter")
	wantDiag(t, d, 0, "trigger.parameters.keep")
}

// lint checks what runbooks name against the RBAC config: an approver role,
// an override role or an escalation target nobody defines is reported in
// the runbook's file, at its line.
func TestLintCrossChecksRBAC(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	rbac := `roles:
  - {name: runbook-operator, permissions: [runbooks:execute, approvals:respond]}
assignments:
  - role: runbook-operator
    subjects: [{group: oncall-primary}]
groups:
  - {name: oncall-primary, users: [U1]}
  - {name: sre-lead, users: [U2]}
`
	rb := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: gated, version: "1"}
steps:
  - name: act
    type: log
    action: print
    params: {message: hi}
approvals:
  - name: gate
    trigger: {step: act}
    workflow:
      timeout: 10m
      escalation:
        - {after: 5m, notify: [oncall-secondry]}
      approvers:
        - {type: role, value: oncall-primary, required: true}
        - {type: team, value: platfrom-team}
  - name: bypass
    type: override
    permissions:
      - role: sre-leads
`
	_, diags := engine.LoadSources(reg, []string{"rb.yaml", "rbac.yaml"}, map[string][]byte{"rb.yaml": []byte(rb), "rbac.yaml": []byte(rbac)})
	wantDiag(t, diags, 15, `"oncall-secondry" is not a group or role of the RBAC config`)
	wantDiag(t, diags, 18, `"platfrom-team" is not a group or role`)
	wantDiag(t, diags, 22, `"sre-leads" is not a group or role`)
	for _, d := range diags {
		if d.File != "rb.yaml" {
			t.Errorf("problem reported in %s, want the runbook's file: %v", d.File, d)
		}
		if strings.Contains(d.Message, "sre-leads") && !strings.Contains(d.Hint, `did you mean "sre-lead"`) {
			t.Errorf("hint = %q", d.Hint)
		}
	}
	if len(diags) != 3 {
		t.Errorf("want exactly 3 problems, got:\n%v", diags)
	}
}
