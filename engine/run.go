package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
)

// run is one execution being driven. Its history (on resume) answers for
// the units it has already done, so the same code path both runs and
// replays an execution.
type run struct {
	e       *Engine
	id      string
	rb      *Runbook
	trigger TriggerInfo
	params  map[string]any
	ctxVals map[string]any
	state   map[string]any
	outputs map[string]any
	steps   map[string]any // name → {status, failed, succeeded}
	rbInfo  map[string]any // rollback.* for rollback templates
	red     *Redactor
	cancel  context.CancelCauseFunc
	done    chan struct{}

	mu      sync.Mutex // guards seq, emit and pending
	seq     int64
	pending *gate
	gateSet chan struct{} // closed (and replaced) when pending is set

	replaying   bool
	diverged    string // the runbook no longer matches what was recorded
	hist        map[string][]Event
	cancelledBy string
	tolerated   bool
}

// storeFailure aborts the run's goroutine when an event cannot be
// persisted: nothing may happen that the log does not show.
type storeFailure struct{ err error }

func histKey(ev Event) string {
	switch {
	case ev.Step != nil:
		return unitKey(ev.Step.Phase, ev.Step.Index, ev.Step.Name)
	case ev.Approval != nil:
		return "approval/" + string(ev.Approval.Phase) + "/" + ev.Approval.Step
	case ev.Type == EventRollbackStarted || ev.Type == EventRollbackFinished:
		return "rollback"
	case ev.Watch != nil:
		return "watch"
	}
	return string(ev.Type)
}

func unitKey(p Phase, i int, name string) string { return fmt.Sprintf("%s/%d/%s", p, i, name) }

// emit persists an event and then publishes it. It is safe from any
// goroutine.
func (x *run) emit(ev Event) (Event, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.emitLocked(ev)
}

func (x *run) emitLocked(ev Event) (Event, error) {
	ev.ExecutionID = x.id
	ev.RunbookName = x.rb.Name()
	ev.RunbookVersion = x.rb.Version()
	if ev.Time.IsZero() {
		ev.Time = x.e.cfg.Clock.Now().UTC()
	}
	ev.Seq = x.seq + 1
	x.red.Event(&ev)
	if err := x.e.cfg.Store.Append(context.WithoutCancel(x.e.ctx), ev); err != nil {
		x.e.cfg.Logger.Error("cannot persist event; execution paused until restart", "execution", x.id, "event", ev.Type, "err", err)
		return ev, err
	}
	x.seq++
	x.e.publish(ev)
	return ev, nil
}

// must emits or aborts the run goroutine.
func (x *run) must(ev Event) Event {
	out, err := x.emit(ev)
	if err != nil {
		panic(storeFailure{err})
	}
	return out
}

func (x *run) maskedParams() map[string]any {
	out := make(map[string]any, len(x.params))
	for k, v := range x.params {
		if p := x.rb.Parameter(k); p != nil && p.Sensitive && v != nil {
			out[k] = Mask
			continue
		}
		out[k] = v
	}
	return out
}

// main drives the execution to its end; it reports whether it finished
// (false when the engine stopped or the store failed first).
func (x *run) main(ctx context.Context) (finished bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(storeFailure); ok {
				finished = false
				return
			}
			panic(r)
		}
	}()
	if x.diverged != "" {
		x.must(Event{Type: EventExecutionFinished, Outcome: OutcomeAborted, Message: x.diverged})
		return true
	}
	for _, p := range x.rb.Parameters {
		if !p.Sensitive {
			continue
		}
		if x.replaying && x.params[p.Name] == Mask {
			// Sensitive values are never written to the log, so a resumed
			// execution cannot use them: stop rather than run with "[REDACTED]".
			x.must(Event{Type: EventExecutionFinished, Outcome: OutcomeAborted,
				Message: fmt.Sprintf("sensitive parameter %s is not kept across a restart; start the runbook again", p.Name)})
			return true
		}
		x.red.Add(Stringify(x.params[p.Name]))
	}
	outcome, msg := x.execute(ctx)
	if outcome == "" {
		return false // the engine is closing; the execution resumes on restart
	}
	x.must(Event{Type: EventExecutionFinished, Outcome: outcome, Message: msg})
	return true
}

// closing reports whether ctx ended because the engine is stopping (as
// opposed to a cancel, which must still be recorded).
func closing(ctx context.Context) bool {
	if ctx.Err() == nil {
		return false
	}
	var c errCancelled
	return !errors.As(context.Cause(ctx), &c)
}

