package notify

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

const canaryKey = "R0UT1NG-KEY-CANARY-9f8e7d"

var t0 = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

// pd returns a Notifier posting to srv with the canary routing key.
func pd(srv *server, s *sleeps) *Notifier {
	cfg := Config{PagerDuty: &PagerDutyConfig{URL: srv.URL, RoutingKeyEnv: "PAGERDUTY_ROUTING_KEY"},
		LookupEnv: env(map[string]string{"PAGERDUTY_ROUTING_KEY": canaryKey}),
		Clock:     enginetest.NewFakeClock(t0)}
	if s != nil {
		cfg.Sleep = s.sleep
	}
	return New(cfg, nil)
}

func TestPagerDutyTrigger(t *testing.T) {
	srv := newServer(t)
	if err := pd(srv, nil).Notify(context.Background(), note("pagerduty")); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v2/enqueue" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s (%s)", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	ev := decode(t, r.Body)
	if ev["routing_key"] != canaryKey || ev["event_action"] != "trigger" || ev["dedup_key"] != "runbookbot-exec-1" {
		t.Errorf("event = %v", ev)
	}
	p, _ := ev["payload"].(map[string]any)
	if p["summary"] != "Rollback executed for api-1 in staging." || p["source"] != "runbookbot" || p["severity"] != "warning" {
		t.Errorf("payload = %v", p)
	}
	if p["timestamp"] != "2026-01-30T10:00:00.000Z" {
		t.Errorf("timestamp = %v", p["timestamp"])
	}
	d, _ := p["custom_details"].(map[string]any)
	if d["runbook"] != "high-memory-pod-remediation" || d["executionId"] != "exec-1" || d["message"] == nil {
		t.Errorf("custom_details = %v", d)
	}
}

func TestPagerDutyResolve(t *testing.T) {
	for _, tc := range []struct {
		channel, severity string
	}{{"pagerduty:resolve", "info"}, {"pagerduty", "resolved"}, {"PagerDuty:Resolve", ""}} {
		srv := newServer(t)
		msg := note(tc.channel)
		msg.Severity = tc.severity
		if err := pd(srv, nil).Notify(context.Background(), msg); err != nil {
			t.Fatalf("%s: %v", tc.channel, err)
		}
		ev := decode(t, srv.requests()[0].Body)
		if ev["event_action"] != "resolve" || ev["dedup_key"] != "runbookbot-exec-1" || ev["payload"] != nil {
			t.Errorf("%s/%s: event = %v", tc.channel, tc.severity, ev)
		}
	}
	err := pd(newServer(t), nil).Notify(context.Background(), engine.Notification{Channels: []string{"pagerduty:resolve"}})
	if err == nil || !strings.Contains(err.Error(), "without an execution id") {
		t.Errorf("resolve without execution: %v", err)
	}
	err = pd(newServer(t), nil).Notify(context.Background(), note("pagerduty:ack"))
	if err == nil || !strings.Contains(err.Error(), "pagerduty:resolve") {
		t.Errorf("pagerduty:ack: %v", err)
	}
}

