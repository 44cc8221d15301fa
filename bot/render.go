package bot

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

// thread is what the bot knows of one execution, folded from its events.
type thread struct {
	id         string
	runbook    string
	version    string
	channel    string
	parentTS   string
	trigger    engine.TriggerInfo
	params     map[string]any
	started    time.Time
	ended      *time.Time
	status     string
	outcome    engine.Outcome
	message    string
	current    string
	totalSteps int
	steps      []*stepView
	byKey      map[string]*stepView
	approvals  map[string]*approvalView
	rollback   *engine.RollbackRecord
	cancelBy   string
}

type stepView struct {
	key    string
	n      int
	name   string
	phase  engine.Phase
	typ    string
	action string
	status engine.StepStatus
	start  *time.Time
	durMs  int64
	output map[string]any
	err    string
	reason string
}

type approvalView struct {
	rec       engine.ApprovalRecord
	runbook   string
	version   string
	execID    string
	requester string
	params    map[string]any
	threadCh  string
	threadTS  string
	link      string // permalink to the execution's thread, once known
	votes     []string
	decided   *engine.ApprovalRecord
	tier      int
}

func newThread(id string) *thread {
	return &thread{id: id, byKey: map[string]*stepView{}, approvals: map[string]*approvalView{}}
}

// apply folds an event into the thread. It returns which parts changed:
// the parent, a step (its key) and an approval (its id).
func (t *thread) apply(e engine.Event) (parent bool, step string, approval string) {
	switch e.Type {
	case engine.EventExecutionStarted:
		t.runbook, t.version, t.started = e.RunbookName, e.RunbookVersion, e.Time
		if e.Trigger != nil {
			t.trigger = *e.Trigger
		}
		t.params = e.Parameters
		t.status = engine.StatusRunning
		return true, "", ""
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
		v.status, v.err, v.reason = s.Status, s.Error, s.Reason
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
		t.status = engine.StatusRunning
		return true, key, ""
	case engine.EventApprovalRequested:
		a := &approvalView{rec: *e.Approval, runbook: e.RunbookName, version: e.RunbookVersion, execID: e.ExecutionID,
			requester: t.trigger.TriggeredBy, params: t.params, threadCh: t.channel, threadTS: t.parentTS}
		t.approvals[a.rec.ID] = a
		t.status = engine.StatusWaiting
		t.current = e.Approval.Step
		return true, "", a.rec.ID
	case engine.EventApprovalEscalated:
		if a := t.approvals[e.Approval.ID]; a != nil {
			a.tier = e.Approval.Tier
			return false, "", a.rec.ID
		}
	case engine.EventApprovalVote:
		if a := t.approvals[e.Approval.ID]; a != nil {
			a.votes = append(a.votes, e.Approval.Approver)
			return false, "", a.rec.ID
		}
	case engine.EventApprovalDecided:
		t.status = engine.StatusRunning
		if a := t.approvals[e.Approval.ID]; a != nil {
			d := *e.Approval
			a.decided = &d
			return true, "", a.rec.ID
		}
		return true, "", ""
	case engine.EventRollbackStarted, engine.EventRollbackFinished:
		r := *e.Rollback
		t.rollback = &r
		return true, "", ""
	case engine.EventCancelRequested:
		t.cancelBy = e.Actor
		return true, "", ""
	case engine.EventExecutionFinished:
		t.status, t.outcome, t.message = engine.StatusFinished, e.Outcome, e.Message
		end := e.Time
		t.ended = &end
		t.current = ""
		return true, "", ""
	}
	return false, "", ""
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

var outcomeIcon = map[engine.Outcome]string{
	engine.OutcomeSuccess: ":white_check_mark:", engine.OutcomeFailure: ":x:", engine.OutcomePartial: ":large_orange_diamond:",
	engine.OutcomeRollback: ":leftwards_arrow_with_hook:", engine.OutcomeAborted: ":no_entry_sign:",
}

var stepIcon = map[engine.StepStatus]string{
	engine.StepPending: ":white_circle:", engine.StepRunning: ":hourglass_flowing_sand:", engine.StepSuccess: ":white_check_mark:",
	engine.StepFailure: ":x:", engine.StepSkipped: ":fast_forward:", engine.StepInterrupted: ":warning:",
}

// formatParams shows parameters as k=v, sorted; values are already masked
// by the engine.
func formatParams(p map[string]any) string {
	if len(p) == 0 {
		return "_none_"
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if p[k] == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("`%s=%s`", k, trim(engine.Stringify(p[k]), 80)))
	}
	return strings.Join(parts, " ")
}

