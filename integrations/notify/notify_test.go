package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// assertNoLeak fails the test if any of texts contains canary.
func assertNoLeak(t *testing.T, canary string, texts ...string) {
	t.Helper()
	if canary == "" {
		t.Fatal("assertNoLeak needs a canary")
	}
	for _, s := range texts {
		if strings.Contains(s, canary) {
			t.Errorf("secret value leaked into %q", s)
		}
	}
}

// captured is one request a test server received.
type captured struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// server is an httptest server answering with scripted statuses.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	reqs     []captured
	statuses []int             // answered in order; the last repeats
	body     func(int) string  // response body per attempt (0-based)
	header   map[string]string // response headers
}

func newServer(t *testing.T, statuses ...int) *server {
	t.Helper()
	s := &server{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, captured{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: b})
		st := http.StatusAccepted
		if len(s.statuses) > 0 {
			st = s.statuses[min(n, len(s.statuses)-1)]
		}
		body := `{"status":"success","message":"Event processed"}`
		if s.body != nil {
			body = s.body(n)
		}
		for k, v := range s.header {
			w.Header().Set(k, v)
		}
		s.mu.Unlock()
		w.WriteHeader(st)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]captured(nil), s.reqs...)
}

// sleeps records the waits between retries without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// chatRecorder is a chat notifier that records what it was asked to send.
type chatRecorder struct {
	mu   sync.Mutex
	msgs []engine.Notification
	err  error
}

func (c *chatRecorder) Notify(_ context.Context, n engine.Notification) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, n)
	return c.err
}

// secretMap is a SecretSource over a map.
type secretMap map[string]any

func (m secretMap) Secret(_ context.Context, name string) (any, error) {
	v, ok := m[name]
	if !ok {
		return nil, errors.New("unknown secret")
	}
	return v, nil
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func note(channels ...string) engine.Notification {
	return engine.Notification{ExecutionID: "exec-1", Runbook: "high-memory-pod-remediation", Severity: "warning",
		Message: "Rollback executed for api-1 in staging.", Channels: channels}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", b, err)
	}
	return m
}

func TestChatChannelsGoToTheChatNotifier(t *testing.T) {
	chat := &chatRecorder{}
	n := New(Config{}, chat)
	if err := n.Notify(context.Background(), note("slack", "#incidents", "chat")); err != nil {
		t.Fatal(err)
	}
	if len(chat.msgs) != 1 {
		t.Fatalf("chat called %d times, want once", len(chat.msgs))
	}
	m := chat.msgs[0]
	if got := strings.Join(m.Channels, ","); got != "slack,#incidents,chat" {
		t.Errorf("chat channels = %s", got)
	}
	if m.Message != note().Message || m.ExecutionID != "exec-1" || m.Severity != "warning" {
		t.Errorf("chat got %+v", m)
	}
}

func TestNoChannelsUseTheDefaults(t *testing.T) {
	chat := &chatRecorder{}
	if err := New(Config{}, chat).Notify(context.Background(), note()); err != nil {
		t.Fatal(err)
	}
	if len(chat.msgs) != 1 || chat.msgs[0].Channels[0] != "chat" {
		t.Fatalf("default delivery = %+v", chat.msgs)
	}

	srv := newServer(t)
	n := New(Config{Webhooks: []WebhookConfig{{Name: "ops", URL: srv.URL}}, DefaultChannels: []string{"webhook:ops"}}, chat)
	if err := n.Notify(context.Background(), note()); err != nil {
		t.Fatal(err)
	}
	if len(srv.requests()) != 1 || len(chat.msgs) != 1 {
		t.Fatalf("defaults: %d webhook requests, %d chat messages", len(srv.requests()), len(chat.msgs))
	}
}

