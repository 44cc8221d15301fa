package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

// startBody is POST /api/v1/executions's body.
type startBody struct {
	Runbook    string         `json:"runbook"`
	Parameters map[string]any `json:"parameters"`
}

// maxBody bounds a request body.
const maxBody = 1 << 20

func (s *Server) startExecution(w http.ResponseWriter, r *http.Request) {
	id := identity(r)
	var body startBody
	if !decodeBody(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.Runbook) == "" {
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "runbook is required",
			Parameters: []paramProblem{{Name: "runbook", Problem: "is required"}}})
		return
	}
	cat := s.cfg.Engine.Catalog()
	if cat == nil {
		writeError(w, http.StatusNotFound, apiError{Code: "unknown_runbook", Message: "no runbooks are loaded"})
		return
	}
	rb, err := cat.Lookup(body.Runbook)
	if err != nil {
		writeError(w, http.StatusNotFound, apiError{Code: "unknown_runbook", Message: err.Error()})
		return
	}
	if !s.allowed(w, r, commands.PermExecute, "run runbooks") {
		return
	}
	if t := rb.Trigger.Type; t != "manual" && t != "api" {
		writeError(w, http.StatusConflict, apiError{Code: "not_startable",
			Message: fmt.Sprintf("runbook %s is started by its %s trigger; the API starts runbooks whose trigger is manual or api", rb.Name(), t)})
		return
	}
	in := map[string]any{}
	if rb.Trigger.Type == "api" {
		for k, v := range rb.Trigger.Parameters {
			in[k] = v
		}
	}
	for k, v := range body.Parameters {
		in[k] = v
	}
	params, problems := resolve(rb, in)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_parameters",
			Message: fmt.Sprintf("%d bad parameter(s) for runbook %s", len(problems), rb.Name()), Parameters: problems})
		return
	}
	if err := engine.CheckTrigger(rb, params, nil); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: "trigger_conditions", Message: err.Error()})
		return
	}

	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	var scoped, pending, digest string
	if key != "" {
		if len(key) > 255 {
			writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "Idempotency-Key is longer than 255 characters",
				Parameters: []paramProblem{{Name: "Idempotency-Key", Problem: "is longer than 255 characters"}}})
			return
		}
		scoped, digest = scopedKey(id.Token, key), requestDigest(rb, params)
		pending = "pending " + digest
		bound, err := s.cfg.Keys.Remember(r.Context(), scoped, pending, time.Minute)
		if err != nil {
			s.internal(w, "remembering an Idempotency-Key", err)
			return
		}
		if bound != pending {
			s.replay(w, r, bound, digest)
			return
		}
	}
	platform, channel := s.platform(), s.cfg.Channel
	if rb.Trigger.Channel != "" && s.cfg.Platform != "" {
		platform, channel = s.cfg.Platform, rb.Trigger.Channel // the runbook's own channel wins
	}
	execID, err := s.cfg.Engine.Start(r.Context(), engine.StartRequest{Runbook: rb.Name(), Params: params,
		Trigger: engine.TriggerInfo{Type: "api", Source: "api:" + id.Token, TriggeredBy: id.User, Platform: platform, Channel: channel}})
	if err != nil {
		if key != "" {
			_ = s.cfg.Keys.Forget(r.Context(), scoped, pending)
		}
		var pe *engine.ParamError
		if errors.As(err, &pe) {
			writeError(w, http.StatusBadRequest, apiError{Code: "bad_parameters", Message: "bad parameter for runbook " + rb.Name(),
				Parameters: []paramProblem{problemOf(rb, pe)}})
			return
		}
		s.internal(w, "starting an execution", err)
		return
	}
	if key != "" {
		if err := s.cfg.Keys.Set(r.Context(), scoped, "done "+digest+" "+execID, s.cfg.KeyTTL); err != nil {
			s.log.Error("api: saving an Idempotency-Key; a retry would start another execution", "execution", execID, "err", err)
		}
	}
	s.log.Info("execution started from the API", "execution", execID, "runbook", rb.Name(), "user", id.User, "token", id.Token)
	s.writeExecution(w, r, execID, http.StatusCreated)
}

