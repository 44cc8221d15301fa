package bot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

func reply(text Rich) Response {
	m := textMessage(text)
	return Response{Reply: &m, Ephemeral: true}
}

// refuse answers a refusal and records it in the operator log (refusals
// that belong to an execution are also in its audit log, by the engine).
func (b *Bot) refuse(user, action string, why Rich) Response {
	b.log.Warn("audit: refused", "audit", true, "user", user, "action", action, "reason", why.Plain())
	return reply(append(R(Sym(StatusRefused), Txt(" ")), why...))
}

// allowed checks a permission; the refusal (or the authorizer's own
// explanation, meant for the user) is the response.
func (b *Bot) allowed(ctx context.Context, user, perm, action string) (Response, bool) {
	ok, err := b.cfg.Auth.Allowed(ctx, user, perm)
	if err != nil {
		b.log.Warn("authorization check failed", "user", user, "permission", perm, "err", err)
		return reply(R(Sym(StatusWarning), Txt(" "+err.Error()))), false
	}
	if !ok {
		return b.refuse(user, action, R(Txt("You are not allowed to "+action+" (needs "), Code(perm), Txt("). Ask a runbook admin to grant it."))), false
	}
	return Response{}, true
}

// Handle answers what a person did: a typed command, a click, a submitted
// form. The platform delivers the Response.
func (b *Bot) Handle(ctx context.Context, req Request) Response {
	// RBAC and the engine know users as rbac.yaml spells them.
	req.User = commands.UserID(req.Platform, req.User)
	switch {
	case req.Form != "":
		return b.submit(ctx, req)
	case req.Button != "":
		return b.click(ctx, req)
	}
	return b.command(ctx, req, req.Line)
}

// AnswerInAck reports whether a typed command line must be handled before
// its platform acknowledges it: a run, so that an acknowledged command is
// never lost (the start is persisted first) and its problems are answered
// in the acknowledgement itself. Everything else is acknowledged at once and
// answered after.
func AnswerInAck(line string) bool {
	f := strings.Fields(line)
	return len(f) > 0 && strings.EqualFold(f[0], string(commands.VerbRun))
}

// CheckForm validates a submitted form without side effects (platforms
// answer field errors in the form itself, before anything else).
func CheckForm(req Request) map[string]string {
	switch req.Form {
	case "reject":
		if strings.TrimSpace(req.Values["comment"]) == "" {
			return map[string]string{"comment": "A reason is required."}
		}
	case "bypass":
		if strings.TrimSpace(req.Values["justification"]) == "" {
			return map[string]string{"justification": "A justification is required."}
		}
	}
	return nil
}

func (b *Bot) submit(ctx context.Context, req Request) Response {
	if errs := CheckForm(req); errs != nil {
		return Response{FieldErrors: errs}
	}
	words := strings.Fields(req.Line)
	switch {
	case req.Form == "reject" && len(words) >= 2 && words[0] == "reject":
		return b.command(ctx, req, req.Line+" "+strings.TrimSpace(req.Values["comment"]))
	case req.Form == "bypass" && len(words) == 2 && words[0] == "bypass":
		return b.command(ctx, req, req.Line+" "+strings.TrimSpace(req.Values["justification"]))
	}
	return b.refuseClick(ctx, req, "", "unknown form")
}

