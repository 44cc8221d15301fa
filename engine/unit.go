package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

type unitResult struct {
	status   StepStatus
	err      string
	cancel   bool
	rejected bool // an approval was refused: the step never ran
}

func (r unitResult) cancelled() bool { return r.cancel }

// ErrStepTimeout is the cause of a step that ran past its timeout.
var ErrStepTimeout = errors.New("step timed out")

// unit runs (or replays) one step: condition, approval gate, templates,
// the action under its timeout, saved state and output.
func (x *run) unit(ctx context.Context, phase Phase, i int, st *Step, gated bool) unitResult {
	key := unitKey(phase, i, st.Name)
	prior := x.hist[key]
	delete(x.hist, key)
	rec := StepRecord{Name: st.Name, Phase: phase, Index: i, Type: st.Type, Action: st.Action}
	attemptRerun := false
	spec, _ := x.e.cfg.Registry.Lookup(st.Type, st.Action)
	idempotent := st.Idempotent || spec.Idempotent
	var firstStart time.Time
	if len(prior) > 0 {
		last := prior[len(prior)-1]
		if last.Type == EventStepFinished && last.Step.Status != StepInterrupted {
			x.absorb(st, *last.Step)
			return unitResult{status: last.Step.Status, err: last.Step.Error, rejected: last.Step.Rejected}
		}
		if last.Type == EventStepStarted {
			if last.Step.StartTime != nil && spec.Idempotent {
				firstStart = *last.Step.StartTime
			}
			r := rec
			r.Status, r.Reason = StepInterrupted, "the bot stopped while this step was running"
			switch {
			case spec.Idempotent && !firstStart.IsZero():
				r.Reason += "; resuming it where it was (" + st.Type + "/" + st.Action + " is safe to repeat)"
			case idempotent:
				r.Reason += "; re-running it because it is idempotent"
			default:
				r.Error = "interrupted: the bot stopped while this step was running; not re-run because the step is not marked idempotent"
			}
			x.must(Event{Type: EventStepFinished, Step: &r})
		}
		if !idempotent {
			x.steps[st.Name] = map[string]any{"status": string(StepInterrupted), "failed": true, "succeeded": false}
			return unitResult{status: StepInterrupted, err: "interrupted while running; not re-run (not idempotent)"}
		}
		attemptRerun = true
	}
	if st.cond != nil && !attemptRerun {
		// The condition counts against the step's time: it cannot outrun
		// the step it guards.
		cctx, stop := x.stepTimeout(ctx, st)
		env, err := x.env(cctx, st.cond.Refs(), nil)
		ok := false
		if err == nil {
			ok, err = st.cond.EvalContext(cctx, env)
		}
		stop()
		if closing(ctx) {
			return unitResult{}
		}
		if err != nil {
			r := rec
			r.Status, r.Error = StepFailure, "condition: "+err.Error()
			x.must(Event{Type: EventStepFinished, Step: &r})
			x.absorb(st, r)
			return unitResult{status: StepFailure, err: r.Error}
		}
		if !ok {
			r := rec
			r.Status, r.Reason = StepSkipped, "condition is false: "+st.Condition
			x.must(Event{Type: EventStepFinished, Step: &r})
			x.absorb(st, r)
			return unitResult{status: StepSkipped}
		}
	}
	if gated && phase == PhaseStep {
		if need, reason := x.needsApproval(ctx, st); need {
			g := x.gateFor(phase, st.Name, reason)
			ok, why := x.waitGate(ctx, g)
			if closing(ctx) {
				return unitResult{}
			}
			if !ok {
				r := rec
				r.Status, r.Error, r.Rejected = StepFailure, why, ctx.Err() == nil
				x.must(Event{Type: EventStepFinished, Step: &r})
				x.absorb(st, r)
				return unitResult{status: StepFailure, err: why, cancel: ctx.Err() != nil, rejected: true}
			}
		}
	}
	rendered, err := x.render(ctx, st, spec)
	var input map[string]any
	if rendered != nil {
		r, shown := splitTainted(rendered)
		input = r.(map[string]any)
		rec.Input = shown.(map[string]any)
	}
	clock := x.e.cfg.Clock
	start := clock.Now().UTC()
	rec.StartTime = &start
	rec.Status = StepRunning
	if closing(ctx) {
		return unitResult{}
	}
	if err != nil {
		r := rec
		r.Status, r.Error = StepFailure, err.Error()
		r.EndTime = &start
		x.must(Event{Type: EventStepFinished, Step: &r})
		x.absorb(st, r)
		return unitResult{status: StepFailure, err: r.Error}
	}
	x.must(Event{Type: EventStepStarted, Step: &rec})
	res, runErr := x.call(ctx, st, spec, phase, input, firstStart)
	if closing(ctx) {
		return unitResult{}
	}
	end := clock.Now().UTC()
	fin := rec
	fin.EndTime = &end
	fin.DurationMs = end.Sub(start).Milliseconds()
	fin.Output = res.Output
	fin.Status = StepSuccess
	// State is saved even when the action failed: what it captured before
	// failing (the replica count before a restart) is what rollback needs.
	state, err := x.saveState(ctx, st, res)
	if err != nil && runErr == nil {
		runErr = err
	}
	fin.State = state
	if runErr != nil {
		fin.Status = StepFailure
		fin.Error = runErr.Error()
	}
	x.must(Event{Type: EventStepFinished, Step: &fin})
	x.absorb(st, fin)
	var c errCancelled
	return unitResult{status: fin.Status, err: fin.Error, cancel: errors.As(context.Cause(ctx), &c)}
}

