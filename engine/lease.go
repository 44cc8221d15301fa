package engine

import (
	"context"
	"errors"
	"fmt"
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

// BulkReader is implemented by stores that read the events of many
// executions in one call (one round trip to a remote store). Recover uses
// it when the store has it.
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
