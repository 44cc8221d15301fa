package slack

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

	"github.com/runbookbot/runbookbot/bot"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, m bot.Message) {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"text": Text(m), "blocks": Blocks(m)}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
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
// returns its events up to (and including) the first event stop accepts.
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
		Trigger: engine.TriggerInfo{Type: "manual", Source: "slack", TriggeredBy: "U0ALICE"}})
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
		if _, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: r.Approval.ID, User: "U0BOB", Verb: engine.DecisionApprove}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := eng.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	evs, _ := store.Events(ctx, id)
	return evs
}

// Every kind of message the bot posts, as Block Kit.
func TestBlockKitGolden(t *testing.T) {
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
	parent, steps, _ = bot.RenderThread(failed, 4, false, end)
	golden(t, "parent-rollback", parent)
	for _, s := range steps {
		if strings.Contains(s.Summary.Plain(), "restart: failed") {
			golden(t, "step-failed", s)
		}
		if strings.Contains(s.Summary.Plain(), "announce: skipped") {
			golden(t, "step-skipped", s)
		}
	}

	reg := enginetest.NewCluster().Registry()
	cat, _ := engine.LoadPaths(reg, "../../runbooks/example-echo.yaml")
	plan, err := engine.DryRun(context.Background(), reg, cat.Runbooks["example-echo"], map[string]any{"service": "checkout", "environment": "production"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "dry-run", bot.PlanMessage(plan))
	golden(t, "help", bot.HelpMessage())
}

// The rendered blocks respect Slack's limits even for huge inputs.
func TestBlocksStayWithinLimits(t *testing.T) {
	long := strings.Repeat("x", 5000)
	m := bot.Message{Summary: bot.R(bot.Txt(long))}
	for i := 0; i < 60; i++ {
		m.Blocks = append(m.Blocks, bot.Block{Kind: bot.KindSection, Text: bot.R(bot.Txt(long)), Fields: []bot.Field{{Label: "a", Value: bot.R(bot.Txt(long))}, {Value: bot.R(bot.Code(long))}}})
	}
	m.Blocks[0] = bot.Block{Kind: bot.KindActions, ID: "a", Buttons: []bot.Button{{Label: long, ID: "x", Command: long}}}
	bs := Blocks(m)
	if len(bs) != 50 {
		t.Fatalf("%d blocks, want 50", len(bs))
	}
	raw, _ := json.Marshal(bs)
	var decoded []map[string]any
	_ = json.Unmarshal(raw, &decoded)
	sec := decoded[1]["text"].(map[string]any)["text"].(string)
	if n := len([]rune(sec)); n > 3000 {
		t.Errorf("section text %d chars", n)
	}
	if n := len([]rune(Text(m))); n > 3000 {
		t.Errorf("fallback text %d chars", n)
	}
}

// Spans become mrkdwn: people and groups as mentions (names stay text),
// markup characters escaped, statuses as emoji, times as Slack dates.
func TestMrkdwn(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	g := engine.Group{Name: "oncall", Users: []string{"U0BOB"}, SlackUserGroups: []string{"S0ONCALL"}}
	tests := []struct {
		name string
		in   bot.Rich
		want string
	}{
		{"mention", bot.R(bot.Txt("by "), bot.Mention("U0ALICE")), "by <@U0ALICE>"},
		{"actor that is no user", bot.R(bot.Mention("alert:CheckoutDown")), "alert:CheckoutDown"},
		{"group", bot.R(bot.GroupMention(g)), "<@U0BOB> <!subteam^S0ONCALL>"},
		{"escaping", bot.R(bot.Txt("a < b & c > d")), "a &lt; b &amp; c &gt; d"},
		{"code and bold", bot.R(bot.Bold("x"), bot.Txt(" "), bot.Code("k=`v`")), "*x* `k='v'`"},
		{"status", bot.R(bot.Sym(bot.StatusOK)), ":white_check_mark:"},
		{"link", bot.R(bot.Link("https://x/y", "a|b")), "<https://x/y|a¦b>"},
		{"time", bot.R(bot.At(at)), "<!date^1795773600^{date_short_pretty} {time}|2026-11-27 10:00 UTC>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Mrkdwn(tt.in); got != tt.want {
				t.Errorf("Mrkdwn = %q, want %q", got, tt.want)
			}
		})
	}
}
