package alerts

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestGoldenWebhook(t *testing.T) {
	for _, name := range []string{"webhook_firing", "webhook_resolved"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			g, err := ParseWebhook(b)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, g)
		})
	}
}

func TestWebhookDetails(t *testing.T) {
	b, _ := os.ReadFile("testdata/webhook_firing.json")
	g, err := ParseWebhook(b)
	if err != nil {
		t.Fatal(err)
	}
	first, second := g.Alerts[0], g.Alerts[1]
	if first.Fingerprint != "8f1a9c2e5b7d3f60" || first.Value != "93.4" || !first.EndsAt.IsZero() {
		t.Errorf("first = %+v", first)
	}
	if second.Fingerprint != Fingerprint("PodMemoryHigh", second.Labels) {
		t.Errorf("computed fingerprint = %s", second.Fingerprint)
	}
	if len(g.Firing()) != 2 || g.Receiver != "runbookbot" || g.GroupLabels["alertname"] != "PodMemoryHigh" {
		t.Errorf("group = %+v", g)
	}
	// Status and name from the group, value from a label or Grafana's values.
	g, err = ParseWebhook([]byte(`{"version":"1","status":"resolved","groupLabels":{"alertname":"DiskFull"},
		"alerts":[{"labels":{"node":"n1","value":"97"}},{"labels":{"node":"n2"},"values":{"B0":12.5}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	a, b2 := g.Alerts[0], g.Alerts[1]
	if a.Name != "DiskFull" || a.Status != StatusResolved || a.Value != "97" || b2.Value != "12.5" || a.Labels["alertname"] != "DiskFull" {
		t.Errorf("alerts = %+v", g.Alerts)
	}
}

func TestWebhookErrors(t *testing.T) {
	for body, want := range map[string]string{
		"":                                 "EOF",
		"[]":                               "cannot unmarshal",
		"null":                             "no alerts",
		`{"alerts":[]}`:                    "no alerts",
		`{"version":"v4","alerts":[{}]}`:   "unknown version",
		`{"alerts":[{}]} {"alerts":[{}]}`:  "trailing data",
		`{"alerts":[{"labels":{"a":1}}]}`:  "cannot unmarshal",
		`{"alerts":[{"startsAt":"soon"}]}`: "",
	} {
		_, err := ParseWebhook([]byte(body))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: err %v, want %q", body, err, want)
		}
	}
}

// checkAlerts asserts what every parser promises of its output.
func checkAlerts(t *testing.T, got []Alert, source string, computed bool) {
	t.Helper()
	for _, a := range got {
		if a.Status != StatusFiring && a.Status != StatusResolved {
			t.Fatalf("status %q", a.Status)
		}
		if a.Source != source || a.Fingerprint == "" {
			t.Fatalf("source %q fingerprint %q", a.Source, a.Fingerprint)
		}
		if a.Name != "" && a.Labels["alertname"] != a.Name {
			t.Fatalf("name %q but alertname label %q", a.Name, a.Labels["alertname"])
		}
		if computed {
			if a.Name == "" {
				t.Fatalf("alert without a name: %+v", a)
			}
			if a.Fingerprint != fingerprint(a.Name, a.Labels, a.Unkeyed) {
				t.Fatalf("fingerprint %s is not the labels'", a.Fingerprint)
			}
		}
	}
}

func FuzzParseSlackMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/slack_*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		var m SlackMessage
		if json.Unmarshal(b, &m) != nil || len(m.Attachments) == 0 {
			continue
		}
		at := m.Attachments[0]
		var ft, fv string
		if len(at.Fields) > 0 {
			ft, fv = at.Fields[0].Title, at.Fields[0].Value
		}
		f.Add(m.Text, at.Title, at.Text, at.Color, at.Fallback, ft, fv)
	}
	f.Add("ALERT X firing a=1\n\nALERT Y resolved b=2", "", "", "", "", "", "")
	f.Add("", "[FIRING:2] A (b c)", "Labels:\n - a = b\nLabels:\n - a = c\nAnnotations:\n - x = y\nSource: <http://x|y>", "#ff0000", "", "Value", "12%")
	f.Fuzz(func(t *testing.T, text, title, body, color, fallback, fieldTitle, fieldValue string) {
		m := SlackMessage{Text: text, Attachments: []Attachment{{
			Title: title, Text: body, Color: color, Fallback: fallback,
			Fields: []Field{{Title: fieldTitle, Value: fieldValue}},
		}}}
		got, err := ParseSlackMessage(m)
		if err != nil {
			if !errors.Is(err, ErrNotAlert) || got != nil {
				t.Fatalf("err %v with %d alerts", err, len(got))
			}
		} else if len(got) == 0 {
			t.Fatal("no error and no alerts")
		}
		checkAlerts(t, got, SourceSlack, true)
		again, _ := ParseSlackMessage(m)
		if !reflect.DeepEqual(got, again) {
			t.Fatal("parsing is not deterministic")
		}
		// The text alone, as a message without attachments.
		got, err = ParseSlackMessage(SlackMessage{Text: body})
		if err == nil {
			checkAlerts(t, got, SourceSlack, true)
		}
	})
}

func FuzzParseWebhook(f *testing.F) {
	for _, name := range []string{"webhook_firing", "webhook_resolved"} {
		b, _ := os.ReadFile(filepath.Join("testdata", name+".json"))
		f.Add(b)
	}
	f.Add([]byte(`{"alerts":[{"labels":{"alertname":"A"}}]}`))
	f.Add([]byte(`{"version":"1","alerts":[{"status":"firing","labels":null,"values":{"A":1e309}}],"commonLabels":{"alertname":"B"}}`))
	f.Add([]byte(`{"alerts":[]} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := ParseWebhook(body)
		if err != nil {
			if len(g.Alerts) != 0 {
				t.Fatal("alerts with an error")
			}
			return
		}
		if len(g.Alerts) == 0 {
			t.Fatal("no error and no alerts")
		}
		checkAlerts(t, g.Alerts, SourceWebhook, false)
		for _, a := range g.Alerts {
			if a.Labels == nil {
				t.Fatal("nil labels")
			}
		}
	})
}

func FuzzGeneric(f *testing.F) {
	for _, s := range []string{
		"ALERT PodMemoryHigh firing namespace=staging pod=api-1 value=93",
		"Alert: PodMemoryHigh\nnamespace: staging\npod: api-1\nValue: 93",
		`[FIRING:1] PodMemoryHigh namespace="staging" pod='api-1' value=93`,
		"*Alert:* x - `critical`\n*Details:*\n • *alertname:* `A`\n\n*Alert:* y\n • *alertname:* `B`",
		"Alerts Resolved:\nLabels:\n - alertname = A\n - alertname = B\n",
		"<http://a|b> &amp;&lt; key=\"unterminated",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := ParseGeneric(text)
		if err != nil {
			if !errors.Is(err, ErrNotAlert) || got != nil {
				t.Fatalf("err %v with %d alerts", err, len(got))
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("no error and no alerts")
		}
		checkAlerts(t, got, SourceText, true)
		seen := map[string]bool{}
		for _, a := range got {
			if seen[a.Fingerprint] {
				t.Fatalf("duplicate fingerprint %s", a.Fingerprint)
			}
			seen[a.Fingerprint] = true
		}
	})
}
