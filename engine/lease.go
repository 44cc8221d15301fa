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
// be renewed stops (another replica takes over).
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
		for _, x := range runs {
			ok, err := e.cfg.Leases.Renew(e.ctx, x.id, e.cfg.Owner, e.leaseTTL())
			if err != nil {
				// Unreachable store: keep going; if the lease expires, the
				// next renewal says so.
				e.cfg.Logger.Warn("renewing lease", "execution", x.id, "err", err)
				continue
			}
			if !ok {
				e.cfg.Logger.Warn("lease lost; another replica drives this execution now", "execution", x.id)
				x.cancel(errLeaseLost)
			}
		}
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
