package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Source is the event log the timeline reads (engine.Store has it).
type Source interface {
	ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error)
}

// Options configure a Timeline.
type Options struct {
	// Source is the event log; Checkpoints keeps the cursor.
	Source      Source
	Checkpoints Checkpoints
	// Providers by name; Route picks one per runbook ("" for none).
	Providers map[string]Provider
	Route     func(runbook string) string
	// Create allows creating incidents when the trigger names none that
	// is open.
	Create bool
	// Owner names this process in the checkpoint's in-flight record.
	Owner string
	// IntentTTL is how long an operation another owner has in flight is
	// left to it (replicas sharing a checkpoint). 0 takes it over at once:
	// right when one process owns the checkpoint.
	IntentTTL time.Duration
	// StartAtHead makes a timeline with no checkpoint yet begin after the
	// newest event instead of the oldest, so history is not replayed into
	// incidents. The starting point is saved at once. A source that has a
	// LastPos method tells it; others are read to the end once.
	StartAtHead bool
	Clock       engine.Clock
	Logger      *slog.Logger
	// Batch is how many events one read asks for (default 256); Poll how
	// often Run looks for events when not notified (default 1s).
	Batch int
	Poll  time.Duration
	// Backoff is the first retry delay (default 1s), doubling to MaxBackoff
	// (default 2m).
	Backoff, MaxBackoff time.Duration
}

// posReporter is a source that can tell its last Pos.
type posReporter interface {
	LastPos(ctx context.Context) (uint64, error)
}

// Timeline writes executions into incident timelines. Run it; Notify it
// when events are appended.
type Timeline struct {
	o         Options
	providers map[string]Provider
	route     func(string) string
	create    bool
	log       *slog.Logger
	clock     engine.Clock
	wake      chan struct{}

	mu      sync.Mutex // one step at a time
	cp      *checkpoint
	version uint64
	known   bool

	sent    atomic.Uint64
	dropped atomic.Uint64
	errs    atomic.Uint64
	cursor  atomic.Uint64
	failing atomic.Bool
}

// Stats are the timeline's counters.
type Stats struct {
	Sent    uint64 // operations this process completed
	Dropped uint64 // operations given up on (answers that will not change)
	Errors  uint64 // failed attempts
	Cursor  uint64 // Pos of the last event handled
	Failing bool   // the last attempt failed
}

// NewTimeline returns a timeline; start it with Run.
func NewTimeline(o Options) *Timeline {
	t := &Timeline{o: o, providers: o.Providers, route: o.Route, create: o.Create, log: o.Logger, clock: o.Clock, wake: make(chan struct{}, 1)}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.clock == nil {
		t.clock = engine.SystemClock{}
	}
	if t.route == nil {
		t.route = func(string) string { return "" }
	}
	if t.o.Batch <= 0 {
		t.o.Batch = 256
	}
	if t.o.Poll <= 0 {
		t.o.Poll = time.Second
	}
	if t.o.Backoff <= 0 {
		t.o.Backoff = time.Second
	}
	if t.o.MaxBackoff <= 0 {
		t.o.MaxBackoff = 2 * time.Minute
	}
	return t
}

// Notify wakes Run. It never blocks.
func (t *Timeline) Notify() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (t *Timeline) Stats() Stats {
	return Stats{Sent: t.sent.Load(), Dropped: t.dropped.Load(), Errors: t.errs.Load(), Cursor: t.cursor.Load(), Failing: t.failing.Load()}
}

// Run writes timelines until ctx ends, retrying failures with backoff on
// the clock, and returns ctx's error.
func (t *Timeline) Run(ctx context.Context) error {
	attempt := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		more, wait, err := t.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			attempt++
			t.errs.Add(1)
			t.failing.Store(true)
			d := t.delay(attempt, err)
			t.log.Warn("incident timeline: will retry", "err", err, "attempt", attempt, "retryIn", d)
			if !t.sleep(ctx, d, false) {
				return ctx.Err()
			}
			continue
		}
		if attempt > 0 {
			t.log.Info("incident timeline: recovered", "failedAttempts", attempt)
			attempt = 0
		}
		t.failing.Store(false)
		if more {
			continue
		}
		d := t.o.Poll
		if wait > 0 {
			d = wait
		}
		if !t.sleep(ctx, d, wait == 0) {
			return ctx.Err()
		}
	}
}

