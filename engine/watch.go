package engine

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The post-change watch. A runbook's metric and health rollback triggers
// (`metrics.errorRate > 5%` with `window: 5m`, `healthcheck.failed` with
// `consecutiveFailures: 3`) are not checked once at the end: after the last
// step succeeds, the execution watches them, polling each on the engine's
// clock, and fires the trigger's rollback procedure when its condition has
// held for its whole window or for its consecutive failures. The watch is
// part of the execution: every check is an event, so a restart resumes the
// watch where it was (counts, deadline), and the thread shows it.

// WatchRecord is the watch's part of an event.
type WatchRecord struct {
	// Until is when the watch ends (watch.started).
	Until *time.Time `json:"until,omitempty"`
	// Triggers describes what is watched (watch.started).
	Triggers []string `json:"triggers,omitempty"`
	// Condition is the trigger a check is about (watch.check).
	Condition string `json:"condition,omitempty"`
	// Held says the condition held at this check; Count is how many checks
	// in a row it has held, Needed how many fire the trigger.
	Held   bool `json:"held"`
	Count  int  `json:"count,omitempty"`
	Needed int  `json:"needed,omitempty"`
	// Error is why a check could not be made.
	Error string `json:"error,omitempty"`
	// Fired marks the check that fired the trigger.
	Fired bool `json:"fired,omitempty"`
}

// Watch events.
const (
	EventWatchStarted  EventType = "watch.started"
	EventWatchCheck    EventType = "watch.check"
	EventWatchFinished EventType = "watch.finished"
)

// watchPlan is how one trigger is watched.
type watchPlan struct {
	t        RollbackTrigger
	every    time.Duration
	needed   int
	count    int
	last     time.Time // last check, zero before the first
	checked  bool      // at least one check evaluated
	lastErr  string
	problems int
}

// WatchSchedule says how a trigger is watched: how often it is checked and
// how many checks in a row must hold for it to fire. A trigger with a
// window is checked five times per window (at most once a minute, at least
// once a second) and must hold across the whole window; one with
// consecutiveFailures N must hold N checks in a row, ten seconds apart.
func WatchSchedule(t RollbackTrigger) (every time.Duration, needed int) {
	w := t.Window.D()
	every = 10 * time.Second
	needed = max(t.ConsecutiveFailures, 1)
	if w > 0 {
		every = min(max(w/5, time.Second), time.Minute)
		needed = max(needed, int(w/every)+1)
	}
	return every, needed
}

// watchLength is how long the watch of these triggers lasts: until the
// slowest trigger has had its last chance to fire.
func watchLength(plans []*watchPlan) time.Duration {
	var d time.Duration
	for _, p := range plans {
		d = max(d, time.Duration(p.needed-1)*p.every)
	}
	return d
}

// watchTriggers are the rollback triggers that are watched (all but
// step.NAME.failed).
func (x *run) watchTriggers() []RollbackTrigger {
	if x.rb.Rollback == nil {
		return nil
	}
	var out []RollbackTrigger
	for _, t := range x.rb.Rollback.Triggers {
		if t.cond != nil && t.stepName == "" {
			out = append(out, t)
		}
	}
	return out
}

// describeTrigger is a trigger as people read it in the thread.
func describeTrigger(t RollbackTrigger, every time.Duration, needed int) string {
	switch {
	case t.Window > 0:
		return fmt.Sprintf("%s (for %s, checked every %s)", t.Condition, t.Window.D(), every)
	case needed > 1:
		return fmt.Sprintf("%s (%d checks in a row, every %s)", t.Condition, needed, every)
	}
	return fmt.Sprintf("%s (checked every %s)", t.Condition, every)
}

