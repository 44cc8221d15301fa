package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/commands/api"
)

// withTriggers restarts h's bot with the API on a local address, tokens
// for alice and bob, and scheduled and API runs posting in #ops.
func (h *e2e) withTriggers(receiverAuth bool) {
	h.t.Helper()
	h.stop()
	var file strings.Builder
	for _, who := range []string{"alice", "bob"} {
		sum := sha256.Sum256([]byte("token-of-" + who))
		fmt.Fprintf(&file, "- {name: %s-ci, sha256: %s, subject: %s}\n", who, hex.EncodeToString(sum[:]), h.users[who])
	}
	toks, err := api.ParseTokens([]byte(file.String()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.opts.listen = "127.0.0.1:0"
	h.opts.api = apiOptions{tokens: toks, channel: "#ops", receiverAuth: receiverAuth}
	h.start()
}

func (h *e2e) post(path, who, body string) (int, map[string]any) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+h.rb.addr+path, strings.NewReader(body))
	if who != "" {
		req.Header.Set("Authorization", "Bearer token-of-"+who)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAPIRunsShowInChatAndAreApprovedOverTheAPI(t *testing.T) {
	h := newE2E(t, true)
	h.withTriggers(true)
	status, out := h.post("/api/v1/executions", "alice", `{"runbook": "example-echo", "parameters": {"service": "checkout", "environment": "production"}}`)
	if status != http.StatusCreated {
		t.Fatalf("POST /api/v1/executions on serve --listen: %d %v", status, out)
	}
	id := out["id"].(string)
	h.message(h.ops, "the API run's parent in #ops", contains("example-echo v1.0.0", id, "api"))
	h.message(h.ops, "the settle step running", contains("settle", "running"))
	h.advance(2, 2*time.Second)
	h.message(h.incident, "the approval request", contains("Approval needed: restart"))

	if status, _ := h.post("/api/v1/executions/"+id+"/approvals", "alice", `{"step": "restart", "decision": "approve"}`); status != http.StatusForbidden {
		t.Errorf("alice approving her own API run: %d, want 403 (four-eyes)", status)
	}
	if status, out := h.post("/api/v1/executions/"+id+"/approvals", "bob", `{"step": "restart", "decision": "approve"}`); status != http.StatusOK {
		t.Fatalf("bob approving over the API: %d %v", status, out)
	}
	h.message(h.ops, "the parent showing success", func(m slackemu.Message) bool {
		return contains(id)(m) && strings.Contains(strings.ToLower(body(m)), "succeeded")
	})

	// The Alertmanager receiver now wants a token.
	if status, _ := h.post("/alertmanager", "", `{"alerts": []}`); status != http.StatusUnauthorized {
		t.Errorf("POST /alertmanager without a token: %d, want 401 with --alertmanager-auth", status)
	}
	if status, _ := h.post("/alertmanager", "bob", `{"alerts": []}`); status == http.StatusUnauthorized {
		t.Errorf("POST /alertmanager with a bearer token: 401")
	}
}

func TestScheduledRunPostsItsThreadOnceAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "report.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: runbooks/v1
kind: Runbook
metadata: {name: quarter-report, version: "1.0.0"}
trigger: {type: schedule, schedule: "*/15 * * * *"}
steps:
  - {name: say, type: log, action: print, params: {message: "report"}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newE2E(t, false, file)
	h.withTriggers(false)
	h.advance(1, 15*time.Minute) // 10:15
	parent := h.message(h.ops, "the scheduled run's parent in #ops", contains("quarter-report v1.0.0", "schedule"))

	// A restart at the same moment does not run the 10:15 tick again.
	h.stop()
	h.start()
	h.advance(1, 15*time.Minute) // 10:30
	h.waitFor("the 10:30 run", func() bool { return countParents(h, "quarter-report v1.0.0") == 2 })
	if n := countParents(h, "quarter-report v1.0.0"); n != 2 {
		t.Errorf("%d scheduled threads after 10:15, a restart and 10:30, want 2", n)
	}
	_ = parent
}

func countParents(h *e2e, text string) int {
	n := 0
	for _, m := range h.emu.AllMessages(h.ops) {
		if m.ThreadTS == "" && strings.Contains(body(m), text) {
			n++
		}
	}
	return n
}
