package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// appRequest is what a fake app behind a request URL received.
type appRequest struct {
	header http.Header
	body   []byte
}

// fakeApp is an app with Socket Mode off: it records every request and
// answers with answer(request, how many came before it).
type fakeApp struct {
	mu   sync.Mutex
	reqs []appRequest
	srv  *httptest.Server
}

func newFakeApp(t *testing.T, answer func(w http.ResponseWriter, r appRequest, n int)) *fakeApp {
	t.Helper()
	a := &fakeApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := appRequest{header: r.Header.Clone(), body: b}
		a.mu.Lock()
		n := len(a.reqs)
		a.reqs = append(a.reqs, req)
		a.mu.Unlock()
		answer(w, req, n)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeApp) requests() []appRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]appRequest(nil), a.reqs...)
}

// verifiedBySlackGo checks a request's signature with slack-go's own
// verifier, the one apps written with it use.
func verifiedBySlackGo(t *testing.T, r appRequest, secret string) {
	t.Helper()
	sv, err := slack.NewSecretsVerifier(r.header, secret)
	if err != nil {
		t.Fatalf("slack-go refuses the headers: %v", err)
	}
	_, _ = sv.Write(r.body)
	if err := sv.Ensure(); err != nil {
		t.Errorf("slack-go says the signature is wrong: %v", err)
	}
}

func waitFor(t *testing.T, s *Server, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

func TestHTTPModeSlashCommandIsASignedFormAndItsAnswerIsShown(t *testing.T) {
	s := New(Options{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	alice := s.AddUser(User{Name: "alice"})
	ops := s.AddChannel("ops")
	app := newFakeApp(t, func(w http.ResponseWriter, r appRequest, _ int) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"response_type":"ephemeral","text":"pong"}`))
	})
	h, err := s.DeliverHTTP(app.srv.URL+"/slack/events", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)

	if err := s.SlashCommand(alice, ops, "ping now"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the answer shown to alice", func() bool {
		es := s.Ephemerals(alice)
		return len(es) == 1 && es[0].Text == "pong"
	})
	reqs := app.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if got := r.header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", got)
	}
	form, err := url.ParseQuery(string(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"command": "/runbook", "text": "ping now", "user_id": alice, "channel_id": ops} {
		if got := form.Get(k); got != want {
			t.Errorf("form %s = %q, want %q", k, got, want)
		}
	}
	if form.Get("response_url") == "" || form.Get("trigger_id") == "" {
		t.Errorf("form lacks response_url or trigger_id: %v", form)
	}
	verifiedBySlackGo(t, r, testSecret)
	if acks := s.Acks(); len(acks) != 1 || acks[0].Type != "slash_commands" {
		t.Errorf("acks = %+v, want the slash command's", acks)
	}
}

func TestHTTPModeEventNotAnsweredIsRetriedWithRetryHeaders(t *testing.T) {
	s := New(Options{AckTimeout: 200 * time.Millisecond})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	alice := s.AddUser(User{Name: "alice"})
	ops := s.AddChannel("ops")
	app := newFakeApp(t, func(w http.ResponseWriter, _ appRequest, n int) {
		if n == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	})
	h, err := s.DeliverHTTP(app.srv.URL, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if _, err := s.PostMessage(alice, ops, "disk full on db-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the retry acked", func() bool { return len(s.Acks()) == 1 })
	reqs := app.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want the event and one retry", len(reqs))
	}
	if got := reqs[0].header.Get("X-Slack-Retry-Num"); got != "" {
		t.Errorf("first delivery has X-Slack-Retry-Num %q", got)
	}
	if got, reason := reqs[1].header.Get("X-Slack-Retry-Num"), reqs[1].header.Get("X-Slack-Retry-Reason"); got != "1" || reason != "http_timeout" {
		t.Errorf("retry headers = %q %q, want 1 http_timeout", got, reason)
	}
	for _, r := range reqs {
		verifiedBySlackGo(t, r, testSecret)
	}
	var ev struct {
		Type    string `json:"type"`
		EventID string `json:"event_id"`
		Event   struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"event"`
	}
	if err := json.Unmarshal(reqs[1].body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "event_callback" || ev.Event.Type != "message" || ev.Event.Text != "disk full on db-1" || ev.EventID == "" {
		t.Errorf("event body = %s", reqs[1].body)
	}
	if !bytes.Equal(reqs[0].body, reqs[1].body) {
		t.Errorf("the retry carries another body:\n%s\n%s", reqs[0].body, reqs[1].body)
	}
	if a := s.Acks()[0]; a.Type != "events_api" || a.Attempt != 1 {
		t.Errorf("ack = %+v, want the events_api retry's", a)
	}
}

func TestHTTPModeURLVerificationAndInteractionForm(t *testing.T) {
	s := New(Options{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	alice := s.AddUser(User{Name: "alice"})
	ops := s.AddChannel("ops")
	app := newFakeApp(t, func(w http.ResponseWriter, r appRequest, _ int) {
		var v struct {
			Type      string `json:"type"`
			Challenge string `json:"challenge"`
		}
		if json.Unmarshal(r.body, &v) == nil && v.Type == "url_verification" {
			_, _ = w.Write([]byte(v.Challenge)) // Slack accepts the challenge as plain text too
		}
	})
	h, err := s.DeliverHTTP(app.srv.URL, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.VerifyURL(context.Background()); err != nil {
		t.Errorf("VerifyURL: %v", err)
	}
	verifiedBySlackGo(t, app.requests()[0], testSecret)

	// A message with a button, posted by the app through the Web API.
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL()))
	btn := slack.NewButtonBlockElement("approve", "approve 42", slack.NewTextBlockObject("plain_text", "Approve", false, false))
	_, ts, err := api.PostMessage(ops, slack.MsgOptionText("approve?", false), slack.MsgOptionBlocks(slack.NewActionBlock("approval", btn)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ClickButton(alice, ops, ts, "approve"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the click acked", func() bool { return len(s.Acks()) == 1 })
	r := app.requests()[1]
	form, err := url.ParseQuery(string(r.body))
	if err != nil || len(form) != 1 {
		t.Fatalf("interaction body %q: want one field, payload", r.body)
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		t.Fatal(err)
	}
	if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID != alice || len(cb.ActionCallback.BlockActions) != 1 ||
		cb.ActionCallback.BlockActions[0].Value != "approve 42" {
		t.Errorf("payload = %s", form.Get("payload"))
	}
	verifiedBySlackGo(t, r, testSecret)
	if !strings.HasPrefix(r.header.Get("User-Agent"), "Slackbot") {
		t.Errorf("User-Agent = %q", r.header.Get("User-Agent"))
	}
}
