package bot

import (
	"context"
	"fmt"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// Button ids. A button's command line says what it does; its id says which
// of the bot's buttons it is, and both must match a button the bot issued.
const (
	buttonCancel = "exec:cancel"
	buttonBypass = "approval:bypass"
	buttonOffer  = "alert:run:"
)

// choiceFlag carries a custom button value ("reject-wrong-service") on an
// approve or reject line.
const choiceFlag = "--choice="

func cancelButton(exec string) Button {
	return Button{ID: buttonCancel, Label: "Cancel", Command: "cancel " + exec, Style: StyleDanger}
}

// issuedButton is an approval button with what the core needs to act on a
// click: whether it asks for a comment first.
type issuedButton struct {
	Button
	comment bool
}

// approvalLine is the command line of an approval button.
func approvalLine(verb, id, value string) string {
	line := verb + " " + id
	if value != "" && value != verb {
		line += " " + choiceFlag + value
	}
	return line
}

// issuedApprovalButtons are every button an approval card carries, derived
// only from the approval record, so any replica can tell a real click from
// a forged one.
func issuedApprovalButtons(rec engine.ApprovalRecord, bypass bool) []issuedButton {
	var bs []issuedButton
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
		bs = append(bs, issuedButton{Button: Button{ID: "approval:approve:" + b.Value, Label: b.Label, Command: approvalLine("approve", rec.ID, b.Value),
			Style: style(b.Style, StylePrimary)}})
	}
	for _, b := range reject {
		bs = append(bs, issuedButton{Button: Button{ID: "approval:reject:" + b.Value, Label: b.Label, Command: approvalLine("reject", rec.ID, b.Value),
			Style: style(b.Style, StyleDanger)}, comment: b.RequiresComment})
	}
	if bypass {
		bs = append(bs, issuedButton{Button: Button{ID: buttonBypass, Label: "Emergency bypass", Command: "bypass " + rec.ID}, comment: true})
	}
	return bs
}

func approvalButtons(rec engine.ApprovalRecord, bypass bool) []Button {
	var out []Button
	for _, b := range issuedApprovalButtons(rec, bypass) {
		out = append(out, b.Button)
	}
	return out
}

func style(s string, def ButtonStyle) ButtonStyle {
	switch s {
	case "primary":
		return StylePrimary
	case "danger":
		return StyleDanger
	case "":
		return def
	}
	return StyleDefault
}

// hasBypass reports whether a runbook has an emergency override.
func (b *Bot) hasBypass(runbook string) bool {
	rb, err := b.eng.Catalog().Lookup(runbook)
	if err != nil {
		return false
	}
	for _, ap := range rb.Approvals {
		if ap.Type == "override" {
			return true
		}
	}
	return false
}

// approvalRecord reads an approval's request from the store.
func (b *Bot) approvalRecord(ctx context.Context, id string) (engine.Event, bool) {
	evs, err := b.eng.Store().Events(ctx, engine.ExecutionOf(id))
	if err != nil {
		return engine.Event{}, false
	}
	for _, e := range evs {
		if e.Type == engine.EventApprovalRequested && e.Approval != nil && e.Approval.ID == id {
			return e, true
		}
	}
	return engine.Event{}, false
}

// click handles a button: the button must be one the bot issued, with the
// command line it issued; then the line runs like a typed command (forms
// first where the button asks for a comment).
func (b *Bot) click(ctx context.Context, req Request) Response {
	words := strings.Fields(req.Line)
	if len(words) < 2 {
		return b.refuseClick(ctx, req, "", "malformed button")
	}
	verb, target := words[0], words[1]
	switch {
	case req.Button == buttonCancel && verb == "cancel" && len(words) == 2:
		if _, err := b.eng.Store().Get(ctx, target); err != nil {
			return b.refuseClick(ctx, req, "", "no such execution")
		}
		return b.command(ctx, req, req.Line)
	case strings.HasPrefix(req.Button, buttonOffer) && verb == "run":
		return b.runOffer(ctx, req, strings.TrimPrefix(req.Button, buttonOffer))
	case verb == "approve" || verb == "reject" || verb == "bypass":
		ev, ok := b.approvalRecord(ctx, target)
		if !ok {
			return b.refuseClick(ctx, req, "", "no such approval")
		}
		for _, ib := range issuedApprovalButtons(*ev.Approval, b.hasBypass(ev.RunbookName)) {
			if ib.ID != req.Button || ib.Command != req.Line {
				continue
			}
			if !ib.comment {
				return b.command(ctx, req, req.Line)
			}
			if r, stop := b.precheck(ctx, req.User, target, verb); stop {
				return r
			}
			if verb == "bypass" {
				return Response{Modal: &Modal{ID: "bypass", Title: "Emergency bypass", Submit: "Bypass", Command: req.Line,
					Text:   R(Sym(StatusAlert), Txt(" This skips approval and is audited as "), Bold("critical"), Txt(".")),
					Inputs: []Input{{ID: "justification", Label: "Justification", Multiline: true}}}}
			}
			return Response{Modal: &Modal{ID: "reject", Title: "Reject", Submit: "Reject", Command: req.Line,
				Text:   R(Txt("Why are you rejecting this? The requester and the audit log will see it.")),
				Inputs: []Input{{ID: "comment", Label: "Reason", Multiline: true, Placeholder: "e.g. investigate the heap dump first"}}}}
		}
		return b.refuseClick(ctx, req, engine.ExecutionOf(target), "button not issued for this approval")
	}
	return b.refuseClick(ctx, req, "", "unknown button")
}

// refuseClick answers and audits a click on a button the bot never issued:
// a Warn line in the operator log and, when the line names an execution
// running here, an approval.refused event in its audit log.
func (b *Bot) refuseClick(ctx context.Context, req Request, exec, why string) Response {
	b.log.Warn("audit: refused a button the bot did not issue", "audit", true, "user", req.User, "platform", req.Platform,
		"button", trim(req.Button, 80), "line", trim(req.Line, 120), "reason", why)
	if exec != "" {
		if _, err := b.eng.RecordRefusal(ctx, exec, req.User, fmt.Sprintf("chat action %q refused: %s", trim(req.Line, 120), why)); err != nil {
			b.log.Error("cannot record a refusal", "execution", exec, "err", err)
		}
	}
	return reply(R(Sym(StatusRefused), Txt(" I did not offer that button, so I did nothing. Use the buttons on the latest message, or type the command.")))
}

// precheck answers clicks that cannot succeed before a form is opened.
func (b *Bot) precheck(ctx context.Context, user, approvalID, verb string) (Response, bool) {
	s, err := b.eng.Store().Get(ctx, engine.ExecutionOf(approvalID))
	if err != nil {
		return reply(R(Sym(StatusQuestion), Txt(" This approval no longer exists."))), true
	}
	if s.Status == engine.StatusFinished {
		return reply(R(Txt("This execution has already finished (" + string(s.Outcome) + ")."))), true
	}
	if verb == "bypass" && s.Trigger.TriggeredBy == user {
		return b.refuse(user, "bypass "+approvalID, R(Txt("You started this execution; you cannot bypass its approval."))), true
	}
	return Response{}, false
}
