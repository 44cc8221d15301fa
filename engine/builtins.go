package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Notification is a message a notification step sends.
type Notification struct {
	ExecutionID string
	Runbook     string
	Channels    []string
	Severity    string
	Message     string
}

// Notifier delivers notifications (chat, PagerDuty, webhooks). The bot and
// integrations/notify implement it.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, n Notification) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n Notification) error { return f(ctx, n) }

// ErrConditionTimeout is returned when a wait/until condition does not hold
// before its timeout.
var ErrConditionTimeout = errors.New("condition not met before timeout")

// RegisterBuiltins adds the step types that need no outside system: wait
// (until, sleep), schedule.isWithinWindow, notification.send (to n, which may
// be nil to only record the message) and log/echo for tests and demos.
func RegisterBuiltins(r *Registry, n Notifier) {
	r.Register(ActionSpec{
		Type: "wait", Action: "until", Run: ActionFunc(waitUntil), Idempotent: true,
		Required: []string{"condition"}, Conditions: []string{"condition"},
		Estimate: func(s *Step) time.Duration {
			d, _ := ParseDuration(Stringify(s.Params.Values["timeout"]))
			return d
		},
	})
	r.Register(ActionSpec{
		Type: "wait", Action: "sleep", Run: ActionFunc(waitSleep), Required: []string{"duration"}, Idempotent: true,
		Estimate: func(s *Step) time.Duration {
			d, _ := ParseDuration(Stringify(s.Params.Values["duration"]))
			return d
		},
	})
	r.Register(ActionSpec{
		Type: "schedule", Action: "isWithinWindow", Run: ActionFunc(withinWindow), Required: []string{"windows"}, Idempotent: true,
		Validate: func(s *Step) error {
			_, err := parseWindows(s.Params.Values["windows"])
			return err
		},
		Estimate: func(*Step) time.Duration { return time.Second },
	})
	r.Register(ActionSpec{
		Type: "notification", Action: "send", Required: []string{"message"}, Mutating: true,
		Run: ActionFunc(func(ctx context.Context, c *Call) (Result, error) {
			msg := Notification{ExecutionID: c.ExecutionID, Runbook: c.Runbook.Name(), Severity: c.String("severity"), Message: c.String("message")}
			if c.Redact != nil {
				msg.Message = c.Redact(msg.Message)
			}
			switch ch := c.Params["channels"].(type) {
			case []any:
				for _, x := range ch {
					msg.Channels = append(msg.Channels, Stringify(x))
				}
			case string:
				msg.Channels = []string{ch}
			}
			if ch := c.String("channel"); ch != "" {
				msg.Channels = append(msg.Channels, ch)
			}
			delivered := false
			if n != nil {
				if err := n.Notify(ctx, msg); err != nil {
					return Result{}, fmt.Errorf("notification: %w", err)
				}
				delivered = true
			}
			return Result{Output: map[string]any{"message": msg.Message, "channels": toAnySlice(msg.Channels), "delivered": delivered}}, nil
		}),
		Estimate: func(*Step) time.Duration { return time.Second },
	})
	echo := ActionSpec{
		Type: "log", Action: "*", Run: ActionFunc(echoAction), Idempotent: true,
		Estimate: func(*Step) time.Duration { return time.Second },
	}
	r.Register(echo)
	echo.Type = "echo"
	r.Register(echo)
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// echoAction returns its params as output. `fail: "reason"` makes it fail,
// which demos and tests use to show rollback.
func echoAction(_ context.Context, c *Call) (Result, error) {
	out := map[string]any{}
	for k, v := range c.Params {
		if k != "fail" {
			out[k] = v
		}
	}
	if f, ok := c.Params["fail"]; ok && f != nil && f != false && f != "" {
		return Result{Output: out}, fmt.Errorf("%s", Stringify(f))
	}
	return Result{Output: out}, nil
}

func waitUntil(ctx context.Context, c *Call) (Result, error) {
	cond := c.Conditions["condition"]
	timeout, err := c.Duration("timeout", 5*time.Minute)
	if err != nil {
		return Result{}, err
	}
	poll, err := c.Duration("pollInterval", 5*time.Second)
	if err != nil {
		return Result{}, err
	}
	if poll <= 0 {
		poll = 5 * time.Second
	}
	start := c.Clock.Now()
	if !c.Started.IsZero() && c.Started.Before(start) {
		start = c.Started // resumed after a restart: the timeout counts from the first start
	}
	deadline := c.Clock.NewTimer(max(timeout-c.Clock.Now().Sub(start), 0))
	defer deadline.Stop()
	var lastErr error
	for attempt := 1; ; attempt++ {
		ok, err := c.Eval(ctx, cond)
		if err == nil && ok {
			return Result{Output: map[string]any{"attempts": attempt, "waitedSeconds": c.Clock.Now().Sub(start).Seconds()}}, nil
		}
		if err != nil && !IsTransient(err) {
			// Waiting cannot change the answer (nothing provides the data,
			// or the condition itself is broken): fail now.
			return Result{Output: map[string]any{"attempts": attempt}}, fmt.Errorf("condition %s cannot be checked: %w", cond.Source, err)
		}
		lastErr = err
		tick := c.Clock.NewTimer(poll)
		select {
		case <-ctx.Done():
			tick.Stop()
			return Result{}, context.Cause(ctx)
		case <-deadline.C():
			tick.Stop()
			out := map[string]any{"attempts": attempt}
			if lastErr != nil {
				return Result{Output: out}, fmt.Errorf("%w (%s, last error: %v)", ErrConditionTimeout, timeout, lastErr)
			}
			return Result{Output: out}, fmt.Errorf("%w: %s still false after %s", ErrConditionTimeout, cond.Source, timeout)
		case <-tick.C():
		}
	}
}

// liveDataError is a failure to fetch live data (a cluster or Prometheus
// that did not answer): trying again later may succeed.
type liveDataError struct {
	root string
	err  error
}

func (e *liveDataError) Error() string { return "reading " + e.root + ": " + e.err.Error() }
func (e *liveDataError) Unwrap() error { return e.err }

// IsTransient reports whether err is a failure to reach live data that a
// later attempt may overcome, as opposed to a condition that cannot be
// answered at all (no integration provides its data, or it does not
// evaluate).
func IsTransient(err error) bool {
	var l *liveDataError
	return errors.As(err, &l)
}

func waitSleep(ctx context.Context, c *Call) (Result, error) {
	d, err := c.Duration("duration", 0)
	if err != nil {
		return Result{}, err
	}
	left := d
	if !c.Started.IsZero() {
		left = d - c.Clock.Now().Sub(c.Started) // resumed: sleep only what is left
	}
	if left <= 0 {
		return Result{Output: map[string]any{"sleptSeconds": d.Seconds()}}, nil
	}
	t := c.Clock.NewTimer(left)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return Result{}, context.Cause(ctx)
	case <-t.C():
		return Result{Output: map[string]any{"sleptSeconds": d.Seconds()}}, nil
	}
}

