package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// gate is an approval being waited for.
type gate struct {
	rec     ApprovalRecord
	wf      *Workflow
	votes   map[string][]int // approver → indexes of the refs they satisfy
	decided bool
	ok      bool
	why     string
	done    chan struct{}
}

// workflowFor returns the approvals entry gating a step, if any.
func (x *run) workflowFor(step string) *Approval {
	for _, a := range x.rb.Approvals {
		if a.Type != "override" && a.Trigger != nil && a.Trigger.Step == step {
			return a
		}
	}
	return nil
}

// override returns the runbook's emergency bypass, if any.
func (x *run) override() *Approval {
	for _, a := range x.rb.Approvals {
		if a.Type == "override" {
			return a
		}
	}
	return nil
}

// needsApproval decides whether a step must wait for a human. requiresApproval
// of type auto approves itself when all its conditions hold; an approvals
// entry for the step asks when any of its conditions holds (or always, when
// it has none).
func (x *run) needsApproval(ctx context.Context, st *Step) (bool, string) {
	env, err := x.env(ctx, approvalRefs(st, x.workflowFor(st.Name)), nil)
	if err != nil {
		return true, "approval conditions could not be evaluated: " + err.Error()
	}
	return NeedsApproval(ctx, st, x.workflowFor(st.Name), env)
}

func approvalRefs(st *Step, a *Approval) []Ref {
	var refs []Ref
	if st.RequiresApproval != nil {
		refs = append(refs, condRefs(st.RequiresApproval.conds)...)
	}
	if a != nil && a.Trigger != nil {
		refs = append(refs, condRefs(a.Trigger.conds)...)
	}
	return refs
}

// NeedsApproval evaluates a step's approval rules against env and says why
// approval is needed.
func NeedsApproval(ctx context.Context, st *Step, a *Approval, env map[string]any) (bool, string) {
	if ra := st.RequiresApproval; ra != nil {
		if ra.Type != "auto" {
			return true, "step requires approval"
		}
		for _, c := range ra.conds {
			if c == nil {
				continue
			}
			ok, err := c.EvalContext(ctx, env)
			if err != nil {
				return true, fmt.Sprintf("auto-approval condition %q could not be evaluated: %v", c.Source, err)
			}
			if !ok {
				return true, fmt.Sprintf("auto-approval condition %q is false", c.Source)
			}
		}
	}
	if a != nil && a.Trigger != nil {
		if len(a.Trigger.conds) == 0 {
			return true, "approval " + a.Name + " applies"
		}
		for _, c := range a.Trigger.conds {
			if c == nil {
				continue
			}
			if ok, err := c.EvalContext(ctx, env); err == nil && ok {
				return true, fmt.Sprintf("%s: %s", a.Name, c.Source)
			}
		}
	}
	return false, ""
}

func (x *run) gateFor(phase Phase, step, reason string) *gate {
	g := &gate{votes: map[string][]int{}, done: make(chan struct{})}
	g.rec = ApprovalRecord{Step: step, Phase: phase, Reason: reason}
	if a := x.workflowFor(step); a != nil {
		g.rec.Name = a.Name
		g.wf = a.Workflow
	}
	if g.wf != nil {
		g.rec.Approvers = g.wf.Approvers
		g.rec.Channels = g.wf.Channels
		g.rec.Actions = g.wf.Actions
	}
	return g
}

func (g *gate) timeout(def time.Duration) time.Duration {
	if g.wf != nil && g.wf.Timeout > 0 {
		return g.wf.Timeout.D()
	}
	return def
}

func (g *gate) escalation() []Escalation {
	if g.wf == nil {
		return nil
	}
	return g.wf.Escalation
}

