package incident

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Operation kinds.
const (
	opAttach   = "attach"
	opNote     = "note"
	opResolve  = "resolve"
	opEscalate = "escalate"
)

// op is one call to a provider.
type op struct {
	kind   string
	entry  Entry
	attach Attachment
}

// execRecord is what the timeline keeps about an open execution.
type execRecord struct {
	Provider string    `json:"provider"`
	Incident *Incident `json:"incident,omitempty"`
	Start    time.Time `json:"start"`
	Rollback bool      `json:"rollback,omitempty"`
}

// outcomeTitles are the seed's outcome messages.
var outcomeTitles = map[engine.Outcome]string{
	engine.OutcomeSuccess:  "Runbook completed successfully",
	engine.OutcomeFailure:  "Runbook failed",
	engine.OutcomePartial:  "Runbook partially completed",
	engine.OutcomeRollback: "Runbook triggered rollback",
	engine.OutcomeAborted:  "Runbook aborted",
}

// attachmentFor reads which incident the trigger names.
func attachmentFor(ev engine.Event, create bool) Attachment {
	a := Attachment{Create: create, ExecutionID: ev.ExecutionID, Runbook: ev.RunbookName,
		Title:   "Auto-remediation: " + ev.RunbookName,
		Details: fmt.Sprintf("runbook: %s (version %s)\nexecution: %s\nsource: runbook-automation", ev.RunbookName, ev.RunbookVersion, ev.ExecutionID)}
	param := func(k string) string {
		if v, ok := ev.Parameters[k]; ok && v != nil {
			return strings.TrimSpace(engine.Stringify(v))
		}
		return ""
	}
	label := func(k string) string {
		if ev.Trigger != nil {
			return strings.TrimSpace(ev.Trigger.Labels[k])
		}
		return ""
	}
	a.ID = param("incident")
	for _, k := range []string{"dedup_key", "pagerduty_dedup_key", "dedupKey"} {
		if a.Key == "" {
			a.Key = param(k)
		}
		if a.Key == "" {
			a.Key = label(k)
		}
	}
	if a.Key == "" && ev.Trigger != nil {
		a.Key = ev.Trigger.AlertID
	}
	if a.Key == "" {
		a.Key = "runbookbot-" + ev.ExecutionID
	}
	return a
}