// Drain handles every event the source holds now and returns; it stops at
// the first failure instead of retrying. Tests and shutdown use it.
func (t *Timeline) Drain(ctx context.Context) error {
	for {
		more, wait, err := t.step(ctx)
		if err != nil {
			t.errs.Add(1)
			return err
		}
		if wait > 0 {
			return errors.New("incident timeline: another replica has an operation in flight")
		}
		if !more {
			return nil
		}
	}
}

func (t *Timeline) delay(attempt int, err error) time.Duration {
	d := time.Duration(float64(t.o.Backoff) * float64(uint64(1)<<min(attempt-1, 20)))
	d = min(d, t.o.MaxBackoff)
	d -= time.Duration(rand.Float64() * 0.1 * float64(d))
	if _, after := retryable(err); after > d {
		d = after
	}
	return d
}

func (t *Timeline) sleep(ctx context.Context, d time.Duration, wakeable bool) bool {
	tm := t.clock.NewTimer(d)
	defer tm.Stop()
	var wake chan struct{}
	if wakeable {
		wake = t.wake
	}
	select {
	case <-tm.C():
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// load reads the checkpoint.
func (t *Timeline) load(ctx context.Context) error {
	data, v, err := t.o.Checkpoints.Load(ctx)
	if err != nil {
		return fmt.Errorf("reading the checkpoint: %w", err)
	}
	cp := &checkpoint{}
	if len(data) > 0 {
		if err := json.Unmarshal(data, cp); err != nil {
			return fmt.Errorf("the incident checkpoint is damaged: %w", err)
		}
	} else if t.o.StartAtHead {
		head, err := t.head(ctx)
		if err != nil {
			return fmt.Errorf("reading the newest event: %w", err)
		}
		cp.Cursor = head
	}
	t.cp, t.version, t.known = cp.clone(), v, true
	t.cursor.Store(cp.Cursor)
	if len(data) == 0 && t.o.StartAtHead {
		// Keep where the timeline began at once: a process that dies before
		// its first operation must not begin again at a newer head and skip
		// the events in between.
		return t.save(ctx, t.cp.clone())
	}
	return nil
}

// head returns the Pos of the newest event: the source's LastPos, or, for
// a source that cannot tell, by reading to the end once.
func (t *Timeline) head(ctx context.Context) (uint64, error) {
	if pr, ok := t.o.Source.(posReporter); ok {
		return pr.LastPos(ctx)
	}
	var pos uint64
	for {
		evs, err := t.o.Source.ReadFrom(ctx, pos, t.o.Batch)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			return pos, nil
		}
		pos = evs[len(evs)-1].Pos
	}
}

// save writes cp with compare-and-set; on conflict the next step rereads.
func (t *Timeline) save(ctx context.Context, cp *checkpoint) error {
	data, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	v, err := t.o.Checkpoints.Save(ctx, data, t.version)
	if err != nil {
		t.known = false
		return err
	}
	t.cp, t.version = cp, v
	t.cursor.Store(cp.Cursor)
	return nil
}

// step handles one batch. more: call again at once; wait: another owner
// has an operation in flight, look again after this long.
func (t *Timeline) step(ctx context.Context) (more bool, wait time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known {
		if err := t.load(ctx); err != nil {
			if errors.Is(err, ErrConflict) {
				return true, 0, nil // another replica saved the first checkpoint
			}
			return false, 0, err
		}
	}
	if p := t.cp.Pending; p != nil && p.InFlight && p.Owner != t.o.Owner && t.o.IntentTTL > 0 {
		if age := t.clock.Now().Sub(p.At); age < t.o.IntentTTL {
			return false, t.o.IntentTTL - age, nil
		}
	}
	evs, err := t.o.Source.ReadFrom(ctx, t.cp.Cursor, t.o.Batch)
	if err != nil {
		return false, 0, fmt.Errorf("reading events: %w", err)
	}
	if len(evs) == 0 {
		return false, 0, nil
	}
	for _, ev := range evs {
		if err := t.handle(ctx, ev); err != nil {
			if errors.Is(err, ErrConflict) {
				return true, 0, nil // another replica moved on: reread
			}
			return false, 0, err
		}
	}
	return len(evs) == t.o.Batch, 0, nil
}

// handle runs the operations of one event, recording each before and after
// it is sent, and moves the cursor past the event.
func (t *Timeline) handle(ctx context.Context, ev engine.Event) error {
	cp := t.cp.clone()
	rec, ops := t.plan(ev, cp.Executions[ev.ExecutionID])
	start, recovering := 0, false
	if p := cp.Pending; p != nil && p.Pos == ev.Pos {
		start, recovering = p.Op, p.InFlight
	}
	if rec != nil {
		cp.Executions[ev.ExecutionID] = rec
	}
	var prov Provider
	if rec != nil {
		prov = t.providers[rec.Provider]
	}
	for k := start; k < len(ops); k++ {
		o := ops[k]
		if o.kind != opAttach && (rec == nil || rec.Incident == nil) {
			continue // the execution has no incident (attaching failed)
		}
		if !(recovering && k == start) {
			cp.Pending = &pending{Pos: ev.Pos, Op: k, InFlight: true, Owner: t.o.Owner, At: t.clock.Now()}
			if err := t.save(ctx, cp); err != nil {
				return err
			}
			cp = t.cp.clone()
			rec = cp.Executions[ev.ExecutionID]
		}
		err := t.apply(ctx, prov, rec, o, recovering && k == start)
		if err != nil {
			if ok, _ := retryable(err); ok {
				// Leave it in flight: the retry reconciles it first.
				t.cp.Pending = &pending{Pos: ev.Pos, Op: k, InFlight: true, Owner: t.o.Owner, At: t.clock.Now()}
				return fmt.Errorf("%s for execution %s: %w", o.kind, ev.ExecutionID, err)
			}
			t.dropped.Add(1)
			t.log.Error("incident timeline: dropped an operation the provider refused", "op", o.kind, "execution", ev.ExecutionID,
				"runbook", ev.RunbookName, "provider", rec.Provider, "err", err)
		} else {
			t.sent.Add(1)
		}
		recovering = false
		cp.Pending = &pending{Pos: ev.Pos, Op: k + 1}
		if k+1 < len(ops) {
			if err := t.save(ctx, cp); err != nil {
				return err
			}
			cp = t.cp.clone()
			rec = cp.Executions[ev.ExecutionID]
		}
	}
	if ev.Type == engine.EventExecutionFinished {
		delete(cp.Executions, ev.ExecutionID)
	}
	cp.Cursor, cp.Pending = ev.Pos, nil
	if len(ops) == 0 && t.cp.Pending == nil {
		// Nothing to record but the cursor: keep it in memory and save it
		// with the next change (rereading a few events costs nothing).
		t.cp.Cursor = ev.Pos
		t.cursor.Store(ev.Pos)
		return nil
	}
	return t.save(ctx, cp)
}

// apply sends one operation. reconcile is set when the operation may have
// taken effect before a crash or a lost answer.
func (t *Timeline) apply(ctx context.Context, p Provider, rec *execRecord, o op, reconcile bool) error {
	if p == nil {
		return &Error{Provider: rec.Provider, Op: o.kind, Message: "provider is not configured"}
	}
	switch o.kind {
	case opAttach:
		inc, err := p.Attach(ctx, o.attach)
		if err != nil {
			return err
		}
		rec.Incident = &inc
		t.log.Info("incident timeline: execution attached", "execution", o.attach.ExecutionID, "provider", rec.Provider, "incident", inc.ID, "created", inc.Created)
		return nil
	case opNote:
		if reconcile {
			found, ok, err := p.Noted(ctx, *rec.Incident, o.entry.Marker)
			if err != nil {
				return err
			}
			if ok && found {
				return nil
			}
		}
		return p.Note(ctx, *rec.Incident, o.entry)
	case opResolve:
		return p.Resolve(ctx, *rec.Incident, o.entry)
	case opEscalate:
		return p.Escalate(ctx, *rec.Incident, o.entry)
	}
	return nil
}