// waitGate asks for approval (or resumes asking) and waits for the
// decision, escalating and timing out on the engine clock.
func (x *run) waitGate(ctx context.Context, g *gate) (bool, string) {
	key := "approval/" + string(g.rec.Phase) + "/" + g.rec.Step
	prior := x.hist[key]
	delete(x.hist, key)
	requested := false
	for _, ev := range prior {
		a := ev.Approval
		switch ev.Type {
		case EventApprovalRequested:
			requested = true
			g.rec.ID, g.rec.RequestedAt, g.rec.Deadline, g.rec.Reason = a.ID, a.RequestedAt, a.Deadline, a.Reason
		case EventApprovalEscalated:
			g.rec.Tier = a.Tier
		case EventApprovalVote:
			g.votes[a.Approver] = a.Satisfies
		case EventApprovalDecided:
			return a.Decision == DecisionApprove || a.Decision == DecisionBypass, describeDecision(*a)
		}
	}
	clock := x.e.cfg.Clock
	x.mu.Lock()
	if !requested {
		now := clock.Now().UTC()
		deadline := now.Add(g.timeout(x.e.cfg.DefaultApprovalTimeout))
		g.rec.ID = x.id + "." + shortID(x.e.cfg.NewID())
		g.rec.RequestedAt, g.rec.Deadline = now, &deadline
		rec := g.rec
		if _, err := x.emitLocked(Event{Type: EventApprovalRequested, Approval: &rec}); err != nil {
			x.mu.Unlock()
			panic(storeFailure{err})
		}
	}
	x.pending = g
	close(x.gateSet)
	x.gateSet = make(chan struct{})
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.pending = nil
		x.mu.Unlock()
	}()
	esc := g.escalation()
	for {
		// Decide rewrites g.rec under x.mu from other goroutines.
		x.mu.Lock()
		tier, requestedAt, deadline := g.rec.Tier, g.rec.RequestedAt, *g.rec.Deadline
		x.mu.Unlock()
		var escC <-chan time.Time
		var escT Timer
		if tier < len(esc) {
			escT = clock.NewTimer(requestedAt.Add(esc[tier].After.D()).Sub(clock.Now()))
			escC = escT.C()
		}
		deadT := clock.NewTimer(deadline.Sub(clock.Now()))
		stop := func() {
			if escT != nil {
				escT.Stop()
			}
			deadT.Stop()
		}
		select {
		case <-g.done:
			stop()
			return g.ok, g.why
		case <-ctx.Done():
			stop()
			if closing(ctx) {
				return false, ""
			}
			return false, context.Cause(ctx).Error()
		case <-escC:
			deadT.Stop()
			x.mu.Lock()
			if !g.decided {
				tier := esc[g.rec.Tier]
				g.rec.Tier++
				rec := g.rec
				rec.Notify = tier.Notify
				if _, err := x.emitLocked(Event{Type: EventApprovalEscalated, Approval: &rec,
					Message: fmt.Sprintf("no decision after %s; notifying %s", tier.After.D(), strings.Join(tier.Notify, ", "))}); err != nil {
					x.mu.Unlock()
					panic(storeFailure{err})
				}
			}
			x.mu.Unlock()
		case <-deadT.C():
			if escT != nil {
				escT.Stop()
			}
			x.mu.Lock()
			if !g.decided {
				now := clock.Now().UTC()
				rec := g.rec
				rec.Decision, rec.RespondedAt, rec.Approver = DecisionTimeout, &now, "system"
				rec.Comment = fmt.Sprintf("no decision within %s", g.timeout(x.e.cfg.DefaultApprovalTimeout))
				if err := x.decideLocked(g, rec, false); err != nil {
					x.mu.Unlock()
					panic(storeFailure{err})
				}
			}
			x.mu.Unlock()
		}
	}
}

// shortID keeps approval ids short: 12 characters of a fresh id.
func shortID(s string) string {
	s = strings.ReplaceAll(s, "-", "")
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}

