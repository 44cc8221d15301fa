package notify

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	p := writeConfig(t, `
pagerduty: {routingKeyEnv: PAGERDUTY_ROUTING_KEY, url: https://events.pagerduty.com}
webhooks:
  - {name: ops, url: https://hooks.example/x, headers: {X-Token: "abc"}, body: '{"text": {{ message | json }}}'}
  - name: audit
    url: ${secret:auditHook}
    method: put
defaultChannels: [chat, webhook:audit]
timeout: 5s
retries: 3
backoff: 2s
`)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PagerDuty == nil || cfg.PagerDuty.RoutingKeyEnv != "PAGERDUTY_ROUTING_KEY" || cfg.PagerDuty.URL != "https://events.pagerduty.com" {
		t.Errorf("pagerduty = %+v", cfg.PagerDuty)
	}
	if len(cfg.Webhooks) != 2 || cfg.Webhooks[0].Headers["X-Token"] != "abc" || cfg.Webhooks[0].Body != `{"text": {{ message | json }}}` {
		t.Errorf("webhooks = %+v", cfg.Webhooks)
	}
	if cfg.Webhooks[1].URL != "${secret:auditHook}" || cfg.Webhooks[1].Method != "put" {
		t.Errorf("audit = %+v", cfg.Webhooks[1])
	}
	if cfg.Timeout != 5*time.Second || cfg.Retries != 3 || cfg.Backoff != 2*time.Second {
		t.Errorf("timeout %v retries %d backoff %v", cfg.Timeout, cfg.Retries, cfg.Backoff)
	}
	if strings.Join(cfg.DefaultChannels, ",") != "chat,webhook:audit" {
		t.Errorf("defaultChannels = %v", cfg.DefaultChannels)
	}
}

func TestLoadConfigRetriesZeroTurnsRetriesOff(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "retries: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, 503)
	cfg.PagerDuty = &PagerDutyConfig{URL: srv.URL, RoutingKey: "k"}
	s := &sleeps{}
	cfg.Sleep = s.sleep
	if err := New(cfg, nil).Notify(context.Background(), note("pagerduty")); err == nil {
		t.Fatal("want the 503")
	}
	if len(srv.requests()) != 1 || len(s.got()) != 0 {
		t.Errorf("%d requests, waits %v", len(srv.requests()), s.got())
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":       {"pagerduty: {routingKeyEnv: X, rotingKey: y}\n", "field rotingKey not found"},
		"unknown top key":   {"slack: {}\n", "field slack not found"},
		"empty":             {"", "the file is empty"},
		"no routing key":    {"pagerduty: {url: https://events.pagerduty.com}\n", "set one of routingKey"},
		"two routing keys":  {"pagerduty: {routingKey: a, routingKeyEnv: B}\n", "exclusive"},
		"bad pd url":        {"pagerduty: {routingKey: a, url: 'events.pagerduty.com'}\n", "pagerduty.url must be"},
		"webhook no name":   {"webhooks: [{url: 'https://h/x'}]\n", "webhooks[0]: name is required"},
		"webhook no url":    {"webhooks: [{name: a}]\n", "webhooks[0]: url is required"},
		"webhook bad url":   {"webhooks: [{name: a, url: 'ftp://h/x'}]\n", "absolute http(s) URL"},
		"webhook dup":       {"webhooks: [{name: a, url: 'https://h/x'}, {name: a, url: 'https://h/y'}]\n", `name "a" is used twice`},
		"webhook method":    {"webhooks: [{name: a, url: 'https://h/x', method: DELETE}]\n", "use POST, PUT or PATCH"},
		"webhook template":  {"webhooks: [{name: a, url: 'https://h/x', body: '{{ message | shout }}'}]\n", `unknown filter "shout"`},
		"webhook name root": {"webhooks: [{name: a, url: 'https://h/x', body: '{{ secrets.x }}'}]\n", `unknown name "secrets"`},
		"bad header":        {"webhooks: [{name: a, url: 'https://h/x', headers: {'X Bad': v}}]\n", "not a valid header name"},
		"default channel":   {"defaultChannels: [teams]\n", `defaultChannels: unknown notification channel "teams"`},
		"default webhook":   {"defaultChannels: ['webhook:nope']\n", `unknown webhook "nope"`},
		"bad duration":      {"timeout: soon\n", "timeout:"},
		"negative retries":  {"retries: -1\n", "retries is negative"},
	} {
		_, err := LoadConfig(writeConfig(t, tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "notify config") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadConfigErrorsNeverQuoteValues(t *testing.T) {
	for name, yaml := range map[string]string{
		"key as list":      "pagerduty: {routingKey: [" + canaryKey + "]}\n",
		"headers as list":  "webhooks: [{name: a, url: 'https://h/x', headers: [" + canaryHeader + "]}]\n",
		"retries as token": "retries: " + canaryKey + "\n",
		"bad url":          "webhooks: [{name: a, url: 'h/" + canaryKey + "', headers: {X: " + canaryHeader + "}}]\n",
		"bad header name":  "webhooks: [{name: a, url: 'https://h/x', headers: {'X Y': " + canaryHeader + "}}]\n",
	} {
		_, err := LoadConfig(writeConfig(t, yaml))
		if err == nil {
			t.Errorf("%s: want an error", name)
			continue
		}
		assertNoLeak(t, canaryKey, err.Error())
		assertNoLeak(t, canaryHeader, err.Error())
	}
}

func TestValidateAcceptsReferences(t *testing.T) {
	cfg := Config{
		PagerDuty: &PagerDutyConfig{RoutingKey: "${secret:pagerdutyKey}"},
		Webhooks:  []WebhookConfig{{Name: "slack", URL: "${secret:slackWebhook}", Headers: map[string]string{"Authorization": "Bearer ${env:T}"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.PagerDuty.RoutingKey = "${env:}"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "names nothing") {
		t.Errorf("empty reference: %v", err)
	}
}

func TestKnownChannels(t *testing.T) {
	n := New(Config{PagerDuty: &PagerDutyConfig{RoutingKey: "k"}, Webhooks: []WebhookConfig{{Name: "b", URL: "https://h"}, {Name: "a", URL: "https://h"}}}, nil)
	got := strings.Join(n.Known(), " ")
	want := "slack chat #<channel> pagerduty pagerduty:resolve webhook webhook:a webhook:b"
	if got != want {
		t.Errorf("Known() = %q, want %q", got, want)
	}
}
