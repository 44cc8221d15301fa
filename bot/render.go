package bot

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Message keys: the first block of each message the view shows carries its
// key as its id, so the bot can find the message again.
func parentKey(exec string) string     { return "exec:" + exec }
func stepKey(exec, step string) string { return "step:" + exec + ":" + step }
func approvalKey(id string) string     { return "approval:" + id }

var outcomeStatus = map[engine.Outcome]Status{
	engine.OutcomeSuccess: StatusOK, engine.OutcomeFailure: StatusFailed, engine.OutcomePartial: StatusPartial,
	engine.OutcomeRollback: StatusRollback, engine.OutcomeAborted: StatusAborted,
}

var outcomeWord = map[engine.Outcome]string{
	engine.OutcomeSuccess: "Succeeded", engine.OutcomeFailure: "Failed", engine.OutcomePartial: "Partly succeeded",
	engine.OutcomeRollback: "Rolled back", engine.OutcomeAborted: "Aborted",
}

var stepStatus = map[engine.StepStatus]Status{
	engine.StepPending: StatusPending, engine.StepRunning: StatusRunning, engine.StepSuccess: StatusOK,
	engine.StepFailure: StatusFailed, engine.StepSkipped: StatusSkipped, engine.StepInterrupted: StatusWarning,
}

var stepWord = map[engine.StepStatus]string{
	engine.StepPending: "pending", engine.StepRunning: "running", engine.StepSuccess: "ok",
	engine.StepFailure: "failed", engine.StepSkipped: "skipped", engine.StepInterrupted: "interrupted",
}

