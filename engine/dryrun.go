package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Plan is what an execution would do: the seed's DryRunExecutor summary.
type Plan struct {
	Runbook          string         `json:"runbook"`
	Version          string         `json:"version"`
	Parameters       map[string]any `json:"parameters"`
	Steps            []PlanStep     `json:"steps"`
	ApprovalsNeeded  int            `json:"approvalsNeeded"`
	EstimatedSeconds int            `json:"estimatedSeconds"`
	Rollback         []PlanStep     `json:"rollback,omitempty"`
	// Watch is the post-change watch of the metric and health rollback
	// triggers; WatchSeconds is how long it lasts.
	Watch        []PlanWatch `json:"watch,omitempty"`
	WatchSeconds int         `json:"watchSeconds,omitempty"`
}

// PlanWatch is one watched rollback trigger.
type PlanWatch struct {
	Condition    string `json:"condition"`
	EverySeconds int    `json:"everySeconds"`
	Checks       int    `json:"checks"`
	Procedure    string `json:"procedure"`
}

// PlanStep is one step of a plan. Preconditions are named
// precondition-NAME, as in the seed.
type PlanStep struct {
	Name             string         `json:"name"`
	Type             string         `json:"type"`
	Action           string         `json:"action"`
	Params           map[string]any `json:"params"`
	ApprovalRequired bool           `json:"approvalRequired"`
	ApprovalReason   string         `json:"approvalReason,omitempty"`
	Condition        string         `json:"condition,omitempty"`
	EstimatedSeconds int            `json:"estimatedSeconds"`
}

// DryRun builds the plan for rb with the given parameters (validated and
// coerced as a real start would). Secrets are shown masked and never
// fetched; values only known at run time (state, outputs, live data) are
// shown as written.
func DryRun(ctx context.Context, reg *Registry, rb *Runbook, in map[string]any, extraContext map[string]any) (*Plan, error) {
	params, err := ResolveParams(rb, in)
	if err != nil {
		return nil, err
	}
	x := &run{rb: rb, params: params, state: map[string]any{}, outputs: map[string]any{}, steps: map[string]any{}}
	shown := x.maskedParams()
	env := map[string]any{}
	for k, v := range shown {
		env[k] = v
	}
	c := map[string]any{"environment": Stringify(params["environment"]), "restartCount": 0, "namespace": Stringify(params["namespace"]), "requester": "dry-run", "triggerType": "manual", "labels": map[string]any{}}
	if c["environment"] == "" {
		c["environment"] = c["namespace"]
	}
	for k, v := range extraContext {
		c[k] = v
	}
	env["context"] = c
	env["state"] = map[string]any{}
	p := &Plan{Runbook: rb.Name(), Version: rb.Version(), Parameters: shown}
	for _, pc := range rb.Preconditions {
		ps := planStep(ctx, reg, pc, env, 5*time.Second)
		if pc.Timeout == 0 {
			ps.EstimatedSeconds = 5 // the seed's estimate for a check
		}
		ps.Name = "precondition-" + pc.Name
		ps.ApprovalRequired = pc.OnFailure == "requestApproval"
		if ps.ApprovalRequired {
			ps.ApprovalReason = "if the check fails"
		}
		p.add(ps)
	}
	for _, st := range rb.Steps {
		ps := planStep(ctx, reg, st, env, 30*time.Second)
		if st.RequiresApproval != nil || x.workflowFor(st.Name) != nil {
			ps.ApprovalRequired, ps.ApprovalReason = NeedsApproval(ctx, st, x.workflowFor(st.Name), env)
		}
		p.add(ps)
	}
	if rb.Rollback != nil {
		var plans []*watchPlan
		for _, t := range x.watchTriggers() {
			every, needed := WatchSchedule(t)
			plans = append(plans, &watchPlan{every: every, needed: needed})
			p.Watch = append(p.Watch, PlanWatch{Condition: t.Condition, EverySeconds: int(every.Seconds()), Checks: needed, Procedure: t.Action})
		}
		p.WatchSeconds = int(watchLength(plans).Seconds())
		for _, proc := range rb.Rollback.Procedures {
			for _, st := range proc.Steps {
				ps := planStep(ctx, reg, st, env, 30*time.Second)
				ps.Name = proc.Name + "/" + st.Name
				p.Rollback = append(p.Rollback, ps)
			}
		}
	}
	return p, nil
}

func (p *Plan) add(ps PlanStep) {
	p.Steps = append(p.Steps, ps)
	p.EstimatedSeconds += ps.EstimatedSeconds
	if ps.ApprovalRequired {
		p.ApprovalsNeeded++
	}
}

