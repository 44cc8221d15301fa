package engine

import (
	"context"
	"errors"
	"time"
)

// Store keeps the event log durably. Append returns only once the events are
// on stable storage; concurrent appends may share one sync (group commit).
type Store interface {
	// Append persists events in order. Events of one execution must arrive
	// with consecutive Seq values; the store assigns Pos.
	Append(ctx context.Context, events ...Event) error
	// Events returns all events of one execution, in Seq order.
	Events(ctx context.Context, executionID string) ([]Event, error)
	// ReadFrom returns up to limit events whose Pos is greater than after,
	// in Pos order. Mirrors use it to ship the log.
	ReadFrom(ctx context.Context, after uint64, limit int) ([]Event, error)
	// Unfinished lists executions that have no execution.finished event.
	Unfinished(ctx context.Context) ([]string, error)
	// Get returns the summary of one execution, or ErrNotFound.
	Get(ctx context.Context, executionID string) (Summary, error)
	// History returns summaries matching q, newest first.
	History(ctx context.Context, q HistoryQuery) ([]Summary, error)
	// Close releases the store.
	Close() error
}

// ErrNotFound is returned for an unknown execution.
var ErrNotFound = errors.New("execution not found")

// HistoryQuery filters executions. Zero fields match everything.
type HistoryQuery struct {
	Runbook     string
	Outcome     Outcome
	TriggerType string
	Requester   string
	Since       time.Time
	Until       time.Time
	Limit       int
}

// Summary is an execution folded from its events: what history and status
// show.
type Summary struct {
	ExecutionID    string         `json:"executionId"`
	RunbookName    string         `json:"runbookName"`
	RunbookVersion string         `json:"runbookVersion"`
	Trigger        TriggerInfo    `json:"trigger"`
	Parameters     map[string]any `json:"parameters,omitempty"`
	Status         string         `json:"status"`
	CurrentStep    string         `json:"currentStep,omitempty"`
	Outcome        Outcome        `json:"outcome,omitempty"`
	StartedAt      time.Time      `json:"startedAt"`
	EndedAt        *time.Time     `json:"endedAt,omitempty"`
	DurationMs     int64          `json:"durationMs,omitempty"`
	StepsRun       int            `json:"stepsRun"`
	StepsFailed    int            `json:"stepsFailed"`
	Approvals      int            `json:"approvals"`
	Rollback       bool           `json:"rollback"`
	LastSeq        int64          `json:"lastSeq"`
}

// Execution statuses shown in summaries.
const (
	StatusRunning  = "running"
	StatusWaiting  = "waiting-approval"
	StatusFinished = "finished"
)

// Apply folds one event into the summary. Stores share it so that every
// store answers history the same way.
func (s *Summary) Apply(e Event) {
	s.LastSeq = e.Seq
	switch e.Type {
	case EventExecutionStarted:
		s.ExecutionID = e.ExecutionID
		s.RunbookName = e.RunbookName
		s.RunbookVersion = e.RunbookVersion
		if e.Trigger != nil {
			s.Trigger = *e.Trigger
		}
		s.Parameters = e.Parameters
		s.StartedAt = e.Time
		s.Status = StatusRunning
	case EventStepStarted:
		if e.Step != nil {
			s.CurrentStep = e.Step.Name
		}
		s.Status = StatusRunning
	case EventStepFinished:
		if e.Step != nil && e.Step.Status != StepSkipped {
			s.StepsRun++
			if e.Step.Status == StepFailure || e.Step.Status == StepInterrupted {
				s.StepsFailed++
			}
		}
	case EventApprovalRequested:
		s.Approvals++
		s.Status = StatusWaiting
	case EventApprovalDecided:
		s.Status = StatusRunning
	case EventRollbackStarted:
		s.Rollback = true
	case EventExecutionFinished:
		s.Status = StatusFinished
		s.Outcome = e.Outcome
		t := e.Time
		s.EndedAt = &t
		s.DurationMs = t.Sub(s.StartedAt).Milliseconds()
		s.CurrentStep = ""
	}
}

// Match reports whether the summary satisfies the query's filters (not its
// limit).
func (q HistoryQuery) Match(s Summary) bool {
	if q.Runbook != "" && s.RunbookName != q.Runbook {
		return false
	}
	if q.Outcome != "" && s.Outcome != q.Outcome {
		return false
	}
	if q.TriggerType != "" && s.Trigger.Type != q.TriggerType {
		return false
	}
	if q.Requester != "" && s.Trigger.TriggeredBy != q.Requester {
		return false
	}
	if !q.Since.IsZero() && s.StartedAt.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !s.StartedAt.Before(q.Until) {
		return false
	}
	return true
}