// command runs a command line, typed or carried by a button.
func (b *Bot) command(ctx context.Context, req Request, line string) Response {
	cmd, err := commands.Parse(line)
	if err != nil {
		return usage(err)
	}
	switch cmd.Verb {
	case commands.VerbHelp:
		return Response{Reply: ptr(HelpMessage()), Ephemeral: true}
	case commands.VerbList:
		if r, ok := b.allowed(ctx, req.User, commands.PermList, "list runbooks"); !ok {
			return r
		}
		return b.list()
	case commands.VerbDescribe:
		if r, ok := b.allowed(ctx, req.User, commands.PermRead, "read runbooks"); !ok {
			return r
		}
		return b.describe(cmd.Target)
	case commands.VerbRun:
		if r, ok := b.allowed(ctx, req.User, commands.PermExecute, "run runbooks"); !ok {
			return r
		}
		return b.run(ctx, req, cmd)
	case commands.VerbDryRun:
		if r, ok := b.allowed(ctx, req.User, commands.PermDryRun, "dry-run runbooks"); !ok {
			return r
		}
		return b.dryRun(ctx, cmd)
	case commands.VerbStatus:
		if r, ok := b.allowed(ctx, req.User, commands.PermStatus, "read executions"); !ok {
			return r
		}
		if cmd.Target == "" {
			return b.active(ctx)
		}
		return b.status(ctx, cmd.Target)
	case commands.VerbCancel:
		return b.cancelExec(ctx, req.User, cmd.Target)
	case commands.VerbHistory:
		if r, ok := b.allowed(ctx, req.User, commands.PermHistory, "read execution history"); !ok {
			return r
		}
		return b.history(ctx, cmd)
	case commands.VerbSchedules:
		return b.schedules(ctx, req.User, cmd)
	case commands.VerbApprove:
		return b.decide(ctx, req, cmd.Target, engine.DecisionApprove, choice(cmd.Choice, "approve"), "")
	case commands.VerbReject:
		return b.decide(ctx, req, cmd.Target, engine.DecisionReject, choice(cmd.Choice, "reject"), cmd.Text)
	case commands.VerbBypass:
		return b.decide(ctx, req, cmd.Target, engine.DecisionBypass, "bypass", cmd.Text)
	}
	return Response{Reply: ptr(HelpMessage()), Ephemeral: true}
}

func ptr[T any](v T) *T { return &v }

// choice is a custom button's value, else the verb's own.
func choice(custom, verb string) string {
	if custom != "" {
		return custom
	}
	return verb
}

func usage(err error) Response {
	var ue *commands.UsageError
	if errors.As(err, &ue) {
		return reply(R(Sym(StatusQuestion), Txt(" "+ue.Problem), BR(), Txt(ue.Usage)))
	}
	return reply(R(Sym(StatusQuestion), Txt(" That command does not parse. Try "), Code("/runbook help"), Txt(".")))
}

func (b *Bot) lookup(name string) (*engine.Runbook, *Response) {
	rb, err := b.eng.Catalog().Lookup(name)
	if err != nil {
		r := reply(R(Sym(StatusQuestion), Txt(" "+err.Error()), BR(), Txt("See "), Code("/runbook list"), Txt(".")))
		return nil, &r
	}
	return rb, nil
}

func (b *Bot) list() Response {
	cat := b.eng.Catalog()
	text := R(Bold("Runbooks"))
	for _, n := range cat.Names() {
		rb := cat.Runbooks[n]
		text = append(text, BR(), Txt("• "), Bold(n), Txt(" v"+rb.Version()+" — "+rb.Metadata.Description))
	}
	if len(cat.Names()) == 0 {
		return reply(R(Txt("No runbooks are loaded.")))
	}
	return reply(text)
}

func paramHelp(rb *engine.Runbook) Rich {
	var out Rich
	for i, p := range rb.Parameters {
		if i > 0 {
			out = append(out, BR())
		}
		req := R(Txt("optional"))
		if p.Required {
			req = R(Txt("required"))
		} else if p.Default != nil {
			req = R(Txt("default "), Code(engine.Stringify(p.Default)))
		}
		out = append(out, Txt("• "), Code(p.Name), Txt(" ("+p.Type+", "))
		out = append(out, req...)
		out = append(out, Txt(")"))
		if len(p.Enum) > 0 {
			var opts []string
			for _, e := range p.Enum {
				opts = append(opts, engine.Stringify(e))
			}
			out = append(out, Txt(" one of "+strings.Join(opts, ", ")))
		}
		if p.Description != "" {
			out = append(out, Txt(" — "+p.Description))
		}
	}
	if len(out) == 0 {
		return R(Ital("no parameters"))
	}
	return out
}

