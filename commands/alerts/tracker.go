package alerts

import (
	"sync"
	"time"
)

// Pending is the execution id Begin reports for an execution that has been
// admitted but not yet given its id with Attach.
const Pending = "pending"

// Tracker defaults.
const (
	DefaultCoolDown  = 10 * time.Minute
	DefaultLimit     = 3
	DefaultThreadTTL = 7 * 24 * time.Hour
	DefaultMaxQueue  = 500
)

// TrackerConfig tunes a Tracker; zero fields take the defaults.
type TrackerConfig struct {
	// CoolDown is how long after an execution finishes the same alert may
	// not start the same runbook again (default 10m).
	CoolDown time.Duration
	// Limit caps concurrent automatic executions of any one runbook
	// (default 3); Limits overrides it per runbook.
	Limit  int
	Limits map[string]int
	// ThreadTTL is how long an alert's thread is remembered (default 7d).
	ThreadTTL time.Duration
	// MaxQueue bounds each runbook's queue; the oldest alerts are dropped
	// beyond it (default 500).
	MaxQueue int
	// Now is the clock for the calls that take no time (Drain, SetThread);
	// default time.Now.
	Now func() time.Time
}

// Tracker decides whether an alert may start a runbook now. It allows one
// execution per (alert fingerprint, runbook) at a time and none within the
// cool-down after it finished; it caps concurrent automatic executions
// per runbook and queues the alerts beyond the cap, so a storm becomes one
// "N alerts queued" message; and it remembers the thread each alert was
// announced in, so its resolution lands in the same thread. It keeps
// everything in memory, takes time from its callers (or TrackerConfig.Now)
// and is safe for concurrent use.
//
// The bot's flow: Begin; if admitted, Attach the id engine.Start returned
// (or Abort if it did not start); Finish when the execution ends, then
// Drain the runbook and start what it returns (already admitted). If Begin
// refuses with an empty existing id the runbook is at its cap: Queue.
type Tracker struct {
	cfg       TrackerConfig
	mu        sync.Mutex
	execs     map[execKey]*execEntry
	running   map[string]int
	queues    map[string][]Alert
	threads   map[string]threadEntry
	lastSweep time.Time
}

type execKey struct{ fp, runbook string }

type execEntry struct {
	id       string
	active   bool
	finished time.Time
}

type threadEntry struct {
	channel, ts string
	at          time.Time
}

// NewTracker returns an empty tracker.
func NewTracker(cfg TrackerConfig) *Tracker {
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = DefaultCoolDown
	}
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultLimit
	}
	if cfg.ThreadTTL <= 0 {
		cfg.ThreadTTL = DefaultThreadTTL
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	limits := make(map[string]int, len(cfg.Limits))
	for k, v := range cfg.Limits {
		limits[k] = v
	}
	cfg.Limits = limits
	return &Tracker{cfg: cfg, execs: map[execKey]*execEntry{}, running: map[string]int{},
		queues: map[string][]Alert{}, threads: map[string]threadEntry{}}
}

// Begin admits an automatic execution of runbook for the alert with
// fingerprint. It refuses, with ok false, when one is already running
// (existing is its id, or Pending before Attach), when one finished less
// than the cool-down ago (existing is that execution's id), or when the
// runbook is at its concurrency cap (existing is empty: Queue the alert).
func (t *Tracker) Begin(fingerprint, runbook string, now time.Time) (ok bool, existing string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	if id, busy := t.busy(execKey{fingerprint, runbook}, now); busy {
		return false, id
	}
	if t.running[runbook] >= t.limit(runbook) {
		return false, ""
	}
	t.admit(execKey{fingerprint, runbook})
	return true, ""
}

// busy reports whether k is running or cooling down, with the id to show.
func (t *Tracker) busy(k execKey, now time.Time) (string, bool) {
	e, ok := t.execs[k]
	if !ok {
		return "", false
	}
	if e.active {
		if e.id == "" {
			return Pending, true
		}
		return e.id, true
	}
	if now.Before(e.finished.Add(t.cfg.CoolDown)) {
		return e.id, true
	}
	delete(t.execs, k)
	return "", false
}

func (t *Tracker) admit(k execKey) {
	t.execs[k] = &execEntry{active: true}
	t.running[k.runbook]++
}

// Attach records the execution id of an admitted execution.
func (t *Tracker) Attach(fingerprint, runbook, execID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.execs[execKey{fingerprint, runbook}]; ok && e.active {
		e.id = execID
	}
}

// Abort releases an admitted execution that never started, with no
// cool-down.
func (t *Tracker) Abort(fingerprint, runbook string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := execKey{fingerprint, runbook}
	if e, ok := t.execs[k]; ok && e.active {
		delete(t.execs, k)
		t.release(runbook)
	}
}

