package api_test

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

func TestApprovalsOverTheAPIWithFourEyes(t *testing.T) {
	r := newRig(t)
	id := r.start("alice", "gated", nil)
	r.waitFor(id, waiting)
	approve := map[string]any{"step": "restart", "decision": "approve"}

	// The requester may not approve their own execution.
	resp := r.do("POST", "/api/v1/executions/"+id+"/approvals", "alice", approve)
	if code, _ := resp.errorOf(); resp.status != 403 || code != "four_eyes" {
		t.Fatalf("alice approving her own run: %d %s, want 403 four_eyes", resp.status, resp.raw)
	}
	// Nor may someone who is not an approver.
	resp = r.do("POST", "/api/v1/executions/"+id+"/approvals", "victor", approve)
	if code, _ := resp.errorOf(); resp.status != 403 || code != "not_approver" {
		t.Fatalf("victor approving: %d %s, want 403 not_approver", resp.status, resp.raw)
	}
	// No approval is pending for another step.
	resp = r.do("POST", "/api/v1/executions/"+id+"/approvals", "bob", map[string]any{"step": "inspect", "decision": "approve"})
	if code, _ := resp.errorOf(); resp.status != 409 || code != "no_pending_approval" {
		t.Fatalf("approving a step that waits for nothing: %d %s, want 409", resp.status, resp.raw)
	}
	// bob (oncall-primary) may.
	resp = r.do("POST", "/api/v1/executions/"+id+"/approvals", "bob", map[string]any{"step": "restart", "decision": "approve", "comment": "go"})
	if resp.status != 200 || resp.body["final"] != true {
		t.Fatalf("bob approving: %d %s, want 200 final", resp.status, resp.raw)
	}
	r.waitFor(id, finished)
	// Deciding again is a conflict.
	resp = r.do("POST", "/api/v1/executions/"+id+"/approvals", "bob", approve)
	if resp.status != 409 {
		t.Errorf("approving a finished execution: %d, want 409", resp.status)
	}

	got := r.do("GET", "/api/v1/executions/"+id, "alice", nil)
	var rec struct {
		Outcome   string                  `json:"outcome"`
		Approvals []engine.ApprovalRecord `json:"approvals"`
	}
	if err := json.Unmarshal([]byte(got.raw), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != "success" || len(rec.Approvals) != 1 {
		t.Fatalf("record: outcome %q, %d approvals; want success with one", rec.Outcome, len(rec.Approvals))
	}
	a := rec.Approvals[0]
	if a.Approver != "bob" || a.Decision != engine.DecisionApprove || a.Comment != "go" || a.RespondedAt == nil || a.Step != "restart" {
		t.Errorf("approval = %+v, want approved by bob with his comment and time", a)
	}
	// The refusals are in the audit log (the execution's events).
	evs, _ := r.store.Events(t.Context(), id)
	var refused []string
	for _, e := range evs {
		if e.Type == engine.EventApprovalRefused {
			refused = append(refused, e.Actor)
		}
	}
	if !slices.Equal(refused, []string{"alice", "victor"}) {
		t.Errorf("refusals recorded for %v, want alice and victor", refused)
	}
}

func TestGroupTokenApprovesAsItsGroup(t *testing.T) {
	r := newRig(t)
	id := r.start("alice", "gated", map[string]any{"service": "search"})
	r.waitFor(id, waiting)
	// sre-bot's subject is the group sre, whose role oncall-primary approves.
	resp := r.do("POST", "/api/v1/executions/"+id+"/approvals", "sre-bot", map[string]any{"decision": "approve"})
	if resp.status != 200 || resp.body["final"] != true {
		t.Fatalf("sre-bot approving: %d %s", resp.status, resp.raw)
	}
	r.waitFor(id, finished)
	// And what it starts, it may not approve itself.
	own := r.start("sre-bot", "gated", nil)
	r.waitFor(own, waiting)
	resp = r.do("POST", "/api/v1/executions/"+own+"/approvals", "sre-bot", map[string]any{"decision": "approve"})
	if code, _ := resp.errorOf(); resp.status != 403 || code != "four_eyes" {
		t.Errorf("sre-bot approving its own run: %d %s, want 403 four_eyes", resp.status, resp.raw)
	}
	if got := r.do("GET", "/api/v1/executions/"+own, "alice", nil).body["trigger"].(map[string]any)["triggeredBy"]; got != "api:sre-bot" {
		t.Errorf("a group token's run is triggered by %v, want api:sre-bot", got)
	}
}

func TestRejectNeedsAComment(t *testing.T) {
	r := newRig(t)
	id := r.start("alice", "gated", nil)
	r.waitFor(id, waiting)
	resp := r.do("POST", "/api/v1/executions/"+id+"/approvals", "bob", map[string]any{"decision": "reject"})
	if _, params := resp.errorOf(); resp.status != 400 || !slices.Equal(params, []string{"comment"}) {
		t.Fatalf("reject without a comment: %d %s, want 400 naming comment", resp.status, resp.raw)
	}
	resp = r.do("POST", "/api/v1/executions/"+id+"/approvals", "bob", map[string]any{"decision": "reject", "comment": "not now"})
	if resp.status != 200 {
		t.Fatalf("reject: %d %s", resp.status, resp.raw)
	}
	if s := r.waitFor(id, finished); s.Outcome == engine.OutcomeSuccess {
		t.Errorf("a rejected run finished %s", s.Outcome)
	}
}

func TestCancel(t *testing.T) {
	r := newRig(t)
	id := r.start("alice", "gated", nil)
	r.waitFor(id, waiting)
	resp := r.do("POST", "/api/v1/executions/"+id+"/cancel", "alice", nil)
	if resp.status != 202 || resp.body["status"] != "cancelling" {
		t.Fatalf("cancel: %d %s, want 202 cancelling", resp.status, resp.raw)
	}
	if s := r.waitFor(id, finished); s.Outcome != engine.OutcomeAborted {
		t.Errorf("outcome %s, want aborted", s.Outcome)
	}
	if got := r.do("GET", "/api/v1/executions/"+id, "alice", nil).body["cancelledBy"]; got != "alice" {
		t.Errorf("cancelledBy = %v, want alice", got)
	}
}

func TestEventsStreamLiveUntilTheEnd(t *testing.T) {
	r := newRig(t)
	id := r.start("alice", "gated", nil)
	stream := r.stream(id, "victor")
	var types []string
	var lastID int
	for {
		e, ok := stream.next()
		if !ok {
			t.Fatalf("the stream ended before the approval was requested: %v", types)
		}
		types = append(types, e.event)
		n, err := strconv.Atoi(e.id)
		if err != nil || n != lastID+1 {
			t.Fatalf("event id %q after %d, want consecutive seqs", e.id, lastID)
		}
		lastID = n
		var ev engine.Event
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil || string(ev.Type) != e.event || ev.ExecutionID != id {
			t.Fatalf("event data %s does not match its type %s", e.data, e.event)
		}
		if e.event == string(engine.EventApprovalRequested) {
			break
		}
	}
	// The stream is live: the decision made now arrives on it, and it
	// ends after execution.finished.
	if resp := r.do("POST", "/api/v1/executions/"+id+"/approvals", "bob", map[string]any{"decision": "approve"}); resp.status != 200 {
		t.Fatalf("approve: %d %s", resp.status, resp.raw)
	}
	for {
		e, ok := stream.next()
		if !ok {
			break
		}
		types = append(types, e.event)
	}
	if !slices.Contains(types, string(engine.EventApprovalDecided)) || types[len(types)-1] != string(engine.EventExecutionFinished) {
		t.Errorf("events = %v, want the decision, then execution.finished last", types)
	}

	// Resuming after an event sends only what follows it.
	resumed := r.stream(id, "victor", "Last-Event-ID", strconv.Itoa(len(types)-1))
	e, ok := resumed.next()
	if !ok || e.event != string(engine.EventExecutionFinished) {
		t.Errorf("resumed stream starts with %q, want only execution.finished", e.event)
	}
	if _, more := resumed.next(); more {
		t.Errorf("the resumed stream of a finished execution does not end")
	}
}