func TestUnknownChannelNamesTheKnownOnes(t *testing.T) {
	chat := &chatRecorder{}
	n := New(Config{
		PagerDuty: &PagerDutyConfig{RoutingKey: "k"},
		Webhooks:  []WebhookConfig{{Name: "ops", URL: "http://127.0.0.1:1/x"}, {Name: "audit", URL: "http://127.0.0.1:1/y"}},
	}, chat)
	err := n.Notify(context.Background(), note("slack", "teams"))
	if err == nil {
		t.Fatal("want an error for channel teams")
	}
	for _, want := range []string{`"teams"`, "slack", "#<channel>", "pagerduty", "webhook:ops", "webhook:audit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if len(chat.msgs) != 0 {
		t.Error("nothing should be sent when a channel is unknown")
	}
	err = n.Notify(context.Background(), note("webhook:nope"))
	if err == nil || !strings.Contains(err.Error(), `unknown webhook "nope"`) || !strings.Contains(err.Error(), "webhook:ops") {
		t.Errorf("unknown webhook error = %v", err)
	}
}

func TestUnconfiguredChannels(t *testing.T) {
	n := New(Config{}, nil)
	for ch, want := range map[string]string{
		"pagerduty": "PagerDuty is not configured",
		"webhook":   "no webhooks are configured",
		"slack":     "no chat notifier is configured",
	} {
		err := n.Notify(context.Background(), note(ch))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", ch, err, want)
		}
	}
}

func TestEveryChannelIsTriedAndFailuresJoined(t *testing.T) {
	chat := &chatRecorder{err: errors.New("slack is down")}
	bad := newServer(t, http.StatusBadRequest)
	good := newServer(t, http.StatusOK)
	n := New(Config{Webhooks: []WebhookConfig{{Name: "bad", URL: bad.URL}, {Name: "good", URL: good.URL}}}, chat)
	err := n.Notify(context.Background(), note("slack", "webhook"))
	if err == nil {
		t.Fatal("want the joined failures")
	}
	for _, want := range []string{"chat: slack is down", "webhook bad", "status 400"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(good.requests()) != 1 || len(bad.requests()) != 1 {
		t.Errorf("requests: good %d, bad %d", len(good.requests()), len(bad.requests()))
	}
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != http.StatusBadRequest || de.Channel != "webhook bad" {
		t.Errorf("DeliveryError = %+v", de)
	}
}

func TestChannelsAreDeduplicated(t *testing.T) {
	srv := newServer(t)
	n := New(Config{Webhooks: []WebhookConfig{{Name: "ops", URL: srv.URL}}}, nil)
	if err := n.Notify(context.Background(), note("webhook:ops", "webhook", "webhook:ops")); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
}

func TestNotifierServesNotificationSend(t *testing.T) {
	// The runbook's notify-rollback step: channels ["slack", "pagerduty"].
	srv := newServer(t)
	chat := &chatRecorder{}
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, New(Config{PagerDuty: &PagerDutyConfig{URL: srv.URL, RoutingKey: "rk-123"}}, chat))
	spec, ok := reg.Lookup("notification", "send")
	if !ok {
		t.Fatal("notification.send is not registered")
	}
	call := &engine.Call{
		ExecutionID: "e-42", Runbook: &engine.Runbook{Metadata: engine.Metadata{Name: "high-memory-pod-remediation"}},
		Step:   &engine.Step{Name: "notify-rollback", Type: "notification", Action: "send"},
		Params: map[string]any{"channels": []any{"slack", "pagerduty"}, "severity": "warning", "message": "Rollback executed"},
		Clock:  engine.SystemClock{},
	}
	res, err := spec.Run.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if res.Output["delivered"] != true {
		t.Errorf("output = %v", res.Output)
	}
	if len(chat.msgs) != 1 || chat.msgs[0].Channels[0] != "slack" {
		t.Errorf("chat got %+v", chat.msgs)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d PagerDuty requests", len(reqs))
	}
	ev := decode(t, reqs[0].Body)
	if ev["dedup_key"] != "runbookbot-e-42" || ev["event_action"] != "trigger" {
		t.Errorf("event = %v", ev)
	}
}
