package bot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

// Reply is what the bot answers the person who typed or clicked; it is
// shown only to them.
type Reply = Message

func text(s string) *Reply {
	return &Reply{Text: s, Blocks: []Block{{Kind: KindSection, Text: s}}}
}

// refuse answers a refusal and records it in the audit log (the operator
// log, for refusals that belong to no execution).
func (b *Bot) refuse(user, action, why string) *Reply {
	b.log.Warn("audit: refused", "audit", true, "user", user, "action", action, "reason", why)
	return text(":no_entry: " + why)
}

func (b *Bot) allowed(ctx context.Context, user, perm, action string) *Reply {
	ok, err := b.cfg.Auth.Allowed(ctx, user, perm)
	if err != nil {
		b.log.Error("authorization check failed", "user", user, "err", err)
		return text(":warning: Could not check your permissions right now; try again in a minute.")
	}
	if !ok {
		return b.refuse(user, action, fmt.Sprintf("You are not allowed to %s (needs `%s`). Ask a runbook admin to grant it.", action, perm))
	}
	return nil
}

// HandleCommand answers a /runbook command. The platform has already acked;
// the reply (if any) is shown only to the user.
func (b *Bot) HandleCommand(ctx context.Context, in CommandIn) *Reply {
	cmd, err := commands.Parse(in.Text)
	if err != nil {
		var ue *commands.UsageError
		if errors.As(err, &ue) {
			return text(":question: " + ue.Problem + "\n" + ue.Usage)
		}
		return text(err.Error())
	}
	switch cmd.Verb {
	case commands.VerbHelp:
		return text(commands.Usage)
	case commands.VerbList:
		if r := b.allowed(ctx, in.User, commands.PermList, "list runbooks"); r != nil {
			return r
		}
		return b.list()
	case commands.VerbDescribe:
		if r := b.allowed(ctx, in.User, commands.PermRead, "read runbooks"); r != nil {
			return r
		}
		return b.describe(cmd.Target)
	case commands.VerbRun:
		if r := b.allowed(ctx, in.User, commands.PermExecute, "run runbooks"); r != nil {
			return r
		}
		return b.run(ctx, in, cmd)
	case commands.VerbDryRun:
		if r := b.allowed(ctx, in.User, commands.PermDryRun, "dry-run runbooks"); r != nil {
			return r
		}
		return b.dryRun(ctx, cmd)
	case commands.VerbStatus:
		if r := b.allowed(ctx, in.User, commands.PermStatus, "read executions"); r != nil {
			return r
		}
		return b.status(ctx, cmd.Target)
	case commands.VerbCancel:
		return b.cancelExec(ctx, in.User, cmd.Target)
	case commands.VerbHistory:
		if r := b.allowed(ctx, in.User, commands.PermHistory, "read execution history"); r != nil {
			return r
		}
		return b.history(ctx, cmd)
	case commands.VerbApprove:
		return b.decide(ctx, in.User, cmd.Target, engine.DecisionApprove, "approve", "")
	case commands.VerbReject:
		return b.decide(ctx, in.User, cmd.Target, engine.DecisionReject, "reject", cmd.Text)
	}
	return text(commands.Usage)
}

func (b *Bot) lookup(name string) (*engine.Runbook, *Reply) {
	rb, err := b.eng.Catalog().Lookup(name)
	if err != nil {
		return nil, text(":question: " + err.Error() + "\nSee `/runbook list`.")
	}
	return rb, nil
}

func (b *Bot) list() *Reply {
	cat := b.eng.Catalog()
	var lines []string
	for _, n := range cat.Names() {
		rb := cat.Runbooks[n]
		lines = append(lines, fmt.Sprintf("• *%s* v%s — %s", n, rb.Version(), rb.Metadata.Description))
	}
	if len(lines) == 0 {
		return text("No runbooks are loaded.")
	}
	return text("*Runbooks*\n" + strings.Join(lines, "\n"))
}