// absorb applies a finished step's effects to the run: saved state, saved
// output and the step's status for step.NAME conditions.
func (x *run) absorb(st *Step, r StepRecord) {
	for k, v := range r.State {
		x.state[k] = v
	}
	if st.SaveOutput != "" && r.Status == StepSuccess {
		x.outputs[st.SaveOutput] = r.Output
	}
	x.steps[st.Name] = map[string]any{
		"status": string(r.Status), "failed": r.Status == StepFailure || r.Status == StepInterrupted,
		"succeeded": r.Status == StepSuccess, "skipped": r.Status == StepSkipped, "output": r.Output,
	}
}

// render resolves a step's params. Values that are exactly one template
// keep their type. Condition params stay as written.
func (x *run) render(ctx context.Context, st *Step, spec ActionSpec) (map[string]any, error) {
	skip := map[string]bool{}
	for _, c := range spec.Conditions {
		skip[c] = true
	}
	var refs []Ref
	tmpls := map[string]*Template{}
	var collect func(v any)
	collect = func(v any) {
		switch t := v.(type) {
		case string:
			if HasTemplate(t) {
				if tp, err := ParseTemplate(t, x.e.cfg.Registry.filters); err == nil {
					tmpls[t] = tp
					refs = append(refs, tp.Refs()...)
				}
			}
		case map[string]any:
			for _, e := range t {
				collect(e)
			}
		case []any:
			for _, e := range t {
				collect(e)
			}
		}
	}
	for k, v := range st.Params.Values {
		if !skip[k] {
			collect(v)
		}
	}
	env, err := x.env(ctx, refs, nil)
	if err != nil {
		return nil, err
	}
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch t := v.(type) {
		case string:
			tp := tmpls[t]
			if tp == nil {
				return t, nil
			}
			out, err := tp.Render(ctx, env, x.e.cfg.Registry.filters)
			if err == nil && x.tainted(tp) {
				// Rendered from a secret: the whole value (whatever
				// filters made of it) is secret from here on.
				x.red.Add(out)
				x.red.Add(Stringify(out))
				if s := Stringify(out); len(s) < 3 && s != "" {
					x.red.AddExact(s)
					return taintedShort{s}, nil
				}
			}
			return out, err
		case map[string]any:
			out := make(map[string]any, len(t))
			for k, e := range t {
				r, err := walk(e)
				if err != nil {
					return nil, err
				}
				out[k] = r
			}
			return out, nil
		case []any:
			out := make([]any, len(t))
			for i, e := range t {
				r, err := walk(e)
				if err != nil {
					return nil, err
				}
				out[i] = r
			}
			return out, nil
		}
		return v, nil
	}
	out := make(map[string]any, len(st.Params.Values))
	for k, v := range st.Params.Values {
		if skip[k] {
			out[k] = v
			continue
		}
		r, err := walk(v)
		if err != nil {
			return nil, fmt.Errorf("params.%s: %s", k, x.red.String(err.Error()))
		}
		out[k] = r
	}
	return out, nil
}

