package engine

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
)

// LiveRoots are names whose values come from outside systems at run time
// (metrics through Prometheus, cluster objects and health through
// Kubernetes). A runbook may read one only when an integration registered
// for it (Registry.Resolver); otherwise lint refuses the runbook.
var LiveRoots = map[string]bool{"metrics": true, "deployment": true, "pod": true, "healthcheck": true}

// reservedRoots are names conditions and templates read that parameters and
// saved outputs must not take.
var reservedRoots = map[string]bool{"state": true, "secrets": true, "context": true, "trigger": true, "execution": true, "rollback": true, "step": true, "output": true}

// ContextKeys are the names under context.* an execution provides.
var ContextKeys = map[string]bool{
	"environment": true, "restartCount": true, "executionId": true, "runbook": true, "requester": true,
	"triggerType": true, "triggerSource": true, "alertName": true, "alertId": true, "labels": true,
	"now": true, "channel": true, "namespace": true,
	"scheduleTick": true, "scheduleLate": true, "scheduleLateBy": true,
}

var (
	namePattern   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	identPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	stepTrigger   = regexp.MustCompile(`^\s*step\.([A-Za-z0-9_-]+)\.(failed|succeeded|skipped)\s*$`)
	cronParser    = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	paramTypes    = []string{"string", "integer", "boolean", "number"}
	triggerTypes  = []string{"alert", "schedule", "manual", "api"}
	conditionOps  = []string{"in", "notIn", "equals", "notEquals", "exists", "notExists", "matches", "gt", "lt", "gte", "lte"}
	stepOnFailure = []string{"rollback", "continue", "abort"}
	preOnFailure  = []string{"abort", "requestApproval", "continue"}
	approvalTypes = []string{"auto", "manual", "always"}
	approverTypes = []string{"role", "team", "group", "user"}
	workflowTypes = []string{"sequential", "parallel", "any"}
)

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

func choices(v string, set []string) string {
	if c := closest(v, set); c != "" {
		return fmt.Sprintf("did you mean %q? (one of %s)", c, strings.Join(set, ", "))
	}
	return "one of " + strings.Join(set, ", ")
}

// scope is what names a template or condition may use at one place.
type scope struct {
	params   map[string]bool
	state    map[string]bool
	outputs  map[string]bool
	secrets  map[string]bool // nil: any name
	resolved map[string]bool
}

type validator struct {
	d   *decoder
	rb  *Runbook
	reg *Registry
	sc  scope
}

func validateRunbook(rb *Runbook, reg *Registry, secretNames map[string]bool) Diagnostics {
	v := &validator{d: &decoder{file: rb.File}, rb: rb, reg: reg}
	v.dropEmptySteps()
	v.header()
	v.sc = scope{params: map[string]bool{}, state: map[string]bool{}, outputs: map[string]bool{}, secrets: secretNames, resolved: map[string]bool{}}
	for r := range reg.resolvers {
		v.sc.resolved[r] = true
	}
	v.parameters()
	v.triggerParameters()
	// State keys and outputs are known runbook-wide, so a rollback step can
	// read what a main step saved.
	for _, ps := range rb.AllSteps() {
		s := ps.Step
		for _, st := range s.SaveState {
			if st.Key != "" {
				v.sc.state[st.Key] = true
			}
		}
		if s.SaveOutput != "" {
			v.sc.outputs[s.SaveOutput] = true
			if LiveRoots[s.SaveOutput] || reservedRoots[s.SaveOutput] || reg.resolvers[s.SaveOutput] != nil {
				v.d.at(s.Pos.Of("saveOutput"), "choose another name, e.g. "+s.SaveOutput+"Output",
					"steps: saveOutput %q would hide the built-in %q that conditions and templates read", s.SaveOutput, s.SaveOutput)
			}
		}
		if spec, ok := reg.Lookup(s.Type, s.Action); ok {
			for _, k := range spec.SavesState {
				v.sc.state[k] = true
			}
		}
	}
	names := map[string]Pos{}
	for i, s := range rb.Preconditions {
		v.step(s, fmt.Sprintf("preconditions[%d]", i), PhasePrecondition, names)
	}
	if len(rb.Steps) == 0 {
		v.d.at(rb.Pos, "add at least one step under steps:", "runbook has no steps")
	}
	for i, s := range rb.Steps {
		v.step(s, fmt.Sprintf("steps[%d]", i), PhaseStep, names)
	}
	v.approvals(names)
	v.rollback(names)
	return v.d.diags
}