// formatParams shows parameters as k=v spans, sorted; values are already
// masked by the engine.
func formatParams(p map[string]any) Rich {
	keys := make([]string, 0, len(p))
	for k, v := range p {
		if v != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return R(Ital("none"))
	}
	sort.Strings(keys)
	var out Rich
	for i, k := range keys {
		if i > 0 {
			out = append(out, Txt(" "))
		}
		out = append(out, Code(k+"="+trim(engine.Stringify(p[k]), 80)))
	}
	return out
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

// parentStatus is the human status of an execution.
func parentStatus(t *thread) (Status, string) {
	switch {
	case t.finished():
		return outcomeStatus[t.outcome], outcomeWord[t.outcome]
	case t.status == engine.StatusWaiting:
		return StatusWaiting, "Waiting for approval"
	case t.cancelBy != "":
		return StatusStop, "Cancelling"
	}
	return StatusRunning, "Running"
}

// parentLinks are links the parent shows (approval cards by approval id).
type parentLinks map[string]string

// renderParent renders the execution's parent message at time now.
// skipped says some step replies were left out under the rate limit.
func renderParent(t *thread, now time.Time, links parentLinks, skipped bool) Message {
	sym, word := parentStatus(t)
	status := R(Sym(sym), Txt(" "), Bold(word))
	switch {
	case t.finished() && t.ended != nil:
		status = append(status, Txt(" in "+dur(t.ended.Sub(t.started).Milliseconds())))
	case t.status == engine.StatusWaiting && t.current != "":
		status = append(status, Txt(" to run "), Code(t.current))
	case t.current != "":
		status = append(status, Txt(" · "), Code(t.current))
	}
	if !t.finished() && !now.IsZero() && now.After(t.started) {
		status = append(status, Txt(" · elapsed "+dur(now.Sub(t.started).Round(time.Second).Milliseconds())))
	}
	if t.finished() && t.message != "" {
		status = append(status, BR(), Txt(trim(t.message, 500)))
	}
	if by := t.approvedBy(); len(by) > 0 {
		status = append(status, BR(), Txt("Approved by "))
		for i, u := range by {
			if i > 0 {
				status = append(status, Txt(", "))
			}
			status = append(status, Mention(u))
		}
	}
	for _, a := range t.approvals {
		if l := links[a.rec.ID]; l != "" {
			word := "approval request"
			if a.decided == nil && !a.cancelled {
				word = "approval request (waiting)"
			}
			status = append(status, BR(), Sym(StatusLock), Txt(" "), Link(l, word), Txt(" for "), Code(a.rec.Step))
		}
	}
	if t.cancelBy != "" && !t.finished() {
		status = append(status, BR(), Sym(StatusStop), Txt(" cancel requested by "), Mention(t.cancelBy))
	}
	if t.rollback != nil {
		rb := R(BR(), Sym(StatusRollback), Txt(" rollback"))
		if t.rollback.Procedure != "" {
			rb = append(rb, Txt(" "), Code(t.rollback.Procedure))
		}
		rb = append(rb, Txt(" ("+trim(t.rollback.Reason, 200)+")"))
		if t.rollback.Success != nil {
			if *t.rollback.Success {
				rb = append(rb, Txt(" succeeded"))
			} else {
				rb = append(rb, Txt(" "), Bold("failed"))
			}
		}
		status = append(status, rb...)
	}
	trig := t.trigger.Type
	if t.trigger.Source != "" {
		trig += " (" + t.trigger.Source + ")"
	}
	m := Message{Summary: R(Txt(t.runbook+" "+t.id+": "), Txt(word))}
	m.Blocks = append(m.Blocks,
		Block{Kind: KindHeader, ID: parentKey(t.id), Text: R(Sym(StatusRunbook), Txt(fmt.Sprintf(" %s v%s", t.runbook, t.version)))},
		Block{Kind: KindSection, ID: "status", Text: status},
		Block{Kind: KindSection, ID: "facts", Fields: []Field{
			{Label: "Requested by", Value: R(Mention(t.trigger.TriggeredBy))},
			{Label: "Trigger", Value: R(Txt(trig))},
			{Label: "Execution", Value: R(Code(t.id))},
			{Label: "Parameters", Value: formatParams(t.params)},
		}},
	)
	if len(t.steps) > 0 {
		m.Blocks = append(m.Blocks, Block{Kind: KindSection, ID: "steps", Text: stepList(t)})
	}
	when := R(Txt("Started "), At(t.started))
	if t.ended != nil {
		when = append(when, Txt(" · ended "), At(*t.ended))
	}
	if skipped {
		when = append(when, Txt(" · some step replies were left out to stay within the channel's rate limit; the list above is complete"))
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "when", Text: when})
	if !t.finished() && t.cancelBy == "" {
		m.Blocks = append(m.Blocks, Block{Kind: KindActions, ID: "exec-actions", Buttons: []Button{cancelButton(t.id)}})
	}
	return m
}

// stepList is the parent's compact list of steps: always complete, so the
// parent tells the whole story even when step replies are left out.
func stepList(t *thread) Rich {
	const most = 20
	var out Rich
	for i, s := range t.steps {
		if i == most {
			out = append(out, BR(), Ital(fmt.Sprintf("… and %d more steps", len(t.steps)-most)))
			break
		}
		if i > 0 {
			out = append(out, BR())
		}
		out = append(out, Sym(stepSymbol(s)), Txt(" "), Txt(stepLabel(s)), Txt(" · "+stepPhrase(t, s)))
		if s.status == engine.StepFailure && s.err != "" {
			out = append(out, Txt(": "+trim(s.err, 120)))
		}
	}
	return out
}

func stepSymbol(s *stepView) Status {
	if s.rejected {
		return StatusRefused
	}
	return stepStatus[s.status]
}

func stepLabel(s *stepView) string {
	switch s.phase {
	case engine.PhasePrecondition:
		return "precondition " + s.name
	case engine.PhaseRollback:
		return "rollback " + s.name
	}
	return s.name
}

// stepPhrase says what happened to a step in words.
func stepPhrase(t *thread, s *stepView) string {
	if s.rejected {
		if a := t.gateOf(s.name); a != nil && a.decided != nil {
			if a.decided.Decision == engine.DecisionTimeout {
				return "not run — no decision in time"
			}
			return "not run — rejected"
		}
		return "not run — not approved"
	}
	w := stepWord[s.status]
	if s.status != engine.StepRunning && s.status != engine.StepSkipped && (s.durMs > 0 || s.status == engine.StepSuccess) {
		w += " in " + dur(s.durMs)
	}
	return w
}

