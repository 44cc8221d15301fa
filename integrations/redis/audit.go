package redis

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// AuditFields flattens one event into the field/value pairs of its audit
// stream entry. Values are strings; times are RFC 3339 with nanoseconds in
// UTC; maps and lists are JSON; a field is left out when its value is empty
// (zero, "", nil), except the always-present ones marked *.
//
// Entry fields:
//
//	pos*                 global position in the source store (the mirror's cursor)
//	executionId*         execution id
//	seq*                 per-execution sequence number, from 1
//	type*                event type, e.g. "step.finished"
//	time*                when the transition happened
//	runbookName*         runbook name
//	runbookVersion       runbook version
//	actor                who caused the event (e.g. a cancel request)
//	message              free text
//	auditLevel           the runbook's audit level
//	trigger.type         manual, alert, schedule, ...
//	trigger.source       alert source
//	trigger.alertId      alert id
//	trigger.triggeredBy  requesting user or system
//	trigger.channel      chat channel
//	trigger.threadTs     chat thread
//	trigger.labels       JSON object
//	parameters           JSON object of the execution's parameters
//	step.name            step name
//	step.phase           precondition, step or rollback
//	step.index*          step index within its phase (when a step is present)
//	step.type            step type
//	step.action          action name
//	step.status          pending, running, success, failure, skipped, interrupted
//	step.startTime       step start
//	step.endTime         step end
//	step.duration        step duration in milliseconds
//	step.error           error text
//	step.reason          why the step was skipped or interrupted
//	step.input           JSON object
//	step.output          JSON object
//	step.state           JSON object of saved state
//	approval.id          approval id
//	approval.name        approval name
//	approval.step        step the approval gates
//	approval.phase       phase of that step
//	approval.requestedAt when approval was requested
//	approval.deadline    when it times out
//	approval.approvers   JSON list of eligible approvers
//	approval.channels    JSON list of channels asked
//	approval.notify      JSON list of people notified on escalation
//	approval.tier        escalation tier
//	approval.reason      why approval is needed
//	approval.critical    "true" for critical approvals
//	approval.approver    who decided or voted
//	approval.decision    approve, reject, timeout, bypass, auto
//	approval.value       the chosen value
//	approval.comment     the approver's comment
//	approval.respondedAt when they answered
//	outcome              success, failure, partial, rollback, aborted
//	rollback.triggered   "true" or "false" (when a rollback record is present)
//	rollback.reason      why rollback ran
//	rollback.procedure   rollback procedure
//	rollback.success     "true" or "false" once known
func AuditFields(e engine.Event) []string {
	f := auditFields{make([]string, 0, 40)}
	f.always("pos", strconv.FormatUint(e.Pos, 10))
	f.always("executionId", e.ExecutionID)
	f.always("seq", strconv.FormatInt(e.Seq, 10))
	f.always("type", string(e.Type))
	f.always("time", formatTime(e.Time))
	f.always("runbookName", e.RunbookName)
	f.add("runbookVersion", e.RunbookVersion)
	f.add("actor", e.Actor)
	f.add("message", e.Message)
	f.add("auditLevel", e.AuditLevel)
	if t := e.Trigger; t != nil {
		f.add("trigger.type", t.Type)
		f.add("trigger.source", t.Source)
		f.add("trigger.alertId", t.AlertID)
		f.add("trigger.triggeredBy", t.TriggeredBy)
		f.add("trigger.channel", t.Channel)
		f.add("trigger.platform", t.Platform)
		f.add("trigger.thread", t.Thread)
		if len(t.Labels) > 0 {
			f.json("trigger.labels", t.Labels)
		}
	}
	if e.Parameters != nil {
		f.json("parameters", e.Parameters)
	}
	if s := e.Step; s != nil {
		f.add("step.name", s.Name)
		f.add("step.phase", string(s.Phase))
		f.always("step.index", strconv.Itoa(s.Index))
		f.add("step.type", s.Type)
		f.add("step.action", s.Action)
		f.add("step.status", string(s.Status))
		f.time("step.startTime", s.StartTime)
		f.time("step.endTime", s.EndTime)
		if s.DurationMs != 0 {
			f.always("step.duration", strconv.FormatInt(s.DurationMs, 10))
		}
		f.add("step.error", s.Error)
		f.add("step.reason", s.Reason)
		if s.Input != nil {
			f.json("step.input", s.Input)
		}
		if s.Output != nil {
			f.json("step.output", s.Output)
		}
		if s.State != nil {
			f.json("step.state", s.State)
		}
	}
	if a := e.Approval; a != nil {
		f.add("approval.id", a.ID)
		f.add("approval.name", a.Name)
		f.add("approval.step", a.Step)
		f.add("approval.phase", string(a.Phase))
		if !a.RequestedAt.IsZero() {
			f.always("approval.requestedAt", formatTime(a.RequestedAt))
		}
		f.time("approval.deadline", a.Deadline)
		if len(a.Approvers) > 0 {
			f.json("approval.approvers", a.Approvers)
		}
		if len(a.Channels) > 0 {
			f.json("approval.channels", a.Channels)
		}
		if len(a.Notify) > 0 {
			f.json("approval.notify", a.Notify)
		}
		if a.Tier != 0 {
			f.always("approval.tier", strconv.Itoa(a.Tier))
		}
		f.add("approval.reason", a.Reason)
		if a.Critical {
			f.always("approval.critical", "true")
		}
		f.add("approval.approver", a.Approver)
		f.add("approval.decision", string(a.Decision))
		f.add("approval.value", a.Value)
		f.add("approval.comment", a.Comment)
		f.time("approval.respondedAt", a.RespondedAt)
	}
	f.add("outcome", string(e.Outcome))
	if r := e.Rollback; r != nil {
		f.always("rollback.triggered", strconv.FormatBool(r.Triggered))
		f.add("rollback.reason", r.Reason)
		f.add("rollback.procedure", r.Procedure)
		if r.Success != nil {
			f.always("rollback.success", strconv.FormatBool(*r.Success))
		}
	}
	return f.kv
}

type auditFields struct{ kv []string }

func (f *auditFields) always(k, v string) { f.kv = append(f.kv, k, v) }

func (f *auditFields) add(k, v string) {
	if v != "" {
		f.kv = append(f.kv, k, v)
	}
}

func (f *auditFields) time(k string, t *time.Time) {
	if t != nil && !t.IsZero() {
		f.kv = append(f.kv, k, formatTime(*t))
	}
}

func (f *auditFields) json(k string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "unencodable: " + err.Error()})
	}
	f.kv = append(f.kv, k, string(b))
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
