package engine

import (
	"fmt"
	"strings"
	"time"
)

// Runbook is one runbook file, in the seed article's format.
type Runbook struct {
	APIVersion    string      `yaml:"apiVersion"`
	Kind          string      `yaml:"kind"`
	Metadata      Metadata    `yaml:"metadata"`
	Trigger       Trigger     `yaml:"trigger"`
	Parameters    []Parameter `yaml:"parameters"`
	Preconditions []*Step     `yaml:"preconditions"`
	Steps         []*Step     `yaml:"steps"`
	Approvals     []*Approval `yaml:"approvals"`
	Rollback      *Rollback   `yaml:"rollback"`

	// File is where the runbook was loaded from.
	File string `yaml:"-"`
	Pos  Pos    `yaml:"-"`
}

// Metadata identifies a runbook.
type Metadata struct {
	Name        string            `yaml:"name"`
	Version     string            `yaml:"version"`
	Owner       string            `yaml:"owner"`
	Description string            `yaml:"description"`
	LastUpdated string            `yaml:"lastUpdated"`
	Tags        []string          `yaml:"tags"`
	Labels      map[string]string `yaml:"labels"`
	Pos         Pos               `yaml:"-"`
}

// Trigger says what starts a runbook.
type Trigger struct {
	Type       string             `yaml:"type"`
	Source     string             `yaml:"source"`
	AlertName  string             `yaml:"alertName"`
	Schedule   string             `yaml:"schedule"`
	Timezone   string             `yaml:"timezone"`
	Conditions []TriggerCondition `yaml:"conditions"`
	// Parameters are the values a scheduled (or API-default) run starts
	// with, for parameters that have no default.
	Parameters map[string]any `yaml:"parameters"`
	// Channel is the chat channel where runs nobody started from chat
	// (schedules, the API) post their thread ("#ops"; default: the bot's
	// configured runs channel).
	Channel string `yaml:"channel"`
	Pos     Pos    `yaml:"-"`
}

// TriggerCondition restricts a trigger by a field of the alert or of the
// parameters: `namespace notIn [production-critical]`.
type TriggerCondition struct {
	Field    string   `yaml:"field"`
	Operator string   `yaml:"operator"`
	Values   []string `yaml:"values"`
	Value    string   `yaml:"value"`
	Pos      Pos      `yaml:"-"`
}

// Parameter is an input of a runbook.
type Parameter struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"`
	Required    bool   `yaml:"required"`
	Default     any    `yaml:"default"`
	Description string `yaml:"description"`
	Enum        []any  `yaml:"enum"`
	Pattern     string `yaml:"pattern"`
	// Sensitive parameters are masked in chat, logs and the audit stream.
	Sensitive bool `yaml:"sensitive"`
	Pos       Pos  `yaml:"-"`
}

// Step is a precondition, a step or a rollback step.
type Step struct {
	Name              string            `yaml:"name"`
	Type              string            `yaml:"type"`
	Action            string            `yaml:"action"`
	Params            Params            `yaml:"params"`
	Timeout           Duration          `yaml:"timeout"`
	SaveOutput        string            `yaml:"saveOutput"`
	SaveState         []SaveState       `yaml:"saveState"`
	ContinueOnFailure bool              `yaml:"continueOnFailure"`
	OnSuccess         string            `yaml:"onSuccess"`
	OnFailure         string            `yaml:"onFailure"`
	Condition         string            `yaml:"condition"`
	RequiresApproval  *RequiresApproval `yaml:"requiresApproval"`
	// Idempotent steps are re-run after a crash interrupted them.
	Idempotent  bool   `yaml:"idempotent"`
	Description string `yaml:"description"`
	Pos         Pos    `yaml:"-"`

	cond *Condition
}

// SaveState stores a templated value in the execution state after a step.
type SaveState struct {
	Key   string `yaml:"key"`
	Value string `yaml:"value"`
	Pos   Pos    `yaml:"-"`
}

// RequiresApproval gates a step. Type auto approves by itself when every
// condition holds; manual (or always) always asks a human.
type RequiresApproval struct {
	Type       string   `yaml:"type"`
	Conditions []string `yaml:"conditions"`
	Pos        Pos      `yaml:"-"`

	conds []*Condition
}

// Approval is an entry of the approvals section: a workflow for a step, or an
// override (emergency bypass).
type Approval struct {
	Name                  string           `yaml:"name"`
	Type                  string           `yaml:"type"`
	Trigger               *ApprovalTrigger `yaml:"trigger"`
	Workflow              *Workflow        `yaml:"workflow"`
	Permissions           []Permission     `yaml:"permissions"`
	AuditLevel            string           `yaml:"auditLevel"`
	RequiresJustification bool             `yaml:"requiresJustification"`
	Pos                   Pos              `yaml:"-"`
}

// ApprovalTrigger ties a workflow to a step; any condition that holds makes
// the approval necessary.
type ApprovalTrigger struct {
	Step       string   `yaml:"step"`
	Conditions []string `yaml:"conditions"`
	Pos        Pos      `yaml:"-"`

	conds []*Condition
}