// gateOf returns the last approval gating step name.
func (t *thread) gateOf(step string) *approvalView {
	for i := len(t.approvals) - 1; i >= 0; i-- {
		if t.approvals[i].rec.Step == step {
			return t.approvals[i]
		}
	}
	return nil
}

// renderStep renders one step's reply in the thread.
func renderStep(t *thread, s *stepView) Message {
	line := R(Sym(stepSymbol(s)), Txt(" "))
	if s.n > 0 {
		line = append(line, Code(fmt.Sprintf("%d/%d", s.n, max(t.totalSteps, s.n))), Txt(" "))
	}
	line = append(line, Bold(stepLabel(s)), Txt(" · "+s.typ+"/"+s.action+" · "))
	var detail Rich
	if s.rejected {
		a := t.gateOf(s.name)
		switch {
		case a != nil && a.decided != nil && a.decided.Decision == engine.DecisionTimeout:
			line = append(line, Txt("not run — no decision in time"))
		case a != nil && a.decided != nil:
			line = append(line, Txt("not run — rejected by "), Mention(a.decided.Approver))
			if c := strings.TrimSpace(a.decided.Comment); c != "" {
				line = append(line, Txt(": "+trim(c, 300)))
			}
		default:
			line = append(line, Txt("not run — not approved"))
		}
	} else {
		line = append(line, Txt(stepPhrase(t, s)))
		if s.err != "" {
			detail = append(detail, Sym(StatusWarning), Txt(" "+trim(s.err, 500)))
		}
		if s.reason != "" {
			if len(detail) > 0 {
				detail = append(detail, BR())
			}
			detail = append(detail, Ital(trim(s.reason, 300)))
		}
		if out := summarizeOutput(s.output); len(out) > 0 && s.status != engine.StepRunning {
			if len(detail) > 0 {
				detail = append(detail, BR())
			}
			detail = append(detail, out...)
		}
	}
	m := Message{Summary: R(Txt(s.name + ": " + stepPhrase(t, s)))}
	m.Blocks = append(m.Blocks, Block{Kind: KindSection, ID: stepKey(t.id, s.key), Text: line})
	if len(detail) > 0 {
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "detail", Text: detail})
	}
	return m
}

// summarizeOutput shows a step's output in a few key fields: a text field
// (stdout, message, body) as its first lines, else up to four scalar
// fields, trimmed.
func summarizeOutput(o map[string]any) Rich {
	if len(o) == 0 {
		return nil
	}
	for _, k := range []string{"stdout", "message", "body"} {
		if v, ok := o[k].(string); ok && strings.TrimSpace(v) != "" {
			lines := strings.Split(strings.TrimSpace(v), "\n")
			more := ""
			if len(lines) > 3 {
				more = fmt.Sprintf("\n… %d more lines", len(lines)-3)
				lines = lines[:3]
			}
			return R(Pre(trim(strings.Join(lines, "\n"), 300) + more))
		}
	}
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out Rich
	shownN := 0
	for _, k := range keys {
		var v string
		switch x := o[k].(type) {
		case map[string]any:
			v = fmt.Sprintf("{%d fields}", len(x))
		case []any:
			v = fmt.Sprintf("[%d items]", len(x))
		case nil:
			continue
		default:
			v = trim(engine.Stringify(x), 60)
		}
		if shownN == 4 {
			out = append(out, Txt(fmt.Sprintf(" … %d more", len(keys)-shownN)))
			break
		}
		if shownN > 0 {
			out = append(out, Txt(" · "))
		}
		out = append(out, Txt(k+": "), Code(v))
		shownN++
	}
	return out
}

