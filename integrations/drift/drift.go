// Package drift finds runbooks whose targets no longer match the
// infrastructure (the seed's "Drift Detection"): a Deployment, Namespace or
// Secret a runbook names that does not exist, a metric query that returns
// no series, an HTTP health endpoint (an http get step) that does not
// answer, an approver role or team no RBAC group defines. Each Finding
// names the runbook's file and line.
//
// Targets are read from the runbook as written: literal values, and
// templates over parameters whose values are known without an execution,
// that is the parameters' defaults, the trigger's parameters, and each
// alert mapping of the runbook with the labels its conditions fix
// (`namespace: "payments"`) and its literal parameters. A target whose
// template needs a value known only when it runs (state, a pod name from
// the alert) is not checked, and Report.Unchecked says so.
//
// The checks run against interfaces (Cluster, Metrics) that the wiring
// implements with the Kubernetes and Prometheus integrations; HTTP probes
// use net/http with a short timeout and never send anything but GET.
package drift

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Kind is what a finding is about.
type Kind string

// Finding kinds.
const (
	KindNamespace  Kind = "namespace"
	KindDeployment Kind = "deployment"
	KindSecret     Kind = "secret"
	KindMetric     Kind = "metric"
	KindHTTP       Kind = "http"
	KindApprover   Kind = "approver"
)

// Kinds lists every kind, for exporting zero counts.
var Kinds = []Kind{KindNamespace, KindDeployment, KindSecret, KindMetric, KindHTTP, KindApprover}

// Finding is one target that does not match.
type Finding struct {
	Runbook string `json:"runbook"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Kind    Kind   `json:"kind"`
	Target  string `json:"target"`
	Message string `json:"message"`
}

// String formats the finding as file:line:col: runbook NAME: message.
func (f Finding) String() string {
	return fmt.Sprintf("%s:%d:%d: runbook %s: %s", f.File, f.Line, f.Col, f.Runbook, f.Message)
}

// Key identifies a finding across checks (to tell what changed).
func (f Finding) Key() string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d", f.Runbook, f.Kind, f.Target, f.Line)
}

// Unchecked is a target that could not be checked, and why.
type Unchecked struct {
	Runbook string `json:"runbook"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Kind    Kind   `json:"kind"`
	Reason  string `json:"reason"`
}

// Report is the result of one check.
type Report struct {
	Findings  []Finding   `json:"findings"`
	Unchecked []Unchecked `json:"unchecked,omitempty"`
	// Runbooks are the runbooks checked.
	Runbooks []string `json:"runbooks"`
}

// Counts returns findings per runbook and kind, with zeros for every
// runbook checked (for metrics).
func (r Report) Counts() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, rb := range r.Runbooks {
		out[rb] = map[string]int{}
		for _, k := range Kinds {
			out[rb][string(k)] = 0
		}
	}
	for _, f := range r.Findings {
		if out[f.Runbook] == nil {
			out[f.Runbook] = map[string]int{}
		}
		out[f.Runbook][string(f.Kind)]++
	}
	return out
}

// Cluster answers whether Kubernetes objects exist. kind is namespace,
// deployment or secret; namespace is empty for namespaces.
type Cluster interface {
	Exists(ctx context.Context, kubeContext string, kind Kind, namespace, name string) (bool, error)
}

// Metrics answers whether a named metric query returns series for vars.
type Metrics interface {
	HasSeries(ctx context.Context, name string, vars map[string]any) (bool, error)
}

// Checker runs the checks. Nil Cluster or Metrics leave those targets
// unchecked.
type Checker struct {
	Cluster Cluster
	Metrics Metrics
	// HTTP probes health endpoints (default: 5s timeout, no redirects
	// followed beyond net/http's default).
	HTTP *http.Client
	// Filters render templates (default engine.BuiltinFilters).
	Filters map[string]engine.FilterFunc
}