// dropEmptySteps reports list items with nothing in them (`- ` alone) and
// removes them, so nothing after has to expect a missing step.
func (v *validator) dropEmptySteps() {
	drop := func(list []*Step, what string) []*Step {
		out := list[:0]
		for i, s := range list {
			if s == nil {
				v.d.at(v.rb.Pos.Of(what), "give the step a name, type and action, or remove the empty item", "%s[%d] is empty", what, i)
				continue
			}
			out = append(out, s)
		}
		return out
	}
	v.rb.Preconditions = drop(v.rb.Preconditions, "preconditions")
	v.rb.Steps = drop(v.rb.Steps, "steps")
	if v.rb.Rollback != nil {
		for i := range v.rb.Rollback.Procedures {
			v.rb.Rollback.Procedures[i].Steps = drop(v.rb.Rollback.Procedures[i].Steps, "rollback")
		}
	}
}

// triggerParameters checks trigger.parameters against the runbook's
// parameters, and that a scheduled runbook gets every required value from
// a default or from trigger.parameters: nobody is there to type it.
func (v *validator) triggerParameters() {
	t := v.rb.Trigger
	names := make([]string, 0, len(v.rb.Parameters))
	for _, p := range v.rb.Parameters {
		names = append(names, p.Name)
	}
	for _, k := range sortedKeys(boolKeys(t.Parameters)) {
		p := v.rb.Parameter(k)
		if p == nil {
			v.d.at(t.Pos.Of("parameters"), hintFor(k, names), "trigger.parameters.%s is not a parameter of this runbook", k)
			continue
		}
		if _, err := coerce(p, Stringify(t.Parameters[k]), compilePattern(p)); err != nil {
			v.d.at(t.Pos.Of("parameters"), p.Description, "trigger.parameters.%s: %v", k, err)
		}
	}
	if t.Type != "schedule" {
		return
	}
	for _, p := range v.rb.Parameters {
		if _, given := t.Parameters[p.Name]; p.Required && p.Default == nil && !given {
			v.d.at(t.Pos, fmt.Sprintf("give parameter %s a default, or set trigger.parameters.%s", p.Name, p.Name),
				"a scheduled run has nobody to ask: parameter %s is required and nothing supplies it", p.Name)
		}
	}
}

func boolKeys(m map[string]any) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func (v *validator) header() {
	rb := v.rb
	if rb.APIVersion != "runbooks/v1" {
		v.d.at(rb.Pos.Of("apiVersion"), "write apiVersion: runbooks/v1", "apiVersion %q is not supported", rb.APIVersion)
	}
	if rb.Kind != "Runbook" {
		v.d.at(rb.Pos.Of("kind"), "write kind: Runbook", "kind %q is not supported", rb.Kind)
	}
	if rb.Metadata.Name == "" {
		v.d.at(rb.Pos.Of("metadata"), "add metadata.name", "metadata.name is required")
	} else if !namePattern.MatchString(rb.Metadata.Name) {
		v.d.at(rb.Metadata.Pos.Of("name"), "use lower-case letters, digits and dashes", "metadata.name %q is not a valid name", rb.Metadata.Name)
	}
	if rb.Metadata.Version == "" {
		v.d.at(rb.Pos.Of("metadata"), `add metadata.version, e.g. "1.0.0"`, "metadata.version is required")
	}
	t := rb.Trigger
	if !rb.Pos.Has("trigger") {
		// No trigger: started by hand (chat, terminal, API), as the seed's
		// executor defaults.
		rb.Trigger.Type = "manual"
		t = rb.Trigger
	}
	if t.Type == "" {
		v.d.at(rb.Pos.Of("trigger"), "set trigger.type", "trigger.type is required (%s)", strings.Join(triggerTypes, ", "))
	} else if !oneOf(t.Type, triggerTypes) {
		v.d.at(t.Pos.Of("type"), choices(t.Type, triggerTypes), "trigger.type %q is not known", t.Type)
	}
	if t.Type == "alert" && t.AlertName == "" {
		v.d.at(t.Pos, "name the alert with alertName", "trigger.alertName is required for alert triggers")
	}
	if t.Type == "schedule" {
		if t.Schedule == "" {
			v.d.at(t.Pos, `add schedule: "0 3 * * *"`, "trigger.schedule is required for schedule triggers")
		} else if _, err := cronParser.Parse(t.Schedule); err != nil {
			v.d.at(t.Pos.Of("schedule"), `five fields: minute hour day month weekday, e.g. "*/15 * * * *", or @hourly`, "trigger.schedule: bad cron expression: %v", err)
		}
	}
	if t.Timezone != "" {
		if _, err := cronParser.Parse("CRON_TZ=" + t.Timezone + " * * * * *"); err != nil {
			v.d.at(t.Pos.Of("timezone"), "use an IANA zone such as Europe/Berlin", "trigger.timezone %q is not known", t.Timezone)
		}
	}
	for i, c := range t.Conditions {
		if c.Field == "" {
			v.d.at(c.Pos, "name the label or parameter to test", "trigger.conditions[%d].field is required", i)
		}
		if !oneOf(c.Operator, conditionOps) {
			v.d.at(c.Pos.Of("operator"), choices(c.Operator, conditionOps), "trigger.conditions[%d].operator %q is not known", i, c.Operator)
		}
		if c.Operator == "matches" {
			for _, val := range append(c.Values, c.Value) {
				if _, err := regexp.Compile(val); err != nil {
					v.d.at(c.Pos, "fix the regular expression", "trigger.conditions[%d]: %v", i, err)
				}
			}
		}
	}
}

