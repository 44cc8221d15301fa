package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Leaser grants one process at a time the right to drive an execution, so
// several bot replicas can share a store. Leases expire when their holder
// dies; another replica then takes the execution over by replaying it.
type Leaser interface {
	Acquire(ctx context.Context, executionID, owner string, ttl time.Duration) (bool, error)
	Renew(ctx context.Context, executionID, owner string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, executionID, owner string) (bool, error)
}

// BatchLeaser is a Leaser that handles many leases per round trip. The
// engine uses it when its Leaser has it, so that a restart takes over, and a
// shutdown releases, thousands of executions at once.
type BatchLeaser interface {
	Leaser
	// AcquireAll tries to take the lease on each of ids for owner, as
	// Acquire does, and answers for each in order.
	AcquireAll(ctx context.Context, ids []string, owner string, ttl time.Duration) ([]LeaseState, error)
	// RenewAll renews owner's leases on ids and reports, in order, which
	// owner still holds.
	RenewAll(ctx context.Context, ids []string, owner string, ttl time.Duration) ([]bool, error)
	// ReleaseAll gives up owner's leases on ids (others' are left alone).
	ReleaseAll(ctx context.Context, ids []string, owner string) error
}

// LeaseState is what AcquireAll found for one execution.
type LeaseState struct {
	// Held is true when the caller holds the lease now.
	Held bool
	// Left is, when another owner holds the lease, how long it has before
	// it expires unless renewed (0 when unknown).
	Left time.Duration
}

// BulkReader is a Store that reads the events of many executions in one
// call (one round trip to a remote store). Recover uses it when the store
// has it.
type BulkReader interface {
	// EventsOf returns the events of each of ids, in order, as Events
	// would.
	EventsOf(ctx context.Context, ids []string) ([][]Event, error)
}

// Forwarder carries a decision to the replica driving the execution, when
// it is not this one, and brings back its answer.
type Forwarder interface {
	Forward(ctx context.Context, req DecisionRequest) (DecisionResult, error)
}

// errLeaseLost stops a run whose lease another replica took: it records
// nothing, like a crash, and the new holder carries on.
var errLeaseLost = errors.New("lease lost to another replica")

func (e *Engine) leaseTTL() time.Duration {
	if e.cfg.LeaseTTL > 0 {
		return e.cfg.LeaseTTL
	}
	return 15 * time.Second
}

// acquire takes the lease on id (true without a Leaser).
func (e *Engine) acquire(ctx context.Context, id string) (bool, error) {
	if e.cfg.Leases == nil {
		return true, nil
	}
	return e.cfg.Leases.Acquire(ctx, id, e.cfg.Owner, e.leaseTTL())
}

func (e *Engine) release(id string) {
	if e.cfg.Leases == nil {
		return
	}
	if _, err := e.cfg.Leases.Release(context.WithoutCancel(e.ctx), id, e.cfg.Owner); err != nil {
		e.cfg.Logger.Warn("releasing lease", "execution", id, "err", err)
	}
}

// renewLeases keeps this replica's leases alive; a run whose lease cannot
// be renewed stops (another replica takes over). Renewals follow the wall
// clock, as the leases' expiry in the store does.
func (e *Engine) renewLeases() {
	defer e.wg.Done()
	every := e.leaseTTL() / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		runs := make([]*run, 0, len(e.runs))
		for _, x := range e.runs {
			runs = append(runs, x)
		}
		e.mu.Unlock()
		held := e.renew(runs)
		for i, x := range runs {
			if !held[i] {
				e.cfg.Logger.Warn("lease lost; another replica drives this execution now", "execution", x.id)
				x.cancel(errLeaseLost)
			}
		}
	}
}