func TestPagerDutySeverity(t *testing.T) {
	for in, want := range map[string]string{
		"critical": "critical", "P1": "critical", "high": "error", "error": "error", "warning": "warning",
		"Medium": "warning", "info": "info", "low": "info", "": "warning", "bogus": "warning",
	} {
		if got := PagerDutySeverity(in); got != want {
			t.Errorf("PagerDutySeverity(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPagerDutyRoutingKeySources(t *testing.T) {
	for name, c := range map[string]PagerDutyConfig{
		"literal":    {RoutingKey: canaryKey},
		"env ref":    {RoutingKey: "${env:PD_KEY}"},
		"secret":     {RoutingKeySecret: "pagerdutyKey"},
		"secret ref": {RoutingKey: "${secret:pagerdutyKey}"},
	} {
		srv := newServer(t)
		c.URL = srv.URL + "/" // a trailing slash is fine
		n := New(Config{PagerDuty: &c, Secrets: secretMap{"pagerdutyKey": canaryKey},
			LookupEnv: env(map[string]string{"PD_KEY": canaryKey})}, nil)
		if err := n.Notify(context.Background(), note("pagerduty")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := decode(t, srv.requests()[0].Body)["routing_key"]; got != canaryKey {
			t.Errorf("%s: routing key %v", name, got)
		}
		if p := srv.requests()[0].Path; p != "/v2/enqueue" {
			t.Errorf("%s: path %s", name, p)
		}
	}
}

func TestPagerDutyMissingRoutingKey(t *testing.T) {
	srv := newServer(t)
	n := New(Config{PagerDuty: &PagerDutyConfig{URL: srv.URL, RoutingKeyEnv: "PAGERDUTY_ROUTING_KEY"}, LookupEnv: env(nil)}, nil)
	err := n.Notify(context.Background(), note("pagerduty"))
	if err == nil || !strings.Contains(err.Error(), "PAGERDUTY_ROUTING_KEY is not set") {
		t.Errorf("error = %v", err)
	}
	n = New(Config{PagerDuty: &PagerDutyConfig{URL: srv.URL, RoutingKeySecret: "pd"}}, nil)
	if err := n.Notify(context.Background(), note("pagerduty")); err == nil || !strings.Contains(err.Error(), "no secret source") {
		t.Errorf("error = %v", err)
	}
	if len(srv.requests()) != 0 {
		t.Error("nothing should be sent without a routing key")
	}
}

func TestPagerDutyRejectedEventNeverShowsTheKey(t *testing.T) {
	srv := newServer(t, http.StatusBadRequest)
	// A server that quotes the routing key back must not leak it through us.
	srv.body = func(int) string {
		return `{"status":"invalid event","message":"Event object is invalid","errors":["routing_key ` + canaryKey + ` is unknown"]}`
	}
	s := &sleeps{}
	err := pd(srv, s).Notify(context.Background(), note("pagerduty"))
	if err == nil {
		t.Fatal("want an error")
	}
	assertNoLeak(t, canaryKey, err.Error())
	for _, want := range []string{"pagerduty", "status 400", "Event object is invalid", engine.Mask} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(srv.requests()) != 1 || len(s.got()) != 0 {
		t.Errorf("400 must not be retried: %d requests, sleeps %v", len(srv.requests()), s.got())
	}
}

func TestPagerDutyRetries5xxWithBackoff(t *testing.T) {
	srv := newServer(t, 503, 502, 202)
	s := &sleeps{}
	if err := pd(srv, s).Notify(context.Background(), note("pagerduty")); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.requests()); got != 3 {
		t.Errorf("%d requests, want 3", got)
	}
	if got := s.got(); len(got) != 2 || got[0] != time.Second || got[1] != 2*time.Second {
		t.Errorf("waits = %v, want [1s 2s]", got)
	}
}

func TestPagerDutyGivesUpAfterTwoRetries(t *testing.T) {
	srv := newServer(t, 500)
	srv.body = func(int) string { return "upstream " + canaryKey + " failed\nstack trace" }
	s := &sleeps{}
	err := pd(srv, s).Notify(context.Background(), note("pagerduty"))
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 500 || de.Attempts != 3 {
		t.Fatalf("error = %v", err)
	}
	if !strings.Contains(err.Error(), "status 500") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("error = %q", err)
	}
	assertNoLeak(t, canaryKey, err.Error())
	if len(srv.requests()) != 3 || len(s.got()) != 2 {
		t.Errorf("%d requests, %d waits", len(srv.requests()), len(s.got()))
	}
}

func TestPagerDuty429HonoursRetryAfter(t *testing.T) {
	srv := newServer(t, 429, 202)
	srv.header = map[string]string{"Retry-After": "7"}
	s := &sleeps{}
	if err := pd(srv, s).Notify(context.Background(), note("pagerduty")); err != nil {
		t.Fatal(err)
	}
	if got := s.got(); len(got) != 1 || got[0] != 7*time.Second {
		t.Errorf("waits = %v, want [7s]", got)
	}
}

func TestRetryWaitsOnTheClock(t *testing.T) {
	// Without Sleep the waits are timers on Config.Clock: the test moves
	// the fake clock once the delivery is parked on it.
	srv := newServer(t, 503, 202)
	clock := enginetest.NewFakeClock(t0)
	n := New(Config{PagerDuty: &PagerDutyConfig{URL: srv.URL, RoutingKey: canaryKey}, Clock: clock, Backoff: 5 * time.Second}, nil)
	done := make(chan error, 1)
	go func() { done <- n.Notify(context.Background(), note("pagerduty")) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.WaitTimers(ctx, 1); err != nil {
		t.Fatal("delivery never waited to retry")
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("%d requests before the backoff ended", got)
	}
	clock.Advance(5 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := len(srv.requests()); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
}

func TestRetryStopsWhenCancelled(t *testing.T) {
	srv := newServer(t, 503)
	ctx, cancel := context.WithCancel(context.Background())
	n := New(Config{PagerDuty: &PagerDutyConfig{URL: srv.URL, RoutingKey: canaryKey},
		Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return context.Cause(ctx) }}, nil)
	err := n.Notify(ctx, note("pagerduty"))
	if err == nil || !strings.Contains(err.Error(), "gave up waiting to retry") || !strings.Contains(err.Error(), "status 503") {
		t.Errorf("error = %v", err)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
}

func TestTransportFailuresAreRetriedAndClean(t *testing.T) {
	srv := newServer(t)
	url := srv.URL
	srv.Close() // nothing listens now
	s := &sleeps{}
	n := New(Config{Webhooks: []WebhookConfig{{Name: "ops", URL: url + "/hooks/" + canaryKey}}, Sleep: s.sleep}, nil)
	err := n.Notify(context.Background(), note("webhook:ops"))
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 0 || de.Attempts != 3 {
		t.Fatalf("error = %v", err)
	}
	if !strings.Contains(err.Error(), "no response") {
		t.Errorf("error = %q", err)
	}
	assertNoLeak(t, canaryKey, err.Error())
	if len(s.got()) != 2 {
		t.Errorf("waits = %v", s.got())
	}
}
