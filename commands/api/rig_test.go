package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/api"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

const runbooks = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: echo, version: "1.0.0"}
trigger: {type: manual}
parameters:
  - {name: service, type: string, required: true, pattern: "[a-z][a-z0-9-]*"}
  - {name: replicas, type: integer, default: 1}
  - {name: apiKey, type: string, sensitive: true, pattern: "k-[0-9]+"}
steps:
  - {name: say, type: log, action: print, params: {message: "echo {{ service }} x{{ replicas }}"}}
---
apiVersion: runbooks/v1
kind: Runbook
metadata: {name: gated, version: "2.0.0"}
trigger: {type: api, parameters: {service: checkout}}
parameters:
  - {name: service, type: string, required: true}
steps:
  - {name: inspect, type: log, action: print, params: {message: "inspect {{ service }}"}}
  - name: restart
    type: log
    action: print
    params: {message: "restart {{ service }}"}
    requiresApproval: {type: manual}
approvals:
  - name: restart-approval
    trigger: {step: restart}
    workflow:
      type: sequential
      timeout: 1h
      approvers:
        - {type: role, value: oncall-primary, required: true}
      actions:
        approve: [{label: Approve, value: approve}]
        reject: [{label: Reject, value: reject, requiresComment: true}]
---
apiVersion: runbooks/v1
kind: Runbook
metadata: {name: nightly, version: "1.0.0"}
trigger: {type: schedule, schedule: "@daily"}
steps:
  - {name: say, type: log, action: print, params: {message: nightly}}
`

// The people and tokens of the tests.
var rbac = &engine.RBACConfig{
	Roles: []engine.Role{
		{Name: "viewer", Permissions: []string{"executions:read", "executions:list"}},
		{Name: "operator", Inherits: "viewer", Permissions: []string{"runbooks:execute", "approvals:respond"}},
		{Name: "oncall-primary", Permissions: []string{"approvals:respond"}},
	},
	Assignments: []engine.Assignment{
		{Role: "viewer", Subjects: []engine.Subject{{User: "victor"}}},
		{Role: "operator", Subjects: []engine.Subject{{User: "alice"}, {User: "bob"}, {Group: "sre"}}},
		{Role: "oncall-primary", Subjects: []engine.Subject{{User: "bob"}, {Group: "sre"}}},
	},
	Groups: []engine.Group{{Name: "sre"}},
}

// tokens maps a token's name to the token; the file holds only hashes.
var tokens = map[string]string{"alice": "tok-alice", "bob": "tok-bob", "victor": "tok-victor", "sre-bot": "tok-sre"}

func tokensFile() []byte {
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, e := range []struct{ name, subject string }{{"alice", "alice"}, {"bob", "bob"}, {"victor", "user:victor"}, {"sre-bot", "sre"}} {
		sum := sha256.Sum256([]byte(tokens[e.name]))
		fmt.Fprintf(&b, "  - {name: %s, sha256: %s, subject: %q}\n", e.name, hex.EncodeToString(sum[:]), e.subject)
	}
	return []byte(b.String())
}

// rig is an API server on a real engine and HTTP server; every request and
// response goes through the OpenAPI check.
type rig struct {
	t     *testing.T
	eng   *engine.Engine
	store *enginetest.MemStore
	srv   *httptest.Server
	logs  *enginetest.LogBuffer
	check *specCheck
}

func newRig(t *testing.T) *rig {
	t.Helper()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	srcs := map[string][]byte{}
	var order []string
	for i, doc := range strings.Split(runbooks, "---\n") {
		name := fmt.Sprintf("rb%d.yaml", i)
		order = append(order, name)
		srcs[name] = []byte(doc)
	}
	cat, diags := engine.LoadSources(reg, order, srcs)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	toks, err := api.ParseTokens(tokensFile())
	if err != nil {
		t.Fatal(err)
	}
	auth := commands.NewAuthorizer(toks.Bind(rbac), nil)
	store := enginetest.NewMemStore()
	logs := &enginetest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Approvers: auth, Logger: log})
	t.Cleanup(eng.Close)
	s := api.New(api.Config{Engine: eng, Tokens: toks, Auth: auth, Logger: log, Platform: "slack", Channel: "#ops", Poll: 20 * time.Millisecond})
	r := &rig{t: t, eng: eng, store: store, logs: logs, check: newSpecCheck(t)}
	r.srv = httptest.NewServer(r.check.wrap(s))
	t.Cleanup(r.srv.Close)
	return r
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends a request as the token of who ("" for none).
func (r *rig) do(method, path, who string, body any, headers ...string) response {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, r.srv.URL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+tokens[who])
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// errorOf returns the code and the named parameters of an error answer.
func (resp response) errorOf() (string, []string) {
	e, _ := resp.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	var names []string
	ps, _ := e["parameters"].([]any)
	for _, p := range ps {
		if m, ok := p.(map[string]any); ok {
			names = append(names, fmt.Sprint(m["name"]))
		}
	}
	return code, names
}

// start starts a runbook as who and returns the execution id.
func (r *rig) start(who, runbook string, params map[string]any) string {
	r.t.Helper()
	resp := r.do("POST", "/api/v1/executions", who, map[string]any{"runbook": runbook, "parameters": params})
	if resp.status != http.StatusCreated {
		r.t.Fatalf("starting %s as %s: %d %s", runbook, who, resp.status, resp.raw)
	}
	return resp.body["id"].(string)
}

// waitFor waits until the execution's summary satisfies ok.
func (r *rig) waitFor(id string, ok func(engine.Summary) bool) engine.Summary {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		changed := r.store.Changed()
		s, err := r.store.Get(ctx, id)
		if err == nil && ok(s) {
			return s
		}
		select {
		case <-changed:
		case <-ctx.Done():
			r.t.Fatalf("execution %s: condition not reached (last: %+v, %v)", id, s, err)
		}
	}
}

func finished(s engine.Summary) bool { return s.Status == engine.StatusFinished }
func waiting(s engine.Summary) bool  { return s.Status == engine.StatusWaiting }

// sse reads a Server-Sent Events stream.
type sse struct {
	resp *http.Response
	sc   *bufio.Scanner
}

type sseEvent struct {
	id, event, data string
}

func (r *rig) stream(id, who string, headers ...string) *sse {
	r.t.Helper()
	req, _ := http.NewRequest("GET", r.srv.URL+"/api/v1/executions/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tokens[who])
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		r.t.Fatalf("event stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sse{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next event, or false at the end of the stream.
func (s *sse) next() (sseEvent, bool) {
	var e sseEvent
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if e.event != "" {
				return e, true
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			e.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			e.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			e.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return e, false
}
