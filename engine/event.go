package engine

import (
	"encoding/json"
	"time"
)

// EventType names a transition of an execution.
type EventType string

// The transitions an execution goes through. Every one is persisted before
// the executor acts on it.
const (
	EventExecutionStarted  EventType = "execution.started"
	EventStepStarted       EventType = "step.started"
	EventStepFinished      EventType = "step.finished"
	EventApprovalRequested EventType = "approval.requested"
	EventApprovalEscalated EventType = "approval.escalated"
	EventApprovalVote      EventType = "approval.vote"
	EventApprovalDecided   EventType = "approval.decided"
	EventApprovalRefused   EventType = "approval.refused"
	EventRollbackStarted   EventType = "rollback.started"
	EventRollbackFinished  EventType = "rollback.finished"
	EventCancelRequested   EventType = "execution.cancel_requested"
	EventExecutionFinished EventType = "execution.finished"
)

// Outcome is the final result of an execution (the audit schema's enum).
type Outcome string

// Outcomes, as in the audit schema.
const (
	OutcomeSuccess  Outcome = "success"
	OutcomeFailure  Outcome = "failure"
	OutcomePartial  Outcome = "partial"
	OutcomeRollback Outcome = "rollback"
	OutcomeAborted  Outcome = "aborted"
)

// StepStatus is the state of one step.
type StepStatus string

// Step statuses. Interrupted means the process died while the step ran.
const (
	StepPending     StepStatus = "pending"
	StepRunning     StepStatus = "running"
	StepSuccess     StepStatus = "success"
	StepFailure     StepStatus = "failure"
	StepSkipped     StepStatus = "skipped"
	StepInterrupted StepStatus = "interrupted"
)

// Phase tells which part of a runbook a step belongs to.
type Phase string

// Phases of an execution.
const (
	PhasePrecondition Phase = "precondition"
	PhaseStep         Phase = "step"
	PhaseRollback     Phase = "rollback"
)

// Decision is the verdict on an approval.
type Decision string

// Approval decisions. Timeout is a rejection made by the clock; bypass is an
// emergency override.
const (
	DecisionApprove Decision = "approve"
	DecisionReject  Decision = "reject"
	DecisionTimeout Decision = "timeout"
	DecisionBypass  Decision = "bypass"
	DecisionAuto    Decision = "auto"
)

// TriggerInfo says who or what started an execution (audit schema "trigger").
//
// Platform names the chat platform the execution came from ("slack",
// "discord"; empty for the terminal, schedules and the API when no chat is
// involved). Channel, Thread and Message are that platform's opaque
// references: the conversation, the thread to answer in (an alert's
// message, say) and a message the platform already posted for the
// execution. The engine never interprets them.
type TriggerInfo struct {
	Type        string            `json:"type"`
	Source      string            `json:"source,omitempty"`
	AlertID     string            `json:"alertId,omitempty"`
	TriggeredBy string            `json:"triggeredBy"`
	Platform    string            `json:"platform,omitempty"`
	Channel     string            `json:"channel,omitempty"`
	Thread      string            `json:"thread,omitempty"`
	Message     string            `json:"message,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Tick is the schedule tick a scheduled execution runs for.
	Tick *time.Time `json:"tick,omitempty"`
}

// UnmarshalJSON reads the current fields and the Slack-named ones stores
// written before the chat core kept (threadTs, messageTs).
func (t *TriggerInfo) UnmarshalJSON(b []byte) error {
	type plain TriggerInfo
	var v struct {
		plain
		ThreadTS  string `json:"threadTs"`
		MessageTS string `json:"messageTs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = TriggerInfo(v.plain)
	if t.Thread == "" {
		t.Thread = v.ThreadTS
	}
	if t.Message == "" {
		t.Message = v.MessageTS
	}
	if t.Platform == "" && (v.ThreadTS != "" || v.MessageTS != "" || t.Source == "slack") {
		t.Platform = "slack"
	}
	return nil
}

// StepRecord is the audit schema's step item.
type StepRecord struct {
	Name       string         `json:"stepName"`
	Phase      Phase          `json:"phase"`
	Index      int            `json:"index"`
	Type       string         `json:"type,omitempty"`
	Action     string         `json:"action,omitempty"`
	Status     StepStatus     `json:"status"`
	StartTime  *time.Time     `json:"startTime,omitempty"`
	EndTime    *time.Time     `json:"endTime,omitempty"`
	DurationMs int64          `json:"duration,omitempty"`
	Input      map[string]any `json:"input,omitempty"`
	Output     map[string]any `json:"output,omitempty"`
	Error      string         `json:"error,omitempty"`
	// State holds the values the step saved (saveState and action state).
	State map[string]any `json:"state,omitempty"`
	// Reason explains a skip or an interruption.
	Reason string `json:"reason,omitempty"`
	// Rejected marks a step that never ran because its approval was refused.
	Rejected bool `json:"rejected,omitempty"`
}

// ApprovalRecord is the audit schema's approval item, plus what the chat
// side needs to render and route it.
type ApprovalRecord struct {
	ID          string         `json:"id"`
	Name        string         `json:"name,omitempty"`
	Step        string         `json:"step"`
	Phase       Phase          `json:"phase,omitempty"`
	RequestedAt time.Time      `json:"requestedAt"`
	Deadline    *time.Time     `json:"deadline,omitempty"`
	Approvers   []ApproverRef  `json:"approvers,omitempty"`
	Channels    []ChannelRef   `json:"channels,omitempty"`
	Actions     *ActionButtons `json:"actions,omitempty"`
	Reason      string         `json:"reason,omitempty"`
	Tier        int            `json:"tier,omitempty"`
	Notify      []string       `json:"notify,omitempty"`
	Approver    string         `json:"approver,omitempty"`
	Decision    Decision       `json:"decision,omitempty"`
	Value       string         `json:"value,omitempty"`
	Comment     string         `json:"comment,omitempty"`
	RespondedAt *time.Time     `json:"respondedAt,omitempty"`
	Critical    bool           `json:"critical,omitempty"`
	// Satisfies lists the indexes of Approvers a vote counted for.
	Satisfies []int `json:"satisfies,omitempty"`
}

// RollbackRecord is the audit schema's rollback object.
type RollbackRecord struct {
	Triggered bool   `json:"triggered"`
	Reason    string `json:"reason,omitempty"`
	Procedure string `json:"procedure,omitempty"`
	Success   *bool  `json:"success,omitempty"`
}

// Event is one transition of one execution. Events of an execution are
// numbered from 1 by Seq; Pos is the store's global position, assigned on
// append, which mirrors use as a cursor.
type Event struct {
	ExecutionID    string          `json:"executionId"`
	Seq            int64           `json:"seq"`
	Pos            uint64          `json:"pos,omitempty"`
	Type           EventType       `json:"type"`
	Time           time.Time       `json:"time"`
	RunbookName    string          `json:"runbookName"`
	RunbookVersion string          `json:"runbookVersion"`
	Trigger        *TriggerInfo    `json:"trigger,omitempty"`
	Parameters     map[string]any  `json:"parameters,omitempty"`
	Context        map[string]any  `json:"context,omitempty"`
	Step           *StepRecord     `json:"step,omitempty"`
	Approval       *ApprovalRecord `json:"approval,omitempty"`
	Rollback       *RollbackRecord `json:"rollback,omitempty"`
	Watch          *WatchRecord    `json:"watch,omitempty"`
	Outcome        Outcome         `json:"outcome,omitempty"`
	Actor          string          `json:"actor,omitempty"`
	Message        string          `json:"message,omitempty"`
	AuditLevel     string          `json:"auditLevel,omitempty"`
}