func (v *validator) parameters() {
	for i := range v.rb.Parameters {
		p := &v.rb.Parameters[i]
		what := fmt.Sprintf("parameters[%d]", i)
		if p.Name == "" {
			v.d.at(p.Pos, "give the parameter a name", "%s: name is required", what)
			continue
		}
		if !identPattern.MatchString(p.Name) {
			v.d.at(p.Pos.Of("name"), "use letters, digits and underscores", "%s: %q is not a valid parameter name", what, p.Name)
		}
		if v.sc.params[p.Name] {
			v.d.at(p.Pos.Of("name"), "parameter names must be unique", "%s: parameter %q defined twice", what, p.Name)
		}
		v.sc.params[p.Name] = true
		if p.Type == "" {
			p.Type = "string"
		} else if !oneOf(p.Type, paramTypes) {
			v.d.at(p.Pos.Of("type"), choices(p.Type, paramTypes), "%s: type %q is not known", what, p.Type)
			continue
		}
		var re *regexp.Regexp
		if p.Pattern != "" {
			var err error
			if re, err = regexp.Compile("^(?:" + p.Pattern + ")$"); err != nil {
				v.d.at(p.Pos.Of("pattern"), "fix the regular expression", "%s: bad pattern: %v", what, err)
			}
		}
		for j, e := range p.Enum {
			if _, err := coerce(p, Stringify(e), nil); err != nil {
				v.d.at(p.Pos.Of("enum"), "enum values must have the parameter's type", "%s: enum[%d]: %v", what, j, err)
			}
		}
		if p.Default != nil {
			if _, err := coerce(p, Stringify(p.Default), re); err != nil {
				v.d.at(p.Pos.Of("default"), "make the default valid for the parameter", "%s: default: %v", what, err)
			}
		}
	}
}