// Workflow is how an approval is asked for and decided.
type Workflow struct {
	Type       string         `yaml:"type"`
	Timeout    Duration       `yaml:"timeout"`
	Escalation []Escalation   `yaml:"escalation"`
	Approvers  []ApproverRef  `yaml:"approvers"`
	Channels   []ChannelRef   `yaml:"channels"`
	Actions    *ActionButtons `yaml:"actions"`
	Pos        Pos            `yaml:"-"`
}

// Escalation notifies the next tier after a delay.
type Escalation struct {
	After  Duration `yaml:"after"`
	Notify []string `yaml:"notify"`
	Pos    Pos      `yaml:"-"`
}

// ApproverRef names who may approve: a role or a team, required or with a
// minimum number of approvals.
type ApproverRef struct {
	Type         string `yaml:"type" json:"type"`
	Value        string `yaml:"value" json:"value"`
	Required     bool   `yaml:"required" json:"required,omitempty"`
	MinApprovals int    `yaml:"minApprovals" json:"minApprovals,omitempty"`
	Pos          Pos    `yaml:"-" json:"-"`
}

// ChannelRef is where an approval request is posted.
type ChannelRef struct {
	Type     string `yaml:"type" json:"type"`
	Channel  string `yaml:"channel" json:"channel,omitempty"`
	Template string `yaml:"template" json:"template,omitempty"`
	Severity string `yaml:"severity" json:"severity,omitempty"`
	Pos      Pos    `yaml:"-" json:"-"`
}

// ActionButtons are the buttons of an approval request.
type ActionButtons struct {
	Approve []Button `yaml:"approve" json:"approve,omitempty"`
	Reject  []Button `yaml:"reject" json:"reject,omitempty"`
	Pos     Pos      `yaml:"-" json:"-"`
}

// Button is one approve or reject choice.
type Button struct {
	Label           string `yaml:"label" json:"label"`
	Value           string `yaml:"value" json:"value"`
	Style           string `yaml:"style" json:"style,omitempty"`
	RequiresComment bool   `yaml:"requiresComment" json:"requiresComment,omitempty"`
	Pos             Pos    `yaml:"-" json:"-"`
}

// Permission grants an override to a role, group or user.
type Permission struct {
	Role  string `yaml:"role"`
	Group string `yaml:"group"`
	User  string `yaml:"user"`
	Pos   Pos    `yaml:"-"`
}

// Rollback is the rollback section: what triggers it and what it runs.
type Rollback struct {
	Triggers   []RollbackTrigger `yaml:"triggers"`
	Procedures []Procedure       `yaml:"procedures"`
	Pos        Pos               `yaml:"-"`
}

// RollbackTrigger starts a procedure: a step failed, a metric condition over
// a window, or a check failing several times in a row.
type RollbackTrigger struct {
	Condition           string   `yaml:"condition"`
	Window              Duration `yaml:"window"`
	ConsecutiveFailures int      `yaml:"consecutiveFailures"`
	Action              string   `yaml:"action"`
	Pos                 Pos      `yaml:"-"`

	stepName   string // set for step.<name>.failed
	stepStatus string
	cond       *Condition
}

// Procedure is a named list of rollback steps.
type Procedure struct {
	Name       string   `yaml:"name"`
	Steps      []*Step  `yaml:"steps"`
	Conditions []string `yaml:"conditions"`
	Pos        Pos      `yaml:"-"`

	conds []*Condition
}

// Duration is a YAML duration: 30s, 5m, 1h30m, 7d.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses Go durations plus a `d` (day) unit.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		var n float64
		if _, err := fmt.Sscanf(strings.TrimSuffix(s, "d"), "%g", &n); err == nil && !strings.ContainsAny(strings.TrimSuffix(s, "d"), "hms") {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// AllSteps returns preconditions, steps and rollback steps with their phase.
func (r *Runbook) AllSteps() []PhasedStep {
	var out []PhasedStep
	for i, s := range r.Preconditions {
		out = append(out, PhasedStep{PhasePrecondition, i, s})
	}
	for i, s := range r.Steps {
		out = append(out, PhasedStep{PhaseStep, i, s})
	}
	if r.Rollback != nil {
		n := 0
		for _, p := range r.Rollback.Procedures {
			for _, s := range p.Steps {
				out = append(out, PhasedStep{PhaseRollback, n, s})
				n++
			}
		}
	}
	return out
}

// PhasedStep is a step with its phase and index in that phase.
type PhasedStep struct {
	Phase Phase
	Index int
	Step  *Step
}

// Step returns the main step with the given name, or nil.
func (r *Runbook) Step(name string) *Step {
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Parameter returns the parameter with the given name, or nil.
func (r *Runbook) Parameter(name string) *Parameter {
	for i := range r.Parameters {
		if r.Parameters[i].Name == name {
			return &r.Parameters[i]
		}
	}
	return nil
}

// Name returns metadata.name.
func (r *Runbook) Name() string { return r.Metadata.Name }

// Version returns metadata.version.
func (r *Runbook) Version() string { return r.Metadata.Version }
