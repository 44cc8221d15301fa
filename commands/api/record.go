package api

import (
	"fmt"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Record is an execution as the seed's audit record: what GET
// /api/v1/executions/{id} answers.
type Record struct {
	ID             string                  `json:"id"`
	ExecutionID    string                  `json:"executionId"`
	RunbookName    string                  `json:"runbookName"`
	RunbookVersion string                  `json:"runbookVersion"`
	Trigger        engine.TriggerInfo      `json:"trigger"`
	Parameters     map[string]any          `json:"parameters"`
	Status         string                  `json:"status"`
	CurrentStep    string                  `json:"currentStep,omitempty"`
	Outcome        engine.Outcome          `json:"outcome,omitempty"`
	StartTime      time.Time               `json:"startTime"`
	EndTime        *time.Time              `json:"endTime,omitempty"`
	DurationMs     int64                   `json:"duration,omitempty"`
	Steps          []engine.StepRecord     `json:"steps"`
	Approvals      []engine.ApprovalRecord `json:"approvals"`
	Rollback       *engine.RollbackRecord  `json:"rollback,omitempty"`
	CancelledBy    string                  `json:"cancelledBy,omitempty"`
}

// BuildRecord folds an execution's events into its record.
func BuildRecord(evs []engine.Event) Record {
	var sum engine.Summary
	r := Record{Steps: []engine.StepRecord{}, Approvals: []engine.ApprovalRecord{}}
	steps := map[string]int{}
	approvals := map[string]int{}
	for _, e := range evs {
		sum.Apply(e)
		switch e.Type {
		case engine.EventStepStarted, engine.EventStepFinished:
			if e.Step == nil {
				continue
			}
			k := fmt.Sprintf("%s/%d", e.Step.Phase, e.Step.Index)
			if i, ok := steps[k]; ok {
				prev := r.Steps[i]
				r.Steps[i] = *e.Step
				if r.Steps[i].StartTime == nil {
					r.Steps[i].StartTime = prev.StartTime
				}
			} else {
				steps[k] = len(r.Steps)
				r.Steps = append(r.Steps, *e.Step)
			}
		case engine.EventApprovalRequested, engine.EventApprovalEscalated, engine.EventApprovalVote, engine.EventApprovalDecided:
			if e.Approval == nil || e.Approval.ID == "" {
				continue
			}
			if i, ok := approvals[e.Approval.ID]; ok {
				if e.Type == engine.EventApprovalVote {
					continue // a vote is not the decision
				}
				r.Approvals[i] = *e.Approval
			} else {
				approvals[e.Approval.ID] = len(r.Approvals)
				r.Approvals = append(r.Approvals, *e.Approval)
			}
		case engine.EventRollbackStarted, engine.EventRollbackFinished:
			if e.Rollback != nil {
				rb := *e.Rollback
				r.Rollback = &rb
			}
		case engine.EventCancelRequested:
			r.CancelledBy = e.Actor
		}
	}
	r.ID, r.ExecutionID = sum.ExecutionID, sum.ExecutionID
	r.RunbookName, r.RunbookVersion = sum.RunbookName, sum.RunbookVersion
	r.Trigger, r.Parameters = sum.Trigger, sum.Parameters
	if r.Parameters == nil {
		r.Parameters = map[string]any{}
	}
	r.Status, r.CurrentStep, r.Outcome = sum.Status, sum.CurrentStep, sum.Outcome
	r.StartTime, r.EndTime, r.DurationMs = sum.StartedAt, sum.EndedAt, sum.DurationMs
	return r
}

// pendingApprovals lists the approvals of evs that are not decided yet.
func pendingApprovals(evs []engine.Event) []engine.ApprovalRecord {
	decided := map[string]bool{}
	for _, e := range evs {
		if e.Type == engine.EventApprovalDecided && e.Approval != nil {
			decided[e.Approval.ID] = true
		}
	}
	var out []engine.ApprovalRecord
	for _, a := range BuildRecord(evs).Approvals {
		if !decided[a.ID] {
			out = append(out, a)
		}
	}
	return out
}

// Item is one execution in a history answer.
type Item struct {
	ID             string             `json:"id"`
	RunbookName    string             `json:"runbookName"`
	RunbookVersion string             `json:"runbookVersion"`
	Trigger        engine.TriggerInfo `json:"trigger"`
	Status         string             `json:"status"`
	Outcome        engine.Outcome     `json:"outcome,omitempty"`
	CurrentStep    string             `json:"currentStep,omitempty"`
	StartTime      time.Time          `json:"startTime"`
	EndTime        *time.Time         `json:"endTime,omitempty"`
	DurationMs     int64              `json:"duration,omitempty"`
	StepsRun       int                `json:"stepsRun"`
	StepsFailed    int                `json:"stepsFailed"`
	Rollback       bool               `json:"rollback"`
}

func itemOf(s engine.Summary) Item {
	return Item{ID: s.ExecutionID, RunbookName: s.RunbookName, RunbookVersion: s.RunbookVersion, Trigger: s.Trigger,
		Status: s.Status, Outcome: s.Outcome, CurrentStep: s.CurrentStep, StartTime: s.StartedAt, EndTime: s.EndedAt,
		DurationMs: s.DurationMs, StepsRun: s.StepsRun, StepsFailed: s.StepsFailed, Rollback: s.Rollback}
}