// watch runs (or resumes) the post-change watch. It returns the trigger
// that fired, or nil, and a problem when a trigger could not be checked.
func (x *run) watch(ctx context.Context, triggers []RollbackTrigger) (fired *RollbackTrigger, problem string) {
	plans := make([]*watchPlan, len(triggers))
	var desc []string
	for i, t := range triggers {
		every, needed := WatchSchedule(t)
		plans[i] = &watchPlan{t: t, every: every, needed: needed}
		desc = append(desc, describeTrigger(t, every, needed))
	}
	clock := x.e.cfg.Clock
	prior := x.hist["watch"]
	delete(x.hist, "watch")
	var start, end time.Time
	for _, ev := range prior {
		w := ev.Watch
		if w == nil {
			continue
		}
		switch ev.Type {
		case EventWatchStarted:
			start = ev.Time
			if w.Until != nil {
				end = *w.Until
			}
		case EventWatchCheck:
			for _, p := range plans {
				if p.t.Condition != w.Condition {
					continue
				}
				p.last, p.count = ev.Time, w.Count
				if w.Error != "" {
					p.lastErr = w.Error
					p.problems++
				} else {
					p.checked, p.lastErr = true, ""
				}
				if w.Fired {
					t := p.t
					return &t, ""
				}
			}
		case EventWatchFinished:
			return nil, ev.Message
		}
	}
	if start.IsZero() {
		start = clock.Now().UTC()
		end = start.Add(watchLength(plans))
		x.must(Event{Type: EventWatchStarted, Time: start, Watch: &WatchRecord{Until: &end, Triggers: desc},
			Message: fmt.Sprintf("watching for %s before calling it done: %s", end.Sub(start), strings.Join(desc, "; "))})
	}
	for {
		// The next check due: each trigger every `every` from the start (a
		// check missed while the bot was down is made once, now).
		var next time.Time
		for _, p := range plans {
			due := start
			if !p.last.IsZero() {
				due = p.last.Add(p.every)
			}
			if due.After(end) {
				continue
			}
			if next.IsZero() || due.Before(next) {
				next = due
			}
		}
		if next.IsZero() {
			break
		}
		if wait := next.Sub(clock.Now()); wait > 0 {
			t := clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ""
			case <-t.C():
			}
		}
		now := clock.Now().UTC()
		for _, p := range plans {
			due := start
			if !p.last.IsZero() {
				due = p.last.Add(p.every)
			}
			if due.After(now) || due.After(end) {
				continue
			}
			rec := x.check(ctx, p)
			if ctx.Err() != nil {
				return nil, ""
			}
			p.last = now
			x.must(Event{Type: EventWatchCheck, Time: now, Watch: rec, Message: checkMessage(rec)})
			if rec.Fired {
				t := p.t
				return &t, ""
			}
		}
	}
	var probs []string
	for _, p := range plans {
		switch {
		case !p.checked:
			probs = append(probs, fmt.Sprintf("%s could not be checked: %s", p.t.Condition, p.lastErr))
		case p.lastErr != "":
			probs = append(probs, fmt.Sprintf("%s could not be checked at the end of the watch: %s", p.t.Condition, p.lastErr))
		}
	}
	msg := fmt.Sprintf("no rollback trigger held during the %s watch", end.Sub(start))
	if len(probs) > 0 {
		problem = "the rollback watch could not vouch for the change: " + strings.Join(probs, "; ")
		msg = problem
	}
	x.must(Event{Type: EventWatchFinished, Watch: &WatchRecord{}, Message: msg})
	return nil, problem
}

// check evaluates one trigger once, bounded by its poll interval.
func (x *run) check(ctx context.Context, p *watchPlan) *WatchRecord {
	cctx, cancel := context.WithTimeout(ctx, max(p.every, time.Second))
	defer cancel()
	rec := &WatchRecord{Condition: p.t.Condition, Needed: p.needed}
	// Each check reads the value now: the watch itself makes the window
	// (the condition must hold at every check across it), so the metric
	// is not averaged over the window as well.
	env, err := x.env(cctx, p.t.cond.Refs(), nil)
	held := false
	if err == nil {
		held, err = p.t.cond.EvalContext(cctx, env)
	}
	if err != nil {
		// A check that could not be made breaks the run of holds: the
		// trigger fires only on conditions seen to hold.
		p.count, p.lastErr = 0, x.red.String(err.Error())
		p.problems++
		rec.Error = p.lastErr
		return rec
	}
	p.checked, p.lastErr = true, ""
	if held {
		p.count++
	} else {
		p.count = 0
	}
	rec.Held, rec.Count = held, p.count
	rec.Fired = held && p.count >= p.needed
	return rec
}

func checkMessage(r *WatchRecord) string {
	switch {
	case r.Error != "":
		return fmt.Sprintf("could not check %s: %s", r.Condition, r.Error)
	case r.Fired:
		return fmt.Sprintf("%s held %d checks in a row: rolling back", r.Condition, r.Count)
	case r.Held:
		return fmt.Sprintf("%s holds (%d of %d)", r.Condition, r.Count, r.Needed)
	}
	return fmt.Sprintf("%s does not hold", r.Condition)
}
