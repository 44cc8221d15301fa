package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// SecretSource resolves `secrets.NAME` at run time. The value is a string,
// or a map of strings for secrets with several fields.
type SecretSource interface {
	Secret(ctx context.Context, name string) (any, error)
}

// Approvers answers who may decide an approval. RBAC implements it; a nil
// Approvers lets anyone but the requester approve.
type Approvers interface {
	// Satisfies reports whether user counts for ref (a role, team, group or
	// user named in a workflow's approvers).
	Satisfies(ctx context.Context, user string, ref ApproverRef) (bool, error)
	// CanBypass reports whether user holds one of an override's permissions.
	CanBypass(ctx context.Context, user string, perms []Permission) (bool, error)
}

// Config wires an Engine.
type Config struct {
	Store     Store
	Registry  *Registry
	Catalog   *Catalog
	Clock     Clock
	Approvers Approvers
	Secrets   SecretSource
	Logger    *slog.Logger
	// DefaultApprovalTimeout applies to approvals with no workflow timeout.
	DefaultApprovalTimeout time.Duration
	// DefaultStepTimeout bounds steps that set no timeout (0: unbounded).
	DefaultStepTimeout time.Duration
	// NewID makes execution ids (default: UUIDv4).
	NewID func() string
	// Leases, when set, make replicas sharing a store drive each execution
	// from one place; Owner names this replica (default: a fresh id).
	Leases   Leaser
	Owner    string
	LeaseTTL time.Duration
	// Forwarder delivers decisions for executions another replica drives.
	Forwarder Forwarder
}

// Engine starts, resumes and drives executions.
type Engine struct {
	cfg    Config
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	runs   map[string]*run
	subs   map[int]func(Event)
	nextID int
	take   takeover // executions being taken over (takeover.go)
}

// Errors callers branch on.
var (
	ErrSelfApproval          = errors.New("the requester cannot approve their own execution")
	ErrNotApprover           = errors.New("you are not an approver for this step")
	ErrAlreadyDecided        = errors.New("this approval has already been decided")
	ErrAlreadyVoted          = errors.New("you have already approved this step")
	ErrJustificationRequired = errors.New("an emergency bypass needs a justification")
	ErrCommentRequired       = errors.New("this choice needs a comment")
	ErrNoBypass              = errors.New("this runbook has no emergency bypass")
	ErrNotActive             = errors.New("execution is not running on this bot")
	ErrFinished              = errors.New("execution has already finished")
	ErrCancelling            = errors.New("this execution is being cancelled")
)

// New returns an engine. Call Recover to resume unfinished executions, and
// Close to stop.
func New(cfg Config) *Engine {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultApprovalTimeout == 0 {
		cfg.DefaultApprovalTimeout = time.Hour
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return uuid.NewString() }
	}
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry()
	}
	if cfg.Owner == "" {
		cfg.Owner = uuid.NewString()
	}
	ctx, stop := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, ctx: ctx, stop: stop, runs: map[string]*run{}, subs: map[int]func(Event){}}
	if cfg.Leases != nil {
		e.wg.Add(1)
		go e.renewLeases()
	}
	return e
}

// Owner names this replica in leases.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Catalog returns the runbooks the engine runs.
func (e *Engine) Catalog() *Catalog {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg.Catalog
}

// SetCatalog swaps the runbooks (a reload). Running executions keep theirs.
func (e *Engine) SetCatalog(c *Catalog) {
	e.mu.Lock()
	e.cfg.Catalog = c
	e.mu.Unlock()
}

// Registry returns the step actions, filters and resolvers.
func (e *Engine) Registry() *Registry { return e.cfg.Registry }

// Store returns the event store.
func (e *Engine) Store() Store { return e.cfg.Store }

// Clock returns the engine's clock.
func (e *Engine) Clock() Clock { return e.cfg.Clock }

// Subscribe calls f with every event after it is persisted, in order per
// execution. f runs on the execution's goroutine and must not block.
func (e *Engine) Subscribe(f func(Event)) (unsubscribe func()) {
	e.mu.Lock()
	id := e.nextID
	e.nextID++
	e.subs[id] = f
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
	}
}

func (e *Engine) publish(ev Event) {
	e.mu.Lock()
	subs := make([]func(Event), 0, len(e.subs))
	for _, f := range e.subs {
		subs = append(subs, f)
	}
	e.mu.Unlock()
	for _, f := range subs {
		f(ev)
	}
}

