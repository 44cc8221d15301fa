package discord

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runbookbot/runbookbot/bot"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares what Discord receives for m with testdata/<name>.json.
func golden(t *testing.T, name string, m bot.Message) {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(Render(m)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("missing golden file (run with -update): %v", err)
	}
	if b.String() != string(want) {
		t.Errorf("%s differs from golden:\n%s", name, b.String())
	}
}

// execution runs example-echo on a fake clock with deterministic ids and
// returns its events: up to the approval request when approve is false.
func execution(t *testing.T, params map[string]any, approve bool) []engine.Event {
	t.Helper()
	reg := enginetest.NewCluster().Registry()
	cat, diags := engine.LoadPaths(reg, "../../runbooks/example-echo.yaml")
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	clock := enginetest.NewFakeClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	store := enginetest.NewMemStore()
	n := 0
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: clock,
		NewID: func() string { n++; return fmt.Sprintf("exec-%04d", n) }})
	defer eng.Close()
	reqs := make(chan engine.Event, 4)
	eng.Subscribe(func(e engine.Event) {
		if e.Type == engine.EventApprovalRequested {
			reqs <- e
		}
	})
	id, err := eng.Start(context.Background(), engine.StartRequest{Runbook: "example-echo", Params: params,
		Trigger: engine.TriggerInfo{Type: "manual", Source: Name, Platform: Name, TriggeredBy: "discord:100000000000000001"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if params["environment"] == "production" {
		r := <-reqs
		if !approve {
			evs, _ := store.Events(ctx, id)
			return evs
		}
		clock.Advance(time.Minute)
		if _, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: r.Approval.ID, User: "discord:100000000000000002", Verb: engine.DecisionApprove}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := eng.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	evs, _ := store.Events(ctx, id)
	return evs
}

// Every kind of message the bot posts, as Discord receives it.
func TestDiscordGolden(t *testing.T) {
	end := time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC)
	waiting := execution(t, map[string]any{"service": "checkout", "environment": "production"}, false)
	parent, steps, approvals := bot.RenderThread(waiting, 4, true, end)
	golden(t, "parent-waiting", parent)
	golden(t, "step-running", steps[len(steps)-1])
	golden(t, "approval-request", approvals[0])

	done := execution(t, map[string]any{"service": "checkout", "environment": "production"}, true)
	parent, steps, approvals = bot.RenderThread(done, 4, true, end)
	golden(t, "parent-success", parent)
	golden(t, "step-ok", steps[0])
	golden(t, "approval-approved", approvals[0])

	failed := execution(t, map[string]any{"service": "checkout", "failRestart": "true"}, false)
	parent, _, _ = bot.RenderThread(failed, 4, false, end)
	golden(t, "parent-rollback", parent)

	reg := enginetest.NewCluster().Registry()
	cat, _ := engine.LoadPaths(reg, "../../runbooks/example-echo.yaml")
	plan, err := engine.DryRun(context.Background(), reg, cat.Runbooks["example-echo"], map[string]any{"service": "checkout", "environment": "production"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "dry-run", bot.PlanMessage(plan))
	golden(t, "help", bot.HelpMessage())
}

// The rendering keeps within Discord's limits even for huge inputs.
func TestRenderStaysWithinLimits(t *testing.T) {
	long := strings.Repeat("x", 5000)
	m := bot.Message{Summary: bot.R(bot.Txt(long)), Blocks: []bot.Block{{Kind: bot.KindHeader, ID: "k", Text: bot.R(bot.Txt(long))}}}
	for i := 0; i < 40; i++ {
		m.Blocks = append(m.Blocks, bot.Block{Kind: bot.KindSection, Text: bot.R(bot.Txt(long)),
			Fields: []bot.Field{{Label: long, Value: bot.R(bot.Txt(long))}}})
	}
	var buttons []bot.Button
	for i := 0; i < 40; i++ {
		buttons = append(buttons, bot.Button{ID: fmt.Sprintf("b%d", i), Label: long, Command: "approve " + long})
	}
	m.Blocks = append(m.Blocks, bot.Block{Kind: bot.KindActions, Buttons: buttons})
	r := Render(m)
	if len(r.Embeds) != 1 {
		t.Fatalf("%d embeds, want 1", len(r.Embeds))
	}
	e := r.Embeds[0]
	total := utf8.RuneCountInString(e.Description)
	if len(e.Fields) > maxFields {
		t.Errorf("%d fields", len(e.Fields))
	}
	for _, f := range e.Fields {
		total += utf8.RuneCountInString(f.Name) + utf8.RuneCountInString(f.Value)
		if utf8.RuneCountInString(f.Name) > maxFieldName || utf8.RuneCountInString(f.Value) > maxFieldValue {
			t.Errorf("field over its limits: %d/%d", utf8.RuneCountInString(f.Name), utf8.RuneCountInString(f.Value))
		}
	}
	if utf8.RuneCountInString(e.Description) > maxDescription || total > maxEmbedTotal {
		t.Errorf("description %d, embed total %d", utf8.RuneCountInString(e.Description), total)
	}
	if len(r.Components) > maxRows {
		t.Errorf("%d rows", len(r.Components))
	}
	raw, _ := json.Marshal(r.Components)
	var rows []struct {
		Components []struct {
			Label    string `json:"label"`
			CustomID string `json:"custom_id"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if len(row.Components) > maxRowButtons {
			t.Errorf("a row of %d buttons", len(row.Components))
		}
		for _, b := range row.Components {
			if utf8.RuneCountInString(b.Label) > maxButtonLabel || utf8.RuneCountInString(b.CustomID) > maxCustomID {
				t.Errorf("button over its limits: label %d, custom_id %d", utf8.RuneCountInString(b.Label), utf8.RuneCountInString(b.CustomID))
			}
		}
	}
	if txt := Render(bot.Message{Blocks: []bot.Block{{Kind: bot.KindSection, Text: bot.R(bot.Txt(long))}}}); txt.Content != "" ||
		len(txt.Embeds) != 1 {
		t.Errorf("a text longer than a message's content did not become an embed")
	}
}

// Spans become Discord markdown: people and groups as mentions (names
// stay text), markup characters escaped, statuses as emoji, times as
// Discord timestamps in the reader's zone.
func TestMarkdown(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	g := engine.Group{Name: "oncall", Users: []string{"discord:100000000000000002", "U0BOB"}, DiscordRoles: []string{"200000000000000003"}}
	tests := []struct {
		name string
		in   bot.Rich
		want string
	}{
		{"mention", bot.R(bot.Txt("by "), bot.Mention("discord:100000000000000001")), "by <@100000000000000001>"},
		{"actor that is no user", bot.R(bot.Mention("alert:CheckoutDown")), "alert:CheckoutDown"},
		{"group", bot.R(bot.GroupMention(g)), "<@100000000000000002> <@&200000000000000003>"},
		{"group without Discord identities", bot.R(bot.GroupMention(engine.Group{Name: "sre"})), "@sre"},
		{"escaping", bot.R(bot.Txt("*a* _b_ <@1> `c` # d")), `\*a\* \_b\_ \<@1\> \` + "`" + `c\` + "`" + ` \# d`},
		{"code and bold", bot.R(bot.Bold("x"), bot.Txt(" "), bot.Code("k=`v`")), "**x** `k='v'`"},
		{"status", bot.R(bot.Sym(bot.StatusOK)), "✅"},
		{"link", bot.R(bot.Link("https://x/y (1)", "a]b")), `[a\]b](https://x/y%20%281%29)`},
		{"link that is no URL", bot.R(bot.Link("javascript:x", "click")), "click"},
		{"time", bot.R(bot.At(at)), "<t:1795773600:f>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Markdown(tt.in); got != tt.want {
				t.Errorf("Markdown = %q, want %q", got, tt.want)
			}
		})
	}
}

// Only a message that mentions groups (an escalation) may ping, and only
// users and roles, never @everyone.
func TestMentionsPingOnlyEscalations(t *testing.T) {
	g := engine.Group{Name: "oncall", DiscordRoles: []string{"200000000000000003"}}
	esc := Render(bot.Message{Blocks: []bot.Block{{Kind: bot.KindSection, ID: "escalation",
		Text: bot.R(bot.Txt("no decision after 5m "), bot.GroupMention(g), bot.Txt(" please review @everyone"))}}})
	if !strings.Contains(esc.Content, "<@&200000000000000003>") || len(esc.Embeds) != 0 {
		t.Fatalf("escalation = %+v", esc)
	}
	if got := fmt.Sprint(esc.Mentions.Parse); got != "[users roles]" {
		t.Errorf("escalation may ping %s", got)
	}
	step := Render(bot.Message{Blocks: []bot.Block{{Kind: bot.KindSection, ID: "step:x:1", Text: bot.R(bot.Txt("rejected by "), bot.Mention("discord:100000000000000002"))}}})
	if len(step.Embeds) != 1 || step.Mentions == nil || len(step.Mentions.Parse) != 0 {
		t.Errorf("a step message may ping: %+v", step.Mentions)
	}
	if step.Embeds[0].URL != keyURL("step:x:1") {
		t.Errorf("step message not findable by its key: url %q", step.Embeds[0].URL)
	}
}

// A button's custom_id gives back its id and command line, within
// Discord's 100 characters; pairs too long are kept by hash.
func TestButtonCustomIDs(t *testing.T) {
	approval := "0f8fad5b-d9cb-469f-a165-70867728950e.a1b2c3d4e5f6"
	tests := []struct {
		name, id, line string
	}{
		{"approve", "approval:approve:approve", "approve " + approval},
		{"reject with a custom value", "approval:reject:wrong-svc", "reject " + approval + " --choice=wrong-svc"},
		{"cancel", "exec:cancel", "cancel 0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"long offer", "alert:run:0123456789ab", "run high-memory-pod-remediation namespace=payments pod=checkout-7d9f8c6b5-x2k4q threshold=90 container=app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cid := EncodeButton(tt.id, tt.line)
			if n := utf8.RuneCountInString(cid); n > maxCustomID {
				t.Fatalf("custom_id of %d characters", n)
			}
			id, line, ok := DecodeButton(cid)
			if !ok || id != tt.id || line != tt.line {
				t.Errorf("DecodeButton(%q) = %q, %q, %v", cid, id, line, ok)
			}
		})
	}
	if _, _, ok := DecodeButton("approve:42"); ok {
		t.Error("a custom_id the bot did not make decoded")
	}
	if _, _, ok := DecodeButton("#unknown"); ok {
		t.Error("an unknown hash decoded")
	}
}

// Modals hold only text inputs within Discord's limits; the form's id and
// command line come back in its custom_id.
func TestModalView(t *testing.T) {
	m := bot.Modal{ID: "reject", Title: "Reject this step because of something long", Command: "reject 0f8fad5b-d9cb-469f-a165-70867728950e.a1b2c3d4e5f6",
		Text:   bot.R(bot.Txt("Why are you rejecting this?")),
		Inputs: []bot.Input{{ID: "comment", Label: "Reason", Multiline: true}}}
	v := modalView(m)
	if utf8.RuneCountInString(v.Title) > maxModalTitle || len(v.Components) != 1 {
		t.Fatalf("modal = %+v", v)
	}
	id, line, ok := DecodeButton(v.CustomID)
	if !ok || id != "reject" || line != m.Command {
		t.Errorf("custom_id gives %q %q %v", id, line, ok)
	}
	raw, _ := json.Marshal(v.Components)
	for _, want := range []string{`"custom_id":"comment"`, `"style":2`, `"required":true`, `"min_length":1`, `"placeholder":"Why are you rejecting this?"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("text input lacks %s: %s", want, raw)
		}
	}
}