func trim(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func dur(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", ms)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func user(u string) string {
	if u == "" || u == "system" || strings.ContainsAny(u, " ()") {
		return u
	}
	if strings.HasPrefix(u, "U") || strings.HasPrefix(u, "W") {
		return "<@" + u + ">"
	}
	return u
}

// renderParent renders the execution's parent message.
func renderParent(t *thread, now time.Time) Message {
	title := fmt.Sprintf(":gear: %s v%s", t.runbook, t.version)
	var status string
	switch t.status {
	case engine.StatusFinished:
		status = fmt.Sprintf("%s *%s*", outcomeIcon[t.outcome], t.outcome)
		if t.ended != nil {
			status += " in " + dur(t.ended.Sub(t.started).Milliseconds())
		}
		if t.message != "" {
			status += "\n" + trim(t.message, 500)
		}
	case engine.StatusWaiting:
		status = fmt.Sprintf(":lock: *waiting for approval* of `%s`", t.current)
	default:
		status = ":arrow_forward: *running*"
		if t.current != "" {
			status += fmt.Sprintf(" · `%s`", t.current)
		}
	}
	if t.cancelBy != "" && t.status != engine.StatusFinished {
		status += fmt.Sprintf("\n:octagonal_sign: cancel requested by %s", user(t.cancelBy))
	}
	if t.rollback != nil {
		rb := ":leftwards_arrow_with_hook: rollback"
		if t.rollback.Procedure != "" {
			rb += " `" + t.rollback.Procedure + "`"
		}
		rb += " (" + trim(t.rollback.Reason, 200) + ")"
		if t.rollback.Success != nil {
			if *t.rollback.Success {
				rb += " succeeded"
			} else {
				rb += " *failed*"
			}
		}
		status += "\n" + rb
	}
	trig := t.trigger.Type
	if t.trigger.Source != "" {
		trig += " (" + t.trigger.Source + ")"
	}
	m := Message{Text: fmt.Sprintf("%s %s: %s", t.runbook, t.id, statusWord(t))}
	m.Blocks = append(m.Blocks,
		Block{Kind: KindHeader, ID: "exec:" + t.id, Text: title},
		Block{Kind: KindSection, ID: "status", Text: status},
		Block{Kind: KindSection, ID: "facts", Fields: []string{
			"*Requested by*\n" + user(t.trigger.TriggeredBy),
			"*Trigger*\n" + trig,
			"*Execution*\n`" + t.id + "`",
			"*Parameters*\n" + formatParams(t.params),
		}},
	)
	ctx := "Started " + t.started.UTC().Format("2006-01-02 15:04:05 UTC")
	if t.ended == nil && !now.IsZero() && now.After(t.started) {
		ctx += " · elapsed " + dur(now.Sub(t.started).Round(time.Second).Milliseconds())
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "when", Text: ctx})
	if t.status != engine.StatusFinished && t.cancelBy == "" {
		m.Blocks = append(m.Blocks, Block{Kind: KindActions, ID: "exec-actions", Buttons: []Button{{Label: "Cancel", ActionID: "exec:cancel", Value: t.id, Style: "danger"}}})
	}
	return m
}

func statusWord(t *thread) string {
	if t.status == engine.StatusFinished {
		return string(t.outcome)
	}
	return t.status
}