func (b *Bot) describe(name string) Response {
	rb, r := b.lookup(name)
	if r != nil {
		return *r
	}
	text := R(Bold(rb.Name()), Txt(" v"+rb.Version()+" — "+rb.Metadata.Description), BR(), Bold("Parameters"), BR())
	text = append(text, paramHelp(rb)...)
	text = append(text, BR(), Bold("Steps"))
	for _, s := range rb.Preconditions {
		text = append(text, BR(), Txt("• precondition "), Code(s.Name), Txt(" ("+s.Type+"/"+s.Action+")"))
	}
	for _, s := range rb.Steps {
		text = append(text, BR(), Txt("• "), Code(s.Name), Txt(" ("+s.Type+"/"+s.Action+")"))
		if s.RequiresApproval != nil {
			text = append(text, Txt(" "), Sym(StatusLock))
		}
	}
	text = append(text, BR(), Txt("Run: "), Code("/runbook run "+rb.Name()+" key=value ..."))
	return reply(text)
}

func stringParams(in map[string]string) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// prepared is a runbook with its parameters resolved once, for the
// preview and for Start.
type prepared struct {
	rb     *engine.Runbook
	params map[string]any // resolved
	input  map[string]any // as typed
}

// prepare resolves a run or dry-run's parameters and trigger rules once.
func (b *Bot) prepare(user string, cmd commands.Command) (*prepared, *Response) {
	rb, r := b.lookup(cmd.Target)
	if r != nil {
		return nil, r
	}
	input := stringParams(cmd.Params)
	params, err := engine.ResolveParams(rb, input)
	if err != nil {
		r := reply(append(R(Sym(StatusQuestion), Txt(" "+err.Error()), BR(), Bold("Parameters of "+rb.Name()), BR()), paramHelp(rb)...))
		return nil, &r
	}
	if err := engine.CheckTrigger(rb, params, nil); err != nil {
		r := b.refuse(user, "run "+rb.Name(), R(Txt(err.Error())))
		return nil, &r
	}
	return &prepared{rb: rb, params: params, input: input}, nil
}

// run starts the execution: the start is persisted (execution.started)
// before this returns, so a platform that answers after it never loses an
// acknowledged command. The view then shows the parent message.
func (b *Bot) run(ctx context.Context, req Request, cmd commands.Command) Response {
	p, r := b.prepare(req.User, cmd)
	if r != nil {
		return *r
	}
	id, err := b.eng.Start(ctx, engine.StartRequest{Runbook: p.rb.Name(), Params: p.params,
		Trigger: engine.TriggerInfo{Type: "manual", Source: req.Platform, TriggeredBy: req.User, Platform: req.Platform,
			Channel: req.Conversation, Thread: req.Thread}})
	if err != nil {
		b.log.Error("cannot start an execution", "runbook", p.rb.Name(), "err", err)
		return reply(R(Sym(StatusFailed), Txt(" "+p.rb.Name()+" did not start; the error is in the bot's log.")))
	}
	b.log.Info("execution started from chat", "execution", id, "runbook", p.rb.Name(), "user", req.User)
	return Response{}
}

func (b *Bot) dryRun(ctx context.Context, cmd commands.Command) Response {
	p, r := b.prepare("", cmd)
	if r != nil {
		return *r
	}
	plan, err := engine.DryRun(ctx, b.eng.Registry(), p.rb, p.params, nil)
	if err != nil {
		return reply(append(R(Sym(StatusQuestion), Txt(" "+err.Error()), BR(), Bold("Parameters of "+p.rb.Name()), BR()), paramHelp(p.rb)...))
	}
	return Response{Reply: ptr(PlanMessage(plan)), Ephemeral: true}
}

// PlanMessage renders a dry-run plan as the bot shows it.
func PlanMessage(p *engine.Plan) Message {
	m := Message{Summary: R(Txt("Dry run of " + p.Runbook))}
	m.Blocks = append(m.Blocks, Block{Kind: KindHeader, Text: R(Sym(StatusSearch), Txt(" Dry run: "+p.Runbook+" v"+p.Version))},
		Block{Kind: KindContext, Text: append(R(Txt("Parameters: ")), formatParams(p.Parameters)...)})
	for _, s := range p.Steps {
		line := R(Bold(s.Name), Txt(" · "+s.Type+"/"+s.Action+" · "))
		if s.ApprovalRequired {
			line = append(line, Sym(StatusLock), Txt(" APPROVAL REQUIRED"))
		} else {
			line = append(line, Txt("AUTO"))
		}
		line = append(line, Txt(fmt.Sprintf(" · ~%ds", s.EstimatedSeconds)))
		if len(s.Params) > 0 {
			line = append(line, BR())
			line = append(line, formatParams(s.Params)...)
		}
		if len(m.Blocks) < 45 {
			m.Blocks = append(m.Blocks, Block{Kind: KindSection, Text: line})
		}
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindContext, Text: R(Txt(fmt.Sprintf("%d steps · %d approvals needed · about %ds", len(p.Steps), p.ApprovalsNeeded, p.EstimatedSeconds)))})
	return m
}

