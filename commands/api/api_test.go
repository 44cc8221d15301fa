package api_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

func TestStatusCodes(t *testing.T) {
	r := newRig(t)
	done := r.start("alice", "echo", map[string]any{"service": "checkout"})
	r.waitFor(done, finished)

	tests := []struct {
		name       string
		method     string
		path       string
		who        string
		body       any
		headers    []string
		want       int
		wantCode   string
		wantParams []string
	}{
		{"no token", "POST", "/api/v1/executions", "", map[string]any{"runbook": "echo"}, nil, 401, "unauthorized", nil},
		{"unknown token", "GET", "/api/v1/executions", "", nil, []string{"Authorization", "Bearer nope"}, 401, "unauthorized", nil},
		{"token in the wrong scheme", "GET", "/api/v1/executions", "", nil, []string{"Authorization", "Basic " + tokens["alice"]}, 401, "unauthorized", nil},
		{"started", "POST", "/api/v1/executions", "alice", map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "billing", "replicas": 3}}, nil, 201, "", nil},
		{"subject may not run runbooks", "POST", "/api/v1/executions", "victor", map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "x"}}, nil, 403, "forbidden", nil},
		{"unknown runbook", "POST", "/api/v1/executions", "alice", map[string]any{"runbook": "ecko"}, nil, 404, "unknown_runbook", nil},
		{"each bad parameter named", "POST", "/api/v1/executions", "alice",
			map[string]any{"runbook": "echo", "parameters": map[string]any{"replicas": "many", "colour": "red", "apiKey": "hunter2"}}, nil,
			400, "bad_parameters", []string{"colour", "service", "replicas", "apiKey"}},
		{"no runbook named", "POST", "/api/v1/executions", "alice", map[string]any{"parameters": map[string]any{}}, nil, 400, "bad_request", []string{"runbook"}},
		{"not JSON", "POST", "/api/v1/executions", "alice", "{runbook: echo", nil, 400, "bad_request", nil},
		{"unknown body field", "POST", "/api/v1/executions", "alice", map[string]any{"runbook": "echo", "params": map[string]any{}}, nil, 400, "bad_request", []string{"params"}},
		{"a schedule runbook", "POST", "/api/v1/executions", "alice", map[string]any{"runbook": "nightly"}, nil, 409, "not_startable", nil},
		{"read", "GET", "/api/v1/executions/" + done, "victor", nil, nil, 200, "", nil},
		{"read an unknown execution", "GET", "/api/v1/executions/nope", "victor", nil, nil, 404, "not_found", nil},
		{"history", "GET", "/api/v1/executions?runbook=echo&status=success&since=24h&limit=5", "victor", nil, nil, 200, "", nil},
		{"history with bad query", "GET", "/api/v1/executions?status=bogus&limit=0&since=yesterday&colour=red", "victor", nil, nil,
			400, "bad_parameters", []string{"colour", "limit", "since", "status"}},
		{"events of an unknown execution", "GET", "/api/v1/executions/nope/events", "victor", nil, nil, 404, "not_found", nil},
		{"approve an unknown execution", "POST", "/api/v1/executions/nope/approvals", "bob", map[string]any{"decision": "approve"}, nil, 404, "not_found", nil},
		{"a decision that is neither", "POST", "/api/v1/executions/" + done + "/approvals", "bob", map[string]any{"decision": "maybe"}, nil, 400, "bad_request", []string{"decision"}},
		{"approve a finished execution", "POST", "/api/v1/executions/" + done + "/approvals", "bob", map[string]any{"decision": "approve"}, nil, 409, "finished", nil},
		{"cancel an unknown execution", "POST", "/api/v1/executions/nope/cancel", "alice", nil, nil, 404, "not_found", nil},
		{"cancel someone else's without the permission", "POST", "/api/v1/executions/" + done + "/cancel", "bob", nil, nil, 403, "forbidden", nil},
		{"cancel a finished execution", "POST", "/api/v1/executions/" + done + "/cancel", "alice", nil, nil, 409, "finished", nil},
		{"wrong method", "DELETE", "/api/v1/executions/" + done, "alice", nil, nil, 405, "method_not_allowed", nil},
		{"no such endpoint", "GET", "/api/v1/runbooks", "alice", nil, nil, 404, "not_found", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.do(tc.method, tc.path, tc.who, tc.body, tc.headers...)
			if resp.status != tc.want {
				t.Fatalf("status = %d, want %d; body %s", resp.status, tc.want, resp.raw)
			}
			code, params := resp.errorOf()
			if code != tc.wantCode {
				t.Errorf("error code = %q, want %q; body %s", code, tc.wantCode, resp.raw)
			}
			slices.Sort(params)
			want := slices.Clone(tc.wantParams)
			slices.Sort(want)
			if !slices.Equal(params, want) {
				t.Errorf("named parameters = %v, want %v; body %s", params, want, resp.raw)
			}
			if tc.want == 401 && !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a WWW-Authenticate: Bearer challenge")
			}
		})
	}
}

