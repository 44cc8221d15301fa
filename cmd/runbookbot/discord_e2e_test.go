package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	discordbot "github.com/runbookbot/runbookbot/bot/discord"
	discordemu "github.com/runbookbot/runbookbot/bot/discord/emulator"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// dE2E runs the real bot wiring (startBot, discordgo's Gateway and REST)
// against the Discord emulator, with the engine on a fake clock.
type dE2E struct {
	t         testing.TB
	emu       *discordemu.Server
	clock     *enginetest.FakeClock
	rb        *runningBot
	cancel    context.CancelFunc
	done      chan struct{}
	opts      botOptions
	users     map[string]string
	oncall    string
	ops       string
	incidents string
}

// discordRBAC is the Slack tests' RBAC with Discord identities: users as
// discord:<id>, the oncall role as a group's discordRoles.
func discordRBAC(u map[string]string, oncallRole string) string {
	q := func(n string) string { return "discord:" + u[n] }
	return fmt.Sprintf(`roles:
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
    subjects: [{group: oncall-engineers}, {user: "%s"}]
  - role: runbook-viewer
    subjects: [{user: "%s"}]
  - role: sre-lead
    subjects: [{user: "%s"}]
groups:
  - name: oncall-engineers
    discordRoles: ["%s"]
  - name: oncall-primary
    users: ["%s"]
  - name: oncall-secondary
    users: ["%s"]
`, q("alice"), q("mallory"), q("sam"), oncallRole, q("bob"), q("carol"))
}