// Close stops every execution where it stands, without recording anything:
// what a crash would do, but orderly. Recover resumes them. Once the runs
// have stopped, Close releases their leases (parked executions included),
// so that a process started next takes them over at once instead of
// waiting for the leases to expire.
func (e *Engine) Close() {
	e.mu.Lock()
	e.take.closed = true // runs launched from now on release their own leases
	ids := make([]string, 0, len(e.runs))
	for id := range e.runs {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	e.stop()
	e.wg.Wait()
	e.releaseAll(ids)
}

// StartRequest asks for an execution.
type StartRequest struct {
	Runbook string
	// Params are the caller's values, as text (chat, CLI) or typed
	// (mappings); they are coerced to the declared types.
	Params  map[string]any
	Trigger TriggerInfo
	// Context adds or overrides context.* values (e.g. alert labels).
	Context map[string]any
}

// ParamError is a bad or missing parameter; callers show usage.
type ParamError struct {
	Runbook string
	Param   string
	Problem string
	Hint    string
}

func (e *ParamError) Error() string {
	s := fmt.Sprintf("runbook %s: parameter %s: %s", e.Runbook, e.Param, e.Problem)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// ResolveParams validates and coerces parameters against rb: unknown names,
// missing required values, types, enums and patterns.
func ResolveParams(rb *Runbook, in map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(rb.Parameters))
	names := make([]string, 0, len(rb.Parameters))
	for _, p := range rb.Parameters {
		names = append(names, p.Name)
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if rb.Parameter(k) == nil {
			hint := "parameters: " + strings.Join(names, ", ")
			if c := closest(k, names); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			return nil, &ParamError{Runbook: rb.Name(), Param: k, Problem: "unknown parameter", Hint: hint}
		}
	}
	for i := range rb.Parameters {
		p := &rb.Parameters[i]
		raw, ok := in[p.Name]
		if !ok || raw == nil {
			if p.Default != nil {
				raw = p.Default
			} else if p.Required {
				return nil, &ParamError{Runbook: rb.Name(), Param: p.Name, Problem: "is required", Hint: p.Description}
			} else {
				out[p.Name] = nil
				continue
			}
		}
		var re = compilePattern(p)
		v, err := coerce(p, Stringify(raw), re)
		if err != nil {
			return nil, &ParamError{Runbook: rb.Name(), Param: p.Name, Problem: err.Error(), Hint: p.Description}
		}
		out[p.Name] = v
	}
	return out, nil
}

// Start validates the request, records execution.started and runs the
// execution in the background. It returns the execution id.
func (e *Engine) Start(ctx context.Context, req StartRequest) (string, error) {
	e.mu.Lock()
	cat := e.cfg.Catalog
	e.mu.Unlock()
	if cat == nil {
		return "", fmt.Errorf("no runbooks loaded")
	}
	rb, err := cat.Lookup(req.Runbook)
	if err != nil {
		return "", err
	}
	params, err := ResolveParams(rb, req.Params)
	if err != nil {
		return "", err
	}
	if req.Trigger.Type == "" {
		req.Trigger.Type = "manual"
	}
	if req.Trigger.TriggeredBy == "" {
		req.Trigger.TriggeredBy = "system"
	}
	if err := CheckTrigger(rb, params, req.Trigger.Labels); err != nil {
		return "", err
	}
	id := e.cfg.NewID()
	if ok, err := e.acquire(ctx, id); err != nil || !ok {
		return "", fmt.Errorf("taking the lease on a new execution: %v", err)
	}
	x := e.newRun(id, rb)
	x.params = params
	x.trigger = req.Trigger
	x.ctxVals = e.buildContext(ctx, rb, id, params, req)
	started := Event{Type: EventExecutionStarted, Trigger: &x.trigger, Parameters: x.maskedParams(), Context: x.ctxVals}
	if _, err := x.emit(started); err != nil {
		return "", fmt.Errorf("recording start: %w", err)
	}
	e.launch(x)
	return id, nil
}

func (e *Engine) newRun(id string, rb *Runbook) *run {
	return &run{e: e, id: id, rb: rb, state: map[string]any{}, outputs: map[string]any{}, steps: map[string]any{},
		red: &Redactor{}, hist: map[string][]Event{}, done: make(chan struct{}), gateSet: make(chan struct{})}
}

func (e *Engine) launch(x *run) {
	ctx, cancel := context.WithCancelCause(e.ctx)
	x.cancel = cancel // set before the run is visible to Cancel and renewals
	if x.cancelledBy != "" {
		cancel(errCancelled{x.cancelledBy}) // cancelled before the crash
	}
	e.mu.Lock()
	e.runs[x.id] = x
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer cancel(nil)
		finished := x.main(ctx)
		e.mu.Lock()
		delete(e.runs, x.id)
		e.mu.Unlock()
		if finished || context.Cause(ctx) == errLeaseLost {
			e.release(x.id)
		}
		close(x.done)
	}()
}

