package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

// decisionBody is POST /api/v1/executions/{id}/approvals's body.
type decisionBody struct {
	Step     string `json:"step"`
	Decision string `json:"decision"`
	Comment  string `json:"comment"`
	// Value is the chosen button's value when the workflow offers several
	// (e.g. reject-wrong-service); default: the decision.
	Value string `json:"value"`
}

// decisionAnswer is what a decision answers.
type decisionAnswer struct {
	ExecutionID string                `json:"executionId"`
	Approval    engine.ApprovalRecord `json:"approval"`
	// Final is false when the vote was counted and more are needed.
	Final  bool   `json:"final"`
	Needed string `json:"needed,omitempty"`
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	id := identity(r)
	var body decisionBody
	if !decodeBody(w, r, &body) {
		return
	}
	var verb engine.Decision
	switch strings.ToLower(strings.TrimSpace(body.Decision)) {
	case "approve":
		verb = engine.DecisionApprove
	case "reject":
		verb = engine.DecisionReject
	default:
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "decision must be approve or reject",
			Parameters: []paramProblem{{Name: "decision", Problem: "must be approve or reject"}}})
		return
	}
	sum, ok := s.lookupExecution(w, r)
	if !ok {
		return
	}
	if sum.Status == engine.StatusFinished {
		writeError(w, http.StatusConflict, apiError{Code: "finished", Message: "the execution has already finished (" + string(sum.Outcome) + ")"})
		return
	}
	evs, err := s.cfg.Engine.Store().Events(r.Context(), sum.ExecutionID)
	if err != nil {
		s.internal(w, "reading an execution", err)
		return
	}
	pending := pendingApprovals(evs)
	var target *engine.ApprovalRecord
	for i := range pending {
		if body.Step == "" || pending[i].Step == body.Step || pending[i].ID == body.Step {
			if target != nil {
				writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "several approvals are pending; name the step",
					Parameters: []paramProblem{{Name: "step", Problem: "is required when several approvals are pending"}}})
				return
			}
			target = &pending[i]
		}
	}
	if target == nil {
		msg := "no approval is pending"
		if body.Step != "" {
			msg += " for step " + quote(body.Step)
		}
		writeError(w, http.StatusConflict, apiError{Code: "no_pending_approval", Message: msg})
		return
	}
	value := body.Value
	if value == "" {
		value = string(verb)
	}
	res, err := s.cfg.Engine.Decide(r.Context(), engine.DecisionRequest{ApprovalID: target.ID, User: id.User, Verb: verb, Value: value, Comment: body.Comment})
	if err != nil {
		s.decisionError(w, r, target.ID, err)
		return
	}
	s.log.Info("approval decided from the API", "execution", sum.ExecutionID, "approval", target.ID, "user", id.User, "token", id.Token, "decision", verb, "final", res.Final)
	writeJSON(w, http.StatusOK, decisionAnswer{ExecutionID: sum.ExecutionID, Approval: res.Approval, Final: res.Final, Needed: res.Needed})
}

// decisionError answers a refused or failed decision.
func (s *Server) decisionError(w http.ResponseWriter, r *http.Request, approvalID string, err error) {
	id := identity(r)
	switch {
	case errors.Is(err, engine.ErrSelfApproval):
		writeError(w, http.StatusForbidden, apiError{Code: "four_eyes", Message: "you started this execution, so someone else must approve it (four-eyes)"})
	case errors.Is(err, engine.ErrNotApprover):
		writeError(w, http.StatusForbidden, apiError{Code: "not_approver", Message: "you are not one of the approvers for this step"})
	case errors.Is(err, engine.ErrAlreadyVoted):
		writeError(w, http.StatusConflict, apiError{Code: "already_voted", Message: "you have already approved this; waiting for the other approvers"})
	case errors.Is(err, engine.ErrAlreadyDecided):
		writeError(w, http.StatusConflict, apiError{Code: "already_decided", Message: "this approval has already been decided"})
	case errors.Is(err, engine.ErrFinished), errors.Is(err, engine.ErrCancelling):
		writeError(w, http.StatusConflict, apiError{Code: "finished", Message: err.Error()})
	case errors.Is(err, engine.ErrCommentRequired):
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "this choice needs a comment",
			Parameters: []paramProblem{{Name: "comment", Problem: "is required for this choice"}}})
	case errors.Is(err, engine.ErrNotActive):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "the runner of this execution is being replaced; try again in a few seconds"})
	case errors.Is(err, engine.ErrNotFound):
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no approval " + quote(approvalID)})
	default:
		var ge *commands.GroupUnavailableError
		if errors.As(err, &ge) {
			// A chat group the decider may belong to could not be read:
			// the authorizer's message is meant for the user.
			writeError(w, http.StatusForbidden, apiError{Code: "forbidden", Message: err.Error()})
			return
		}
		s.internal(w, "deciding approval "+approvalID+" for "+id.User, err)
	}
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	id := identity(r)
	sum, ok := s.lookupExecution(w, r)
	if !ok {
		return
	}
	if sum.Trigger.TriggeredBy != id.User && !s.allowed(w, r, commands.PermCancel, "cancel other people's executions") {
		return
	}
	switch err := s.cfg.Engine.Cancel(r.Context(), sum.ExecutionID, id.User); {
	case errors.Is(err, engine.ErrFinished):
		writeError(w, http.StatusConflict, apiError{Code: "finished", Message: "the execution has already finished (" + string(sum.Outcome) + ")"})
		return
	case errors.Is(err, engine.ErrNotActive):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "the runner of this execution is being replaced (or runs on another replica); try again in a few seconds"})
		return
	case err != nil:
		s.internal(w, "cancelling "+sum.ExecutionID, err)
		return
	}
	s.log.Info("execution cancelled from the API", "execution", sum.ExecutionID, "user", id.User, "token", id.Token)
	w.Header().Set("Location", "/api/v1/executions/"+sum.ExecutionID)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": sum.ExecutionID, "status": "cancelling"})
}