// renderStep renders one step's reply in the thread.
func renderStep(t *thread, s *stepView) Message {
	label := s.name
	switch s.phase {
	case engine.PhasePrecondition:
		label = "precondition " + s.name
	case engine.PhaseRollback:
		label = "rollback " + s.name
	}
	counter := ""
	if s.n > 0 {
		counter = fmt.Sprintf("`%d/%d` ", s.n, max(t.totalSteps, s.n))
	}
	line := fmt.Sprintf("%s %s*%s* · %s/%s · %s", stepIcon[s.status], counter, label, s.typ, s.action, statusText(s.status))
	if s.status != engine.StepRunning && s.status != engine.StepSkipped && (s.durMs > 0 || s.status == engine.StepSuccess) {
		line += " in " + dur(s.durMs)
	}
	m := Message{Text: fmt.Sprintf("%s: %s", s.name, statusText(s.status))}
	m.Blocks = append(m.Blocks, Block{Kind: KindSection, ID: "step:" + t.id + ":" + s.key, Text: line})
	var detail []string
	if s.err != "" {
		detail = append(detail, ":warning: "+trim(s.err, 500))
	}
	if s.reason != "" {
		detail = append(detail, "_"+trim(s.reason, 300)+"_")
	}
	if out := formatOutput(s.output); out != "" && s.status != engine.StepRunning {
		detail = append(detail, "```"+out+"```")
	}
	if len(detail) > 0 {
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "detail", Text: strings.Join(detail, "\n")})
	}
	return m
}

func statusText(s engine.StepStatus) string {
	if s == engine.StepSuccess {
		return "ok"
	}
	return string(s)
}

// formatOutput shows a step's output compactly: a "stdout" or "message"
// field as text, otherwise JSON, trimmed.
func formatOutput(o map[string]any) string {
	if len(o) == 0 {
		return ""
	}
	for _, k := range []string{"stdout", "message", "body"} {
		if v, ok := o[k].(string); ok && strings.TrimSpace(v) != "" {
			return trim(strings.TrimSpace(v), 400)
		}
	}
	b, err := json.Marshal(o)
	if err != nil {
		return ""
	}
	return trim(string(b), 400)
}

// renderApproval renders the approval request in the approval channel. The
// buttons carry only the approval id; once decided they are replaced by who
// decided, when and why.
func renderApproval(a *approvalView, link string, bypass bool) Message {
	rec := a.rec
	m := Message{Text: fmt.Sprintf("Approval needed: %s / %s", a.runbook, rec.Step)}
	m.Blocks = append(m.Blocks,
		Block{Kind: KindHeader, ID: "approval:" + rec.ID, Text: ":lock: Approval needed: " + rec.Step},
		Block{Kind: KindSection, ID: "what", Text: fmt.Sprintf("*%s* v%s wants to run *%s*.\n%s", a.runbook, a.version, rec.Step, trim(rec.Reason, 400))},
	)
	fields := []string{
		"*Requested by*\n" + user(a.requester),
		"*Execution*\n`" + a.execID + "`",
		"*Parameters*\n" + formatParams(a.params),
	}
	if rec.Deadline != nil {
		fields = append(fields, "*Times out*\n"+rec.Deadline.UTC().Format("15:04 UTC"))
	}
	if len(rec.Approvers) > 0 {
		var who []string
		for _, r := range rec.Approvers {
			s := r.Type + " " + r.Value
			if r.Required {
				s += " (required)"
			}
			if r.MinApprovals > 0 {
				s += fmt.Sprintf(" (%d+)", r.MinApprovals)
			}
			who = append(who, s)
		}
		fields = append(fields, "*Approvers*\n"+strings.Join(who, ", "))
	}
	if link != "" {
		fields = append(fields, "*Thread*\n<"+link+"|open the execution>")
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindSection, ID: "facts", Fields: fields})
	if len(a.votes) > 0 && a.decided == nil {
		var vs []string
		for _, v := range a.votes {
			vs = append(vs, user(v))
		}
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "votes", Text: ":ballot_box_with_check: Approved so far by " + strings.Join(vs, ", ")})
	}
	if a.tier > 0 && a.decided == nil {
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "escalated", Text: fmt.Sprintf(":rotating_light: escalated (tier %d)", a.tier)})
	}
	if d := a.decided; d != nil {
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "decision", Text: decisionLine(*d)})
		m.Text = "Approval " + string(d.Decision) + ": " + a.runbook + " / " + rec.Step
		return m
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindActions, ID: "decide", Buttons: approvalButtons(rec, bypass)})
	return m
}