// renew renews the leases of runs and reports which are still held. An
// unreachable store counts as held: if the lease expires meanwhile, the
// next renewal says so.
func (e *Engine) renew(runs []*run) []bool {
	held := make([]bool, len(runs))
	if b, ok := e.cfg.Leases.(BatchLeaser); ok && len(runs) > 0 {
		ids := make([]string, len(runs))
		for i, x := range runs {
			ids[i] = x.id
		}
		res, err := b.RenewAll(e.ctx, ids, e.cfg.Owner, e.leaseTTL())
		if err == nil && len(res) == len(runs) {
			return res
		}
		e.cfg.Logger.Warn("renewing leases", "executions", len(ids), "err", err)
		for i := range held {
			held[i] = true
		}
		return held
	}
	for i, x := range runs {
		ok, err := e.cfg.Leases.Renew(e.ctx, x.id, e.cfg.Owner, e.leaseTTL())
		if err != nil {
			e.cfg.Logger.Warn("renewing lease", "execution", x.id, "err", err)
			ok = true
		}
		held[i] = ok
	}
	return held
}

// releaseAll gives up this replica's leases on ids, so that another
// process can take them over at once. Close uses it after the runs have
// stopped.
func (e *Engine) releaseAll(ids []string) {
	if e.cfg.Leases == nil || len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), releaseTimeout)
	defer cancel()
	if b, ok := e.cfg.Leases.(BatchLeaser); ok {
		if err := b.ReleaseAll(ctx, ids, e.cfg.Owner); err != nil {
			e.cfg.Logger.Warn("releasing leases; they expire on their own", "executions", len(ids), "err", err)
		}
		return
	}
	for _, id := range ids {
		if _, err := e.cfg.Leases.Release(ctx, id, e.cfg.Owner); err != nil {
			e.cfg.Logger.Warn("releasing leases; they expire on their own", "execution", id, "err", err)
			return
		}
	}
}

// releaseTimeout bounds how long Close spends releasing leases.
const releaseTimeout = 10 * time.Second

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

// Watch takes over executions whose lease has expired (their replica died)
// every interval until ctx ends. Without a Leaser it does nothing.
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	if e.cfg.Leases == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := e.Recover(ctx); err != nil {
			e.cfg.Logger.Warn("looking for executions to take over", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// forward sends a decision to the replica driving the execution.
func (e *Engine) forward(ctx context.Context, req DecisionRequest) (DecisionResult, error) {
	if e.cfg.Forwarder == nil {
		return DecisionResult{ExecutionID: ExecutionOf(req.ApprovalID)}, ErrNotActive
	}
	res, err := e.cfg.Forwarder.Forward(ctx, req)
	if err != nil && !IsDecisionError(err) {
		return res, fmt.Errorf("forwarding the decision to the replica driving it: %w", err)
	}
	return res, err
}

// decisionErrors are the refusals Decide returns, by a stable name, so a
// forwarded decision's answer keeps its meaning across processes.
var decisionErrors = map[string]error{
	"self-approval": ErrSelfApproval, "not-approver": ErrNotApprover, "already-decided": ErrAlreadyDecided,
	"already-voted": ErrAlreadyVoted, "justification-required": ErrJustificationRequired,
	"comment-required": ErrCommentRequired, "no-bypass": ErrNoBypass, "not-active": ErrNotActive,
	"finished": ErrFinished, "not-found": ErrNotFound,
}

// DecisionErrorCode names a Decide refusal ("" for other errors).
func DecisionErrorCode(err error) string {
	for code, e := range decisionErrors {
		if errors.Is(err, e) {
			return code
		}
	}
	return ""
}

// DecisionErrorFor turns a code back into its error (nil for "").
func DecisionErrorFor(code, msg string) error {
	if code == "" {
		if msg == "" {
			return nil
		}
		return errors.New(msg)
	}
	if e, ok := decisionErrors[code]; ok {
		return e
	}
	return errors.New(msg)
}

// IsDecisionError reports whether err is one of Decide's refusals.
func IsDecisionError(err error) bool { return DecisionErrorCode(err) != "" }