// HelpMessage is the reply to /runbook help.
func HelpMessage() Message {
	line := func(cmd, what string) Rich { return R(BR(), Txt("• "), Code(cmd), Txt(" "+what)) }
	text := R(Bold("Usage:"), Txt(" "), Code("/runbook <command>"))
	text = append(text, line("run NAME key=value ...", "start a runbook (quote values with spaces: message=\"two words\")")...)
	text = append(text, line("dry-run NAME key=value ...", "show what it would do")...)
	text = append(text, line("list", "the runbooks")...)
	text = append(text, line("describe NAME", "its parameters and steps")...)
	text = append(text, line("status [ID]", "one execution (a unique prefix of its id will do), or the active ones")...)
	text = append(text, line("cancel ID", "stop an execution")...)
	text = append(text, line("approve ID", "· reject ID reason ... · bypass ID justification ...")...)
	text = append(text, line("history [RUNBOOK] [--outcome O] [--since 24h] [--limit 10]", "past executions")...)
	text = append(text, line("schedules", "the scheduled runbooks and their next run · schedules pause|resume NAME")...)
	text = append(text, line("help", "this")...)
	return textMessage(text)
}

// findExecution resolves an execution id or a unique prefix of one.
func (b *Bot) findExecution(ctx context.Context, ref string) (engine.Summary, Rich) {
	if s, err := b.eng.Store().Get(ctx, ref); err == nil {
		return s, nil
	}
	if len(ref) >= 4 {
		rows, err := b.eng.Store().History(ctx, engine.HistoryQuery{Limit: 5000})
		if err == nil {
			var match []engine.Summary
			for _, r := range rows {
				if strings.HasPrefix(r.ExecutionID, ref) {
					match = append(match, r)
				}
			}
			switch len(match) {
			case 1:
				return match[0], nil
			case 0:
			default:
				return engine.Summary{}, R(Sym(StatusQuestion), Txt(fmt.Sprintf(" %d executions start with ", len(match))), Code(ref), Txt("; give more of the id."))
			}
		}
	}
	return engine.Summary{}, R(Sym(StatusQuestion), Txt(" No execution "), Code(ref), Txt(". See "), Code("/runbook history"), Txt("."))
}

func (b *Bot) status(ctx context.Context, ref string) Response {
	s, why := b.findExecution(ctx, ref)
	if why != nil {
		return reply(why)
	}
	return reply(b.summaryLine(ctx, s))
}

// active lists the executions that have not finished.
func (b *Bot) active(ctx context.Context) Response {
	ids, err := b.eng.Store().Unfinished(ctx)
	if err != nil {
		b.log.Error("listing unfinished executions", "err", err)
		return reply(R(Sym(StatusWarning), Txt(" Could not read the executions right now; try again shortly.")))
	}
	if len(ids) == 0 {
		return reply(R(Txt("No executions are running.")))
	}
	var rows []engine.Summary
	for _, id := range ids {
		if s, err := b.eng.Store().Get(ctx, id); err == nil {
			rows = append(rows, s)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].StartedAt.After(rows[j].StartedAt) })
	text := R(Bold(fmt.Sprintf("%d active executions", len(rows))))
	for i, r := range rows {
		if i == 20 {
			text = append(text, BR(), Ital(fmt.Sprintf("… and %d more", len(rows)-20)))
			break
		}
		text = append(text, BR(), Txt("• "))
		text = append(text, b.summaryLine(ctx, r)...)
	}
	return reply(text)
}