func newDiscordE2E(t testing.TB, withRBAC bool, extra ...string) *dE2E {
	t.Helper()
	emu := discordemu.New(discordemu.Options{HeartbeatInterval: 2 * time.Second})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	h := &dE2E{t: t, emu: emu, clock: enginetest.NewFakeClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)), users: map[string]string{}}
	for _, n := range []string{"alice", "bob", "carol", "mallory", "sam"} {
		h.users[n] = emu.AddUser(discordemu.User{Username: n})
	}
	h.oncall = emu.AddRole(discordemu.Role{Name: "oncall", Mentionable: true, Members: []string{h.users["bob"], h.users["carol"]}})
	h.ops = emu.AddChannel("ops")
	h.incidents = emu.AddChannel("incidents")
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
		if err := os.WriteFile(filepath.Join(dir, "rbac.yaml"), []byte(discordRBAC(h.users, h.oncall)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.opts = botOptions{common: common{runbooks: dir, dataDir: filepath.Join(t.TempDir(), "data")},
		noRBAC: !withRBAC, clock: h.clock,
		discord: discordOptions{token: emu.Token(), apiURL: emu.URL(), approvalChannel: "#incidents", limits: discordbot.DefaultLimits()}}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *dE2E) start() {
	h.t.Helper()
	var w io.Writer = io.Discard
	if os.Getenv("RUNBOOKBOT_TEST_LOG") != "" {
		w = os.Stderr
	}
	rb, err := startBot(context.Background(), h.opts, w)
	if err != nil {
		h.t.Fatalf("startBot: %v", err)
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
	select {
	case <-rb.discord.Ready():
	case <-time.After(20 * time.Second):
		h.t.Fatal("the Discord client never became ready")
	}
}

func (h *dE2E) stop() {
	if h.rb == nil {
		return
	}
	h.cancel()
	<-h.done
	h.rb.close()
	h.rb = nil
}

// cmd types /runbook <line> as user in channel.
func (h *dE2E) cmd(user, channel, line string) string {
	h.t.Helper()
	id, err := h.emu.RunCommand(h.users[user], channel, "/runbook "+line)
	if err != nil {
		h.t.Fatalf("/runbook %s: %v", line, err)
	}
	return id
}

var dUnescape = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&", `\\`, `\`)

// dtext is a message as a person reads it: content, embeds and buttons.
func dtext(m discordemu.Message) string {
	return m.Content + " " + dUnescape.Replace(string(m.Embeds)) + " " + dUnescape.Replace(string(m.Components))
}

func dcontains(parts ...string) func(discordemu.Message) bool {
	return func(m discordemu.Message) bool {
		for _, p := range parts {
			if !strings.Contains(dtext(m), p) {
				return false
			}
		}
		return true
	}
}

func (h *dE2E) waitFor(what string, cond func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.emu.WaitFor(ctx, cond); err != nil {
		for name, id := range h.users {
			for _, e := range h.emu.Ephemerals(id) {
				h.t.Logf("ephemeral to %s: %s", name, dtext(e))
			}
		}
		for _, c := range h.emu.Channels() {
			for _, m := range h.emu.Messages(c.ID) {
				h.t.Logf("#%s %s (%d edits): %s", c.Name, m.ID, m.Edits, dtext(m))
			}
		}
		h.t.Fatalf("timed out waiting for %s", what)
	}
}

// message waits for a message in a channel or thread that matches.
func (h *dE2E) message(channel, what string, match func(discordemu.Message) bool) discordemu.Message {
	h.t.Helper()
	var found discordemu.Message
	h.waitFor(what, func() bool {
		for _, m := range h.emu.Messages(channel) {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// ephemeral waits for a message only user sees that contains what.
func (h *dE2E) ephemeral(user, what string) discordemu.Message {
	h.t.Helper()
	var found discordemu.Message
	h.waitFor("ephemeral to "+user+": "+what, func() bool {
		for _, e := range h.emu.Ephemerals(h.users[user]) {
			if strings.Contains(dtext(e), what) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func (h *dE2E) advance(timers int, d time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitTimers(ctx, timers); err != nil {
		h.t.Fatalf("waiting for %d timers: %v", timers, err)
	}
	h.clock.Advance(d)
}

// dCustomIDs lists a message's button custom_ids.
func dCustomIDs(t testing.TB, m discordemu.Message) []string {
	t.Helper()
	var rows []struct {
		Components []struct {
			CustomID string `json:"custom_id"`
		} `json:"components"`
	}
	if len(m.Components) == 0 {
		return nil
	}
	if err := json.Unmarshal(m.Components, &rows); err != nil {
		t.Fatalf("components of %s: %v", m.ID, err)
	}
	var out []string
	for _, r := range rows {
		for _, c := range r.Components {
			out = append(out, c.CustomID)
		}
	}
	return out
}

// dButton returns the custom_id of the message's button whose id starts
// with prefix.
func dButton(t testing.TB, m discordemu.Message, prefix string) string {
	t.Helper()
	for _, id := range dCustomIDs(t, m) {
		if strings.HasPrefix(id, prefix) {
			return id
		}
	}
	t.Fatalf("no %s button on %s", prefix, dtext(m))
	return ""
}

func (h *dE2E) click(user string, m discordemu.Message, prefix string) string {
	h.t.Helper()
	id, err := h.emu.ClickButton(h.users[user], m.ID, dButton(h.t, m, prefix))
	if err != nil {
		h.t.Fatalf("click %s: %v", prefix, err)
	}
	return id
}

// approvalIDOf reads the approval id from a card's Approve button.
func approvalIDOf(t testing.TB, m discordemu.Message) string {
	t.Helper()
	_, line, ok := discordbot.DecodeButton(dButton(t, m, "approval:approve"))
	if !ok {
		t.Fatal("the approve button does not decode")
	}
	words := strings.Fields(line)
	if len(words) < 2 || words[0] != "approve" {
		t.Fatalf("button line %q is not an approve command", line)
	}
	return words[1]
}

// startProduction runs example-echo in production as alice and returns
// the parent and the approval card once the execution waits on it.
func (h *dE2E) startProduction() (parent, approval discordemu.Message) {
	h.t.Helper()
	h.cmd("alice", h.ops, `run name:example-echo params:"service=checkout environment=production"`)
	parent = h.message(h.ops, "the execution's parent message", dcontains("example-echo v1.0.0"))
	h.message(parent.ID, "the settle step running in the thread", dcontains("settle", "running"))
	h.advance(2, 2*time.Second) // the sleep and the step timeout
	approval = h.message(h.incidents, "the approval request", dcontains("Approval needed: restart", "Approve Restart"))
	return parent, approval
}

func TestDiscordRunApproveSucceeds(t *testing.T) {
	h := newDiscordE2E(t, false)
	parent, approval := h.startProduction()
	if th, ok := h.emu.Channel(parent.ID); !ok || th.Type != discordemu.ChannelPublicThread || th.ParentID != h.ops {
		t.Fatalf("no public thread on the parent: %+v", th)
	}
	if !strings.Contains(dtext(approval), "<@"+h.users["alice"]+">") || !strings.Contains(dtext(approval), "service=checkout") {
		t.Errorf("approval request lacks requester or parameters: %s", dtext(approval))
	}
	if !strings.Contains(dtext(approval), "open the execution") {
		t.Errorf("approval request has no link to the thread: %s", dtext(approval))
	}
	// Four-eyes: the requester's click is answered, to her only.
	h.click("alice", approval, "approval:approve")
	h.ephemeral("alice", "someone else must approve")
	h.click("bob", approval, "approval:approve")
	h.message(h.incidents, "the decision replacing the buttons", func(m discordemu.Message) bool {
		return m.ID == approval.ID && strings.Contains(dtext(m), "Approved by <@"+h.users["bob"]+">") && len(dCustomIDs(t, m)) == 0
	})
	h.message(h.ops, "the parent showing success", func(m discordemu.Message) bool {
		return m.ID == parent.ID && strings.Contains(dtext(m), "**Succeeded**")
	})
	if err := h.rb.bot.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, r := range h.emu.Messages(parent.ID) {
		for _, s := range []string{"inspect", "settle", "restart", "announce"} {
			if strings.Contains(dtext(r), "**"+s+"**") {
				steps = append(steps, s)
				if !strings.Contains(dtext(r), "✅") {
					t.Errorf("step %s did not end ok: %s", s, dtext(r))
				}
			}
		}
	}
	if strings.Join(steps, ",") != "inspect,settle,restart,announce" {
		t.Errorf("step messages in the thread = %v", steps)
	}
	// A late click (the card was already decided) is answered, not acted on.
	h.cmd("carol", h.ops, "approve id:"+approvalIDOf(t, approval))
	h.ephemeral("carol", "Already decided: ✅ Approved by <@"+h.users["bob"]+">")
	// History answers from the store.
	h.cmd("carol", h.ops, "history runbook:example-echo outcome:success")
	h.ephemeral("carol", "example-echo")
	for _, i := range h.emu.Interactions() {
		if i.Failed {
			t.Errorf("interaction %s (type %d) was not answered within 3s", i.ID, i.Type)
		}
	}
	if n := h.emu.RateLimited(); n != 0 {
		t.Errorf("%d calls were rate limited", n)
	}
}

// openModal waits for the form the bot opened for user.
func (h *dE2E) openModal(user, customPrefix string) discordemu.Modal {
	h.t.Helper()
	var md discordemu.Modal
	h.waitFor(user+"'s form", func() bool {
		m, ok := h.emu.OpenModal(h.users[user])
		if ok && strings.HasPrefix(m.CustomID, customPrefix) {
			md = m
			return true
		}
		return false
	})
	return md
}

func TestDiscordRejectWithComment(t *testing.T) {
	h := newDiscordE2E(t, false)
	parent, approval := h.startProduction()
	h.click("bob", approval, "approval:reject:reject")
	md := h.openModal("bob", "reject")
	// A blank reason gets past Discord's required check; the bot answers
	// it and does nothing.
	if _, err := h.emu.SubmitModal(h.users["bob"], md.ID, map[string]string{"comment": "   "}); err != nil {
		t.Fatal(err)
	}
	h.ephemeral("bob", "A reason is required")
	if got, _ := h.emu.Message(approval.ID); len(dCustomIDs(t, got)) == 0 {
		t.Fatal("a blank reason decided the approval")
	}
	h.click("bob", approval, "approval:reject:reject")
	md = h.openModal("bob", "reject")
	if _, err := h.emu.SubmitModal(h.users["bob"], md.ID, map[string]string{"comment": "look at the heap dump first"}); err != nil {
		t.Fatal(err)
	}
	h.message(h.incidents, "the rejection on the card", func(m discordemu.Message) bool {
		return m.ID == approval.ID && strings.Contains(dtext(m), "Rejected by <@"+h.users["bob"]+">") &&
			strings.Contains(dtext(m), "look at the heap dump first") && len(dCustomIDs(t, m)) == 0
	})
	h.message(h.ops, "the parent showing aborted", func(m discordemu.Message) bool {
		return m.ID == parent.ID && strings.Contains(dtext(m), "**Aborted**")
	})
	h.message(parent.ID, "the restart step not run, with the reason", dcontains("**restart**",
		"not run — rejected by <@"+h.users["bob"]+">: look at the heap dump first"))
}

func TestDiscordRBACRefusals(t *testing.T) {
	h := newDiscordE2E(t, true)
	h.cmd("mallory", h.ops, `run name:example-echo params:"service=checkout"`)
	h.ephemeral("mallory", "not allowed to run runbooks")
	// mallory may read: list works.
	h.cmd("mallory", h.ops, "list")
	h.ephemeral("mallory", "example-echo")
	_, approval := h.startProduction()
	// mallory holds no approvals:respond; carol is an operator (through
	// the oncall role) but not oncall-primary, the required approver.
	h.click("mallory", approval, "approval:approve")
	h.ephemeral("mallory", "not one of the approvers")
	h.click("carol", approval, "approval:approve")
	h.ephemeral("carol", "not one of the approvers")
	h.click("bob", approval, "approval:approve")
	h.message(h.incidents, "approved by bob", dcontains("Approved by <@"+h.users["bob"]+">"))
	for _, m := range h.emu.Messages(h.incidents) {
		if strings.Contains(dtext(m), "not one of the approvers") {
			t.Errorf("a refusal was posted in the channel for everyone: %s", dtext(m))
		}
	}
	evs, err := h.rb.store.Events(context.Background(), engine.ExecutionOf(approvalIDOf(t, approval)))
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range evs {
		if e.Type == engine.EventApprovalRefused {
			refused++
			if !strings.HasPrefix(e.Actor, "discord:") {
				t.Errorf("refusal audited for %q, want a discord: user", e.Actor)
			}
		}
	}
	if refused != 2 {
		t.Errorf("%d refusals audited, want 2", refused)
	}
}

// Two clicks on Approve at once decide once; the second is answered.
func TestDiscordDoubleClick(t *testing.T) {
	h := newDiscordE2E(t, false)
	parent, approval := h.startProduction()
	id := dButton(t, approval, "approval:approve")
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := h.emu.ClickButton(h.users["bob"], approval.ID, id)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	h.ephemeral("bob", "Already decided")
	h.message(h.ops, "success", func(m discordemu.Message) bool {
		return m.ID == parent.ID && strings.Contains(dtext(m), "**Succeeded**")
	})
	evs, err := h.rb.store.Events(context.Background(), engine.ExecutionOf(approvalIDOf(t, approval)))
	if err != nil {
		t.Fatal(err)
	}
	decided := 0
	for _, e := range evs {
		if e.Type == engine.EventApprovalDecided {
			decided++
		}
	}
	if decided != 1 {
		t.Errorf("%d decisions recorded, want 1", decided)
	}
}

func TestDiscordEscalationAndTimeout(t *testing.T) {
	h := newDiscordE2E(t, true)
	parent, approval := h.startProduction()
	h.advance(2, 5*time.Minute)
	esc := h.message(approval.ID, "the escalation in the approval card's thread", dcontains("no decision after 5m0s", "<@"+h.users["carol"]+">"))
	if !slices.Contains(esc.Mentions, h.users["carol"]) {
		t.Errorf("the escalation does not notify carol: mentions %v", esc.Mentions)
	}
	h.advance(1, 10*time.Minute)
	h.message(h.incidents, "the timeout on the card", func(m discordemu.Message) bool {
		return m.ID == approval.ID && strings.Contains(dtext(m), "no decision in time") && len(dCustomIDs(t, m)) == 0
	})
	h.message(h.ops, "aborted", func(m discordemu.Message) bool {
		return m.ID == parent.ID && strings.Contains(dtext(m), "**Aborted**")
	})
}

func TestDiscordRestartWhileWaiting(t *testing.T) {
	h := newDiscordE2E(t, false)
	parent, approval := h.startProduction()
	h.stop()
	h.start() // a new process: state comes from the store
	h.click("bob", approval, "approval:approve")
	h.message(h.incidents, "the decision on the original card", func(m discordemu.Message) bool {
		return m.ID == approval.ID && strings.Contains(dtext(m), "Approved by")
	})
	h.message(h.ops, "success on the original parent", func(m discordemu.Message) bool {
		return m.ID == parent.ID && strings.Contains(dtext(m), "**Succeeded**")
	})
	if err := h.rb.bot.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cards, parents := 0, 0
	for _, m := range h.emu.Messages(h.incidents) {
		if strings.Contains(dtext(m), "Approval needed") || strings.Contains(dtext(m), "Approved: restart") {
			cards++
		}
	}
	for _, m := range h.emu.Messages(h.ops) {
		if strings.Contains(dtext(m), "example-echo v1.0.0") {
			parents++
		}
	}
	if cards != 1 || parents != 1 {
		t.Errorf("%d approval cards and %d parents after the restart, want 1 and 1", cards, parents)
	}
}

// One process serves Slack and Discord: each execution is shown on the
// platform it came from, and its approval card goes to that platform's
// approval channel.
func TestSlackAndDiscordInOneProcess(t *testing.T) {
	s := newE2E(t, false)
	emu := discordemu.New(discordemu.Options{HeartbeatInterval: 2 * time.Second})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	alice, bob := emu.AddUser(discordemu.User{Username: "alice"}), emu.AddUser(discordemu.User{Username: "bob"})
	ops, incidents := emu.AddChannel("ops"), emu.AddChannel("incidents")
	s.stop()
	s.opts.discord = discordOptions{token: emu.Token(), apiURL: emu.URL(), approvalChannel: "#incidents", limits: discordbot.DefaultLimits()}
	s.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := emu.WaitFor(ctx, func() bool { return len(emu.Commands(emu.GuildID())) > 0 }); err != nil {
		t.Fatal("/runbook was never registered on Discord")
	}
	// From Slack.
	sParent, sApproval := s.startProduction()
	// From Discord.
	parked := s.clock.Timers() // the Slack execution's approval
	if _, err := emu.RunCommand(alice, ops, `/runbook run name:example-echo params:"service=cart environment=production"`); err != nil {
		t.Fatal(err)
	}
	var dParent, dApproval discordemu.Message
	if err := emu.WaitFor(ctx, func() bool {
		for _, m := range emu.Messages(ops) {
			if strings.Contains(dtext(m), "service=cart") {
				dParent = m
			}
		}
		return dParent.ID != "" && len(emu.Messages(dParent.ID)) > 0
	}); err != nil {
		t.Fatal("the Discord execution never showed on Discord")
	}
	s.advance(parked+2, 2*time.Second) // the Discord execution's sleep and step timeout
	if err := emu.WaitFor(ctx, func() bool {
		for _, m := range emu.Messages(incidents) {
			if strings.Contains(dtext(m), "service=cart") && len(dCustomIDs(t, m)) > 0 {
				dApproval = m
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal("the Discord execution's approval card never reached Discord's #incidents")
	}
	if _, err := emu.ClickButton(bob, dApproval.ID, dButton(t, dApproval, "approval:approve")); err != nil {
		t.Fatal(err)
	}
	s.click("bob", sApproval, "approval:approve")
	if err := emu.WaitFor(ctx, func() bool {
		m, _ := emu.Message(dParent.ID)
		return strings.Contains(dtext(m), "**Succeeded**")
	}); err != nil {
		t.Fatal("the Discord execution did not succeed on Discord")
	}
	s.message(s.ops, "the Slack execution succeeding on Slack", func(m slackemu.Message) bool {
		return m.TS == sParent.TS && strings.Contains(body(m), "*Succeeded*")
	})
	// Nothing crossed over.
	for _, m := range s.emu.AllMessages(s.ops) {
		if strings.Contains(body(m), "service=cart") {
			t.Errorf("the Discord execution showed on Slack: %s", body(m))
		}
	}
	for _, c := range []string{ops, incidents} {
		for _, m := range emu.Messages(c) {
			if strings.Contains(dtext(m), "service=checkout") {
				t.Errorf("the Slack execution showed on Discord: %s", dtext(m))
			}
		}
	}
}