// Active returns the ids of executions this engine is driving.
func (e *Engine) Active() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.runs))
	for id := range e.runs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Wait blocks until the execution finishes and returns its outcome.
func (e *Engine) Wait(ctx context.Context, id string) (Outcome, error) {
	e.mu.Lock()
	x := e.runs[id]
	e.mu.Unlock()
	if x != nil {
		select {
		case <-x.done:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	s, err := e.cfg.Store.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if s.Status != StatusFinished {
		return "", ErrNotActive
	}
	return s.Outcome, nil
}

// Recover resumes every unfinished execution in the store by replaying its
// events, taking their leases in batches. It returns how many it resumed.
// Executions whose lease another owner holds are taken over in the
// background as soon as that lease expires (a dead process's), timed by
// the engine's clock; a lease its owner keeps renewing is left to it.
func (e *Engine) Recover(ctx context.Context) (int, error) {
	ids, err := e.cfg.Store.Unfinished(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing unfinished executions: %w", err)
	}
	n, held, err := e.takeOver(ctx, ids)
	e.awaitLeases(held)
	if err != nil {
		return n, fmt.Errorf("resuming executions: %w", err)
	}
	return n, nil
}

// Resume rebuilds one execution from its events and drives it on.
func (e *Engine) Resume(ctx context.Context, id string) error {
	if len(e.reserve([]string{id})) == 0 {
		return nil // running, or being resumed
	}
	defer e.unreserve([]string{id})
	if ok, err := e.acquire(ctx, id); err != nil {
		return fmt.Errorf("taking the lease on %s: %w", id, err)
	} else if !ok {
		return errLeaseHeld
	}
	evs, err := e.cfg.Store.Events(ctx, id)
	if err != nil {
		e.release(id)
		return err
	}
	if err := e.rebuild(id, evs); err != nil {
		return err
	}
	e.releaseIfClosed([]string{id})
	return nil
}

// rebuild replays an execution whose lease this engine holds from its
// events and launches it; on failure it releases the lease.
func (e *Engine) rebuild(id string, evs []Event) error {
	e.mu.Lock()
	cat := e.cfg.Catalog
	e.mu.Unlock()
	if len(evs) == 0 || evs[0].Type != EventExecutionStarted {
		e.release(id)
		return fmt.Errorf("execution %s has no start event", id)
	}
	if evs[len(evs)-1].Type == EventExecutionFinished {
		e.release(id)
		return ErrFinished
	}
	st := evs[0]
	rb, err := cat.Lookup(st.RunbookName)
	if err != nil {
		e.release(id)
		return fmt.Errorf("execution %s: %w", id, err)
	}
	x := e.newRun(id, rb)
	x.seq = evs[len(evs)-1].Seq
	if st.Trigger != nil {
		x.trigger = *st.Trigger
	}
	x.params = st.Parameters
	if x.params == nil {
		x.params = map[string]any{}
	}
	x.ctxVals = st.Context
	x.replaying = true
	x.diverged = divergence(rb, evs)
	for _, ev := range evs[1:] {
		k := histKey(ev)
		x.hist[k] = append(x.hist[k], ev)
		if ev.Type == EventCancelRequested {
			x.cancelledBy = ev.Actor
		}
	}
	e.launch(x)
	return nil
}

// divergence says why the recorded steps no longer match the runbook (it
// was edited while the execution waited), or "".
func divergence(rb *Runbook, evs []Event) string {
	byKey := map[string]string{}
	for _, ps := range rb.AllSteps() {
		byKey[fmt.Sprintf("%s/%d", ps.Phase, ps.Index)] = ps.Step.Name
	}
	for _, e := range evs {
		if e.Step == nil {
			continue
		}
		if name, ok := byKey[fmt.Sprintf("%s/%d", e.Step.Phase, e.Step.Index)]; !ok || name != e.Step.Name {
			return fmt.Sprintf("runbook %s changed (v%s → v%s) while this execution was stopped: its %s step %d was %q; start it again",
				rb.Name(), evs[0].RunbookVersion, rb.Version(), e.Step.Phase, e.Step.Index+1, e.Step.Name)
		}
	}
	return ""
}

// errLeaseHeld says another replica drives the execution.
var errLeaseHeld = errors.New("another replica holds the lease")

type errCancelled struct{ by string }

func (c errCancelled) Error() string { return "cancelled by " + c.by }

// Cancel stops an execution: the running step is interrupted and the
// execution finishes aborted.
func (e *Engine) Cancel(ctx context.Context, id, user string) error {
	e.mu.Lock()
	x := e.runs[id]
	e.mu.Unlock()
	if x == nil {
		s, err := e.cfg.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		if s.Status == StatusFinished {
			return ErrFinished
		}
		return ErrNotActive
	}
	x.mu.Lock()
	_, err := x.emitLocked(Event{Type: EventCancelRequested, Actor: user, Message: "cancel requested by " + user})
	if err == nil {
		x.cancelledBy = user // decisions from now on are refused
	}
	x.mu.Unlock()
	if err != nil {
		return err
	}
	x.cancel(errCancelled{user})
	return nil
}

func (e *Engine) buildContext(ctx context.Context, rb *Runbook, id string, params map[string]any, req StartRequest) map[string]any {
	c := map[string]any{
		"executionId": id, "runbook": rb.Name(), "requester": req.Trigger.TriggeredBy,
		"triggerType": req.Trigger.Type, "triggerSource": req.Trigger.Source, "alertId": req.Trigger.AlertID,
		"channel": req.Trigger.Channel, "now": e.cfg.Clock.Now().UTC().Format(time.RFC3339),
	}
	labels := map[string]any{}
	for k, v := range req.Trigger.Labels {
		labels[k] = v
	}
	c["labels"] = labels
	if n, ok := req.Trigger.Labels["alertname"]; ok {
		c["alertName"] = n
	}
	ns := Stringify(params["namespace"])
	c["namespace"] = ns
	env := Stringify(params["environment"])
	for _, k := range []string{"environment", "env"} {
		if env == "" {
			env = req.Trigger.Labels[k]
		}
	}
	if env == "" {
		env = ns
	}
	c["environment"] = env
	if usesContext(rb, "restartCount") {
		c["restartCount"] = e.restartCount(ctx, rb, params)
	} else {
		c["restartCount"] = 0
	}
	for k, v := range req.Context {
		c[k] = v
	}
	return c
}

// restartCount counts earlier executions of the runbook with the same
// text parameters in the last 24 hours.
func (e *Engine) restartCount(ctx context.Context, rb *Runbook, params map[string]any) int {
	hist, err := e.cfg.Store.History(ctx, HistoryQuery{Runbook: rb.Name(), Since: e.cfg.Clock.Now().Add(-24 * time.Hour)})
	if err != nil {
		return 0
	}
	n := 0
	for _, h := range hist {
		same := true
		for _, p := range rb.Parameters {
			if p.Type != "string" || p.Sensitive {
				continue
			}
			if Stringify(h.Parameters[p.Name]) != Stringify(params[p.Name]) {
				same = false
				break
			}
		}
		if same {
			n++
		}
	}
	return n
}

func usesContext(rb *Runbook, key string) bool {
	check := func(c *Condition) bool {
		if c == nil {
			return false
		}
		for _, r := range c.Refs() {
			if r.Root == "context" && r.Member == key {
				return true
			}
		}
		return false
	}
	for _, ps := range rb.AllSteps() {
		s := ps.Step
		if check(s.cond) {
			return true
		}
		if s.RequiresApproval != nil {
			for _, c := range s.RequiresApproval.conds {
				if check(c) {
					return true
				}
			}
		}
	}
	for _, a := range rb.Approvals {
		if a.Trigger != nil {
			for _, c := range a.Trigger.conds {
				if check(c) {
					return true
				}
			}
		}
	}
	return false
}

// CheckTrigger applies the runbook's trigger conditions to the parameters
// and alert labels (labels win). It returns an error saying which failed.
func CheckTrigger(rb *Runbook, params map[string]any, labels map[string]string) error {
	for _, c := range rb.Trigger.Conditions {
		v, ok := labels[c.Field]
		if !ok {
			if p, has := params[c.Field]; has && p != nil {
				v, ok = Stringify(p), true
			}
		}
		vals := c.Values
		if c.Value != "" {
			vals = append(vals, c.Value)
		}
		in := false
		for _, x := range vals {
			if x == v {
				in = true
			}
		}
		var pass bool
		switch c.Operator {
		case "in", "equals":
			pass = ok && in
		case "notIn", "notEquals":
			pass = !in
		case "exists":
			pass = ok
		case "notExists":
			pass = !ok
		case "matches":
			pass = ok && matchAny(vals, v)
		case "gt", "lt", "gte", "lte":
			pass = ok && compareNum(c.Operator, v, vals)
		default:
			pass = true
		}
		if !pass {
			return fmt.Errorf("runbook %s does not run here: %s %s %s is not met (value %q)", rb.Name(), c.Field, c.Operator, strings.Join(vals, ","), v)
		}
	}
	return nil
}