// summaryLine is one execution in a list or status answer.
func (b *Bot) summaryLine(ctx context.Context, s engine.Summary) Rich {
	state := R(Txt(s.Status))
	switch {
	case s.Outcome != "":
		state = R(Sym(outcomeStatus[s.Outcome]), Txt(" "+outcomeWord[s.Outcome]))
	case s.Status == engine.StatusWaiting:
		state = R(Sym(StatusWaiting), Txt(" waiting for approval"))
	case s.Status == engine.StatusRunning:
		state = R(Sym(StatusRunning), Txt(" running"))
	}
	line := R(Code(s.ExecutionID), Txt(" "), Bold(s.RunbookName), Txt(" v"+s.RunbookVersion+" — "))
	line = append(line, state...)
	line = append(line, Txt(" · by "), Mention(s.Trigger.TriggeredBy), Txt(" · "+s.Trigger.Type+" · "), At(s.StartedAt))
	switch {
	case s.EndedAt != nil:
		line = append(line, Txt(" · "+dur(s.DurationMs)))
	case s.Status == engine.StatusWaiting:
		if step := b.waitingStep(ctx, s.ExecutionID); step != "" {
			line = append(line, Txt(" · waiting at "), Code(step))
		}
	case s.CurrentStep != "":
		line = append(line, Txt(" · at "), Code(s.CurrentStep))
	}
	return line
}

// waitingStep is the step an execution's open approval gates.
func (b *Bot) waitingStep(ctx context.Context, id string) string {
	evs, err := b.eng.Store().Events(ctx, id)
	if err != nil {
		return ""
	}
	t := newThread(id)
	for _, e := range evs {
		t.apply(e)
	}
	for _, a := range t.approvals {
		if a.decided == nil {
			return a.rec.Step
		}
	}
	return t.current
}

func (b *Bot) cancelExec(ctx context.Context, user, ref string) Response {
	s, why := b.findExecution(ctx, ref)
	if why != nil {
		return reply(why)
	}
	if s.Trigger.TriggeredBy != user {
		if r, ok := b.allowed(ctx, user, commands.PermCancel, "cancel other people's executions"); !ok {
			return r
		}
	}
	switch err := b.eng.Cancel(ctx, s.ExecutionID, user); {
	case errors.Is(err, engine.ErrFinished):
		return reply(R(Txt("Execution "), Code(s.ExecutionID), Txt(" has already finished ("+string(s.Outcome)+").")))
	case errors.Is(err, engine.ErrNotActive):
		return reply(R(Sym(StatusWaiting), Txt(" The runner of "), Code(s.ExecutionID), Txt(" is being replaced; try again in a few seconds.")))
	case err != nil:
		b.log.Error("cancel failed", "execution", s.ExecutionID, "err", err)
		return reply(R(Sym(StatusWarning), Txt(" Could not cancel "), Code(s.ExecutionID), Txt(" right now; try again shortly.")))
	}
	return reply(R(Sym(StatusStop), Txt(" Cancelling "), Code(s.ExecutionID), Txt(".")))
}

func (b *Bot) history(ctx context.Context, cmd commands.Command) Response {
	q := engine.HistoryQuery{Runbook: cmd.Target, Limit: 10}
	if o := cmd.Flags["outcome"]; o != "" {
		if _, ok := outcomeWord[engine.Outcome(o)]; !ok {
			return reply(R(Sym(StatusQuestion), Txt(" unknown outcome "), Code(o), Txt(": use success, failure, partial, rollback or aborted")))
		}
		q.Outcome = engine.Outcome(o)
	}
	if s := cmd.Flags["since"]; s != "" {
		d, err := engine.ParseDuration(s)
		if err != nil {
			return reply(R(Sym(StatusQuestion), Txt(" "), Code("--since "+s), Txt(": use e.g. 30m, 24h, 7d")))
		}
		q.Since = b.cfg.Now().Add(-d)
	}
	if l := cmd.Flags["limit"]; l != "" {
		q.Limit, _ = strconv.Atoi(l)
	}
	q.TriggerType, q.Requester = cmd.Flags["trigger"], cmd.Flags["requester"]
	rows, err := b.eng.Store().History(ctx, q)
	if err != nil {
		b.log.Error("reading history", "err", err)
		return reply(R(Sym(StatusWarning), Txt(" Could not read history right now; try again shortly.")))
	}
	if len(rows) == 0 {
		return reply(R(Txt("No executions match.")))
	}
	text := R(Bold("History"))
	for _, r := range rows {
		text = append(text, BR(), Txt("• "))
		text = append(text, b.summaryLine(ctx, r)...)
	}
	return reply(text)
}