// plan turns one event into the operations it needs. rec is the
// execution's record (nil before execution.started); plan may set it up.
func (t *Timeline) plan(ev engine.Event, rec *execRecord) (*execRecord, []op) {
	base := Entry{ExecutionID: ev.ExecutionID, Runbook: ev.RunbookName, Time: ev.Time}
	var ops []op
	note := func(e Entry) { ops = append(ops, op{kind: opNote, entry: e}) }
	switch ev.Type {
	case engine.EventExecutionStarted:
		prov := t.route(ev.RunbookName)
		if prov == "" || t.providers[prov] == nil {
			return nil, nil
		}
		if rec == nil { // set when resuming this event after a crash
			rec = &execRecord{Provider: prov, Start: ev.Time}
		}
		ops = append(ops, op{kind: opAttach, attach: attachmentFor(ev, t.create)})
		e := base
		e.Kind, e.Title = KindStart, "Runbook started: "+ev.RunbookName
		d := map[string]any{"execution_id": ev.ExecutionID, "version": ev.RunbookVersion}
		if tr := ev.Trigger; tr != nil {
			d["trigger"] = tr.Type
			d["triggered_by"] = tr.TriggeredBy
			if tr.AlertID != "" {
				d["alert_id"] = tr.AlertID
			}
		}
		if len(ev.Parameters) > 0 {
			d["parameters"] = ev.Parameters
		}
		e.Details = d
		note(e)
	case engine.EventStepFinished:
		if rec == nil || ev.Step == nil {
			return rec, nil
		}
		s := ev.Step
		e := base
		e.Kind, e.Status = KindStep, string(s.Status)
		switch s.Phase {
		case engine.PhasePrecondition:
			e.Title = "Precondition: " + s.Name
		case engine.PhaseRollback:
			e.Title = "Rollback step: " + s.Name
		default:
			e.Title = "Step: " + s.Name
		}
		d := map[string]any{}
		if s.DurationMs > 0 {
			d["duration_ms"] = s.DurationMs
		}
		if s.Error != "" {
			d["error"] = truncate(s.Error, 500)
		}
		if s.Reason != "" {
			d["reason"] = s.Reason
		}
		if len(s.Output) > 0 {
			if b, err := json.Marshal(s.Output); err == nil {
				d["output"] = truncate(string(b), 500)
			}
		}
		e.Details = d
		note(e)
	case engine.EventApprovalRequested:
		if rec == nil || ev.Approval == nil {
			return rec, nil
		}
		a := ev.Approval
		e := base
		e.Kind, e.Title = KindApprovalRequested, "Approval requested for: "+a.Step
		var who []string
		for _, r := range a.Approvers {
			who = append(who, r.Type+":"+r.Value)
		}
		d := map[string]any{"approvers_requested": who}
		if a.Deadline != nil {
			d["deadline"] = a.Deadline.UTC().Format(time.RFC3339)
		}
		if a.Reason != "" {
			d["reason"] = a.Reason
		}
		e.Details = d
		note(e)
	case engine.EventApprovalEscalated:
		if rec == nil || ev.Approval == nil {
			return rec, nil
		}
		e := base
		e.Kind, e.Title = KindApprovalRequested, "Approval escalated: "+ev.Approval.Step
		e.Details = map[string]any{"notify": ev.Approval.Notify, "tier": ev.Approval.Tier}
		note(e)
	case engine.EventApprovalDecided:
		if rec == nil || ev.Approval == nil {
			return rec, nil
		}
		a := ev.Approval
		e := base
		e.Kind, e.Title, e.Status = KindApprovalResponse, fmt.Sprintf("Approval %s: %s", a.Decision, a.Step), string(a.Decision)
		approver := a.Approver
		if approver == "" {
			approver = ev.Actor
		}
		e.Details = map[string]any{"approver": approver, "decision": string(a.Decision), "comment": a.Comment}
		if a.RespondedAt != nil {
			e.Time = *a.RespondedAt
		}
		note(e)
	case engine.EventRollbackStarted:
		if rec == nil {
			return rec, nil
		}
		rec.Rollback = true
		e := base
		e.Kind, e.Title = KindRollback, "Rollback started"
		if r := ev.Rollback; r != nil {
			e.Details = map[string]any{"reason": r.Reason, "procedure": r.Procedure}
		}
		note(e)
	case engine.EventRollbackFinished:
		if rec == nil {
			return rec, nil
		}
		e := base
		e.Kind, e.Title = KindRollback, "Rollback finished"
		if r := ev.Rollback; r != nil && r.Success != nil {
			e.Status = "failure"
			if *r.Success {
				e.Status = "success"
			}
		}
		note(e)
	case engine.EventExecutionFinished:
		if rec == nil {
			return rec, nil
		}
		e := base
		e.Kind, e.Status = KindComplete, string(ev.Outcome)
		e.Title = outcomeTitles[ev.Outcome]
		if e.Title == "" {
			e.Title = "Runbook finished"
		}
		e.Details = map[string]any{"outcome": string(ev.Outcome), "total_duration_ms": ev.Time.Sub(rec.Start).Milliseconds(),
			"rollback_triggered": rec.Rollback || ev.Outcome == engine.OutcomeRollback}
		note(e)
		switch ev.Outcome {
		case engine.OutcomeSuccess:
			r := base
			r.Kind, r.Title, r.Status = KindResolution, "Incident resolved by automation", "resolved"
			r.Details = map[string]any{"resolution_type": "automated"}
			ops = append(ops, op{kind: opResolve, entry: r})
		case engine.OutcomeFailure, engine.OutcomeRollback:
			n := base
			n.Kind, n.Title, n.Status = KindEscalation, EscalationNote, "escalated"
			note(n)
			ops = append(ops, op{kind: opEscalate, entry: n})
		}
	}
	for i := range ops {
		ops[i].entry.Marker = fmt.Sprintf("%s#%d.%d", ev.ExecutionID, ev.Seq, i)
	}
	return rec, ops
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