// taintedShort is a secret-derived value too short to mask by search (a
// secret cut to two characters): it is passed to the action as its text and
// recorded as Mask.
type taintedShort struct{ s string }

// splitTainted returns the params for the action (plain values) and for the
// record (short secret-derived values masked).
func splitTainted(v any) (run, shown any) {
	switch t := v.(type) {
	case taintedShort:
		return t.s, Mask
	case map[string]any:
		r, s := make(map[string]any, len(t)), make(map[string]any, len(t))
		for k, e := range t {
			r[k], s[k] = splitTainted(e)
		}
		return r, s
	case []any:
		r, s := make([]any, len(t)), make([]any, len(t))
		for i, e := range t {
			r[i], s[i] = splitTainted(e)
		}
		return r, s
	}
	return v, v
}

// tainted reports whether a template reads a secret or a sensitive
// parameter.
func (x *run) tainted(t *Template) bool {
	for _, r := range t.Refs() {
		if r.Root == "secrets" {
			return true
		}
		if p := x.rb.Parameter(r.Root); p != nil && p.Sensitive {
			return true
		}
	}
	return false
}

// stepTimeout bounds ctx by the step's timeout on the engine clock.
func (x *run) stepTimeout(ctx context.Context, st *Step) (context.Context, func()) {
	timeout := st.Timeout.D()
	if timeout == 0 {
		timeout = x.e.cfg.DefaultStepTimeout
	}
	cctx, cancel := context.WithCancelCause(ctx)
	if timeout <= 0 {
		return cctx, func() { cancel(nil) }
	}
	t := x.e.cfg.Clock.NewTimer(timeout)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-t.C():
			cancel(fmt.Errorf("%w after %s", ErrStepTimeout, timeout))
		case <-stop:
		}
	}()
	return cctx, func() {
		t.Stop()
		close(stop)
		<-done
		cancel(nil)
	}
}

// call runs the action with the step timeout on the engine clock and turns
// panics into errors.
func (x *run) call(ctx context.Context, st *Step, spec ActionSpec, phase Phase, params map[string]any, started time.Time) (res Result, err error) {
	timeout := st.Timeout.D()
	if timeout == 0 {
		timeout = x.e.cfg.DefaultStepTimeout
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if timeout > 0 {
		t := x.e.cfg.Clock.NewTimer(timeout)
		defer t.Stop() // synchronously, so no stale timer outlives the step
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-t.C():
				cancel(fmt.Errorf("%w after %s", ErrStepTimeout, timeout))
			case <-stop:
			}
		}()
	}
	conds := map[string]*Condition{}
	for _, k := range spec.Conditions {
		if s, ok := params[k].(string); ok {
			if c, err := CompileCondition(s); err == nil {
				conds[k] = c
			}
		}
	}
	vars := make(map[string]any, len(x.params)+2)
	for k, v := range x.params {
		vars[k] = v
	}
	vars["state"] = x.state
	call := &Call{
		ExecutionID: x.id, Runbook: x.rb, Step: st, Phase: phase, Params: params, Vars: vars,
		Clock: x.e.cfg.Clock, Conditions: conds, Redact: x.red.String, Started: started,
		Eval: func(ctx context.Context, c *Condition) (bool, error) {
			env, err := x.env(ctx, c.Refs(), nil)
			if err != nil {
				return false, err
			}
			return c.EvalContext(ctx, env)
		},
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %s crashed: %v", st.Name, r)
		}
	}()
	if spec.Run == nil {
		return Result{}, fmt.Errorf("no action for %s/%s", st.Type, st.Action)
	}
	res, err = spec.Run.Run(cctx, call)
	if err != nil && cctx.Err() != nil {
		if cause := context.Cause(cctx); cause != nil && ctx.Err() == nil {
			err = cause
		} else if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
	}
	return res, err
}