func planStep(ctx context.Context, reg *Registry, st *Step, env map[string]any, def time.Duration) PlanStep {
	ps := PlanStep{Name: st.Name, Type: st.Type, Action: st.Action, Condition: st.Condition, Params: map[string]any{}}
	spec, _ := reg.Lookup(st.Type, st.Action)
	skip := map[string]bool{}
	for _, c := range spec.Conditions {
		skip[c] = true
	}
	for k, v := range st.Params.Values {
		if skip[k] {
			ps.Params[k] = v
			continue
		}
		ps.Params[k] = planValue(ctx, reg, v, env)
	}
	est := st.Timeout.D()
	if est == 0 && spec.Estimate != nil {
		est = spec.Estimate(st)
	}
	if est == 0 {
		est = def
	}
	ps.EstimatedSeconds = int(est.Seconds())
	return ps
}

// planValue renders templates that only need parameters and context;
// secrets show as masked and run-time values stay as written.
func planValue(ctx context.Context, reg *Registry, v any, env map[string]any) any {
	switch t := v.(type) {
	case string:
		if !HasTemplate(t) {
			return t
		}
		tp, err := ParseTemplate(t, reg.filters)
		if err != nil {
			return t
		}
		local := env
		for _, r := range tp.Refs() {
			switch {
			case r.Root == "secrets":
				sec, ok := local["secrets"].(map[string]any)
				if !ok {
					sec = map[string]any{}
					local = withKey(env, "secrets", sec)
				}
				sec[r.Member] = Mask
			case r.Root == "state":
				return t
			default:
				if _, ok := env[r.Root]; !ok {
					return t
				}
			}
		}
		out, err := tp.Render(ctx, local, reg.filters)
		if err != nil {
			return t
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = planValue(ctx, reg, e, env)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = planValue(ctx, reg, e, env)
		}
		return out
	}
	return v
}

func withKey(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// Text renders the plan as the seed's DRY RUN SUMMARY.
func (p *Plan) Text() string {
	var b strings.Builder
	line := strings.Repeat("=", 60)
	thin := strings.Repeat("-", 60)
	fmt.Fprintf(&b, "%s\nDRY RUN SUMMARY\n%s\n", line, line)
	fmt.Fprintf(&b, "Runbook: %s\nVersion: %s\n", p.Runbook, p.Version)
	keys := make([]string, 0, len(p.Parameters))
	for k := range p.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		b.WriteString("Parameters:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, Stringify(p.Parameters[k]))
		}
	}
	b.WriteString(thin + "\n")
	for _, s := range p.Steps {
		status := "AUTO"
		if s.ApprovalRequired {
			status = "APPROVAL REQUIRED"
		}
		fmt.Fprintf(&b, "\n[%s] %s\n", status, s.Name)
		fmt.Fprintf(&b, "  Type: %s/%s\n", s.Type, s.Action)
		if s.Condition != "" {
			fmt.Fprintf(&b, "  Runs only if: %s\n", s.Condition)
		}
		if s.ApprovalReason != "" && s.ApprovalRequired {
			fmt.Fprintf(&b, "  Approval: %s\n", s.ApprovalReason)
		}
		js, _ := json.MarshalIndent(s.Params, "  ", "    ")
		fmt.Fprintf(&b, "  Would execute: %s\n", js)
		fmt.Fprintf(&b, "  Estimated duration: %ds\n", s.EstimatedSeconds)
	}
	if len(p.Watch) > 0 {
		fmt.Fprintf(&b, "\n%s\nAfter the last step, watch for %ds (not in the estimate) and roll back if:\n", thin, p.WatchSeconds)
		for _, w := range p.Watch {
			fmt.Fprintf(&b, "  - %s holds %d checks in a row, every %ds (%s)\n", w.Condition, w.Checks, w.EverySeconds, w.Procedure)
		}
	}
	if len(p.Rollback) > 0 {
		b.WriteString("\n" + thin + "\nOn failure, rollback would run:\n")
		for _, s := range p.Rollback {
			fmt.Fprintf(&b, "  - %s (%s/%s)\n", s.Name, s.Type, s.Action)
		}
	}
	fmt.Fprintf(&b, "\n%s\nTotal steps: %d\nApprovals needed: %d\nEstimated total duration: %ds\n%s\n", thin, len(p.Steps), p.ApprovalsNeeded, p.EstimatedSeconds, line)
	return b.String()
}