func (s *Server) platform() string {
	if s.cfg.Channel == "" {
		return ""
	}
	return s.cfg.Platform
}

// replay answers a request whose Idempotency-Key is already bound.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, bound, digest string) {
	f := strings.Fields(bound)
	switch {
	case len(f) >= 2 && f[1] != digest:
		writeError(w, http.StatusConflict, apiError{Code: "idempotency_key_reused",
			Message: "this Idempotency-Key was used for a different request (another runbook or other parameters)"})
	case len(f) == 3 && f[0] == "done":
		s.writeExecution(w, r, f[2], http.StatusOK)
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusConflict, apiError{Code: "in_progress", Message: "a request with this Idempotency-Key is being handled; retry in a moment"})
	}
}

// scopedKey keeps one token's keys apart from another's, and keeps the
// client's key out of the store.
func scopedKey(token, key string) string {
	h := sha256.Sum256([]byte(token + "\x00" + key))
	return hex.EncodeToString(h[:])
}

// requestDigest identifies what a request asked for; sensitive values
// are left out, so that no trace of them reaches the key store.
func requestDigest(rb *engine.Runbook, params map[string]any) string {
	plain := map[string]any{}
	for k, v := range params {
		if p := rb.Parameter(k); p == nil || !p.Sensitive {
			plain[k] = v
		}
	}
	b, _ := json.Marshal(struct {
		R string         `json:"r"`
		P map[string]any `json:"p"`
	}{rb.Name(), plain})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// writeExecution answers with the execution's record and its Location.
func (s *Server) writeExecution(w http.ResponseWriter, r *http.Request, id string, status int) {
	evs, err := s.cfg.Engine.Store().Events(r.Context(), id)
	if err != nil {
		s.internal(w, "reading an execution", err)
		return
	}
	if len(evs) == 0 {
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no execution " + quote(id)})
		return
	}
	w.Header().Set("Location", "/api/v1/executions/"+url.PathEscape(id))
	writeJSON(w, status, BuildRecord(evs))
}

// decodeBody reads a JSON body strictly; on failure it answers 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "cannot read the request body"})
		return false
	}
	if len(b) > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, apiError{Code: "too_large", Message: "the request body is larger than 1 MiB"})
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		msg := "the body is not the JSON this endpoint takes: " + err.Error()
		var probs []paramProblem
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name := strings.Trim(f, `"`)
			probs = append(probs, paramProblem{Name: name, Problem: "is not a field of this request"})
		}
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: msg, Parameters: probs})
		return false
	}
	return true
}

