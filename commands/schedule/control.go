package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// PermManage is the RBAC permission that pauses and resumes schedules.
const PermManage = "schedules:manage"

// Authorizer answers whether a user holds a permission;
// *commands.Authorizer implements it.
type Authorizer interface {
	Allowed(ctx context.Context, user, perm string) (bool, error)
}

// Errors Pause and Resume return.
var (
	ErrUnknown    = errors.New("no such schedule")
	ErrNotAllowed = errors.New("not allowed to pause or resume schedules (needs " + PermManage + ")")
)

// Status is one schedule as `runbookbot schedules` and `/runbook
// schedules` list it.
type Status struct {
	Runbook  string `json:"runbook"`
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone,omitempty"`
	// Next is the next tick (zero when the expression has none).
	Next time.Time `json:"next"`
	// Last is the latest tick fired or skipped (zero: never).
	Last     time.Time  `json:"last,omitzero"`
	Paused   bool       `json:"paused"`
	PausedBy string     `json:"pausedBy,omitempty"`
	PausedAt *time.Time `json:"pausedAt,omitempty"`
	// Channel is where its runs post their thread ("" for none).
	Channel string `json:"channel,omitempty"`
}

// List returns every schedule of the catalog, by runbook name, with its
// next tick after now and its pause state. It works whether or not Run is
// running.
func (s *Scheduler) List(ctx context.Context) ([]Status, error) {
	states, err := readStates(ctx, s.cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("reading schedule state: %w", err)
	}
	now := s.cfg.Clock.Now()
	cat := s.catalog()
	var out []Status
	for _, sc := range s.schedules() {
		st := states[sc.Runbook]
		next := sc.Next(now)
		s.mu.Lock()
		if e := s.entries[sc.Runbook]; e != nil && e.s.Spec == sc.Spec && e.s.Timezone == sc.Timezone && !e.next.IsZero() {
			next = e.next
		}
		s.mu.Unlock()
		row := Status{Runbook: sc.Runbook, Schedule: sc.Spec, Timezone: sc.Timezone, Next: next, Last: st.Last, Paused: st.Pause.Paused}
		if rb, err := cat.Lookup(sc.Runbook); err == nil {
			_, row.Channel = s.platformChannel(rb)
		}
		if st.Pause.Paused {
			at := st.Pause.At
			row.PausedBy, row.PausedAt = st.Pause.By, &at
		}
		out = append(out, row)
	}
	return out, nil
}

// Pause stops the runbook's schedule from firing, on every replica sharing
// the store, until Resume. user needs PermManage.
func (s *Scheduler) Pause(ctx context.Context, runbook, user string) error {
	return s.setPause(ctx, runbook, user, true)
}

// Resume lets a paused schedule fire again from its next tick; ticks that
// fell in the pause are not run. user needs PermManage.
func (s *Scheduler) Resume(ctx context.Context, runbook, user string) error {
	return s.setPause(ctx, runbook, user, false)
}

func (s *Scheduler) setPause(ctx context.Context, runbook, user string, paused bool) error {
	found := false
	for _, sc := range s.schedules() {
		if sc.Runbook == runbook {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: %q is not a runbook with a schedule trigger", ErrUnknown, runbook)
	}
	if s.cfg.Auth != nil {
		ok, err := s.cfg.Auth.Allowed(ctx, user, PermManage)
		if err != nil {
			return err
		}
		if !ok {
			s.log.Warn("audit: refused", "audit", true, "user", user, "action", verb(paused)+" schedule "+runbook, "permission", PermManage)
			return ErrNotAllowed
		}
	}
	rec, err := json.Marshal(Pause{Paused: paused, By: user, At: s.cfg.Clock.Now().UTC()})
	if err != nil {
		return err
	}
	if err := s.cfg.Store.SavePause(ctx, runbook, rec); err != nil {
		return fmt.Errorf("saving the pause: %w", err)
	}
	s.log.Info("audit: schedule "+verb(paused)+"d", "audit", true, "user", user, "runbook", runbook)
	return nil
}

func verb(paused bool) string {
	if paused {
		return "pause"
	}
	return "resume"
}
