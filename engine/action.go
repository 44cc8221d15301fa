package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Action runs one step. An error fails the step; its message is shown to
// people, so it should say what went wrong in their terms.
type Action interface {
	Run(ctx context.Context, call *Call) (Result, error)
}

// ActionFunc adapts a function to Action.
type ActionFunc func(ctx context.Context, call *Call) (Result, error)

// Run calls f.
func (f ActionFunc) Run(ctx context.Context, call *Call) (Result, error) { return f(ctx, call) }

// Result is what a step produced. Output is saved under saveOutput and is
// visible to the step's saveState templates at the top level; State is saved
// into the execution state as is (e.g. previousRevision).
type Result struct {
	Output map[string]any
	State  map[string]any
}

// Call is one invocation of an action.
type Call struct {
	ExecutionID string
	Runbook     *Runbook
	Step        *Step
	Phase       Phase
	// Params are the step's params with templates rendered.
	Params map[string]any
	// Vars are the execution's parameters and state, for actions that
	// resolve names themselves.
	Vars  map[string]any
	Clock Clock
	// Conditions holds the compiled condition params (ActionSpec.Conditions).
	Conditions map[string]*Condition
	// Eval evaluates a condition against live data (metrics, cluster
	// objects) fetched fresh for this call.
	Eval func(ctx context.Context, c *Condition) (bool, error)
	// DryRun is set when the call is a plan, not an execution.
	DryRun bool
	// Started is when the step first started: earlier than now when a
	// restart interrupted it and it runs again, so waits resume with the
	// time they have left.
	Started time.Time
	// Redact masks the execution's secrets in text that leaves the engine
	// (a notification's message).
	Redact func(string) string
}

// String returns a string param.
func (c *Call) String(key string) string {
	return Stringify(c.Params[key])
}

// Duration returns a duration param, or def when it is absent.
func (c *Call) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := c.Params[key]
	if !ok || v == nil || v == "" {
		return def, nil
	}
	d, err := ParseDuration(Stringify(v))
	if err != nil {
		return 0, fmt.Errorf("param %s: %w", key, err)
	}
	return d, nil
}

// ActionSpec registers an action under a step type and action name.
type ActionSpec struct {
	Type   string
	Action string // "*" accepts every action name of the type
	Run    Action
	// Required params must be present.
	Required []string
	// Conditions are params holding expr conditions, compiled at load.
	Conditions []string
	// SavesState lists state keys the action saves on its own.
	SavesState []string
	// Outputs lists names the action's output exposes to saveState.
	Outputs []string
	// Estimate is the dry-run duration when the step has no timeout.
	Estimate func(step *Step) time.Duration
	// Mutating actions change outside systems; dry runs never call them.
	Mutating bool
	// Idempotent actions are safe to repeat (waits, checks, logging): a
	// step interrupted by a restart is run again even when the runbook does
	// not mark it idempotent.
	Idempotent bool
	// Validate checks params beyond Required at lint time.
	Validate func(step *Step) error
}

// ResolveFunc supplies live data for a root name in conditions and
// templates (metrics.x, deployment.status...). members are the first-level
// names read under the root; vars are the execution's parameters and state.
type ResolveFunc func(ctx context.Context, members []string, vars map[string]any) (any, error)

// Registry holds the step actions, template filters and live-data resolvers
// a catalog can use.
type Registry struct {
	actions     map[string]ActionSpec
	filters     map[string]FilterFunc
	resolvers   map[string]ResolveFunc
	unavailable map[string]string
	// unavailableTypes are step types whose integration is not configured.
	unavailableTypes map[string]string
}

// NewRegistry returns a registry with the built-in filters and no actions.
// Use RegisterBuiltins for the built-in step types.
func NewRegistry() *Registry {
	return &Registry{actions: map[string]ActionSpec{}, filters: BuiltinFilters(), resolvers: map[string]ResolveFunc{}}
}

// Register adds or replaces an action.
func (r *Registry) Register(spec ActionSpec) {
	r.actions[spec.Type+"."+spec.Action] = spec
}

// Filter adds or replaces a template filter.
func (r *Registry) Filter(name string, f FilterFunc) { r.filters[name] = f }

// Resolver adds or replaces the live-data source for a root name.
func (r *Registry) Resolver(root string, f ResolveFunc) { r.resolvers[root] = f }

// Unavailable records why a live root has no resolver in this
// configuration and what would provide it ("set PROMETHEUS_URL …"); lint
// quotes it when a runbook reads the root.
func (r *Registry) Unavailable(root, how string) {
	if r.unavailable == nil {
		r.unavailable = map[string]string{}
	}
	r.unavailable[root] = how
}

// UnavailableType records that steps of typ cannot run in this
// configuration and what would make them run; lint refuses such steps with
// that hint instead of calling the type unknown.
func (r *Registry) UnavailableType(typ, how string) {
	if r.unavailableTypes == nil {
		r.unavailableTypes = map[string]string{}
	}
	r.unavailableTypes[typ] = how
}

// Answers reports whether a resolver is registered for root.
func (r *Registry) Answers(root string) bool { return r.resolvers[root] != nil }

func (r *Registry) answerHint(root string) string {
	if h := r.unavailable[root]; h != "" {
		return h
	}
	return "register an integration that provides " + root + " (see README: integrations)"
}

// Lookup finds the action for a step.
func (r *Registry) Lookup(typ, action string) (ActionSpec, bool) {
	if s, ok := r.actions[typ+"."+action]; ok {
		return s, true
	}
	s, ok := r.actions[typ+".*"]
	return s, ok
}

// Filters returns the template filters.
func (r *Registry) Filters() map[string]FilterFunc { return r.filters }

// types lists the registered step types and their actions, for hints.
func (r *Registry) types() map[string][]string {
	out := map[string][]string{}
	for _, s := range r.actions {
		out[s.Type] = append(out[s.Type], s.Action)
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func (r *Registry) lookupHint(typ, action string) string {
	types := r.types()
	if acts, ok := types[typ]; ok {
		if c := closest(action, acts); c != "" {
			return fmt.Sprintf("did you mean %q?", c)
		}
		return fmt.Sprintf("%s actions: %s", typ, strings.Join(acts, ", "))
	}
	names := make([]string, 0, len(types))
	for t := range types {
		names = append(names, t)
	}
	sort.Strings(names)
	if c := closest(typ, names); c != "" {
		return fmt.Sprintf("did you mean %q?", c)
	}
	return "known types: " + strings.Join(names, ", ")
}
