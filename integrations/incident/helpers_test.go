package incident

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/incident/pdemu"
)

const (
	testToken   = "u+pd-secret-token-123"
	testFrom    = "bot@example.com"
	testService = "PSVC001"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// emulator starts a PagerDuty emulator with one user and one service
// whose policy has two levels.
func emulator(tb testing.TB) (*pdemu.Server, *httptest.Server) {
	tb.Helper()
	emu := pdemu.New(pdemu.Config{Tokens: []string{testToken},
		Users:    []pdemu.User{{ID: "PUSER01", Name: "runbookbot", Email: testFrom}},
		Services: []pdemu.Service{{ID: testService, Name: "checkout", PolicyID: "PPOL001", Levels: 2}}})
	srv := httptest.NewServer(emu)
	tb.Cleanup(srv.Close)
	return emu, srv
}

func pdConfig(url string) PagerDutyConfig {
	return PagerDutyConfig{URL: url, Token: testToken, From: testFrom, ServiceID: testService}
}

// exec builds the events of an execution, appended in order.
type exec struct {
	id, runbook string
	evs         []engine.Event
	at          time.Time
}

func newExec(id, runbook string, trigger *engine.TriggerInfo, params map[string]any) *exec {
	x := &exec{id: id, runbook: runbook, at: t0}
	x.add(engine.Event{Type: engine.EventExecutionStarted, Trigger: trigger, Parameters: params})
	return x
}

func (x *exec) add(e engine.Event) *exec {
	e.ExecutionID, e.RunbookName, e.RunbookVersion = x.id, x.runbook, "1.2.0"
	e.Seq = int64(len(x.evs)) + 1
	x.at = x.at.Add(10 * time.Second)
	if e.Time.IsZero() {
		e.Time = x.at
	}
	x.evs = append(x.evs, e)
	return x
}

func (x *exec) step(name string, status engine.StepStatus, errText string) *exec {
	x.add(engine.Event{Type: engine.EventStepStarted, Step: &engine.StepRecord{Name: name, Phase: engine.PhaseStep, Status: engine.StepRunning}})
	return x.add(engine.Event{Type: engine.EventStepFinished, Step: &engine.StepRecord{Name: name, Phase: engine.PhaseStep, Status: status, Error: errText, DurationMs: 1500}})
}

func (x *exec) approval(step, who, comment string, d engine.Decision) *exec {
	x.add(engine.Event{Type: engine.EventApprovalRequested, Approval: &engine.ApprovalRecord{ID: "ap-" + x.id, Step: step, RequestedAt: x.at,
		Approvers: []engine.ApproverRef{{Type: "role", Value: "oncall-primary"}}}})
	at := x.at.Add(3 * time.Minute)
	return x.add(engine.Event{Type: engine.EventApprovalDecided, Actor: who, Approval: &engine.ApprovalRecord{ID: "ap-" + x.id, Step: step, RequestedAt: x.at,
		Approver: who, Decision: d, Comment: comment, RespondedAt: &at}})
}

func (x *exec) finish(o engine.Outcome) *exec {
	return x.add(engine.Event{Type: engine.EventExecutionFinished, Outcome: o})
}

func appendAll(tb testing.TB, st *enginetest.MemStore, xs ...*exec) {
	tb.Helper()
	for _, x := range xs {
		if err := st.Append(context.Background(), x.evs...); err != nil {
			tb.Fatal(err)
		}
	}
}

// timeline returns a timeline over st writing to the PagerDuty at url
// for every runbook.
func timeline(st Source, cp Checkpoints, p Provider) *Timeline {
	return NewTimeline(Options{Source: st, Checkpoints: cp, Providers: map[string]Provider{"pagerduty": p},
		Route: func(string) string { return "pagerduty" }, Create: true, Owner: "test"})
}

func drain(tb testing.TB, tl *Timeline) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tl.Drain(ctx); err != nil {
		tb.Fatal(err)
	}
}

func noteTexts(emu *pdemu.Server, id string) []string {
	var out []string
	for _, n := range emu.Notes(id) {
		out = append(out, n.Content)
	}
	return out
}
