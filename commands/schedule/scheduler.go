package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Starter starts executions; *engine.Engine implements it.
type Starter interface {
	Start(ctx context.Context, req engine.StartRequest) (string, error)
}

// Config wires a Scheduler.
type Config struct {
	// Store keeps claims and pauses (shared by replicas).
	Store Store
	// Starter starts the scheduled executions.
	Starter Starter
	// Catalog returns the runbooks as they are now (it is read again on
	// every tick and on Wake, so reloads are picked up).
	Catalog func() *engine.Catalog
	// Clock times every tick (default: the wall clock).
	Clock engine.Clock
	// Logger receives fired, skipped and failed ticks.
	Logger *slog.Logger
	// Platform and Channel are where a scheduled run's thread is posted
	// (e.g. "slack", "#ops"); empty Channel: no thread.
	Platform string
	Channel  string
	// Auth guards Pause and Resume (nil: everyone may).
	Auth Authorizer
	// Grace is how long after its tick a run still counts as on time
	// (default one minute); later runs are marked late.
	Grace time.Duration
}

// Scheduler fires the catalog's schedule runbooks on their ticks.
type Scheduler struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	entries map[string]*entry
	running bool
}

// entry is a schedule the loop is timing.
type entry struct {
	s    *Schedule
	next time.Time
}

// New returns a scheduler; Run drives it.
func New(cfg Config) *Scheduler {
	if cfg.Clock == nil {
		cfg.Clock = engine.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Minute
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	return &Scheduler{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), entries: map[string]*entry{}}
}

// Wake makes the loop read the catalog again (after a reload).
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run fires ticks until ctx ends. It first runs, late, the most recent
// tick each schedule missed while no replica was running.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("schedule: Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	s.refresh()
	s.catchUp(ctx)
	for {
		next := s.refresh()
		var (
			t engine.Timer
			c <-chan time.Time
		)
		if !next.IsZero() {
			t = s.cfg.Clock.NewTimer(next.Sub(s.cfg.Clock.Now()))
			c = t.C()
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return nil
		case <-s.wake:
			if t != nil {
				t.Stop()
			}
		case at := <-c:
			s.fireDue(ctx, at)
		}
	}
}

// refresh syncs the timed schedules with the catalog and returns the
// earliest next tick (zero: none).
func (s *Scheduler) refresh() time.Time {
	scheds := s.schedules()
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var earliest time.Time
	for _, sc := range scheds {
		seen[sc.Runbook] = true
		e := s.entries[sc.Runbook]
		if e == nil || e.s.Spec != sc.Spec || e.s.Timezone != sc.Timezone {
			e = &entry{s: sc, next: sc.Next(now)}
			s.entries[sc.Runbook] = e
		}
		if !e.next.IsZero() && (earliest.IsZero() || e.next.Before(earliest)) {
			earliest = e.next
		}
	}
	for n := range s.entries {
		if !seen[n] {
			delete(s.entries, n)
		}
	}
	return earliest
}

// schedules parses the catalog's schedule triggers.
func (s *Scheduler) schedules() []*Schedule {
	cat := s.catalog()
	if cat == nil {
		return nil
	}
	var out []*Schedule
	for _, n := range cat.Names() {
		sc, err := FromRunbook(cat.Runbooks[n])
		if err != nil {
			s.log.Error("schedule not usable", "runbook", n, "err", err)
			continue
		}
		if sc != nil {
			out = append(out, sc)
		}
	}
	return out
}

func (s *Scheduler) catalog() *engine.Catalog {
	if s.cfg.Catalog == nil {
		return nil
	}
	return s.cfg.Catalog()
}

// catchUp runs the latest tick each schedule missed since its last claim.
func (s *Scheduler) catchUp(ctx context.Context) {
	states, err := readStates(ctx, s.cfg.Store)
	if err != nil {
		s.log.Error("schedules: reading their state; missed ticks are not run", "err", err)
		return
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	due := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		due = append(due, e)
	}
	s.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].s.Runbook < due[j].s.Runbook })
	for _, e := range due {
		st := states[e.s.Runbook]
		if st.Last.IsZero() {
			continue // never fired: nothing to catch up
		}
		tick, dropped := e.s.Latest(st.Last, now)
		if tick.IsZero() {
			continue
		}
		s.fire(ctx, e.s, tick, dropped, st)
	}
}

