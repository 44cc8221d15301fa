package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Taking executions over: Recover and Resume at start-up, and the retries
// of leases a dead process still held. Executions are claimed and read a
// batch at a time (BatchLeaser, BulkReader) and replayed on a few
// goroutines, so that a restart makes thousands of parked executions
// approvable within a second.

// takeover is what an engine knows about executions it is taking over,
// guarded by Engine.mu.
type takeover struct {
	// claiming are being resumed by Recover or Resume right now.
	claiming map[string]bool
	// waiting have their lease held by another owner; retryWaiting tries
	// again when it should have expired.
	waiting  map[string]waitingLease
	retrying bool          // a retryWaiting goroutine runs
	wake     chan struct{} // tells it that waiting changed
	// closed is set by Close before it lists the runs whose leases it
	// releases; whoever launches a run after that releases its lease.
	closed bool
}

// waitingLease says when to try a lease again. With the holder's remaining
// time known, one try at its expiry tells a dead owner (the lease is gone)
// from a live one (it was renewed: its replica drives the execution, and
// Watch notices if it dies later). Unknown, the lease is tried every third
// of a TTL until giveUp.
type waitingLease struct {
	retryAt time.Time
	giveUp  time.Time // zero when the remaining time was known
}

// leaseSlack is added to a lease's remaining time before trying it again,
// for the store's millisecond resolution.
const leaseSlack = 5 * time.Millisecond

// Batch sizes for taking executions over: leases claimed and event logs
// read per call.
const takeoverBatch = 256

// reserve marks ids as being taken over and returns those that were
// neither running nor already being taken over.
func (e *Engine) reserve(ids []string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.take.claiming == nil {
		e.take.claiming = map[string]bool{}
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, running := e.runs[id]; running || e.take.claiming[id] {
			continue
		}
		e.take.claiming[id] = true
		out = append(out, id)
	}
	return out
}

func (e *Engine) unreserve(ids []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		delete(e.take.claiming, id)
	}
}

// heldLease is an execution whose lease another owner holds, or that
// could not be claimed or read (failed: try again later).
type heldLease struct {
	id     string
	left   time.Duration
	failed bool
}

func failedLeases(ids []string) []heldLease {
	out := make([]heldLease, len(ids))
	for i, id := range ids {
		out[i] = heldLease{id: id, failed: true}
	}
	return out
}

// takeOver claims the leases of ids and resumes those it gets, a batch at a
// time on a few goroutines (decoding event logs is the cost). It returns how
// many it resumed and which leases others hold.
func (e *Engine) takeOver(ctx context.Context, ids []string) (int, []heldLease, error) {
	ids = e.reserve(ids)
	var batches [][]string
	for lo := 0; lo < len(ids); lo += takeoverBatch {
		batches = append(batches, ids[lo:min(lo+takeoverBatch, len(ids))])
	}
	type result struct {
		n    int
		held []heldLease
		err  error
	}
	next := make(chan []string)
	results := make(chan result)
	workers := min(runtime.GOMAXPROCS(0), 4, len(batches))
	for range workers {
		go func() {
			for batch := range next {
				n, held, err := e.takeOverBatch(ctx, batch)
				e.unreserve(batch)
				results <- result{n, held, err}
			}
		}()
	}
	go func() {
		defer close(next)
		for _, b := range batches {
			next <- b
		}
	}()
	var (
		n    int
		held []heldLease
		errs []error
	)
	for range batches {
		r := <-results
		n += r.n
		held = append(held, r.held...)
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return n, held, errors.Join(errs...)
}

// takeOverBatch claims and resumes one batch.
func (e *Engine) takeOverBatch(ctx context.Context, ids []string) (int, []heldLease, error) {
	states, err := e.claim(ctx, ids)
	if err != nil {
		return 0, failedLeases(ids), fmt.Errorf("taking leases: %w", err)
	}
	var held []heldLease
	mine := make([]string, 0, len(ids))
	for i, st := range states {
		if st.Held {
			mine = append(mine, ids[i])
		} else {
			held = append(held, heldLease{id: ids[i], left: st.Left})
		}
	}
	if len(mine) == 0 {
		return 0, held, nil
	}
	logs, err := e.eventsOf(ctx, mine)
	if err != nil {
		e.releaseAll(mine)
		return 0, append(held, failedLeases(mine)...), fmt.Errorf("reading events: %w", err)
	}
	n := 0
	for i, id := range mine {
		if logs[i].err == nil {
			logs[i].err = e.rebuild(id, logs[i].evs)
		}
		switch err := logs[i].err; {
		case err == nil:
			n++
		case errors.Is(err, ErrFinished):
			e.cfg.Logger.Debug("execution finished meanwhile", "execution", id)
		default:
			e.cfg.Logger.Error("cannot resume execution", "execution", id, "err", err)
		}
	}
	e.releaseIfClosed(mine)
	return n, held, nil
}

// releaseIfClosed releases the leases of runs just launched if Close has
// begun meanwhile: those runs stop at once, and Close did not list them.
func (e *Engine) releaseIfClosed(ids []string) {
	e.mu.Lock()
	closed := e.take.closed
	e.mu.Unlock()
	if closed {
		e.releaseAll(ids)
	}
}

// claim takes the leases on ids (all of them without a Leaser).
func (e *Engine) claim(ctx context.Context, ids []string) ([]LeaseState, error) {
	out := make([]LeaseState, len(ids))
	switch l := e.cfg.Leases.(type) {
	case nil:
		for i := range out {
			out[i].Held = true
		}
		return out, nil
	case BatchLeaser:
		res, err := l.AcquireAll(ctx, ids, e.cfg.Owner, e.leaseTTL())
		if err == nil && len(res) != len(ids) {
			err = fmt.Errorf("%d answers for %d leases", len(res), len(ids))
		}
		return res, err
	}
	for i, id := range ids {
		ok, err := e.acquire(ctx, id)
		if err != nil {
			e.releaseAll(claimed(ids[:i], out))
			return nil, err
		}
		out[i].Held = ok
	}
	return out, nil
}

func claimed(ids []string, states []LeaseState) []string {
	var out []string
	for i, id := range ids {
		if states[i].Held {
			out = append(out, id)
		}
	}
	return out
}

// eventLog is one execution's events, or why they could not be read.
type eventLog struct {
	evs []Event
	err error
}

// eventsOf reads the events of ids, in one call when the store is a
// BulkReader.
func (e *Engine) eventsOf(ctx context.Context, ids []string) ([]eventLog, error) {
	out := make([]eventLog, len(ids))
	if br, ok := e.cfg.Store.(BulkReader); ok {
		all, err := br.EventsOf(ctx, ids)
		if err == nil && len(all) != len(ids) {
			err = fmt.Errorf("%d event logs for %d executions", len(all), len(ids))
		}
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i].evs = all[i]
		}
		return out, nil
	}
	for i, id := range ids {
		out[i].evs, out[i].err = e.cfg.Store.Events(ctx, id)
		if out[i].err != nil {
			e.release(id)
		}
	}
	return out, nil
}