func TestSecretsStayOutOfAnswersAndLogs(t *testing.T) {
	r := newRig(t)
	resp := r.do("POST", "/api/v1/executions", "alice", map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "x", "apiKey": "hunter2"}})
	if resp.status != 400 || strings.Contains(resp.raw, "hunter2") {
		t.Errorf("a bad sensitive value: %d %s; want 400 without the value", resp.status, resp.raw)
	}
	id := r.start("alice", "echo", map[string]any{"service": "x", "apiKey": "k-4242"})
	r.waitFor(id, finished)
	got := r.do("GET", "/api/v1/executions/"+id, "alice", nil)
	for _, where := range []string{got.raw, r.logs.String()} {
		if strings.Contains(where, "k-4242") || strings.Contains(where, tokens["alice"]) {
			t.Errorf("a secret (parameter or token) leaked: %s", where)
		}
	}
}

func TestStartedExecutionIsRecordedAsAPIRunInTheChannel(t *testing.T) {
	r := newRig(t)
	resp := r.do("POST", "/api/v1/executions", "alice", map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "checkout", "replicas": 2}})
	if resp.status != 201 {
		t.Fatalf("%d %s", resp.status, resp.raw)
	}
	id := resp.body["id"].(string)
	if loc := resp.header.Get("Location"); loc != "/api/v1/executions/"+id {
		t.Errorf("Location = %q, want /api/v1/executions/%s", loc, id)
	}
	if st := resp.body["status"]; st != engine.StatusRunning && st != engine.StatusFinished {
		t.Errorf("status = %v, want running (or already finished)", st)
	}
	r.waitFor(id, finished)
	got := r.do("GET", "/api/v1/executions/"+id, "victor", nil)
	var rec struct {
		Trigger    engine.TriggerInfo  `json:"trigger"`
		Outcome    string              `json:"outcome"`
		Steps      []engine.StepRecord `json:"steps"`
		Parameters map[string]any      `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(got.raw), &rec); err != nil {
		t.Fatal(err)
	}
	tr := rec.Trigger
	if tr.Type != "api" || tr.TriggeredBy != "alice" || tr.Source != "api:alice" || tr.Platform != "slack" || tr.Channel != "#ops" {
		t.Errorf("trigger = %+v, want api by alice via token alice, thread in slack #ops", tr)
	}
	if rec.Outcome != "success" || len(rec.Steps) != 1 || rec.Steps[0].Status != engine.StepSuccess || rec.Steps[0].Output == nil {
		t.Errorf("record = outcome %q, steps %+v; want success with the step's status and output", rec.Outcome, rec.Steps)
	}
	if rec.Parameters["replicas"] != float64(2) {
		t.Errorf("parameters = %v, want replicas coerced to 2", rec.Parameters)
	}
}

func TestForbiddenStartIsAudited(t *testing.T) {
	r := newRig(t)
	resp := r.do("POST", "/api/v1/executions", "victor", map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "x"}})
	if resp.status != 403 {
		t.Fatalf("%d, want 403", resp.status)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "audit: refused") || !strings.Contains(logs, "user=victor") || !strings.Contains(logs, "runbooks:execute") {
		t.Errorf("the refusal is not in the audit log:\n%s", logs)
	}
	if h, _ := r.store.History(context.Background(), engine.HistoryQuery{}); len(h) != 0 {
		t.Errorf("a refused start started %d executions", len(h))
	}
}

func TestIdempotencyKey(t *testing.T) {
	r := newRig(t)
	body := map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "checkout"}}
	first := r.do("POST", "/api/v1/executions", "alice", body, "Idempotency-Key", "deploy-42")
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	id := first.body["id"]
	again := r.do("POST", "/api/v1/executions", "alice", body, "Idempotency-Key", "deploy-42")
	if again.status != 200 || again.body["id"] != id || again.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("repeat: %d id %v, want 200 with the same execution %v", again.status, again.body["id"], id)
	}
	other := r.do("POST", "/api/v1/executions", "alice", map[string]any{"runbook": "echo", "parameters": map[string]any{"service": "billing"}}, "Idempotency-Key", "deploy-42")
	if code, _ := other.errorOf(); other.status != 409 || code != "idempotency_key_reused" {
		t.Errorf("same key, other parameters: %d %s, want 409 idempotency_key_reused", other.status, other.raw)
	}
	// Keys belong to their token: bob's deploy-42 is another request.
	bobs := r.do("POST", "/api/v1/executions", "bob", body, "Idempotency-Key", "deploy-42")
	if bobs.status != 201 || bobs.body["id"] == id {
		t.Errorf("another token's same key: %d %v, want a new execution", bobs.status, bobs.body["id"])
	}
	noKey := r.do("POST", "/api/v1/executions", "alice", body)
	if noKey.status != 201 || noKey.body["id"] == id {
		t.Errorf("without a key: %d, want a new execution", noKey.status)
	}
	h, err := r.store.History(context.Background(), engine.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 {
		t.Errorf("%d executions started, want 3 (the repeat starts nothing)", len(h))
	}
	// A bad request does not use up the key.
	bad := r.do("POST", "/api/v1/executions", "alice", map[string]any{"runbook": "echo"}, "Idempotency-Key", "fresh")
	good := r.do("POST", "/api/v1/executions", "alice", body, "Idempotency-Key", "fresh")
	if bad.status != 400 || good.status != 201 {
		t.Errorf("bad then good with one key: %d then %d, want 400 then 201", bad.status, good.status)
	}
}

func TestHistoryFilters(t *testing.T) {
	r := newRig(t)
	a := r.start("alice", "echo", map[string]any{"service": "a"})
	r.waitFor(a, finished)
	g := r.start("alice", "gated", nil)
	r.waitFor(g, waiting)
	ids := func(path string) []string {
		t.Helper()
		resp := r.do("GET", path, "victor", nil)
		if resp.status != 200 {
			t.Fatalf("%s: %d %s", path, resp.status, resp.raw)
		}
		var out []string
		for _, e := range resp.body["executions"].([]any) {
			out = append(out, e.(map[string]any)["id"].(string))
		}
		return out
	}
	tests := []struct {
		path string
		want []string
	}{
		{"/api/v1/executions", []string{g, a}},
		{"/api/v1/executions?runbook=echo", []string{a}},
		{"/api/v1/executions?status=waiting-approval", []string{g}},
		{"/api/v1/executions?status=success", []string{a}},
		{"/api/v1/executions?limit=1", []string{g}},
		{"/api/v1/executions?since=2000-01-01T00:00:00Z&runbook=gated", []string{g}},
	}
	for _, tc := range tests {
		if got := ids(tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.path, got, tc.want)
		}
	}
}