// fireDue fires every schedule whose next tick has come. When a schedule
// has more than one tick due (the process stalled), only the latest runs.
func (s *Scheduler) fireDue(ctx context.Context, at time.Time) {
	until := s.cfg.Clock.Now()
	if at.After(until) {
		until = at
	}
	type due struct {
		s       *Schedule
		tick    time.Time
		dropped int
	}
	var list []due
	s.mu.Lock()
	for _, e := range s.entries {
		if e.next.IsZero() || e.next.After(until) {
			continue
		}
		tick, dropped := e.s.Latest(e.next, until)
		if tick.IsZero() {
			tick = e.next
		} else {
			dropped++ // e.next itself
		}
		list = append(list, due{e.s, tick, dropped})
		e.next = e.s.Next(tick)
	}
	s.mu.Unlock()
	if len(list) == 0 {
		return
	}
	sort.Slice(list, func(i, j int) bool { return list[i].s.Runbook < list[j].s.Runbook })
	states, err := readStates(ctx, s.cfg.Store)
	if err != nil {
		s.log.Error("schedules: reading their state; these ticks are not run", "err", err, "ticks", len(list))
		return
	}
	for _, d := range list {
		s.fire(ctx, d.s, d.tick, d.dropped, states[d.s.Runbook])
	}
}

// fire claims one tick and, when this replica won it and the schedule is
// not paused, starts the run.
func (s *Scheduler) fire(ctx context.Context, sc *Schedule, tick time.Time, dropped int, st State) {
	log := s.log.With("runbook", sc.Runbook, "tick", tick.Format(time.RFC3339))
	ok, err := s.cfg.Store.Claim(ctx, sc.Runbook, tick)
	if err != nil {
		log.Error("schedule: claiming a tick failed; it does not run", "err", err)
		return
	}
	if !ok {
		log.Debug("schedule: tick already claimed (another replica, or before a restart)")
		return
	}
	if dropped > 0 {
		log.Warn("schedule: ticks missed; only the latest runs", "dropped", dropped)
	}
	if st.Pause.Paused {
		log.Info("schedule: paused; tick skipped", "pausedBy", st.Pause.By)
		return
	}
	if !st.Pause.At.IsZero() && !tick.After(st.Pause.At) {
		log.Info("schedule: tick fell in a pause; skipped")
		return
	}
	cat := s.catalog()
	if cat == nil {
		return
	}
	rb, err := cat.Lookup(sc.Runbook)
	if err != nil {
		log.Error("schedule: runbook gone", "err", err)
		return
	}
	now := s.cfg.Clock.Now()
	late := now.Sub(tick) > s.cfg.Grace
	req := StartRequest(rb, sc, tick, late, now)
	req.Trigger.Platform, req.Trigger.Channel = s.platformChannel(rb)
	id, err := s.cfg.Starter.Start(ctx, req)
	if err != nil {
		log.Error("schedule: the run did not start", "err", err)
		return
	}
	if late {
		log.Warn("schedule: missed tick run late", "execution", id, "lateBy", now.Sub(tick).Round(time.Second).String())
	} else {
		log.Info("schedule: fired", "execution", id)
	}
}

// platformChannel is where a scheduled run's thread goes.
func (s *Scheduler) platformChannel(rb *engine.Runbook) (string, string) {
	if rb != nil && rb.Trigger.Channel != "" {
		return s.cfg.Platform, rb.Trigger.Channel
	}
	if s.cfg.Channel == "" {
		return "", ""
	}
	return s.cfg.Platform, s.cfg.Channel
}

// StartRequest is the request a tick of sc starts rb with: trigger type
// schedule, the tick in Trigger.Tick, and, when it runs late, a source
// that says so (chat shows it) and context.scheduleLate.
func StartRequest(rb *engine.Runbook, sc *Schedule, tick time.Time, late bool, now time.Time) engine.StartRequest {
	t := tick.UTC()
	source := "cron " + sc.Spec
	if sc.Timezone != "" {
		source += " " + sc.Timezone
	}
	ctx := map[string]any{"scheduleTick": t.Format(time.RFC3339), "scheduleLate": late}
	if late {
		by := now.Sub(t).Round(time.Second)
		source += fmt.Sprintf("; late: the %s tick, run %s after it", t.Format("2006-01-02 15:04 UTC"), by)
		ctx["scheduleLateBy"] = by.String()
	}
	return engine.StartRequest{
		Runbook: rb.Name(),
		Params:  Params(rb),
		Trigger: engine.TriggerInfo{Type: "schedule", Source: source, TriggeredBy: "schedule:" + rb.Name(), Tick: &t},
		Context: ctx,
	}
}