func (v *validator) step(s *Step, what string, phase Phase, names map[string]Pos) {
	if s.Name == "" {
		v.d.at(s.Pos, "give every step a name", "%s: name is required", what)
	} else {
		what = fmt.Sprintf("%s (%s)", what, s.Name)
		key := fmt.Sprint(phase == PhaseRollback) + s.Name
		if prev, ok := names[key]; ok {
			v.d.at(s.Pos.Of("name"), fmt.Sprintf("first used at line %d; step names must be unique", prev.Line), "%s: step name %q used twice", what, s.Name)
		} else {
			names[key] = s.Pos.Of("name")
		}
	}
	var spec ActionSpec
	known := false
	if s.Type == "" {
		v.d.at(s.Pos, "set type, e.g. kubernetes, http, wait, notification", "%s: type is required", what)
	} else if how, off := v.reg.unavailableTypes[s.Type]; off {
		v.d.at(s.Pos.Of("type"), how, "%s: %s steps cannot run in this configuration", what, s.Type)
	} else if sp, ok := v.reg.Lookup(s.Type, s.Action); !ok {
		v.d.at(s.Pos.Of("type"), v.reg.lookupHint(s.Type, s.Action), "%s: unknown step type %s/%s", what, s.Type, s.Action)
	} else {
		spec, known = sp, true
	}
	switch phase {
	case PhasePrecondition:
		if s.OnFailure != "" && !oneOf(s.OnFailure, preOnFailure) {
			v.d.at(s.Pos.Of("onFailure"), choices(s.OnFailure, preOnFailure), "%s: onFailure %q is not valid for a precondition", what, s.OnFailure)
		}
	default:
		if s.OnFailure != "" && !oneOf(s.OnFailure, stepOnFailure) {
			v.d.at(s.Pos.Of("onFailure"), choices(s.OnFailure, stepOnFailure), "%s: onFailure %q is not valid", what, s.OnFailure)
		}
	}
	if s.OnSuccess != "" && s.OnSuccess != "complete" && s.OnSuccess != "continue" {
		v.d.at(s.Pos.Of("onSuccess"), "onSuccess: complete ends the runbook early", "%s: onSuccess %q is not valid", what, s.OnSuccess)
	}
	if s.SaveOutput != "" && !identPattern.MatchString(s.SaveOutput) {
		v.d.at(s.Pos.Of("saveOutput"), "use letters, digits and underscores", "%s: saveOutput %q is not a valid name", what, s.SaveOutput)
	}
	if s.SaveOutput != "" && v.sc.params[s.SaveOutput] {
		v.d.at(s.Pos.Of("saveOutput"), "pick another name", "%s: saveOutput %q hides the parameter of that name", what, s.SaveOutput)
	}
	if s.Condition != "" {
		s.cond = v.condition(s.Condition, s.Pos.Of("condition"), what+".condition", phase, nil)
	}
	if ra := s.RequiresApproval; ra != nil {
		if phase != PhaseStep {
			v.d.at(ra.Pos, "approvals gate main steps; use onFailure: requestApproval on preconditions", "%s: requiresApproval is only valid on steps", what)
		}
		if ra.Type == "" {
			ra.Type = "manual"
		} else if !oneOf(ra.Type, approvalTypes) {
			v.d.at(ra.Pos.Of("type"), choices(ra.Type, approvalTypes), "%s: requiresApproval.type %q is not known", what, ra.Type)
		}
		for i, c := range ra.Conditions {
			ra.conds = append(ra.conds, v.condition(c, ra.Pos.Of(fmt.Sprintf("conditions[%d]", i)), fmt.Sprintf("%s.requiresApproval.conditions[%d]", what, i), phase, nil))
		}
	}
	extra := map[string]bool{}
	if known {
		for _, k := range spec.Outputs {
			extra[k] = true
		}
		for _, req := range spec.Required {
			if _, ok := s.Params.Values[req]; !ok {
				v.d.at(s.Pos.Of("params"), fmt.Sprintf("%s/%s needs params.%s", s.Type, s.Action, req), "%s: missing param %q", what, req)
			}
		}
		condParams := map[string]bool{}
		for _, c := range spec.Conditions {
			condParams[c] = true
			if raw, ok := s.Params.Values[c].(string); ok {
				v.condition(raw, s.Params.pos(c, s.Pos.Of("params")), what+".params."+c, phase, nil)
			} else if ok && raw == "" {
				v.d.at(s.Pos.Of("params"), "write the condition as a string", "%s: params.%s must be a condition string", what, c)
			}
		}
		s.Params.strings(func(path, str string, pos Pos) {
			key := strings.TrimPrefix(path, "params.")
			if condParams[key] {
				return
			}
			v.template(str, pos, what+"."+path, phase, nil)
		})
		if spec.Validate != nil {
			if err := spec.Validate(s); err != nil {
				v.d.at(s.Pos.Of("params"), "see the step type's documentation", "%s: %v", what, err)
			}
		}
	}
	for i, st := range s.SaveState {
		if st.Key == "" || !identPattern.MatchString(st.Key) {
			v.d.at(st.Pos, "key: a name for the saved value", "%s.saveState[%d]: key %q is not a valid name", what, i, st.Key)
		}
		if st.Value == "" {
			v.d.at(st.Pos, `value: "{{ expression }}"`, "%s.saveState[%d]: value is required", what, i)
			continue
		}
		extra["output"] = true
		v.template(st.Value, st.Pos.Of("value"), fmt.Sprintf("%s.saveState[%d].value", what, i), phase, extra)
	}
}