func describeDecision(a ApprovalRecord) string {
	switch a.Decision {
	case DecisionApprove:
		return "approved by " + a.Approver
	case DecisionBypass:
		return "bypassed by " + a.Approver + ": " + a.Comment
	case DecisionTimeout:
		return "approval timed out: " + a.Comment
	}
	s := "rejected by " + a.Approver
	if a.Value != "" && a.Value != string(DecisionReject) {
		s += " (" + a.Value + ")"
	}
	if a.Comment != "" {
		s += ": " + a.Comment
	}
	return s
}

// decideLocked records the decision and releases the waiting execution.
func (x *run) decideLocked(g *gate, rec ApprovalRecord, ok bool) error {
	ev := Event{Type: EventApprovalDecided, Approval: &rec, Actor: rec.Approver, Message: describeDecision(rec)}
	if rec.Decision == DecisionBypass {
		ev.AuditLevel = "critical"
		if o := x.override(); o != nil && o.AuditLevel != "" {
			ev.AuditLevel = o.AuditLevel
		}
	}
	if _, err := x.emitLocked(ev); err != nil {
		return err
	}
	g.decided, g.ok, g.why = true, ok, describeDecision(rec)
	g.rec = rec
	close(g.done)
	return nil
}

// DecisionRequest is a click or a typed decision on an approval.
type DecisionRequest struct {
	ApprovalID string
	User       string
	Verb       Decision // approve, reject or bypass
	// Value is the chosen button's value (e.g. reject-wrong-service).
	Value   string
	Comment string
}

// DecisionResult says what a decision did.
type DecisionResult struct {
	ExecutionID string
	Approval    ApprovalRecord
	// Final is true when the approval is now decided; false when the vote
	// was counted but more approvals are needed.
	Final bool
	// Needed describes what is still missing when not final.
	Needed string
}

// ExecutionOf returns the execution id inside an approval id.
func ExecutionOf(approvalID string) string {
	if i := strings.LastIndexByte(approvalID, '.'); i > 0 {
		return approvalID[:i]
	}
	return approvalID
}