func (x *run) execute(ctx context.Context) (Outcome, string) {
	for i, pc := range x.rb.Preconditions {
		res := x.unit(ctx, PhasePrecondition, i, pc, true)
		if closing(ctx) {
			return "", ""
		}
		if res.cancelled() {
			return OutcomeAborted, res.err
		}
		if res.status != StepFailure && res.status != StepInterrupted {
			continue
		}
		switch pc.OnFailure {
		case "continue":
			continue
		case "requestApproval":
			g := x.gateFor(PhasePrecondition, pc.Name, "precondition "+pc.Name+" failed: "+res.err)
			ok, why := x.waitGate(ctx, g)
			if closing(ctx) {
				return "", ""
			}
			if !ok {
				return OutcomeAborted, fmt.Sprintf("precondition %s failed and approval was not given: %s", pc.Name, why)
			}
		default:
			return OutcomeAborted, fmt.Sprintf("precondition %s failed: %s", pc.Name, res.err)
		}
	}
	for i, st := range x.rb.Steps {
		res := x.unit(ctx, PhaseStep, i, st, true)
		if closing(ctx) {
			return "", ""
		}
		if res.cancelled() {
			x.skipRest(i+1, "execution cancelled")
			return OutcomeAborted, res.err
		}
		switch res.status {
		case StepSuccess:
			if st.OnSuccess == "complete" {
				x.skipRest(i+1, fmt.Sprintf("%s completed the runbook", st.Name))
				return x.success(ctx)
			}
			continue
		case StepSkipped:
			continue
		}
		// The step failed or was interrupted.
		if st.ContinueOnFailure {
			x.tolerated = true
			continue
		}
		if res.rejected && st.OnFailure != "continue" {
			// The gated step never ran, so there is nothing to roll back: a
			// refusal stops the execution.
			x.skipRest(i+1, "approval for "+st.Name+" was not given")
			return OutcomeAborted, fmt.Sprintf("step %s not run: %s", st.Name, res.err)
		}
		switch st.OnFailure {
		case "continue":
			continue
		case "abort":
			x.skipRest(i+1, "execution aborted")
			return OutcomeAborted, fmt.Sprintf("step %s failed: %s", st.Name, res.err)
		}
		procs := x.proceduresFor(st)
		x.skipRest(i+1, "step "+st.Name+" failed")
		if len(procs) == 0 || (st.OnFailure != "rollback" && !x.hasStepTrigger(st.Name)) {
			return OutcomeFailure, fmt.Sprintf("step %s failed: %s", st.Name, res.err)
		}
		reason := fmt.Sprintf("step.%s.failed", st.Name)
		if x.rollback(ctx, reason, procs) {
			return OutcomeRollback, fmt.Sprintf("step %s failed: %s; rollback succeeded", st.Name, res.err)
		}
		if closing(ctx) {
			return "", ""
		}
		return OutcomeFailure, fmt.Sprintf("step %s failed: %s; rollback failed", st.Name, res.err)
	}
	return x.success(ctx)
}

// success watches the metric and health rollback triggers for their
// windows, rolling back when one holds, then reports success or partial.
func (x *run) success(ctx context.Context) (Outcome, string) {
	problem := ""
	if ts := x.watchTriggers(); len(ts) > 0 {
		t, why := x.watch(ctx, ts)
		if closing(ctx) {
			return "", ""
		}
		if ctx.Err() != nil {
			return OutcomeAborted, "cancelled during the rollback watch"
		}
		if t != nil {
			procs := x.procedures(t.Action)
			if x.rollback(ctx, t.Condition, procs) {
				return OutcomeRollback, "rollback trigger fired: " + t.Condition
			}
			if closing(ctx) {
				return "", ""
			}
			return OutcomeFailure, "rollback trigger fired: " + t.Condition + "; rollback failed"
		}
		problem = why
	}
	switch {
	case x.tolerated && problem != "":
		return OutcomePartial, "completed; some steps failed and were tolerated; " + problem
	case x.tolerated:
		return OutcomePartial, "completed; some steps failed and were tolerated"
	case problem != "":
		return OutcomePartial, "completed; " + problem
	}
	return OutcomeSuccess, ""
}

func (x *run) hasStepTrigger(name string) bool {
	if x.rb.Rollback == nil {
		return false
	}
	for _, t := range x.rb.Rollback.Triggers {
		if t.stepName == name && t.stepStatus == "failed" {
			return true
		}
	}
	return false
}

// proceduresFor picks the rollback procedures for a failed step: those its
// step.NAME.failed triggers name, else every procedure.
func (x *run) proceduresFor(st *Step) []Procedure {
	if x.rb.Rollback == nil {
		return nil
	}
	var names []string
	for _, t := range x.rb.Rollback.Triggers {
		if t.stepName == st.Name && t.stepStatus == "failed" {
			names = append(names, t.Action)
		}
	}
	if len(names) == 0 {
		return x.rb.Rollback.Procedures
	}
	var out []Procedure
	for _, n := range names {
		out = append(out, x.procedures(n)...)
	}
	return out
}

