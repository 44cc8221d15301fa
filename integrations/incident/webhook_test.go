package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

type delivery struct {
	key  string
	body map[string]any
}

// receiver records webhook deliveries; fail answers the first delivery of
// each key with that status.
type receiver struct {
	mu    sync.Mutex
	got   []delivery
	fail  int
	tried map[string]bool
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	r.mu.Lock()
	defer r.mu.Unlock()
	key := req.Header.Get("Idempotency-Key")
	r.got = append(r.got, delivery{key, body})
	if r.fail != 0 && !r.tried[key] {
		r.tried[key] = true
		w.WriteHeader(r.fail)
		return
	}
	if body["action"] == "attach" {
		_, _ = w.Write([]byte(`{"incident": {"id": "INC-42"}}`))
	}
}

func TestWebhookCarriesTheTimelineWithStableIdempotencyKeys(t *testing.T) {
	rcv := &receiver{fail: http.StatusBadGateway, tried: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	st := enginetest.NewMemStore()
	appendAll(t, st, newExec("w1", "rb", &engine.TriggerInfo{Type: "alert", AlertID: "fp-w"}, nil).
		approval("restart", "U-dave", "ok by me", engine.DecisionApprove).finish(engine.OutcomeSuccess))
	tl := NewTimeline(Options{Source: st, Checkpoints: &MemoryCheckpoints{}, Create: true, Route: func(string) string { return "ops" },
		Providers: map[string]Provider{"ops": NewWebhook(WebhookConfig{Name: "ops", URL: srv.URL + "/hook"}, nil, nil)}})
	for i := 0; ; i++ {
		if err := tl.Drain(context.Background()); err == nil {
			break
		} else if i > 20 {
			t.Fatal(err)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	seen := map[string]int{}
	var actions []string
	for _, d := range rcv.got {
		seen[d.key]++
		if seen[d.key] == 2 {
			actions = append(actions, d.body["action"].(string))
		}
	}
	for k, n := range seen {
		if n != 2 {
			t.Errorf("key %s delivered %d times, want the failed attempt and its retry", k, n)
		}
	}
	if got, want := strings.Join(actions, ","), "attach,note,note,note,note,resolve"; got != want {
		t.Errorf("actions = %s, want %s", got, want)
	}
	last := rcv.got[len(rcv.got)-1].body
	if last["resolution_type"] != "automated" || last["status"] != "resolved" {
		t.Errorf("resolve body = %v", last)
	}
	if inc := last["incident"].(map[string]any); inc["id"] != "INC-42" || inc["key"] != "fp-w" {
		t.Errorf("incident = %v, want the id the receiver gave and the alert key", inc)
	}
	var decided map[string]any
	for _, d := range rcv.got {
		if e, ok := d.body["entry"].(map[string]any); ok && e["entry_type"] == KindApprovalResponse {
			decided = e["details"].(map[string]any)
		}
	}
	if decided["approver"] != "U-dave" || decided["comment"] != "ok by me" {
		t.Errorf("approval entry details = %v", decided)
	}
}

type secretMap map[string]string

func (s secretMap) Secret(_ context.Context, name string) (any, error) {
	if v, ok := s[name]; ok {
		return v, nil
	}
	return nil, errors.New("no such secret")
}

// The token, a webhook URL's path and header values reach the provider and
// never an error or a log line, on success, refusal and transport failure.
func TestSecretsNeverLeak(t *testing.T) {
	const hookPath = "/hooks/T0KEN-IN-THE-PATH-9876"
	const header = "Bearer hdr-secret-5555"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A hostile or buggy receiver echoes what it got.
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("bad request to " + r.URL.Path + " with " + r.Header.Get("Authorization")))
	}))
	defer echo.Close()
	pdEcho := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error": {"message": "Invalid Input Provided", "code": 2001, "errors": ["` + r.Header.Get("Authorization") + `"]}}`))
	}))
	defer pdEcho.Close()
	secrets := secretMap{"pd": testToken, "hook": echo.URL + hookPath, "hdr": header}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	providers := map[string]Provider{
		"pagerduty": NewPagerDuty(PagerDutyConfig{URL: pdEcho.URL, Token: "${secret:pd}", From: testFrom, ServiceID: testService}, secrets, nil),
		"hook":      NewWebhook(WebhookConfig{Name: "hook", URL: "${secret:hook}", Headers: map[string]string{"Authorization": "${secret:hdr}"}}, secrets, nil),
		"down":      NewWebhook(WebhookConfig{Name: "down", URL: "http://127.0.0.1:1" + hookPath}, secrets, nil),
	}
	for name := range providers {
		st := enginetest.NewMemStore()
		appendAll(t, st, newExec("s-"+name, "rb", &engine.TriggerInfo{Type: "manual"}, nil).finish(engine.OutcomeSuccess))
		tl := NewTimeline(Options{Source: st, Checkpoints: &MemoryCheckpoints{}, Create: true, Logger: log, Providers: providers,
			Route: func(string) string { return name }})
		err := tl.Drain(context.Background())
		text := logs.String()
		if err != nil {
			text += err.Error()
		}
		for _, secret := range []string{testToken, "T0KEN-IN-THE-PATH-9876", "hdr-secret-5555"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s: a secret leaked:\n%s", name, text)
			}
		}
	}
	if !strings.Contains(logs.String(), "HTTP 400") {
		t.Errorf("the refusals were not logged:\n%s", logs.String())
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"ok", "pagerduty: {token: '${env:PD}', from: a@b.c, serviceId: S}\nwebhooks: [{name: ops, url: 'https://x.example/h'}]\ndefault: pagerduty\nrunbooks: {a: ops, b: none}\n", ""},
		{"unknown provider", "pagerduty: {token: t, from: a@b.c, serviceId: S}\nrunbooks: {a: opsgenie}\n", `runbooks.a: provider "opsgenie" is not configured`},
		{"no token", "pagerduty: {from: a@b.c, serviceId: S}\n", "pagerduty.token is required"},
		{"no from", "pagerduty: {token: t, serviceId: S}\n", "pagerduty.from"},
		{"unknown key quotes no value", "pagerduty: {tokn: s3cr3t-value}\n", "field tokn not found"},
		{"bad url", "webhooks: [{name: x, url: 'ftp://h'}]\n", "absolute http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error quotes a value: %v", err)
			}
		})
	}
	cfg, _ := ParseConfig([]byte("pagerduty: {token: t, from: a@b.c, serviceId: S}\ndefault: pagerduty\nrunbooks: {quiet: none}\ncreate: false\n"))
	if cfg.ProviderFor("quiet") != "" || cfg.ProviderFor("other") != "pagerduty" || cfg.Create {
		t.Errorf("routing: quiet=%q other=%q create=%v", cfg.ProviderFor("quiet"), cfg.ProviderFor("other"), cfg.Create)
	}
}