type window struct {
	start, end int // minutes after midnight
	loc        *time.Location
	days       map[time.Weekday]bool
	src        string
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func parseWindows(v any) ([]window, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("windows must be a list of {start, end, timezone}")
	}
	var out []window
	for i, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("windows[%d] must be a mapping with start and end", i)
		}
		w := window{loc: time.UTC}
		var err error
		if w.start, err = parseClock(Stringify(m["start"])); err != nil {
			return nil, fmt.Errorf("windows[%d].start: %w", i, err)
		}
		if w.end, err = parseClock(Stringify(m["end"])); err != nil {
			return nil, fmt.Errorf("windows[%d].end: %w", i, err)
		}
		if tz := Stringify(m["timezone"]); tz != "" {
			if w.loc, err = time.LoadLocation(tz); err != nil {
				return nil, fmt.Errorf("windows[%d].timezone: unknown time zone %q", i, tz)
			}
		}
		if days, ok := m["days"].([]any); ok {
			w.days = map[time.Weekday]bool{}
			for _, d := range days {
				wd, ok := weekdays[strings.ToLower(Stringify(d))[:min(3, len(Stringify(d)))]]
				if !ok {
					return nil, fmt.Errorf("windows[%d].days: unknown day %q", i, Stringify(d))
				}
				w.days[wd] = true
			}
		}
		w.src = fmt.Sprintf("%s-%s %s", m["start"], m["end"], w.loc)
		out = append(out, w)
	}
	return out, nil
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("want HH:MM, got %q", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func (w window) contains(t time.Time) bool {
	t = t.In(w.loc)
	if w.days != nil && !w.days[t.Weekday()] {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	if w.start <= w.end {
		return m >= w.start && m < w.end
	}
	return m >= w.start || m < w.end // crosses midnight
}

func withinWindow(_ context.Context, c *Call) (Result, error) {
	ws, err := parseWindows(c.Params["windows"])
	if err != nil {
		return Result{}, err
	}
	now := c.Clock.Now()
	for _, w := range ws {
		if w.contains(now) {
			return Result{Output: map[string]any{"withinWindow": true, "window": w.src}}, nil
		}
	}
	return Result{Output: map[string]any{"withinWindow": false}}, fmt.Errorf("outside change window (now %s UTC)", now.UTC().Format("15:04"))
}