// checkRefs reports names that are not known at this place.
func (v *validator) checkRefs(refs []Ref, pos Pos, what string, phase Phase, extra map[string]bool) {
	for _, r := range refs {
		switch {
		case r.Root == "state":
			if r.Member != "" && !v.sc.state[r.Member] {
				v.d.at(pos, "saved state keys: "+keys(v.sc.state), "%s: unknown state %q (no step saves it)", what, r.Member)
			}
		case r.Root == "secrets":
			if r.Member != "" && v.sc.secrets != nil && !v.sc.secrets[r.Member] {
				v.d.at(pos, "secrets defined in the secrets config: "+keys(v.sc.secrets), "%s: unknown secret %q", what, r.Member)
			}
		case r.Root == "context":
			if r.Member != "" && !ContextKeys[r.Member] {
				v.d.at(pos, "context has: "+keys(ContextKeys), "%s: unknown context value %q", what, r.Member)
			}
		case r.Root == "trigger" || r.Root == "execution":
		case r.Root == "rollback" || r.Root == "step":
			if phase != PhaseRollback && r.Root == "rollback" {
				v.d.at(pos, "rollback.* is only set inside rollback procedures", "%s: rollback is not available here", what)
			}
		case v.sc.params[r.Root] && r.Member != "" && (LiveRoots[r.Root] || v.sc.resolved[r.Root]):
			v.d.at(pos, "rename the parameter (e.g. "+r.Root+"Name) so "+r.Root+".* reads live data",
				"%s: %s reads the parameter %q, which hides the live %s data of the same name", what, r, r.Root, r.Root)
		case v.sc.params[r.Root] && r.Member != "":
			v.d.at(pos, "parameters are plain values; use "+r.Root+" alone", "%s: %s reads a member of parameter %q, which is a %s", what, r, r.Root, v.paramType(r.Root))
		case LiveRoots[r.Root] && !v.sc.resolved[r.Root] && !v.sc.params[r.Root] && !v.sc.outputs[r.Root] && !extra[r.Root]:
			v.d.at(pos, v.reg.answerHint(r.Root), "%s: nothing in this configuration answers %s: no integration provides %q", what, r, r.Root)
		case v.sc.params[r.Root], v.sc.outputs[r.Root], v.sc.resolved[r.Root], extra[r.Root]:
		default:
			cands := append(append([]string{}, sortedKeys(v.sc.params)...), sortedKeys(v.sc.outputs)...)
			hint := "parameters: " + keys(v.sc.params)
			if c := closest(r.Root, cands); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			v.d.at(pos, hint, "%s: unknown name %q (not a parameter, saved output or known value)", what, r.Root)
		}
	}
}

func (v *validator) paramType(name string) string {
	if p := v.rb.Parameter(name); p != nil && p.Type != "" {
		return p.Type
	}
	return "string"
}

