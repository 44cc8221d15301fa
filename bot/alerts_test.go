package bot

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
)

const quickMappings = `mappings:
  - alert: QuickDown
    runbook: quick
    autoTrigger: true
    parameters:
      tag: "{{ $labels.service }}"
`

// withAlerts loads the quick mapping and turns alerts on.
func withAlerts(h *harness) {
	h.t.Helper()
	cat, diags := engine.LoadSources(h.reg, []string{"gated.yaml", "quick.yaml", "mappings.yaml"},
		map[string][]byte{"gated.yaml": []byte(testRunbooks), "quick.yaml": []byte(quickRunbook), "mappings.yaml": []byte(quickMappings)})
	if len(diags) > 0 {
		h.t.Fatal(diags)
	}
	h.cat = cat
	h.alerts = &AlertConfig{Matcher: alerts.NewMatcher(cat.Mappings, cat), Rules: alerts.DefaultRules(),
		Tracker: alerts.NewTracker(alerts.TrackerConfig{Now: h.clock.Now}), WebhookChannel: "#alerts"}
}

// waitFor polls cond until it holds or 10 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline: sends cross goroutines
	}
}

// posts returns the plain text of every message posted to conv (in
// thread, when set), in posting order.
func (f *fakePlatform) posts(conv, thread string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for i := 1; i <= f.n; i++ {
		id := fmt.Sprintf("m%04d", i)
		if m, ok := f.msgs[id]; ok && f.conv[id] == conv && f.under[id] == thread {
			out = append(out, text(m))
		}
	}
	return out
}

// An alert posted in a channel is an alert of that channel's platform: a
// Discord embed starts its runbook with trigger source "discord", not
// "slack".
func TestChannelAlertsTakeTheirSourceFromThePlatform(t *testing.T) {
	for _, platform := range []string{"discord", "slack"} {
		t.Run(platform, func(t *testing.T) {
			h := newHarnessWith(t, func(h *harness) {
				h.p.name = platform
				withAlerts(h)
			})
			h.bot.HandleChannelMessage(context.Background(), ChannelMessage{Platform: platform, Channel: "C0ALERTS", TS: "100.1", BotID: "B0AM",
				Attachments: []alerts.Attachment{{Title: "[FIRING:1] QuickDown", Text: "ALERT QuickDown firing service=checkout"}}})
			started := h.waitEvent(engine.EventExecutionStarted)
			s, err := h.store.Get(context.Background(), started.ExecutionID)
			if err != nil {
				t.Fatal(err)
			}
			if s.Trigger.Type != "alert" || s.Trigger.Source != platform || s.Trigger.Platform != platform {
				t.Errorf("trigger = type %q source %q platform %q, want an alert from %s", s.Trigger.Type, s.Trigger.Source, s.Trigger.Platform, platform)
			}
		})
	}
}

// An alert that resolves while the root of its thread still waits for the
// channel's budget gets its "Resolved" message in that thread once the
// root is posted.
func TestResolutionWhileTheThreadIsQueuedLandsInIt(t *testing.T) {
	h := newHarnessWith(t, withAlerts)
	var held atomic.Bool
	held.Store(true)
	h.p.mu.Lock()
	h.p.failFor = func(_, conv string) error {
		if conv == "#alerts" && held.Load() {
			return &RateLimitedError{RetryAfter: 5 * time.Millisecond, Predicted: true}
		}
		return nil
	}
	h.p.mu.Unlock()
	a := alerts.Alert{Name: "Unmapped", Status: alerts.StatusFiring, Labels: map[string]string{"alertname": "Unmapped", "service": "checkout"},
		Fingerprint: "fp-unmapped", Source: alerts.SourceWebhook}
	ctx := context.Background()
	h.bot.HandleAlertGroup(ctx, alerts.Group{Alerts: []alerts.Alert{a}})
	r := a
	r.Status = alerts.StatusResolved
	h.bot.HandleAlertGroup(ctx, alerts.Group{Alerts: []alerts.Alert{r}})
	if ps := h.p.posts("#alerts", ""); len(ps) != 0 {
		t.Fatalf("the root was posted while held: %q", ps)
	}
	held.Store(false)
	var root string
	waitFor(t, "the alert's thread", func() bool {
		_, id, n := h.p.byKey("alert:fp-unmapped")
		root = id
		return n == 1
	})
	waitFor(t, "the resolution in the thread", func() bool {
		for _, p := range h.p.posts("#alerts", root) {
			if strings.Contains(p, "Resolved:") && strings.Contains(p, "Unmapped") {
				return true
			}
		}
		return false
	})
}