var decisionHeader = map[engine.Decision]string{
	engine.DecisionApprove: "Approved", engine.DecisionReject: "Rejected", engine.DecisionBypass: "Bypassed",
	engine.DecisionTimeout: "Timed out",
}

var decisionStatus = map[engine.Decision]Status{
	engine.DecisionApprove: StatusOK, engine.DecisionReject: StatusRefused, engine.DecisionBypass: StatusAlert,
	engine.DecisionTimeout: StatusTimeout,
}

// renderApproval renders an approval card. link opens the execution's
// thread; bypass says the runbook has an emergency override.
func renderApproval(a *approvalView, link string, bypass bool) Message {
	rec := a.rec
	head := R(Sym(StatusLock), Txt(" Approval needed: "+rec.Step))
	summary := "Approval needed: " + a.runbook + " / " + rec.Step
	switch {
	case a.decided != nil:
		w := decisionHeader[a.decided.Decision]
		head = R(Sym(decisionStatus[a.decided.Decision]), Txt(" "+w+": "+rec.Step))
		summary = w + ": " + a.runbook + " / " + rec.Step
	case a.cancelled:
		head = R(Sym(StatusStop), Txt(" Cancelled: "+rec.Step))
		summary = "Cancelled: " + a.runbook + " / " + rec.Step
	}
	what := R(Bold(a.runbook), Txt(" v"+a.version+" wants to run "), Bold(rec.Step))
	if len(a.gated) > 0 {
		what = append(what, Txt(" with "))
		what = append(what, formatParams(a.gated)...)
	}
	what = append(what, Txt("."))
	if why := readableReason(rec.Reason, a.params); len(why) > 0 {
		what = append(what, BR())
		what = append(what, why...)
	}
	m := Message{Summary: R(Txt(summary))}
	m.Blocks = append(m.Blocks,
		Block{Kind: KindHeader, ID: approvalKey(rec.ID), Text: head},
		Block{Kind: KindSection, ID: "what", Text: what},
	)
	fields := []Field{
		{Label: "Requested by", Value: R(Mention(a.requester))},
		{Label: "Execution", Value: R(Code(a.execID))},
		{Label: "Parameters", Value: formatParams(a.params)},
	}
	if rec.Deadline != nil && a.decided == nil && !a.cancelled {
		fields = append(fields, Field{Label: "Times out", Value: R(At(*rec.Deadline))})
	}
	if len(rec.Approvers) > 0 {
		var who Rich
		for i, r := range rec.Approvers {
			if i > 0 {
				who = append(who, Txt(", "))
			}
			s := r.Type + " " + r.Value
			if r.Required {
				s += " (required)"
			}
			if r.MinApprovals > 0 {
				s += fmt.Sprintf(" (%d+)", r.MinApprovals)
			}
			who = append(who, Txt(s))
		}
		fields = append(fields, Field{Label: "Approvers", Value: who})
	}
	if link != "" {
		fields = append(fields, Field{Label: "Thread", Value: R(Link(link, "open the execution"))})
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindSection, ID: "facts", Fields: fields})
	if len(a.votes) > 0 && a.decided == nil {
		vs := R(Sym(StatusVote), Txt(" Approved so far by "))
		for i, v := range a.votes {
			if i > 0 {
				vs = append(vs, Txt(", "))
			}
			vs = append(vs, Mention(v))
		}
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "votes", Text: vs})
	}
	if a.tier > 0 && a.decided == nil && !a.cancelled {
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "escalated", Text: R(Sym(StatusEscalated), Txt(fmt.Sprintf(" escalated (tier %d)", a.tier)))})
	}
	switch {
	case a.decided != nil:
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "decision", Text: decisionLine(*a.decided)})
	case a.cancelled:
		m.Blocks = append(m.Blocks, Block{Kind: KindContext, ID: "decision", Text: R(Sym(StatusStop), Txt(" The execution ended before a decision; nothing to approve."))})
	default:
		m.Blocks = append(m.Blocks, Block{Kind: KindActions, ID: "decide", Buttons: approvalButtons(rec, bypass)})
	}
	return m
}