func paramHelp(rb *engine.Runbook) string {
	var lines []string
	for _, p := range rb.Parameters {
		req := "optional"
		if p.Required {
			req = "required"
		} else if p.Default != nil {
			req = "default `" + engine.Stringify(p.Default) + "`"
		}
		l := fmt.Sprintf("• `%s` (%s, %s)", p.Name, p.Type, req)
		if len(p.Enum) > 0 {
			var opts []string
			for _, e := range p.Enum {
				opts = append(opts, engine.Stringify(e))
			}
			l += " one of " + strings.Join(opts, ", ")
		}
		if p.Description != "" {
			l += " — " + p.Description
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return "_no parameters_"
	}
	return strings.Join(lines, "\n")
}

func (b *Bot) describe(name string) *Reply {
	rb, r := b.lookup(name)
	if r != nil {
		return r
	}
	var steps []string
	for _, s := range rb.Preconditions {
		steps = append(steps, fmt.Sprintf("• precondition `%s` (%s/%s)", s.Name, s.Type, s.Action))
	}
	for _, s := range rb.Steps {
		l := fmt.Sprintf("• `%s` (%s/%s)", s.Name, s.Type, s.Action)
		if s.RequiresApproval != nil {
			l += " :lock:"
		}
		steps = append(steps, l)
	}
	body := fmt.Sprintf("*%s* v%s — %s\n*Parameters*\n%s\n*Steps*\n%s\nRun: `/runbook run %s key=value ...`",
		rb.Name(), rb.Version(), rb.Metadata.Description, paramHelp(rb), strings.Join(steps, "\n"), rb.Name())
	return text(trim(body, 2900))
}

func stringParams(in map[string]string) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// run validates everything, posts the thread's parent message, then starts
// the execution with the parent as its live message.
func (b *Bot) run(ctx context.Context, in CommandIn, cmd commands.Command) *Reply {
	rb, r := b.lookup(cmd.Target)
	if r != nil {
		return r
	}
	params, err := engine.ResolveParams(rb, stringParams(cmd.Params))
	if err != nil {
		return text(":question: " + err.Error() + "\n*Parameters of " + rb.Name() + "*\n" + paramHelp(rb))
	}
	if err := engine.CheckTrigger(rb, params, nil); err != nil {
		return b.refuse(in.User, "run "+rb.Name(), err.Error())
	}
	pre := newThread("pending")
	pre.runbook, pre.version, pre.status, pre.params = rb.Name(), rb.Version(), engine.StatusRunning, masked(rb, params)
	pre.trigger = engine.TriggerInfo{Type: "manual", Source: "slack", TriggeredBy: in.User}
	pre.started = b.cfg.Now()
	ch, ts, err := b.postNow(ctx, in.Channel, "", renderParent(pre, time.Time{}))
	if err != nil {
		b.log.Error("cannot post execution thread", "channel", in.Channel, "err", err)
		return text(":warning: I could not post in this channel (" + err.Error() + "). Is the bot a member?")
	}
	id, err := b.eng.Start(ctx, engine.StartRequest{Runbook: rb.Name(), Params: stringParams(cmd.Params),
		Trigger: engine.TriggerInfo{Type: "manual", Source: "slack", TriggeredBy: in.User, Channel: ch, Thread: ts, Message: ts, Platform: "slack"}})
	if err != nil {
		_ = b.cfg.Platform.Update(ctx, ch, ts, *text(":x: " + rb.Name() + " did not start: " + err.Error()))
		return text(":x: " + err.Error())
	}
	_ = id
	return nil
}

func masked(rb *engine.Runbook, params map[string]any) map[string]any {
	out := make(map[string]any, len(params))
	for k, v := range params {
		if p := rb.Parameter(k); p != nil && p.Sensitive && v != nil {
			v = engine.Mask
		}
		out[k] = v
	}
	return out
}

// postNow posts at once (for the parent a start depends on), waiting for
// rate limits rather than failing.
func (b *Bot) postNow(ctx context.Context, channel, thread string, m Message) (string, string, error) {
	for attempt := 0; ; attempt++ {
		if err := b.out.acquirePost(ctx, channel); err != nil {
			return "", "", err
		}
		ch, ts, err := b.cfg.Platform.Post(ctx, channel, thread, m)
		if err == nil {
			b.out.learn(channel, ch)
		}
		var rl *RateLimitedError
		if errors.As(err, &rl) && attempt < 5 {
			b.out.pausePosts(channel, rl.RetryAfter)
			select {
			case <-time.After(rl.RetryAfter):
				continue
			case <-ctx.Done():
				return "", "", ctx.Err()
			}
		}
		return ch, ts, err
	}
}

func (b *Bot) dryRun(ctx context.Context, cmd commands.Command) *Reply {
	rb, r := b.lookup(cmd.Target)
	if r != nil {
		return r
	}
	plan, err := engine.DryRun(ctx, b.engRegistry(), rb, stringParams(cmd.Params), nil)
	if err != nil {
		return text(":question: " + err.Error() + "\n*Parameters of " + rb.Name() + "*\n" + paramHelp(rb))
	}
	return planReply(plan)
}

func (b *Bot) engRegistry() *engine.Registry { return b.eng.Registry() }

// planReply renders a dry-run plan compactly (a block per step).
func planReply(p *engine.Plan) *Reply {
	m := &Reply{Text: "Dry run of " + p.Runbook}
	m.Blocks = append(m.Blocks, Block{Kind: KindHeader, Text: ":mag: Dry run: " + p.Runbook + " v" + p.Version},
		Block{Kind: KindContext, Text: "Parameters: " + formatParams(p.Parameters)})
	for _, s := range p.Steps {
		mark := "AUTO"
		if s.ApprovalRequired {
			mark = ":lock: APPROVAL REQUIRED"
		}
		line := fmt.Sprintf("*%s* · %s/%s · %s · ~%ds", s.Name, s.Type, s.Action, mark, s.EstimatedSeconds)
		if len(s.Params) > 0 {
			line += "\n" + formatParams(s.Params)
		}
		if len(m.Blocks) < 45 {
			m.Blocks = append(m.Blocks, Block{Kind: KindSection, Text: trim(line, 2900)})
		}
	}
	m.Blocks = append(m.Blocks, Block{Kind: KindContext, Text: fmt.Sprintf("%d steps · %d approvals needed · about %ds", len(p.Steps), p.ApprovalsNeeded, p.EstimatedSeconds)})
	return m
}

func (b *Bot) status(ctx context.Context, id string) *Reply {
	s, err := b.eng.Store().Get(ctx, id)
	if err != nil {
		return text(":question: No execution `" + id + "`. See `/runbook history`.")
	}
	return text(summaryLine(s))
}

func summaryLine(s engine.Summary) string {
	state := s.Status
	if s.Outcome != "" {
		state = outcomeIcon[s.Outcome] + " " + string(s.Outcome)
	}
	line := fmt.Sprintf("`%s` *%s* v%s — %s · by %s · %s · %s", s.ExecutionID, s.RunbookName, s.RunbookVersion, state,
		user(s.Trigger.TriggeredBy), s.Trigger.Type, s.StartedAt.UTC().Format("2006-01-02 15:04 UTC"))
	if s.EndedAt != nil {
		line += " · " + dur(s.DurationMs)
	} else if s.CurrentStep != "" {
		line += " · at `" + s.CurrentStep + "`"
	}
	return line
}

func (b *Bot) cancelExec(ctx context.Context, userID, id string) *Reply {
	s, err := b.eng.Store().Get(ctx, id)
	if err != nil {
		return text(":question: No execution `" + id + "`.")
	}
	if s.Trigger.TriggeredBy != userID {
		if r := b.allowed(ctx, userID, commands.PermCancel, "cancel other people's executions"); r != nil {
			return r
		}
	}
	switch err := b.eng.Cancel(ctx, id, userID); {
	case errors.Is(err, engine.ErrFinished):
		return text("Execution `" + id + "` has already finished (" + string(s.Outcome) + ").")
	case err != nil:
		return text(":warning: Could not cancel `" + id + "`: " + err.Error())
	}
	return text(":octagonal_sign: Cancelling `" + id + "`.")
}

func (b *Bot) history(ctx context.Context, cmd commands.Command) *Reply {
	q := engine.HistoryQuery{Runbook: cmd.Target, Limit: 10}
	if o := cmd.Flags["outcome"]; o != "" {
		valid := map[string]bool{"success": true, "failure": true, "partial": true, "rollback": true, "aborted": true}
		if !valid[o] {
			return text(":question: unknown outcome `" + o + "`: use success, failure, partial, rollback or aborted")
		}
		q.Outcome = engine.Outcome(o)
	}
	if s := cmd.Flags["since"]; s != "" {
		d, err := engine.ParseDuration(s)
		if err != nil {
			return text(":question: `--since " + s + "`: use e.g. 30m, 24h, 7d")
		}
		q.Since = b.cfg.Now().Add(-d)
	}
	if l := cmd.Flags["limit"]; l != "" {
		q.Limit, _ = strconv.Atoi(l)
	}
	q.TriggerType, q.Requester = cmd.Flags["trigger"], cmd.Flags["requester"]
	rows, err := b.eng.Store().History(ctx, q)
	if err != nil {
		return text(":warning: Could not read history: " + err.Error())
	}
	if len(rows) == 0 {
		return text("No executions match.")
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		lines = append(lines, "• "+summaryLine(r))
	}
	return text(trim("*History*\n"+strings.Join(lines, "\n"), 2900))
}

// HandleAction handles a button click.
func (b *Bot) HandleAction(ctx context.Context, in ActionIn) *Reply {
	parts := strings.Split(in.ActionID, ":")
	switch {
	case in.ActionID == "exec:cancel":
		return b.cancelExec(ctx, in.User, in.Value)
	case in.ActionID == "alert:run" && b.alertsOn():
		return b.runOffered(ctx, in.User, in.Value)
	case len(parts) >= 2 && parts[0] == "approval":
		verb, value := parts[1], ""
		if len(parts) >= 3 {
			value = parts[2]
		}
		needsComment := len(parts) >= 4 && parts[3] == "c"
		switch verb {
		case "approve":
			return b.decide(ctx, in.User, in.Value, engine.DecisionApprove, value, "")
		case "reject":
			if needsComment {
				if r := b.precheck(ctx, in.User, in.Value, engine.DecisionReject); r != nil {
					return r
				}
				err := b.cfg.Platform.OpenModal(ctx, in.TriggerID, Modal{CallbackID: "reject", Title: "Reject", Submit: "Reject",
					Text: "Why are you rejecting this? The requester and the audit log will see it.", Metadata: in.Value + "|" + value,
					Inputs: []Input{{ID: "comment", Label: "Reason", Multiline: true, Placeholder: "e.g. investigate the heap dump first"}}})
				if err != nil {
					return text(":warning: Could not open the form (" + err.Error() + "). Reply with `/runbook reject " + in.Value + " <reason>`.")
				}
				return nil
			}
			return b.decide(ctx, in.User, in.Value, engine.DecisionReject, value, "")
		case "bypass":
			if r := b.precheck(ctx, in.User, in.Value, engine.DecisionBypass); r != nil {
				return r
			}
			err := b.cfg.Platform.OpenModal(ctx, in.TriggerID, Modal{CallbackID: "bypass", Title: "Emergency bypass", Submit: "Bypass",
				Text: ":rotating_light: This skips approval and is audited as *critical*.", Metadata: in.Value,
				Inputs: []Input{{ID: "justification", Label: "Justification", Multiline: true}}})
			if err != nil {
				return text(":warning: Could not open the form: " + err.Error())
			}
			return nil
		}
	}
	return text(":question: I don't know that button.")
}

// precheck answers clicks that cannot succeed before opening a form.
func (b *Bot) precheck(ctx context.Context, userID, approvalID string, verb engine.Decision) *Reply {
	s, err := b.eng.Store().Get(ctx, engine.ExecutionOf(approvalID))
	if err != nil {
		return text(":question: This approval no longer exists.")
	}
	if s.Status == engine.StatusFinished {
		return text("This execution has already finished (" + string(s.Outcome) + ").")
	}
	if verb == engine.DecisionBypass && s.Trigger.TriggeredBy == userID {
		return b.refuse(userID, "bypass "+approvalID, "You started this execution; you cannot bypass its approval.")
	}
	return nil
}

// ValidateModal checks a submitted form's fields; the map holds errors to
// show in the form by field id.
func ValidateModal(in ModalIn) map[string]string {
	switch in.CallbackID {
	case "reject":
		if strings.TrimSpace(in.Values["comment"]) == "" {
			return map[string]string{"comment": "A reason is required."}
		}
	case "bypass":
		if strings.TrimSpace(in.Values["justification"]) == "" {
			return map[string]string{"justification": "A justification is required."}
		}
	}
	return nil
}

// HandleModal handles a submitted form; the returned map holds field
// errors to show in the form.
func (b *Bot) HandleModal(ctx context.Context, in ModalIn) (map[string]string, *Reply) {
	if errs := ValidateModal(in); errs != nil {
		return errs, nil
	}
	switch in.CallbackID {
	case "reject":
		id, value, _ := strings.Cut(in.Metadata, "|")
		c := strings.TrimSpace(in.Values["comment"])
		if c == "" {
			return map[string]string{"comment": "A reason is required."}, nil
		}
		return nil, b.decide(ctx, in.User, id, engine.DecisionReject, value, c)
	case "bypass":
		j := strings.TrimSpace(in.Values["justification"])
		if j == "" {
			return map[string]string{"justification": "A justification is required."}, nil
		}
		return nil, b.decide(ctx, in.User, in.Metadata, engine.DecisionBypass, "bypass", j)
	}
	return nil, nil
}

// decide applies a decision and explains refusals in people's terms.
func (b *Bot) decide(ctx context.Context, userID, approvalID string, verb engine.Decision, value, comment string) *Reply {
	// The engine checks approvers (RBAC through Authorizer) and records
	// every refusal in the execution's audit log.
	res, err := b.eng.Decide(ctx, engine.DecisionRequest{ApprovalID: approvalID, User: userID, Verb: verb, Value: value, Comment: comment})
	switch {
	case err == nil && res.Final:
		return nil // the approval message now says who decided
	case err == nil:
		return text(":ballot_box_with_check: Your approval is counted. Still needed: " + res.Needed + ".")
	case errors.Is(err, engine.ErrSelfApproval):
		return text(":no_entry: You started this execution, so someone else must approve it (four-eyes).")
	case errors.Is(err, engine.ErrNotApprover):
		return text(":no_entry: You are not one of the approvers for this step.")
	case errors.Is(err, engine.ErrAlreadyDecided):
		return text("Already decided: " + decisionLine(res.Approval))
	case errors.Is(err, engine.ErrAlreadyVoted):
		return text("You have already approved this; waiting for the other approvers.")
	case errors.Is(err, engine.ErrCommentRequired):
		return text(":memo: Rejecting this needs a reason: `/runbook reject " + approvalID + " <reason>`.")
	case errors.Is(err, engine.ErrJustificationRequired):
		return text(":memo: A bypass needs a justification.")
	case errors.Is(err, engine.ErrFinished):
		return text("This execution has already finished.")
	case errors.Is(err, engine.ErrNotActive):
		return text(":hourglass: This execution is not running on this bot right now; try again shortly.")
	case errors.Is(err, engine.ErrNotFound):
		return text(":question: No approval `" + approvalID + "`.")
	}
	b.log.Error("decision failed", "approval", approvalID, "err", err)
	return text(":warning: Could not record your decision: " + err.Error())
}