func keys(m map[string]bool) string {
	k := sortedKeys(m)
	if len(k) == 0 {
		return "(none)"
	}
	return strings.Join(k, ", ")
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (v *validator) condition(src string, pos Pos, what string, phase Phase, extra map[string]bool) *Condition {
	c, err := CompileCondition(src)
	if err != nil {
		v.d.at(pos, "conditions are expr-lang expressions, e.g. context.restartCount < maxRestarts", "%s: %v", what, err)
		return nil
	}
	v.checkRefs(c.Refs(), pos, what, phase, extra)
	return c
}

func (v *validator) template(src string, pos Pos, what string, phase Phase, extra map[string]bool) {
	if !HasTemplate(src) && !strings.Contains(src, "}}") {
		return
	}
	t, err := ParseTemplate(src, v.reg.filters)
	if err != nil {
		v.d.at(pos, "templates look like {{ name }} or {{ name | filter }}", "%s: %v", what, err)
		return
	}
	v.checkRefs(t.Refs(), pos, what, phase, extra)
}

func (v *validator) approvals(steps map[string]Pos) {
	seen := map[string]bool{}
	for i, a := range v.rb.Approvals {
		what := fmt.Sprintf("approvals[%d]", i)
		if a.Name == "" {
			v.d.at(a.Pos, "give the approval a name", "%s: name is required", what)
		} else if seen[a.Name] {
			v.d.at(a.Pos.Of("name"), "approval names must be unique", "%s: approval %q defined twice", what, a.Name)
		}
		seen[a.Name] = true
		if a.Type == "override" {
			if len(a.Permissions) == 0 {
				v.d.at(a.Pos, "list who may bypass: permissions: [{role: sre-lead}]", "%s: an override needs permissions", what)
			}
			for j, p := range a.Permissions {
				n := 0
				for _, s := range []string{p.Role, p.Group, p.User} {
					if s != "" {
						n++
					}
				}
				if n != 1 {
					v.d.at(p.Pos, "write one of role, group or user", "%s.permissions[%d]: needs exactly one of role, group or user", what, j)
				}
			}
			if a.AuditLevel != "" && !oneOf(a.AuditLevel, []string{"info", "warning", "critical"}) {
				v.d.at(a.Pos.Of("auditLevel"), "one of info, warning, critical", "%s: auditLevel %q is not known", what, a.AuditLevel)
			}
			continue
		}
		if a.Type != "" {
			v.d.at(a.Pos.Of("type"), `leave type out for a step approval, or use type: override`, "%s: type %q is not known", what, a.Type)
		}
		if a.Trigger == nil || a.Trigger.Step == "" {
			v.d.at(a.Pos, "add trigger.step naming the gated step", "%s: trigger.step is required", what)
		} else if _, ok := steps["false"+a.Trigger.Step]; !ok {
			v.d.at(a.Trigger.Pos.Of("step"), hintFor(a.Trigger.Step, v.stepNames()), "%s: trigger.step %q is not a step of this runbook", what, a.Trigger.Step)
		}
		if a.Trigger != nil {
			for j, c := range a.Trigger.Conditions {
				a.Trigger.conds = append(a.Trigger.conds, v.condition(c, a.Trigger.Pos.Of(fmt.Sprintf("conditions[%d]", j)), fmt.Sprintf("%s.trigger.conditions[%d]", what, j), PhaseStep, nil))
			}
		}
		if a.Workflow == nil {
			v.d.at(a.Pos, "add a workflow with timeout and approvers", "%s: workflow is required", what)
			continue
		}
		w := a.Workflow
		if w.Type != "" && !oneOf(w.Type, workflowTypes) {
			v.d.at(w.Pos.Of("type"), choices(w.Type, workflowTypes), "%s.workflow.type %q is not known", what, w.Type)
		}
		var last Duration
		for j, e := range w.Escalation {
			if e.After <= 0 {
				v.d.at(e.Pos, "after: 5m", "%s.workflow.escalation[%d]: after must be a positive duration", what, j)
			}
			if e.After < last {
				v.d.at(e.Pos.Of("after"), "list escalation tiers in time order", "%s.workflow.escalation[%d]: after %s comes before the previous tier", what, j, e.After.D())
			}
			if w.Timeout > 0 && e.After >= w.Timeout {
				v.d.at(e.Pos.Of("after"), "escalate before the approval times out", "%s.workflow.escalation[%d]: after %s is not before the timeout %s", what, j, e.After.D(), w.Timeout.D())
			}
			if len(e.Notify) == 0 {
				v.d.at(e.Pos, "notify: [oncall-secondary]", "%s.workflow.escalation[%d]: notify is empty", what, j)
			}
			last = e.After
		}
		for j, ap := range w.Approvers {
			if !oneOf(ap.Type, approverTypes) {
				v.d.at(ap.Pos.Of("type"), choices(ap.Type, approverTypes), "%s.workflow.approvers[%d].type %q is not known", what, j, ap.Type)
			}
			if ap.Value == "" {
				v.d.at(ap.Pos, "value: the role, team, group or user", "%s.workflow.approvers[%d].value is required", what, j)
			}
			if ap.MinApprovals < 0 {
				v.d.at(ap.Pos.Of("minApprovals"), "use 1 or more", "%s.workflow.approvers[%d].minApprovals must not be negative", what, j)
			}
		}
		if w.Actions != nil {
			for j, b := range append(append([]Button{}, w.Actions.Approve...), w.Actions.Reject...) {
				if b.Label == "" || b.Value == "" {
					v.d.at(b.Pos, "each button needs label and value", "%s.workflow.actions[%d]: label and value are required", what, j)
				}
			}
		}
	}
}

func (v *validator) stepNames() []string {
	var out []string
	for _, s := range v.rb.Preconditions {
		out = append(out, s.Name)
	}
	for _, s := range v.rb.Steps {
		out = append(out, s.Name)
	}
	return out
}

func (v *validator) rollback(names map[string]Pos) {
	rb := v.rb.Rollback
	if rb == nil {
		return
	}
	procs := map[string]bool{}
	for i, p := range rb.Procedures {
		what := fmt.Sprintf("rollback.procedures[%d]", i)
		if p.Name == "" {
			v.d.at(p.Pos, "give the procedure a name", "%s: name is required", what)
		} else if procs[p.Name] {
			v.d.at(p.Pos.Of("name"), "procedure names must be unique", "%s: procedure %q defined twice", what, p.Name)
		}
		procs[p.Name] = true
		if len(p.Steps) == 0 {
			v.d.at(p.Pos, "add steps to the procedure", "%s: no steps", what)
		}
		for j, c := range p.Conditions {
			rb.Procedures[i].conds = append(rb.Procedures[i].conds, v.condition(c, p.Pos.Of(fmt.Sprintf("conditions[%d]", j)), fmt.Sprintf("%s.conditions[%d]", what, j), PhaseRollback, nil))
		}
		for j, s := range p.Steps {
			v.step(s, fmt.Sprintf("%s.steps[%d]", what, j), PhaseRollback, names)
		}
	}
	for i := range rb.Triggers {
		t := &rb.Triggers[i]
		what := fmt.Sprintf("rollback.triggers[%d]", i)
		if t.Action == "" {
			v.d.at(t.Pos, "action: the procedure to run", "%s: action is required", what)
		} else if !procs[t.Action] {
			v.d.at(t.Pos.Of("action"), hintFor(t.Action, sortedKeys(procs)), "%s: action %q is not a rollback procedure", what, t.Action)
		}
		if t.ConsecutiveFailures < 0 {
			v.d.at(t.Pos.Of("consecutiveFailures"), "use 1 or more", "%s: consecutiveFailures must not be negative", what)
		}
		if m := stepTrigger.FindStringSubmatch(t.Condition); m != nil {
			if _, ok := names["false"+m[1]]; !ok {
				v.d.at(t.Pos.Of("condition"), hintFor(m[1], v.stepNames()), "%s: condition names step %q, which this runbook does not have", what, m[1])
			}
			t.stepName, t.stepStatus = m[1], m[2]
			continue
		}
		if t.Condition == "" {
			v.d.at(t.Pos, `condition: "step.NAME.failed" or an expression`, "%s: condition is required", what)
			continue
		}
		t.cond = v.condition(t.Condition, t.Pos.Of("condition"), what+".condition", PhaseStep, nil)
	}
}

// coerce converts a textual parameter value to the parameter's type and
// checks enum and pattern.
func coerce(p *Parameter, s string, re *regexp.Regexp) (any, error) {
	var v any
	switch p.Type {
	case "integer":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if ferr != nil || f != float64(int64(f)) {
				return nil, fmt.Errorf("%q is not a whole number", s)
			}
			n = int64(f)
		}
		v = int(n)
	case "number":
		f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		v = f
	case "boolean":
		b, err := strconv.ParseBool(strings.ToLower(strings.TrimSpace(s)))
		if err != nil {
			switch strings.ToLower(s) {
			case "yes", "on":
				b, err = true, nil
			case "no", "off":
				b, err = false, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		v = b
	default:
		v = s
	}
	if re != nil && !re.MatchString(s) {
		return nil, fmt.Errorf("%q does not match pattern %s", s, p.Pattern)
	}
	if len(p.Enum) > 0 {
		ok := false
		var opts []string
		for _, e := range p.Enum {
			opts = append(opts, Stringify(e))
			if Stringify(e) == Stringify(v) {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(opts, ", "))
		}
	}
	return v, nil
}
