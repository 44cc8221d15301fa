// Package schedule fires runbooks whose trigger is a schedule:
//
//	trigger: {type: schedule, schedule: "*/15 * * * *", timezone: Europe/Berlin}
//
// Cron expressions are robfig/cron v3's: five fields (minute hour
// day-of-month month day-of-week) or a descriptor (@hourly, @daily,
// @every 30s). All timing goes through the injected engine.Clock.
//
// Each tick fires at most once across every replica that shares a Store and
// across restarts: a replica fires tick T of a schedule only after claiming
// it in the Store, and a claim succeeds only for a tick later than every
// tick claimed before (the claim is monotonic). After downtime, only the
// most recent missed tick is run, late, and marked as such in its trigger;
// the ticks before it are dropped and logged. A schedule's first tick after
// it appears is the next one: nothing is caught up for a schedule that has
// never fired.
//
// Schedules can be paused and resumed (RBAC permission PermManage); the
// pause is kept in the Store so that every replica honours it. Ticks that
// fall in a pause are claimed without running, so resuming never runs one
// of them late.
package schedule

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/runbookbot/runbookbot/engine"
)

// parser accepts what the engine's lint accepts.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is one runbook's cron trigger.
type Schedule struct {
	// Runbook is the runbook's name; schedules are named after it.
	Runbook string
	// Spec is the cron expression as written.
	Spec string
	// Timezone is the IANA zone the expression is read in ("" for UTC).
	Timezone string

	cron cron.Schedule
	loc  *time.Location
}

// Parse parses a cron expression read in timezone (empty: UTC).
func Parse(runbook, spec, timezone string) (*Schedule, error) {
	loc := time.UTC
	if timezone != "" {
		l, err := time.LoadLocation(timezone)
		if err != nil {
			return nil, fmt.Errorf("schedule %s: timezone %q: %w", runbook, timezone, err)
		}
		loc = l
	}
	c, err := parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: cron expression %q: %w", runbook, spec, err)
	}
	return &Schedule{Runbook: runbook, Spec: spec, Timezone: timezone, cron: c, loc: loc}, nil
}

// FromRunbook returns the runbook's schedule, or nil when its trigger is
// not a schedule.
func FromRunbook(rb *engine.Runbook) (*Schedule, error) {
	if rb.Trigger.Type != "schedule" {
		return nil, nil
	}
	return Parse(rb.Name(), rb.Trigger.Schedule, rb.Trigger.Timezone)
}

// Next returns the first tick strictly after t.
func (s *Schedule) Next(t time.Time) time.Time {
	n := s.cron.Next(t.In(s.loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// Latest returns the last tick in (after, until] and how many ticks of
// that interval come before it (counted up to 10,000), or a zero time
// when there is none. When
// after is zero it looks back at most a year. It steps through the
// interval from its end, widening the window, so a long interval costs
// little.
func (s *Schedule) Latest(after, until time.Time) (time.Time, int) {
	if !after.IsZero() && !after.Before(until) {
		return time.Time{}, 0
	}
	floor := after
	if floor.IsZero() {
		floor = until.AddDate(-1, 0, 0)
	}
	for w := time.Minute; ; w *= 4 {
		from := until.Add(-w)
		widest := !from.After(floor)
		if widest {
			from = floor
		}
		t := s.Next(from)
		if !t.IsZero() && !t.After(until) {
			latest, n := t, 0
			for {
				nx := s.Next(latest)
				if nx.IsZero() || nx.After(until) {
					break
				}
				latest = nx
				n++
			}
			if !widest {
				// Ticks between floor and from were not stepped through.
				n = min(n+s.countBefore(floor, from), maxCount)
			}
			return latest, n
		}
		if widest {
			return time.Time{}, 0
		}
	}
}

// maxCount bounds the count of dropped ticks.
const maxCount = 10000

// countBefore counts ticks in (after, until], up to maxCount.
func (s *Schedule) countBefore(after, until time.Time) int {
	n := 0
	for t := s.Next(after); !t.IsZero() && !t.After(until) && n < maxCount; t = s.Next(t) {
		n++
	}
	return n
}