// Check checks every runbook of the catalog.
func (c *Checker) Check(ctx context.Context, cat *engine.Catalog) Report {
	var rep Report
	if cat == nil {
		return rep
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Filters == nil {
		c.Filters = engine.BuiltinFilters()
	}
	names := cat.Names()
	rep.Runbooks = names
	for _, name := range names {
		rb := cat.Runbooks[name]
		r := &run{c: c, cat: cat, rb: rb, rep: &rep, seen: map[string]bool{}}
		r.check(ctx)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return rep
}

// run checks one runbook.
type run struct {
	c    *Checker
	cat  *engine.Catalog
	rb   *engine.Runbook
	rep  *Report
	seen map[string]bool // findings already reported (one per target and line)
}

func (r *run) find(pos engine.Pos, kind Kind, target, format string, args ...any) {
	f := Finding{Runbook: r.rb.Name(), File: r.rb.File, Line: pos.Line, Col: pos.Col, Kind: kind, Target: target, Message: fmt.Sprintf(format, args...)}
	if r.seen[f.Key()] {
		return
	}
	r.seen[f.Key()] = true
	r.rep.Findings = append(r.rep.Findings, f)
}

func (r *run) unchecked(pos engine.Pos, kind Kind, reason string) {
	key := fmt.Sprintf("u\x00%s\x00%d\x00%s", kind, pos.Line, reason)
	if r.seen[key] {
		return
	}
	r.seen[key] = true
	r.rep.Unchecked = append(r.rep.Unchecked, Unchecked{Runbook: r.rb.Name(), File: r.rb.File, Line: pos.Line, Kind: kind, Reason: reason})
}

func (r *run) check(ctx context.Context) {
	bindings := r.bindings()
	for _, ps := range r.rb.AllSteps() {
		for _, b := range bindings {
			r.step(ctx, ps.Step, b)
		}
	}
	for _, b := range bindings {
		r.conditions(ctx, b)
	}
	r.approvers()
}

// binding is one set of parameter values a runbook runs with.
type binding struct {
	vars map[string]any
	// from says where the values came from, for messages ("" = defaults).
	from string
}

// bindings returns the parameter sets known without an execution.
func (r *run) bindings() []binding {
	base := map[string]any{}
	for _, p := range r.rb.Parameters {
		if p.Default != nil {
			base[p.Name] = p.Default
		}
	}
	for k, v := range r.rb.Trigger.Parameters {
		base[k] = v
	}
	out := []binding{{vars: base}}
	if r.cat.Mappings == nil {
		return out
	}
	for _, m := range r.cat.Mappings.Mappings {
		if m.Runbook != r.rb.Name() {
			continue
		}
		labels := map[string]any{"alertname": m.Alert}
		for _, c := range m.Conds {
			if c.Op == "==" {
				labels[c.Label] = c.Value
			}
		}
		vars := map[string]any{}
		for k, v := range base {
			vars[k] = v
		}
		env := map[string]any{"dollar_labels": labels, "dollar_annotations": map[string]any{}}
		added := false
		for k, t := range m.Params {
			if !rootsKnown(t.Refs(), env) {
				continue
			}
			v, err := t.Render(context.Background(), env, r.c.Filters)
			if err != nil || v == nil || v == "" {
				continue
			}
			vars[k] = v
			added = true
		}
		if added {
			out = append(out, binding{vars: vars, from: fmt.Sprintf("alert %s (%s:%d)", m.Alert, r.cat.Mappings.File, m.Pos.Line)})
		}
	}
	return out
}

// rootsKnown reports whether every name the template reads is in env,
// with the member when it reads one of a map.
func rootsKnown(refs []engine.Ref, env map[string]any) bool {
	for _, ref := range refs {
		v, ok := env[ref.Root]
		if !ok {
			return false
		}
		if ref.Member != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return false
			}
			if _, ok := m[ref.Member]; !ok {
				return false
			}
		}
	}
	return true
}

// value renders a step param with the binding; ok is false when it needs
// a value only an execution has.
func (r *run) value(st *engine.Step, key string, b binding) (string, bool) {
	raw, present := st.Params.Values[key]
	if !present || raw == nil {
		return "", false
	}
	s, isString := raw.(string)
	if !isString {
		return engine.Stringify(raw), true
	}
	if !engine.HasTemplate(s) {
		return strings.TrimSpace(s), true
	}
	t, err := engine.ParseTemplate(s, r.c.Filters)
	if err != nil || !rootsKnown(t.Refs(), b.vars) {
		return "", false
	}
	v, err := t.Render(context.Background(), b.vars, r.c.Filters)
	if err != nil {
		return "", false
	}
	out := strings.TrimSpace(engine.Stringify(v))
	return out, out != ""
}

func (b binding) suffix() string {
	if b.from == "" {
		return ""
	}
	return " (with the values of " + b.from + ")"
}