// decisionLine says who decided what, when and why.
func decisionLine(d engine.ApprovalRecord) Rich {
	var out Rich
	switch d.Decision {
	case engine.DecisionApprove:
		out = R(Sym(StatusOK), Txt(" Approved by "), Mention(d.Approver))
	case engine.DecisionBypass:
		out = R(Sym(StatusAlert), Txt(" Emergency bypass by "), Mention(d.Approver))
	case engine.DecisionTimeout:
		out = R(Sym(StatusTimeout), Txt(" Rejected: no decision in time"))
	default:
		out = R(Sym(StatusRefused), Txt(" Rejected by "), Mention(d.Approver))
	}
	if d.RespondedAt != nil {
		out = append(out, Txt(" · "), At(*d.RespondedAt))
	}
	if c := strings.TrimSpace(d.Comment); c != "" {
		out = append(out, Txt(" ("+trim(c, 300)+")"))
	}
	return out
}

var (
	autoFalse = regexp.MustCompile(`^auto-approval condition "(.*)" is false$`)
	identRe   = regexp.MustCompile(`\b(?:parameters|context)\.([A-Za-z_][A-Za-z0-9_]*)`)
)

// readableReason explains why approval is needed in people's terms: the
// rule's condition in words and the values that made it false.
func readableReason(reason string, params map[string]any) Rich {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil
	}
	m := autoFalse.FindStringSubmatch(reason)
	if m == nil {
		return R(Ital(trim(reason, 400)))
	}
	cond := m[1]
	words := strings.NewReplacer("!=", "is not", "==", "is", "&&", "and", "||", "or", "parameters.", "", "context.", "").Replace(cond)
	out := R(Txt("Needs approval: it runs automatically only when "), Code(words))
	var facts []string
	for _, id := range identRe.FindAllStringSubmatch(cond, -1) {
		if v, ok := params[id[1]]; ok && v != nil {
			facts = append(facts, id[1]+" is "+engine.Stringify(v))
		}
	}
	if len(facts) > 0 {
		out = append(out, Txt(", and here "+strings.Join(facts, ", ")))
	}
	return append(out, Txt("."))
}

// renderEscalation is the notice posted in the approval card's thread.
func renderEscalation(e escalation, groups []engine.Group) Message {
	text := R(Sym(StatusEscalated), Txt(" "+e.message))
	if len(e.notify) > 0 {
		text = append(text, BR())
		for i, n := range e.notify {
			if i > 0 {
				text = append(text, Txt(" "))
			}
			text = append(text, notifyTarget(n, groups))
		}
		text = append(text, Txt(" please review."))
	}
	return Message{Summary: R(Txt(e.message)), Blocks: []Block{{Kind: KindSection, ID: "escalation", Text: text}}}
}

// notifyTarget mentions a group of the RBAC config, or a name as written.
func notifyTarget(name string, groups []engine.Group) Span {
	for _, g := range groups {
		if g.Name == name {
			return GroupMention(g)
		}
	}
	return Txt("@" + strings.TrimPrefix(name, "@"))
}

// textMessage is a one-section message.
func textMessage(text Rich) Message {
	return Message{Summary: text, Blocks: []Block{{Kind: KindSection, Text: text}}}
}

// RenderThread renders an execution's chat messages from its events as the
// view shows them at time now: the parent, one message per step in order,
// and each approval card (without links).
func RenderThread(evs []engine.Event, totalSteps int, bypass bool, now time.Time) (parent Message, steps, approvals []Message) {
	if len(evs) == 0 {
		return Message{}, nil, nil
	}
	t := newThread(evs[0].ExecutionID)
	t.totalSteps = totalSteps
	for _, e := range evs {
		t.apply(e)
	}
	for _, s := range t.steps {
		steps = append(steps, renderStep(t, s))
	}
	for _, a := range t.approvals {
		approvals = append(approvals, renderApproval(a, "", bypass))
	}
	return renderParent(t, now, nil, false), steps, approvals
}