// Finish records that the execution ended at now, which starts the
// cool-down and frees its slot. A Finish for another execution id than the
// one attached is ignored; execID may be empty if none was attached.
func (t *Tracker) Finish(fingerprint, runbook, execID string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.execs[execKey{fingerprint, runbook}]
	if !ok || !e.active || e.id != "" && execID != "" && e.id != execID {
		return
	}
	e.active, e.finished = false, now
	if execID != "" {
		e.id = execID
	}
	t.release(runbook)
}

func (t *Tracker) release(runbook string) {
	if t.running[runbook]--; t.running[runbook] <= 0 {
		delete(t.running, runbook)
	}
}

// CoolingUntil reports when the cool-down of (fingerprint, runbook) ends,
// if it is cooling down at now.
func (t *Tracker) CoolingUntil(fingerprint, runbook string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.execs[execKey{fingerprint, runbook}]
	if !ok || e.active {
		return time.Time{}, false
	}
	until := e.finished.Add(t.cfg.CoolDown)
	return until, now.Before(until)
}

// Running counts the runbook's admitted, unfinished executions.
func (t *Tracker) Running(runbook string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running[runbook]
}

// Limit is the runbook's cap on concurrent automatic executions.
func (t *Tracker) Limit(runbook string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limit(runbook)
}

// SetLimit changes the runbook's cap; n <= 0 restores the default.
func (t *Tracker) SetLimit(runbook string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n <= 0 {
		delete(t.cfg.Limits, runbook)
		return
	}
	t.cfg.Limits[runbook] = n
}

func (t *Tracker) limit(runbook string) int {
	if n, ok := t.cfg.Limits[runbook]; ok && n > 0 {
		return n
	}
	return t.cfg.Limit
}

// Queue holds an alert the runbook's cap refused, and returns how many are
// now queued for it: 1 means post the "queued" message, more means update
// it. An alert already queued (same fingerprint) is replaced in place.
func (t *Tracker) Queue(runbook string, a Alert) (queued int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queues[runbook]
	for i := range q {
		if q[i].Fingerprint == a.Fingerprint {
			q[i] = a
			return len(q)
		}
	}
	q = append(q, a)
	if len(q) > t.cfg.MaxQueue {
		q = append(q[:0:0], q[len(q)-t.cfg.MaxQueue:]...)
	}
	t.queues[runbook] = q
	return len(q)
}

// Queued returns the alerts queued for the runbook, oldest first.
func (t *Tracker) Queued(runbook string) []Alert {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Alert(nil), t.queues[runbook]...)
}

// Unqueue removes the alert with fingerprint from every queue (it
// resolved while waiting) and reports how many entries it removed.
func (t *Tracker) Unqueue(fingerprint string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for rb, q := range t.queues {
		out := q[:0]
		for _, a := range q {
			if a.Fingerprint == fingerprint {
				n++
				continue
			}
			out = append(out, a)
		}
		if len(out) == 0 {
			delete(t.queues, rb)
		} else {
			t.queues[rb] = out
		}
	}
	return n
}

// Drain takes queued alerts for the runbook, oldest first, as far as its
// cap now allows, and admits each as Begin would: the caller starts them
// and Attaches their ids. Queued alerts that are running or cooling down
// by now are dropped as duplicates.
func (t *Tracker) Drain(runbook string) []Alert {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	q := t.queues[runbook]
	var out []Alert
	for len(q) > 0 && t.running[runbook] < t.limit(runbook) {
		a := q[0]
		q = q[1:]
		k := execKey{a.Fingerprint, runbook}
		if _, busy := t.busy(k, now); busy {
			continue
		}
		t.admit(k)
		out = append(out, a)
	}
	if len(q) == 0 {
		delete(t.queues, runbook)
	} else {
		t.queues[runbook] = q
	}
	return out
}

// SetThread remembers the chat thread (channel and thread timestamp) an
// alert was announced in.
func (t *Tracker) SetThread(fingerprint, channel, ts string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	t.sweep(now)
	t.threads[fingerprint] = threadEntry{channel: channel, ts: ts, at: now}
}

// Thread returns the thread an alert was announced in, if it is still
// remembered.
func (t *Tracker) Thread(fingerprint string) (channel, ts string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.threads[fingerprint]
	if !ok || t.cfg.Now().Sub(e.at) > t.cfg.ThreadTTL {
		return "", "", false
	}
	return e.channel, e.ts, true
}

// Forget drops an alert's thread (after its resolution was posted).
func (t *Tracker) Forget(fingerprint string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.threads, fingerprint)
}

// sweep drops finished executions past their cool-down and expired
// threads, at most once a minute.
func (t *Tracker) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < time.Minute && !now.Before(t.lastSweep) {
		return
	}
	t.lastSweep = now
	for k, e := range t.execs {
		if !e.active && !now.Before(e.finished.Add(t.cfg.CoolDown)) {
			delete(t.execs, k)
		}
	}
	for fp, e := range t.threads {
		if now.Sub(e.at) > t.cfg.ThreadTTL {
			delete(t.threads, fp)
		}
	}
}