// resolve checks every parameter on its own, so that each bad one is
// named (engine.ResolveParams stops at the first), and returns the
// coerced values when all are good.
func resolve(rb *engine.Runbook, in map[string]any) (map[string]any, []paramProblem) {
	var probs []paramProblem
	names := make([]string, 0, len(in))
	for k := range in {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if rb.Parameter(k) == nil {
			probs = append(probs, paramProblem{Name: k, Problem: "is not a parameter of runbook " + rb.Name(), Hint: "parameters: " + paramNames(rb)})
		}
		switch in[k].(type) {
		case map[string]any, []any:
			if rb.Parameter(k) != nil {
				probs = append(probs, paramProblem{Name: k, Problem: "must be a string, number or boolean"})
			}
			delete(in, k)
		case json.Number:
			in[k] = in[k].(json.Number).String()
		}
	}
	for i := range rb.Parameters {
		p := rb.Parameters[i]
		if slicesHas(probs, p.Name) {
			continue
		}
		one := *rb
		one.Parameters = rb.Parameters[i : i+1]
		sub := map[string]any{}
		if v, ok := in[p.Name]; ok {
			sub[p.Name] = v
		}
		if _, err := engine.ResolveParams(&one, sub); err != nil {
			var pe *engine.ParamError
			if errors.As(err, &pe) {
				probs = append(probs, problemOf(rb, pe))
			} else {
				probs = append(probs, paramProblem{Name: p.Name, Problem: "is not valid"})
			}
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	params, err := engine.ResolveParams(rb, in)
	if err != nil {
		var pe *engine.ParamError
		if errors.As(err, &pe) {
			return nil, []paramProblem{problemOf(rb, pe)}
		}
		return nil, []paramProblem{{Name: "parameters", Problem: "are not valid"}}
	}
	return params, nil
}

// problemOf describes a ParamError without echoing a sensitive value.
func problemOf(rb *engine.Runbook, pe *engine.ParamError) paramProblem {
	pp := paramProblem{Name: pe.Param, Problem: pe.Problem, Hint: pe.Hint}
	if p := rb.Parameter(pe.Param); p != nil && p.Sensitive && pe.Problem != "is required" {
		pp.Problem = "has a value this parameter does not accept (it is sensitive, so the value is not shown)"
	}
	return pp
}

func slicesHas(probs []paramProblem, name string) bool {
	for _, p := range probs {
		if p.Name == name {
			return true
		}
	}
	return false
}

func paramNames(rb *engine.Runbook) string {
	n := make([]string, len(rb.Parameters))
	for i, p := range rb.Parameters {
		n[i] = p.Name
	}
	if len(n) == 0 {
		return "(none)"
	}
	return strings.Join(n, ", ")
}

func (s *Server) getExecution(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r, commands.PermStatus, "read executions") {
		return
	}
	if _, ok := s.lookupExecution(w, r); !ok {
		return
	}
	s.writeExecution(w, r, r.PathValue("id"), http.StatusOK)
}

// statuses and outcomes a history query may filter by.
var (
	historyStatuses = []string{engine.StatusRunning, engine.StatusWaiting, engine.StatusFinished}
	historyOutcomes = []engine.Outcome{engine.OutcomeSuccess, engine.OutcomeFailure, engine.OutcomePartial, engine.OutcomeRollback, engine.OutcomeAborted}
)

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r, commands.PermHistory, "read execution history") {
		return
	}
	q := engine.HistoryQuery{Limit: 50}
	var status string
	var probs []paramProblem
	vals := r.URL.Query()
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := vals.Get(k)
		switch k {
		case "runbook":
			q.Runbook = v
		case "trigger":
			q.TriggerType = v
		case "requester":
			q.Requester = v
		case "status":
			ok := false
			for _, st := range historyStatuses {
				ok = ok || st == v
			}
			for _, o := range historyOutcomes {
				if string(o) == v {
					ok, q.Outcome = true, o
				}
			}
			if !ok {
				probs = append(probs, paramProblem{Name: "status", Problem: fmt.Sprintf("%q is not a status", v),
					Hint: "running, waiting-approval, finished, or an outcome: success, failure, partial, rollback, aborted"})
			} else if q.Outcome == "" {
				status = v
			}
		case "since":
			if t, err := time.Parse(time.RFC3339, v); err == nil {
				q.Since = t
			} else if d, err := engine.ParseDuration(v); err == nil && d > 0 {
				q.Since = s.cfg.Clock.Now().Add(-d)
			} else {
				probs = append(probs, paramProblem{Name: "since", Problem: fmt.Sprintf("%q is neither a duration nor a time", v), Hint: "e.g. 24h, 7d or 2030-01-02T15:04:05Z"})
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				probs = append(probs, paramProblem{Name: "limit", Problem: fmt.Sprintf("%q is not a number from 1 to 1000", v)})
			} else {
				q.Limit = n
			}
		default:
			probs = append(probs, paramProblem{Name: k, Problem: "is not a query parameter of this endpoint", Hint: "runbook, status, since, limit, trigger, requester"})
		}
	}
	if len(probs) > 0 {
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_parameters", Message: "bad query parameter(s)", Parameters: probs})
		return
	}
	limit := q.Limit
	if status != "" {
		q.Limit = 0 // filter by status below
	}
	rows, err := s.cfg.Engine.Store().History(r.Context(), q)
	if err != nil {
		s.internal(w, "reading history", err)
		return
	}
	items := []Item{}
	for _, row := range rows {
		if status != "" && row.Status != status {
			continue
		}
		if len(items) == limit {
			break
		}
		items = append(items, itemOf(row))
	}
	writeJSON(w, http.StatusOK, map[string]any{"executions": items})
}
