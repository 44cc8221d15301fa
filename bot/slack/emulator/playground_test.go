package emulator

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
)

// storedAlert fires alert through the emulator's webhook, as the
// playground's Fire button does, and returns the stored message as the
// bot reads it.
func storedAlert(t *testing.T, name, labels string, firing bool) alerts.SlackMessage {
	t.Helper()
	h := start(t, Options{})
	demo := h.srv.SeedDemo()
	b, _ := json.Marshal(map[string]any{"text": name, "labels": labels, "firing": firing})
	if out := uiPost(t, h, "alert", json.RawMessage(b)); out["ok"] != true {
		t.Fatalf("fire: %v", out)
	}
	ms := h.srv.Messages(demo.Channels["alerts"])
	if len(ms) != 1 {
		t.Fatalf("%d messages in #alerts, want 1", len(ms))
	}
	var m alerts.SlackMessage
	if err := json.Unmarshal(ms[0].Attachments, &m.Attachments); err != nil {
		t.Fatal(err)
	}
	m.Text, m.Username, m.BotID = ms[0].Text, ms[0].Username, ms[0].BotID
	return m
}

func TestFirePostsTheREADMETemplate(t *testing.T) {
	m := storedAlert(t, "HighCPU", "service=web env=prod", true)
	if m.Text != "" || len(m.Attachments) != 1 {
		t.Fatalf("message %+v: want empty text and one attachment, as Alertmanager posts", m)
	}
	at := m.Attachments[0]
	want := "*Alert:* HighCPU\n • *alertname:* `HighCPU`\n • *env:* `prod`\n • *service:* `web`\n"
	if at.Title != "[FIRING:1] HighCPU (prod web)" || at.Text != want || at.Color != "a30200" ||
		!strings.HasPrefix(at.Fallback, at.Title+" | http") {
		t.Fatalf("attachment %+v\nwant the default title, the README's label text %q, colour a30200", at, want)
	}
}

func TestFireParsesIntoTheMappedDemoAlert(t *testing.T) {
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	dir := filepath.Join("..", "..", "..", "runbooks")
	cat, diags := engine.LoadPaths(reg, dir)
	for _, d := range diags {
		if f := filepath.Base(d.File); f == "mappings.yaml" || f == "example-echo.yaml" {
			t.Errorf("%s", d.String())
		}
	}
	if cat.Mappings == nil || cat.Runbooks["example-echo"] == nil {
		t.Fatalf("runbooks/: mappings loaded %v, example-echo loaded %v", cat.Mappings != nil, cat.Runbooks["example-echo"] != nil)
	}
	matcher := alerts.NewMatcher(cat.Mappings, cat)

	for _, tc := range []struct {
		name, labels string
		firing       bool
		wantAuto     bool
		wantParams   map[string]any
	}{
		{"the page's defaults", DemoAlertLabels, true, true, map[string]any{"service": "checkout", "environment": "staging"}},
		{"production", "service=payments environment=production", true, true, map[string]any{"service": "payments", "environment": "production"}},
		{"no environment: the runbook's default", "service=web", true, true, map[string]any{"service": "web"}},
		{"resolved", DemoAlertLabels, false, false, map[string]any{"service": "checkout", "environment": "staging"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as, err := alerts.ParseSlackMessage(storedAlert(t, DemoAlert, tc.labels, tc.firing))
			if err != nil {
				t.Fatal(err)
			}
			if len(as) != 1 {
				t.Fatalf("parsed %d alerts, want 1: %+v", len(as), as)
			}
			a := as[0]
			wantLabels := parseLabels(tc.labels)
			wantLabels["alertname"] = DemoAlert
			if a.Name != DemoAlert || a.Firing() != tc.firing || !equalMaps(a.Labels, wantLabels) {
				t.Fatalf("alert %+v\nwant %s firing=%v labels %v", a, DemoAlert, tc.firing, wantLabels)
			}
			d := matcher.Match(a)
			if d.Runbook != "example-echo" || d.AutoTrigger != tc.wantAuto {
				t.Fatalf("decision runbook %q auto %v (skip %q), want example-echo auto %v", d.Runbook, d.AutoTrigger, d.Skip, tc.wantAuto)
			}
			if !equalMaps(d.Params, tc.wantParams) {
				t.Fatalf("params %v, want %v", d.Params, tc.wantParams)
			}
		})
	}
}

func equalMaps[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
