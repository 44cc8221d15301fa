package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	slackbot "github.com/runbookbot/runbookbot/bot/slack"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

// e2e runs the real bot wiring (startBot, Socket Mode, Web API) against the
// Slack emulator, with the engine on a fake clock.
type e2e struct {
	t        testing.TB
	emu      *slackemu.Server
	clock    *enginetest.FakeClock
	rb       *runningBot
	cancel   context.CancelFunc
	done     chan struct{}
	opts     botOptions
	users    map[string]string
	ops      string
	incident string
}

func copyRunbook(t testing.TB, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "runbooks", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newE2E(t testing.TB, withRBAC bool, extra ...string) *e2e {
	t.Helper()
	emu := slackemu.New(slackemu.Options{BotToken: "xoxb-test", AppToken: "xapp-test"})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	h := &e2e{t: t, emu: emu, clock: enginetest.NewFakeClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)), users: map[string]string{}}
	for _, n := range []string{"alice", "bob", "carol", "mallory", "sam"} {
		h.users[n] = emu.AddUser(slackemu.User{Name: n})
	}
	oncall := emu.AddUserGroup(slackemu.UserGroup{Handle: "oncall", Members: []string{h.users["bob"], h.users["carol"]}})
	h.ops = emu.AddChannel("ops")
	h.incident = emu.AddChannel("incidents")
	dir := t.TempDir()
	copyRunbook(t, dir, "example-echo.yaml")
	for _, f := range extra {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if withRBAC {
		rbac := fmt.Sprintf(`roles:
  - name: runbook-viewer
    permissions: [runbooks:list, runbooks:read, executions:list, executions:read]
  - name: runbook-operator
    inherits: runbook-viewer
    permissions: [runbooks:execute, runbooks:dry-run, approvals:respond]
  - name: sre-lead
    inherits: runbook-operator
    permissions: [executions:cancel]
assignments:
  - role: runbook-operator
    subjects: [{group: oncall-engineers}, {user: %s}]
  - role: runbook-viewer
    subjects: [{user: %s}]
  - role: sre-lead
    subjects: [{user: %s}]
groups:
  - name: oncall-engineers
    slackUserGroups: [%s]
  - name: oncall-primary
    users: [%s]
  - name: oncall-secondary
    users: [%s]
`, h.users["alice"], h.users["mallory"], h.users["sam"], oncall, h.users["bob"], h.users["carol"])
		if err := os.WriteFile(filepath.Join(dir, "rbac.yaml"), []byte(rbac), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.opts = botOptions{common: common{runbooks: dir, dataDir: filepath.Join(t.TempDir(), "data")},
		approvalChannel: "#incidents", botToken: "xoxb-test", appToken: "xapp-test", apiURL: emu.APIURL(),
		noRBAC: !withRBAC, clock: h.clock, limits: slackbot.DefaultLimits()}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *e2e) start() {
	h.t.Helper()
	var w io.Writer = io.Discard
	if os.Getenv("RUNBOOKBOT_TEST_LOG") != "" {
		w = os.Stderr
	}
	rb, err := startBot(context.Background(), h.opts, w)
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(h.opts.dataDir, "events.log"))
		h.t.Fatalf("startBot: %v (log %d bytes: %q)", err, len(b), b[:min(len(b), 80)])
	}
	if h.opts.listen != "" {
		if err := rb.listen(h.opts.listen); err != nil {
			h.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.rb, h.cancel, h.done = rb, cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := rb.run(ctx); err != nil {
			h.t.Errorf("run: %v", err)
		}
	}()
}

func (h *e2e) stop() {
	if h.rb == nil {
		return
	}
	h.cancel()
	<-h.done
	h.rb.close()
	h.rb = nil
}

func (h *e2e) slash(user, channel, text string) {
	h.t.Helper()
	if err := h.emu.SlashCommand(h.users[user], channel, text); err != nil {
		h.t.Fatalf("/runbook %s: %v", text, err)
	}
}

var unescape = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")

// body is a message's text and blocks, as a person would search them.
func body(m slackemu.Message) string {
	return m.Text + unescape.Replace(string(m.Blocks)) + unescape.Replace(string(m.Attachments))
}

// waitFor polls the emulator's state (re-checked on every change) until
// cond holds.
func (h *e2e) waitFor(what string, cond func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.emu.WaitFor(ctx, cond); err != nil {
		for name, id := range h.users {
			for _, e := range h.emu.Ephemerals(id) {
				h.t.Logf("ephemeral to %s: %s", name, e.Text)
			}
		}
		for _, ch := range []string{h.ops, h.incident} {
			for _, m := range h.emu.AllMessages(ch) {
				h.t.Logf("%s %s (thread %s, %d edits): %s", ch, m.TS, m.ThreadTS, m.Edits, m.Text)
			}
		}
		h.t.Fatalf("timed out waiting for %s", what)
	}
}

func (h *e2e) message(channel, what string, match func(slackemu.Message) bool) slackemu.Message {
	h.t.Helper()
	var found slackemu.Message
	h.waitFor(what, func() bool {
		for _, m := range h.emu.AllMessages(channel) {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

func contains(parts ...string) func(slackemu.Message) bool {
	return func(m slackemu.Message) bool {
		for _, p := range parts {
			if !strings.Contains(body(m), p) {
				return false
			}
		}
		return true
	}
}

func (h *e2e) ephemeral(user, what string) slackemu.Ephemeral {
	h.t.Helper()
	var found slackemu.Ephemeral
	h.waitFor("ephemeral to "+user+": "+what, func() bool {
		for _, e := range h.emu.Ephemerals(h.users[user]) {
			if strings.Contains(e.Text+unescape.Replace(string(e.Blocks)), what) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func (h *e2e) advance(timers int, d time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitTimers(ctx, timers); err != nil {
		h.t.Fatalf("waiting for %d timers: %v", timers, err)
	}
	h.clock.Advance(d)
}

func (h *e2e) click(user string, m slackemu.Message, actionPrefix string) {
	h.t.Helper()
	id := actionID(h.t, m, actionPrefix)
	if err := h.emu.ClickButton(h.users[user], m.Channel, m.TS, id); err != nil {
		h.t.Fatalf("click %s: %v", id, err)
	}
}

// actionID finds the first button whose action_id starts with prefix.
func actionID(t testing.TB, m slackemu.Message, prefix string) string {
	t.Helper()
	s := string(m.Blocks)
	i := strings.Index(s, `"action_id":"`+prefix)
	if i < 0 {
		t.Fatalf("no %s button in %s", prefix, s)
	}
	rest := s[i+len(`"action_id":"`):]
	return rest[:strings.IndexByte(rest, '"')]
}

// startProduction runs example-echo in production as alice and returns the
// approval request once the execution waits on it.
func (h *e2e) startProduction() (parent, approval slackemu.Message) {
	h.t.Helper()
	h.slash("alice", h.ops, `run example-echo service=checkout environment=production`)
	parent = h.message(h.ops, "the execution's parent message", contains("example-echo v1.0.0"))
	h.message(h.ops, "the settle step running", contains("settle", "running"))
	h.advance(2, 2*time.Second) // the sleep and the step timeout
	approval = h.message(h.incident, "the approval request", contains("Approval needed: restart", "approval:approve:approve"))
	return parent, approval
}

func TestSlackRunApproveSucceeds(t *testing.T) {
	h := newE2E(t, false)
	parent, approval := h.startProduction()
	if !strings.Contains(body(approval), h.users["alice"]) || !strings.Contains(body(approval), "service=checkout") {
		t.Errorf("approval request lacks requester or parameters: %s", body(approval))
	}
	if !strings.Contains(body(approval), "open the execution") {
		t.Errorf("approval request has no link to the thread: %s", body(approval))
	}
	// Four-eyes: the requester's click is answered, not acted on.
	h.click("alice", approval, "approval:approve")
	h.ephemeral("alice", "someone else must approve")
	h.click("bob", approval, "approval:approve")
	h.message(h.incident, "the decision replacing the buttons", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "Approved by <@"+h.users["bob"]+">") && !strings.Contains(body(m), "approval:approve")
	})
	h.message(h.ops, "the parent showing success", func(m slackemu.Message) bool {
		return m.TS == parent.TS && strings.Contains(body(m), "*Succeeded*")
	})
	if err := h.rb.bot.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	replies := h.emu.Replies(h.ops, parent.TS)
	var steps []string
	for _, r := range replies {
		for _, s := range []string{"inspect", "settle", "restart", "announce"} {
			if strings.Contains(body(r), "*"+s+"*") {
				steps = append(steps, s)
				if !strings.Contains(body(r), ":white_check_mark:") {
					t.Errorf("step %s did not end ok: %s", s, body(r))
				}
			}
		}
	}
	if strings.Join(steps, ",") != "inspect,settle,restart,announce" {
		t.Errorf("step messages in thread = %v", steps)
	}
	// A late decision (a click that raced the update, or a typed one) is
	// answered, not acted on.
	h.slash("carol", h.ops, "approve "+approvalValue(t, approval))
	h.ephemeral("carol", "Already decided: :white_check_mark: Approved by <@"+h.users["bob"]+">")
	// History answers from the store.
	h.slash("carol", h.ops, "history example-echo --outcome success")
	h.ephemeral("carol", "example-echo")
	if n := h.emu.RateLimited(); n != 0 {
		t.Errorf("%d calls were rate limited", n)
	}
}

func TestSlackRejectWithComment(t *testing.T) {
	h := newE2E(t, false)
	parent, approval := h.startProduction()
	h.click("bob", approval, "approval:reject:reject")
	var view slackemu.View
	h.waitFor("the reject modal", func() bool {
		for _, v := range h.emu.Views() {
			if v.CallbackID == "reject" && v.Open {
				view = v
				return true
			}
		}
		return false
	})
	// An empty reason is refused in the form itself.
	if err := h.emu.SubmitView(h.users["bob"], view.ID, map[string]map[string]string{"comment": {"comment": " "}}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the form error", func() bool { v, _ := h.emu.View(view.ID); return v.Errors["comment"] != "" })
	if err := h.emu.SubmitView(h.users["bob"], view.ID, map[string]map[string]string{"comment": {"comment": "look at the heap dump first"}}); err != nil {
		t.Fatal(err)
	}
	h.message(h.incident, "the rejection", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "Rejected by <@"+h.users["bob"]+">") && strings.Contains(body(m), "look at the heap dump first")
	})
	h.message(h.ops, "the parent showing aborted", func(m slackemu.Message) bool {
		return m.TS == parent.TS && strings.Contains(body(m), "*Aborted*")
	})
	// The step says it was not run, who rejected it and why, with a mention.
	h.message(h.ops, "the restart step not run, with the reason", contains("*restart*", "not run — rejected by <@"+h.users["bob"]+">: look at the heap dump first"))
}

func TestSlackEscalationAndTimeout(t *testing.T) {
	h := newE2E(t, true)
	parent, approval := h.startProduction()
	h.advance(2, 5*time.Minute)
	h.message(h.incident, "the escalation in the approval thread", func(m slackemu.Message) bool {
		return m.ThreadTS == approval.TS && strings.Contains(body(m), "no decision after 5m0s") && strings.Contains(body(m), "<@"+h.users["carol"]+">")
	})
	h.advance(1, 10*time.Minute)
	h.message(h.incident, "the timeout on the request", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "no decision in time")
	})
	h.message(h.ops, "aborted", func(m slackemu.Message) bool { return m.TS == parent.TS && strings.Contains(body(m), "*Aborted*") })
}

func TestSlackRBACRefusals(t *testing.T) {
	h := newE2E(t, true)
	h.slash("mallory", h.ops, "run example-echo service=checkout")
	h.ephemeral("mallory", "not allowed to run runbooks")
	// mallory may read: list works.
	h.slash("mallory", h.ops, "list")
	h.ephemeral("mallory", "example-echo")
	_, approval := h.startProduction()
	// mallory holds no approvals:respond: refused and audited.
	h.click("mallory", approval, "approval:approve")
	h.ephemeral("mallory", "not one of the approvers")
	// carol is an operator but not oncall-primary (the required approver).
	h.click("carol", approval, "approval:approve")
	h.ephemeral("carol", "not one of the approvers")
	h.click("bob", approval, "approval:approve")
	h.message(h.incident, "approved by bob", contains("Approved by <@"+h.users["bob"]+">"))
	evs, err := h.rb.store.Events(context.Background(), engine.ExecutionOf(approvalValue(t, approval)))
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range evs {
		if e.Type == engine.EventApprovalRefused {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refusals audited, want 2", refused)
	}
}

func approvalValue(t *testing.T, m slackemu.Message) string {
	t.Helper()
	s := string(m.Blocks)
	i := strings.Index(s, `"value":"`)
	if i < 0 {
		t.Fatal("no button value")
	}
	rest := s[i+len(`"value":"`):]
	// A button carries a command line: "approve <approval-id>".
	words := strings.Fields(rest[:strings.IndexByte(rest, '"')])
	if len(words) < 2 {
		t.Fatalf("button value %q is not a command line", words)
	}
	return words[1]
}

func TestSlackRestartWhileWaiting(t *testing.T) {
	h := newE2E(t, false)
	parent, approval := h.startProduction()
	h.stop()
	h.start() // a new process: state comes from the store
	h.click("bob", approval, "approval:approve")
	h.message(h.incident, "the decision on the original message", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "Approved by")
	})
	h.message(h.ops, "success on the original parent", func(m slackemu.Message) bool {
		return m.TS == parent.TS && strings.Contains(body(m), "*Succeeded*")
	})
	// No duplicate approval request or parent was posted.
	n := 0
	card := `"block_id":"approval:` + approvalValue(t, approval) + `"`
	for _, m := range h.emu.AllMessages(h.incident) {
		if strings.Contains(string(m.Blocks), card) && m.ThreadTS == "" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d approval requests in #incidents, want 1", n)
	}
}

func TestSlackCommandErrors(t *testing.T) {
	h := newE2E(t, false)
	h.slash("alice", h.ops, "run example-ech service=x")
	h.ephemeral("alice", `did you mean "example-echo"`)
	h.slash("alice", h.ops, "run example-echo servce=x")
	h.ephemeral("alice", `did you mean \"service\"`)
	h.slash("alice", h.ops, "run example-echo")
	h.ephemeral("alice", "parameter service: is required")
	h.slash("alice", h.ops, "frobnicate")
	h.ephemeral("alice", "unknown command")
	h.slash("alice", h.ops, `dry-run example-echo service=checkout environment=production`)
	h.ephemeral("alice", "APPROVAL REQUIRED")
}

// With --store redis://, executions live in Redis, every event is mirrored
// to the audit stream, and history (chat and CLI) reads from Redis.
func TestSlackWithRedisStoreAndAuditStream(t *testing.T) {
	srv := redistest.Start(t)
	h := newE2E(t, false)
	h.stop()
	h.opts.store = srv.URL()
	h.start()
	parent, approval := h.startProduction()
	h.click("bob", approval, "approval:approve")
	h.message(h.ops, "success", func(m slackemu.Message) bool { return m.TS == parent.TS && strings.Contains(body(m), "*Succeeded*") })
	client, err := redis.NewClient(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	execID := engine.ExecutionOf(approvalValue(t, approval))
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := client.XRange(context.Background(), "runbookbot:audit", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range entries {
			if e.Values["executionId"] == execID {
				types = append(types, fmt.Sprint(e.Values["type"]))
			}
		}
		if len(types) > 0 && types[len(types)-1] == string(engine.EventExecutionFinished) {
			if types[0] != string(engine.EventExecutionStarted) || !strings.Contains(strings.Join(types, ","), "approval.decided") {
				t.Errorf("audit stream for the execution = %v", types)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit stream never got the whole execution: %v", types)
		}
		time.Sleep(20 * time.Millisecond) // the mirror ships asynchronously
	}
	code, out, _ := cli(t, "", "history", "--store", srv.URL(), "--json")
	if code != exitOK || !strings.Contains(out, execID) || !strings.Contains(out, `"outcome": "success"`) {
		t.Errorf("history from Redis: %d %s", code, out)
	}
}

// Emergency bypass: only the override's roles, with a justification from a
// modal, audited as critical.
func TestSlackEmergencyBypass(t *testing.T) {
	h := newE2E(t, true)
	parent, approval := h.startProduction()
	h.click("bob", approval, "approval:bypass")
	h.waitFor("the bypass modal", func() bool {
		for _, v := range h.emu.Views() {
			if v.CallbackID == "bypass" && v.Open && v.User == h.users["bob"] {
				return true
			}
		}
		return false
	})
	var view slackemu.View
	for _, v := range h.emu.Views() {
		if v.CallbackID == "bypass" && v.Open {
			view = v
		}
	}
	if err := h.emu.SubmitView(h.users["bob"], view.ID, map[string]map[string]string{"justification": {"justification": "checkout is down"}}); err != nil {
		t.Fatal(err)
	}
	h.ephemeral("bob", "not one of the approvers") // bob is no sre-lead
	h.click("sam", approval, "approval:bypass")
	h.waitFor("sam's bypass modal", func() bool {
		for _, v := range h.emu.Views() {
			if v.CallbackID == "bypass" && v.Open && v.User == h.users["sam"] {
				view = v
				return true
			}
		}
		return false
	})
	if err := h.emu.SubmitView(h.users["sam"], view.ID, map[string]map[string]string{"justification": {"justification": "checkout is down for everyone"}}); err != nil {
		t.Fatal(err)
	}
	h.message(h.incident, "the bypass on the request", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "Emergency bypass by <@"+h.users["sam"]+">") && strings.Contains(body(m), "checkout is down for everyone")
	})
	h.message(h.ops, "success", func(m slackemu.Message) bool { return m.TS == parent.TS && strings.Contains(body(m), "*Succeeded*") })
	evs, _ := h.rb.store.Events(context.Background(), engine.ExecutionOf(approvalValue(t, approval)))
	levels := map[engine.EventType]string{}
	for _, e := range evs {
		if e.AuditLevel != "" {
			levels[e.Type] = e.AuditLevel
		}
	}
	if levels[engine.EventApprovalDecided] != "critical" || levels[engine.EventApprovalRefused] != "critical" {
		t.Errorf("audit levels = %v, want critical for the bypass and the refused bypass", levels)
	}
}

// Answers are never lost: 130 people asking for help at once (more than
// Slack's ephemeral budget allows at once) all get an answer, through the
// response_url of their own command.
func TestSlackConcurrentHelpAllAnswered(t *testing.T) {
	h := newE2E(t, false)
	user := h.users["alice"]
	before := len(h.emu.Ephemerals(user))
	var wg sync.WaitGroup
	for i := 0; i < 130; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.emu.SlashCommand(user, h.ops, "help"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.waitFor("130 answers", func() bool {
		n := 0
		for _, e := range h.emu.Ephemerals(user)[before:] {
			if strings.Contains(e.Text+string(e.Blocks), "run") {
				n++
			}
		}
		return n >= 130
	})
}
