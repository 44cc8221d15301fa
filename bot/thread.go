package bot

import (
	"fmt"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// thread is what the view knows of one execution, folded from its events.
type thread struct {
	id         string
	runbook    string
	version    string
	trigger    engine.TriggerInfo
	params     map[string]any
	context    map[string]any
	started    time.Time
	ended      *time.Time
	status     string
	outcome    engine.Outcome
	message    string
	current    string
	totalSteps int
	lastSeq    int64
	steps      []*stepView
	byKey      map[string]*stepView
	approvals  []*approvalView
	byApproval map[string]*approvalView
	rollback   *engine.RollbackRecord
	cancelBy   string
}

type stepView struct {
	key      string
	n        int
	name     string
	phase    engine.Phase
	typ      string
	action   string
	status   engine.StepStatus
	start    *time.Time
	durMs    int64
	output   map[string]any
	err      string
	reason   string
	rejected bool
}

type approvalView struct {
	rec       engine.ApprovalRecord
	execID    string
	runbook   string
	version   string
	requester string
	params    map[string]any
	gated     map[string]any // the gated step's parameters, resolved
	votes     []string
	decided   *engine.ApprovalRecord
	cancelled bool // the execution ended before a decision
	tier      int
	escalated []escalation
}

type escalation struct {
	tier    int
	message string
	notify  []string
}

func newThread(id string) *thread {
	return &thread{id: id, byKey: map[string]*stepView{}, byApproval: map[string]*approvalView{}}
}

// change says which messages an event changed.
type change struct {
	parent   bool
	step     string // step key
	approval string // approval id
	escalate string // approval id whose escalation to announce
}

// apply folds an event into the thread (events at or below lastSeq are
// ignored) and says what changed.
func (t *thread) apply(e engine.Event) change {
	if e.Seq != 0 && e.Seq <= t.lastSeq {
		return change{}
	}
	if e.Seq != 0 {
		t.lastSeq = e.Seq
	}
	switch e.Type {
	case engine.EventExecutionStarted:
		t.runbook, t.version, t.started = e.RunbookName, e.RunbookVersion, e.Time
		if e.Trigger != nil {
			t.trigger = *e.Trigger
		}
		t.params, t.context = e.Parameters, e.Context
		t.status = engine.StatusRunning
		return change{parent: true}
	case engine.EventStepStarted, engine.EventStepFinished:
		s := e.Step
		key := fmt.Sprintf("%s:%d", s.Phase, s.Index)
		v := t.byKey[key]
		if v == nil {
			v = &stepView{key: key, name: s.Name, phase: s.Phase, typ: s.Type, action: s.Action}
			if s.Phase != engine.PhaseRollback {
				v.n = t.countMain() + 1
			}
			t.byKey[key] = v
			t.steps = append(t.steps, v)
		}
		v.status, v.err, v.reason, v.rejected = s.Status, s.Error, s.Reason, s.Rejected
		if s.StartTime != nil {
			v.start = s.StartTime
		}
		if e.Type == engine.EventStepFinished {
			v.durMs, v.output = s.DurationMs, s.Output
			t.current = ""
		} else {
			t.current = s.Name
			v.err, v.reason = "", ""
		}
		if t.status != engine.StatusFinished {
			t.status = engine.StatusRunning
		}
		return change{parent: true, step: key}
	case engine.EventApprovalRequested:
		a := &approvalView{rec: *e.Approval, runbook: e.RunbookName, version: e.RunbookVersion, execID: e.ExecutionID,
			requester: t.trigger.TriggeredBy, params: t.params}
		t.approvals = append(t.approvals, a)
		t.byApproval[a.rec.ID] = a
		t.status = engine.StatusWaiting
		t.current = e.Approval.Step
		return change{parent: true, approval: a.rec.ID}
	case engine.EventApprovalEscalated:
		if a := t.byApproval[e.Approval.ID]; a != nil {
			a.tier = e.Approval.Tier
			a.escalated = append(a.escalated, escalation{tier: e.Approval.Tier, message: e.Message, notify: e.Approval.Notify})
			return change{approval: a.rec.ID, escalate: a.rec.ID}
		}
	case engine.EventApprovalVote:
		if a := t.byApproval[e.Approval.ID]; a != nil {
			a.votes = append(a.votes, e.Approval.Approver)
			return change{parent: true, approval: a.rec.ID}
		}
	case engine.EventApprovalDecided:
		t.status = engine.StatusRunning
		if a := t.byApproval[e.Approval.ID]; a != nil {
			d := *e.Approval
			a.decided = &d
			return change{parent: true, approval: a.rec.ID}
		}
		return change{parent: true}
	case engine.EventRollbackStarted, engine.EventRollbackFinished:
		r := *e.Rollback
		t.rollback = &r
		return change{parent: true}
	case engine.EventCancelRequested:
		t.cancelBy = e.Actor
		return change{parent: true}
	case engine.EventExecutionFinished:
		t.status, t.outcome, t.message = engine.StatusFinished, e.Outcome, e.Message
		end := e.Time
		t.ended = &end
		t.current = ""
		for _, a := range t.approvals {
			if a.decided == nil {
				a.cancelled = true
			}
		}
		return change{parent: true}
	}
	return change{}
}

func (t *thread) countMain() int {
	n := 0
	for _, s := range t.steps {
		if s.phase != engine.PhaseRollback {
			n++
		}
	}
	return n
}

// finished reports whether the execution has ended.
func (t *thread) finished() bool { return t.status == engine.StatusFinished }

// approvedBy lists who approved the execution's gates.
func (t *thread) approvedBy() []string {
	var out []string
	for _, a := range t.approvals {
		if a.decided != nil && (a.decided.Decision == engine.DecisionApprove || a.decided.Decision == engine.DecisionBypass) {
			out = append(out, a.votes...)
			if a.decided.Approver != "" && !contains(a.votes, a.decided.Approver) {
				out = append(out, a.decided.Approver)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