// decide applies a decision and explains refusals in people's terms.
func (b *Bot) decide(ctx context.Context, req Request, approvalID string, verb engine.Decision, value, comment string) Response {
	dr := engine.DecisionRequest{ApprovalID: approvalID, User: req.User, Verb: verb, Value: value, Comment: comment}
	res, err := b.eng.Decide(ctx, dr)
	if errors.Is(err, engine.ErrNotActive) {
		// The execution's runner is dying and no one has taken it over
		// yet: keep the decision and apply it when someone has.
		b.later(dr, req)
		return reply(R(Sym(StatusWaiting), Txt(" The runner of this execution is being replaced; your decision will be applied as soon as another one takes over.")))
	}
	return b.decisionReply(approvalID, res, err)
}

func (b *Bot) decisionReply(approvalID string, res engine.DecisionResult, err error) Response {
	switch {
	case err == nil && res.Final:
		return Response{} // the approval card now says who decided
	case err == nil:
		return reply(R(Sym(StatusVote), Txt(" Your approval is counted. Still needed: "+res.Needed+".")))
	case errors.Is(err, engine.ErrSelfApproval):
		return reply(R(Sym(StatusRefused), Txt(" You started this execution, so someone else must approve it (four-eyes).")))
	case errors.Is(err, engine.ErrNotApprover):
		return reply(R(Sym(StatusRefused), Txt(" You are not one of the approvers for this step.")))
	case errors.Is(err, engine.ErrAlreadyDecided):
		return reply(append(R(Txt("Already decided: ")), decisionLine(res.Approval)...))
	case errors.Is(err, engine.ErrAlreadyVoted):
		return reply(R(Txt("You have already approved this; waiting for the other approvers.")))
	case errors.Is(err, engine.ErrCommentRequired):
		return reply(R(Txt("Rejecting this needs a reason: "), Code("/runbook reject "+approvalID+" <reason>"), Txt(".")))
	case errors.Is(err, engine.ErrJustificationRequired):
		return reply(R(Txt("A bypass needs a justification.")))
	case errors.Is(err, engine.ErrNoBypass):
		return reply(R(Sym(StatusRefused), Txt(" This runbook has no emergency bypass.")))
	case errors.Is(err, engine.ErrFinished):
		return reply(R(Txt("This execution has already finished.")))
	case errors.Is(err, engine.ErrNotFound):
		return reply(R(Sym(StatusQuestion), Txt(" No approval "), Code(approvalID), Txt(".")))
	}
	b.log.Error("decision failed", "approval", approvalID, "err", err)
	return reply(R(Sym(StatusWarning), Txt(" Could not record your decision right now; try again shortly.")))
}

// later retries a decision whose execution has no runner at the moment,
// until a replica takes it over, and tells the person how it went.
func (b *Bot) later(dr engine.DecisionRequest, req Request) {
	b.goOwned(func(ctx context.Context) {
		t := time.NewTicker(b.cfg.RetryEvery)
		defer t.Stop()
		deadline := time.Now().Add(b.cfg.RetryFor)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			res, err := b.eng.Decide(ctx, dr)
			if errors.Is(err, engine.ErrNotActive) && time.Now().Before(deadline) {
				continue
			}
			r := b.decisionReply(dr.ApprovalID, res, err)
			if errors.Is(err, engine.ErrNotActive) {
				r = reply(R(Sym(StatusWarning), Txt(" No runner took the execution over in time; your decision was not applied. Please decide again.")))
			}
			if r.Reply != nil {
				b.whisper(req.Platform, req.Conversation, req.User, *r.Reply)
			}
			return
		}
	})
}