// awaitLeases has retryWaiting take held over as soon as their leases
// expire.
func (e *Engine) awaitLeases(held []heldLease) {
	if len(held) == 0 {
		return
	}
	now := e.cfg.Clock.Now()
	ttl := e.leaseTTL()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.take.closed {
		return
	}
	if e.take.waiting == nil {
		e.take.waiting = map[string]waitingLease{}
		e.take.wake = make(chan struct{}, 1)
	}
	for _, h := range held {
		if _, ok := e.take.waiting[h.id]; ok {
			continue
		}
		w := waitingLease{retryAt: now.Add(h.left + leaseSlack)}
		if h.left <= 0 || h.failed {
			w = waitingLease{retryAt: now.Add(ttl / 3), giveUp: now.Add(2 * ttl)}
		}
		e.take.waiting[h.id] = w
	}
	if e.take.retrying {
		select {
		case e.take.wake <- struct{}{}:
		default:
		}
		return
	}
	e.take.retrying = true
	e.wg.Add(1)
	go e.retryWaiting()
}

// retryWaiting tries the waiting leases again when they are due, on the
// engine's clock, until none is left or the engine closes.
func (e *Engine) retryWaiting() {
	defer e.wg.Done()
	clock := e.cfg.Clock
	for {
		e.mu.Lock()
		var next time.Time
		for _, w := range e.take.waiting {
			if next.IsZero() || w.retryAt.Before(next) {
				next = w.retryAt
			}
		}
		if next.IsZero() {
			e.take.retrying = false
			e.mu.Unlock()
			return
		}
		wake := e.take.wake
		e.mu.Unlock()
		t := clock.NewTimer(next.Sub(clock.Now()))
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
			continue
		case <-t.C():
		}
		now := clock.Now()
		e.mu.Lock()
		var due []string
		tries := map[string]waitingLease{}
		for id, w := range e.take.waiting {
			if !w.retryAt.After(now) {
				due = append(due, id)
				tries[id] = w
				delete(e.take.waiting, id)
			}
		}
		e.mu.Unlock()
		n, held, err := e.takeOver(e.ctx, due)
		if err != nil {
			e.cfg.Logger.Warn("taking over executions whose lease expired", "err", err)
		}
		if n > 0 {
			e.cfg.Logger.Info("took over executions whose lease expired", "executions", n)
		}
		e.mu.Lock()
		for _, h := range held {
			w := tries[h.id]
			switch {
			case h.failed && w.giveUp.IsZero():
				w.giveUp = now.Add(2 * e.leaseTTL())
			case w.giveUp.IsZero() || !now.Before(w.giveUp):
				continue // renewed, so its owner is alive
			}
			w.retryAt = now.Add(e.leaseTTL() / 3)
			e.take.waiting[h.id] = w
		}
		e.mu.Unlock()
	}
}