// Decide applies a decision to a waiting approval, enforcing four-eyes,
// approvers, minApprovals, comments and bypass permissions. Refusals are
// recorded as approval.refused events and returned as errors.
func (e *Engine) Decide(ctx context.Context, req DecisionRequest) (DecisionResult, error) {
	execID := ExecutionOf(req.ApprovalID)
	e.mu.Lock()
	x := e.runs[execID]
	e.mu.Unlock()
	res := DecisionResult{ExecutionID: execID}
	if x == nil {
		err := e.decidedInStore(ctx, req.ApprovalID, &res)
		if !errors.Is(err, ErrNotActive) {
			return res, err
		}
		// Nobody here drives it. When its lease is free (its replica
		// stopped or died and nobody took it over yet), take it over now
		// and decide here; else hand the decision to the replica that
		// holds it.
		if e.cfg.Leases != nil && e.Resume(ctx, execID) == nil {
			e.mu.Lock()
			x = e.runs[execID]
			e.mu.Unlock()
		}
		if x == nil {
			return e.forward(ctx, req)
		}
	}
	g, err := x.openGate(ctx, req.ApprovalID, &res)
	if g == nil {
		return res, err
	}
	// Who the user is, in RBAC terms, may need the chat platform (user
	// groups): ask before taking the run's lock, never under it.
	x.mu.Lock()
	approvers, requester, o := g.rec.Approvers, x.trigger.TriggeredBy, x.override()
	x.mu.Unlock()
	var (
		sat       []int
		qualified bool
		qerr      error
	)
	switch req.Verb {
	case DecisionApprove, DecisionReject:
		if req.User != requester {
			sat, qualified, qerr = e.qualify(ctx, req.User, approvers)
		}
	case DecisionBypass:
		if o != nil && req.User != requester {
			qualified = e.cfg.Approvers == nil
			if !qualified {
				qualified, qerr = e.cfg.Approvers.CanBypass(ctx, req.User, o.Permissions)
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.pending != g || g.decided {
		// Decided (or timed out) while we asked.
		res.Approval = g.rec
		return res, ErrAlreadyDecided
	}
	if x.cancelledBy != "" {
		res.Approval = g.rec
		return res, ErrCancelling
	}
	if g.decided {
		res.Approval = g.rec
		return res, ErrAlreadyDecided
	}
	now := e.cfg.Clock.Now().UTC()
	rec := g.rec
	rec.Approver, rec.Comment, rec.Value, rec.RespondedAt = req.User, req.Comment, req.Value, &now
	refuse := func(err error) (DecisionResult, error) {
		r := g.rec
		r.Approver, r.Decision, r.Value, r.Reason = req.User, req.Verb, req.Value, err.Error()
		level := "warning"
		if req.Verb == DecisionBypass {
			level = "critical"
		}
		if _, perr := x.emitLocked(Event{Type: EventApprovalRefused, Approval: &r, Actor: req.User, AuditLevel: level,
			Message: fmt.Sprintf("%s refused for %s: %v", req.Verb, req.User, err)}); perr != nil {
			return res, perr
		}
		res.Approval = g.rec
		return res, err
	}
	switch req.Verb {
	case DecisionApprove:
		if req.User == x.trigger.TriggeredBy {
			return refuse(ErrSelfApproval)
		}
		if _, voted := g.votes[req.User]; voted {
			res.Approval = g.rec
			return res, ErrAlreadyVoted
		}
		if qerr != nil {
			return res, fmt.Errorf("checking approvers: %w", qerr)
		}
		if !qualified {
			return refuse(ErrNotApprover)
		}
		g.votes[req.User] = sat
		if needed := stillNeeded(g); needed != "" {
			rec.Decision, rec.Satisfies = DecisionApprove, sat
			if _, err := x.emitLocked(Event{Type: EventApprovalVote, Approval: &rec, Actor: req.User,
				Message: fmt.Sprintf("approved by %s; still needed: %s", req.User, needed)}); err != nil {
				return res, err
			}
			res.Approval, res.Needed = rec, needed
			return res, nil
		}
		rec.Decision = DecisionApprove
		if err := x.decideLocked(g, rec, true); err != nil {
			return res, err
		}
	case DecisionReject:
		if req.User != x.trigger.TriggeredBy {
			if qerr != nil {
				return res, fmt.Errorf("checking approvers: %w", qerr)
			} else if !qualified {
				return refuse(ErrNotApprover)
			}
		}
		if strings.TrimSpace(req.Comment) == "" && rejectNeedsComment(g.rec.Actions, req.Value) {
			res.Approval = g.rec
			return res, ErrCommentRequired
		}
		rec.Decision = DecisionReject
		if err := x.decideLocked(g, rec, false); err != nil {
			return res, err
		}
	case DecisionBypass:
		if o == nil {
			res.Approval = g.rec
			return res, ErrNoBypass
		}
		if req.User == x.trigger.TriggeredBy {
			return refuse(ErrSelfApproval)
		}
		if qerr != nil {
			return res, fmt.Errorf("checking bypass permissions: %w", qerr)
		}
		if !qualified {
			return refuse(ErrNotApprover)
		}
		if o.RequiresJustification && strings.TrimSpace(req.Comment) == "" {
			res.Approval = g.rec
			return res, ErrJustificationRequired
		}
		rec.Decision, rec.Critical = DecisionBypass, true
		if err := x.decideLocked(g, rec, true); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("unknown decision %q: use approve, reject or bypass", req.Verb)
	}
	res.Approval, res.Final = g.rec, true
	return res, nil
}

// openGate returns the open gate for approvalID. When the execution runs
// here but has not reached that gate yet (it is being resumed and replays
// towards it), it waits for the gate — bounded by ctx and a minute on the
// engine's clock — instead of refusing. A nil gate comes with the answer
// the store gives (decided, not active) in res and the error.
func (x *run) openGate(ctx context.Context, approvalID string, res *DecisionResult) (*gate, error) {
	var bound Timer
	defer func() {
		if bound != nil {
			bound.Stop()
		}
	}()
	for {
		x.mu.Lock()
		g, gateSet := x.pending, x.gateSet
		if g != nil && g.rec.ID == approvalID {
			if g.decided {
				res.Approval = g.rec
				x.mu.Unlock()
				return nil, ErrAlreadyDecided
			}
			x.mu.Unlock()
			return g, nil
		}
		x.mu.Unlock()
		err := x.e.decidedInStore(ctx, approvalID, res)
		if !errors.Is(err, ErrNotActive) {
			return nil, err
		}
		if bound == nil {
			bound = x.e.cfg.Clock.NewTimer(time.Minute)
		}
		select {
		case <-gateSet:
		case <-x.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-bound.C():
			return nil, ErrNotActive
		}
	}
}

func rejectNeedsComment(a *ActionButtons, value string) bool {
	if a == nil {
		return false
	}
	for _, b := range a.Reject {
		if b.RequiresComment && (value == "" || b.Value == value) {
			return true
		}
	}
	return false
}

// qualify reports which approver refs user satisfies. With no refs, the
// approvals:respond permission is asked for.
func (e *Engine) qualify(ctx context.Context, user string, refs []ApproverRef) ([]int, bool, error) {
	if e.cfg.Approvers == nil {
		all := make([]int, len(refs))
		for i := range refs {
			all[i] = i
		}
		return all, true, nil
	}
	if len(refs) == 0 {
		ok, err := e.cfg.Approvers.Satisfies(ctx, user, ApproverRef{Type: "permission", Value: "approvals:respond"})
		return nil, ok, err
	}
	// A check that cannot be answered (a chat group that did not resolve)
	// only matters when nothing else lets the user approve.
	var sat []int
	var firstErr error
	for i, r := range refs {
		ok, err := e.cfg.Approvers.Satisfies(ctx, user, r)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if ok {
			sat = append(sat, i)
		}
	}
	if len(sat) == 0 && firstErr != nil {
		return nil, false, firstErr
	}
	return sat, len(sat) > 0, nil
}

// stillNeeded says which approver requirements are unmet, or "".
func stillNeeded(g *gate) string {
	refs := g.rec.Approvers
	if len(refs) == 0 {
		if len(g.votes) > 0 {
			return ""
		}
		return "one approval"
	}
	var missing []string
	for i, r := range refs {
		need := r.MinApprovals
		if need == 0 && r.Required {
			need = 1
		}
		have := 0
		for _, sat := range g.votes {
			for _, s := range sat {
				if s == i {
					have++
				}
			}
		}
		if have < need {
			missing = append(missing, fmt.Sprintf("%d more from %s %s", need-have, r.Type, r.Value))
		}
	}
	if len(missing) == 0 && len(g.votes) == 0 {
		return "one approval"
	}
	return strings.Join(missing, ", ")
}

// decidedInStore answers a decision on an approval that is not waiting
// here: already decided, or owned by a stopped execution.
func (e *Engine) decidedInStore(ctx context.Context, approvalID string, res *DecisionResult) error {
	evs, err := e.cfg.Store.Events(ctx, ExecutionOf(approvalID))
	if err != nil {
		return err
	}
	found := false
	for _, ev := range evs {
		if ev.Approval == nil || ev.Approval.ID != approvalID {
			continue
		}
		found = true
		res.Approval = *ev.Approval
		if ev.Type == EventApprovalDecided {
			return ErrAlreadyDecided
		}
	}
	if !found {
		return fmt.Errorf("approval %s: %w", approvalID, ErrNotFound)
	}
	if len(evs) > 0 && evs[len(evs)-1].Type == EventExecutionFinished {
		return ErrFinished
	}
	return ErrNotActive
}