func (x *run) procedures(name string) []Procedure {
	var out []Procedure
	for _, p := range x.rb.Rollback.Procedures {
		if p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// skipRest records the steps after i as skipped so the thread shows them.
func (x *run) skipRest(from int, reason string) {
	for i := from; i < len(x.rb.Steps); i++ {
		st := x.rb.Steps[i]
		k := unitKey(PhaseStep, i, st.Name)
		if len(x.hist[k]) > 0 {
			continue
		}
		x.must(Event{Type: EventStepFinished, Step: &StepRecord{Name: st.Name, Phase: PhaseStep, Index: i, Type: st.Type, Action: st.Action, Status: StepSkipped, Reason: reason}})
	}
}

// rollback runs procedures; it reports whether every step succeeded.
func (x *run) rollback(ctx context.Context, reason string, procs []Procedure) bool {
	x.rbInfo = map[string]any{"trigger": map[string]any{"condition": reason}, "reason": reason}
	names := ""
	for i, p := range procs {
		if i > 0 {
			names += ","
		}
		names += p.Name
	}
	if prev := x.hist["rollback"]; len(prev) > 0 {
		last := prev[len(prev)-1]
		if last.Type == EventRollbackFinished && last.Rollback != nil && last.Rollback.Success != nil {
			return *last.Rollback.Success
		}
	} else {
		x.must(Event{Type: EventRollbackStarted, Rollback: &RollbackRecord{Triggered: true, Reason: reason, Procedure: names}})
	}
	ok := true
	idx := 0
	for _, p := range x.rb.Rollback.Procedures {
		selected := false
		for _, q := range procs {
			if q.Name == p.Name {
				selected = true
			}
		}
		if !selected {
			idx += len(p.Steps)
			continue
		}
		run := ok
		if run && len(p.conds) > 0 {
			env, err := x.env(ctx, condRefs(p.conds), nil)
			if closing(ctx) {
				return false
			}
			for _, c := range p.conds {
				if c == nil {
					continue
				}
				b, cerr := false, err
				if err == nil {
					b, cerr = c.EvalContext(ctx, env)
				}
				if cerr != nil {
					// A procedure that cannot be checked has not rolled
					// anything back: say so rather than skip it quietly.
					x.e.cfg.Logger.Error("rollback procedure condition failed", "execution", x.id, "procedure", p.Name, "err", cerr)
					ok = false
				}
				if !b {
					run = false
				}
			}
		}
		for _, st := range p.Steps {
			if !run {
				k := unitKey(PhaseRollback, idx, st.Name)
				if len(x.hist[k]) == 0 {
					x.must(Event{Type: EventStepFinished, Step: &StepRecord{Name: st.Name, Phase: PhaseRollback, Index: idx, Type: st.Type, Action: st.Action, Status: StepSkipped, Reason: "not run"}})
				}
				idx++
				continue
			}
			res := x.unit(ctx, PhaseRollback, idx, st, false)
			idx++
			if closing(ctx) {
				return false
			}
			if (res.status == StepFailure || res.status == StepInterrupted) && !st.ContinueOnFailure {
				ok, run = false, false
			}
		}
	}
	success := ok
	x.must(Event{Type: EventRollbackFinished, Rollback: &RollbackRecord{Triggered: true, Reason: reason, Procedure: names, Success: &success}})
	return ok
}

func condRefs(cs []*Condition) []Ref {
	var out []Ref
	for _, c := range cs {
		if c != nil {
			out = append(out, c.Refs()...)
		}
	}
	return out
}

func compilePattern(p *Parameter) *regexp.Regexp {
	if p.Pattern == "" {
		return nil
	}
	re, err := regexp.Compile("^(?:" + p.Pattern + ")$")
	if err != nil {
		return nil
	}
	return re
}

func matchAny(pats []string, v string) bool {
	for _, p := range pats {
		if re, err := regexp.Compile(p); err == nil && re.MatchString(v) {
			return true
		}
	}
	return false
}

func compareNum(op, v string, vals []string) bool {
	if len(vals) == 0 {
		return false
	}
	a, err1 := strconv.ParseFloat(v, 64)
	b, err2 := strconv.ParseFloat(vals[0], 64)
	if err1 != nil || err2 != nil {
		return false
	}
	switch op {
	case "gt":
		return a > b
	case "lt":
		return a < b
	case "gte":
		return a >= b
	}
	return a <= b
}