func decisionLine(d engine.ApprovalRecord) string {
	at := ""
	if d.RespondedAt != nil {
		at = " at " + d.RespondedAt.UTC().Format("15:04 UTC")
	}
	comment := ""
	if d.Comment != "" {
		comment = " (" + trim(d.Comment, 300) + ")"
	}
	switch d.Decision {
	case engine.DecisionApprove:
		return ":white_check_mark: Approved by " + user(d.Approver) + at + comment
	case engine.DecisionBypass:
		return ":rotating_light: Emergency bypass by " + user(d.Approver) + at + comment
	case engine.DecisionTimeout:
		return ":alarm_clock: Rejected: no decision in time" + at + comment
	}
	return ":no_entry: Rejected by " + user(d.Approver) + at + comment
}

// Action ids of approval buttons: approval:<verb>:<button value>[:c when a
// comment is required].
func approvalButtons(rec engine.ApprovalRecord, bypass bool) []Button {
	var bs []Button
	approve := []engine.Button{{Label: "Approve", Value: "approve", Style: "primary"}}
	reject := []engine.Button{{Label: "Reject", Value: "reject", RequiresComment: true}}
	if rec.Actions != nil {
		if len(rec.Actions.Approve) > 0 {
			approve = rec.Actions.Approve
		}
		if len(rec.Actions.Reject) > 0 {
			reject = rec.Actions.Reject
		}
	}
	for _, b := range approve {
		bs = append(bs, Button{Label: b.Label, ActionID: "approval:approve:" + b.Value, Value: rec.ID, Style: orDefault(b.Style, "primary")})
	}
	for _, b := range reject {
		id := "approval:reject:" + b.Value
		if b.RequiresComment {
			id += ":c"
		}
		bs = append(bs, Button{Label: b.Label, ActionID: id, Value: rec.ID, Style: orDefault(b.Style, "danger")})
	}
	if bypass {
		bs = append(bs, Button{Label: "Emergency bypass", ActionID: "approval:bypass", Value: rec.ID})
	}
	return bs
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// RenderThread renders an execution's chat messages from its events as the
// live thread shows them at time now: the parent, one message per step in
// order, and each approval request (without a link to the thread).
func RenderThread(evs []engine.Event, totalSteps int, bypass bool, now time.Time) (parent Message, steps, approvals []Message) {
	if len(evs) == 0 {
		return Message{}, nil, nil
	}
	t := newThread(evs[0].ExecutionID)
	t.totalSteps = totalSteps
	var order []string
	for _, e := range evs {
		if _, _, a := t.apply(e); a != "" && e.Type == engine.EventApprovalRequested {
			order = append(order, a)
		}
	}
	for _, s := range t.steps {
		steps = append(steps, renderStep(t, s))
	}
	for _, id := range order {
		approvals = append(approvals, renderApproval(t.approvals[id], "", bypass))
	}
	return renderParent(t, now), steps, approvals
}

// PlanMessage renders a dry-run plan as the bot shows it.
func PlanMessage(p *engine.Plan) Message { return *planReply(p) }

// HelpMessage is the reply to /runbook help.
func HelpMessage() Message { return *text(commands.Usage) }