// saveState evaluates the step's saveState templates with the action's
// output visible at the top level, plus the state the action saved itself.
func (x *run) saveState(ctx context.Context, st *Step, res Result) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range res.State {
		out[k] = v
	}
	if len(st.SaveState) == 0 {
		return out, nil
	}
	extra := map[string]any{"output": res.Output}
	for k, v := range res.Output {
		extra[k] = v
	}
	for _, s := range st.SaveState {
		t, err := ParseTemplate(s.Value, x.e.cfg.Registry.filters)
		if err != nil {
			return out, fmt.Errorf("saveState %s: %w", s.Key, err)
		}
		env, err := x.env(ctx, t.Refs(), extra)
		if err != nil {
			return out, fmt.Errorf("saveState %s: %w", s.Key, err)
		}
		v, err := t.Render(ctx, env, x.e.cfg.Registry.filters)
		if err != nil {
			return out, fmt.Errorf("saveState %s: %w", s.Key, err)
		}
		if x.tainted(t) {
			x.red.Add(Stringify(v))
		}
		if v != nil {
			out[s.Key] = v
		}
	}
	return out, nil
}

// env builds the evaluation environment for the given refs: parameters and
// saved outputs at the top level, state, context, trigger, step statuses,
// rollback info; secrets and live data are fetched only when referenced.
func (x *run) env(ctx context.Context, refs []Ref, extra map[string]any) (map[string]any, error) {
	env := make(map[string]any, len(x.params)+len(x.outputs)+8)
	for k, v := range x.params {
		env[k] = v
	}
	for k, v := range x.outputs {
		env[k] = v
	}
	state := make(map[string]any, len(x.state))
	for k, v := range x.state {
		state[k] = v
	}
	env["state"] = state
	env["context"] = x.ctxVals
	env["trigger"] = map[string]any{"type": x.trigger.Type, "source": x.trigger.Source, "alertId": x.trigger.AlertID, "triggeredBy": x.trigger.TriggeredBy}
	env["step"] = x.steps
	if x.rbInfo != nil {
		env["rollback"] = x.rbInfo
	}
	for k, v := range extra {
		env[k] = v
	}
	members := map[string][]string{}
	secrets := map[string]any{}
	for _, r := range refs {
		if r.Root == "secrets" && r.Member != "" {
			if _, done := secrets[r.Member]; done {
				continue
			}
			if x.e.cfg.Secrets == nil {
				return nil, fmt.Errorf("secret %q: no secret provider is configured", r.Member)
			}
			v, err := x.e.cfg.Secrets.Secret(ctx, r.Member)
			if err != nil {
				return nil, fmt.Errorf("secret %q: %w", r.Member, err)
			}
			x.red.Add(v)
			secrets[r.Member] = v
			continue
		}
		if _, have := env[r.Root]; have {
			continue
		}
		if _, ok := x.e.cfg.Registry.resolvers[r.Root]; ok || LiveRoots[r.Root] {
			if r.Member != "" {
				members[r.Root] = append(members[r.Root], r.Member)
			} else if _, ok := members[r.Root]; !ok {
				members[r.Root] = nil
			}
		}
	}
	env["secrets"] = secrets
	if len(members) > 0 {
		vars := make(map[string]any, len(x.params)+len(extra)+1)
		for k, v := range x.params {
			vars[k] = v
		}
		for k, v := range extra {
			vars[k] = v
		}
		vars["state"] = state
		for root, ms := range members {
			f := x.e.cfg.Registry.resolvers[root]
			if f == nil {
				return nil, fmt.Errorf("%s is not available: no integration provides it (configure one, e.g. Prometheus for metrics)", root)
			}
			v, err := f(ctx, ms, vars)
			if err != nil {
				return nil, &liveDataError{root: root, err: err}
			}
			env[root] = v
		}
	}
	return env, nil
}
