package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	slackbot "github.com/runbookbot/runbookbot/bot/slack"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
)

const e2eSigningSecret = "e2e-signing-secret-7d1f0c2a9b"

// lockedBuffer is a log sink several goroutines write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newHTTPE2E runs the bot as `serve --slack-mode http --listen 127.0.0.1:0`
// with SLACK_SIGNING_SECRET and no app token, and has the emulator post to
// its /slack/events as Slack does. The bot's log is returned.
func newHTTPE2E(t *testing.T, extra ...string) (*e2e, *slackemu.HTTPMode, *lockedBuffer) {
	t.Helper()
	h := newE2E(t, false, extra...)
	h.emu.AddChannel("alerts")
	h.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.emu.WaitFor(ctx, func() bool { return h.emu.Connections() == 0 }); err != nil {
		t.Fatal("the Socket Mode client did not go away")
	}
	// The command line serve parses, and the variable it reads.
	t.Setenv("SLACK_SIGNING_SECRET", e2eSigningSecret)
	var cl botOptions
	fs, _ := serveFlags(&cl)
	if _, err := parseArgs(fs, []string{"--slack-mode", "http", "--listen", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if !cl.slackMode.load(cl.listen, io.Discard) {
		t.Fatal("serve refused --slack-mode http --listen")
	}
	h.opts.slackMode, h.opts.listen, h.opts.appToken = cl.slackMode, cl.listen, ""
	logs := &lockedBuffer{}
	h.opts.logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.start()
	hm, err := h.emu.DeliverHTTP("http://"+h.rb.addr+slackbot.EventsPath, e2eSigningSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hm.Close)
	t.Cleanup(func() {
		if strings.Contains(logs.String(), e2eSigningSecret) {
			t.Error("the signing secret is in the bot's log")
		}
	})
	return h, hm, logs
}

// delivered returns the first request of kind whose body contains what.
// delivered waits for the answered request of kind whose body contains
// what (its answer may be recorded after what the bot showed through it).
func delivered(t *testing.T, emu *slackemu.Server, hm *slackemu.HTTPMode, kind, what string) slackemu.HTTPDelivery {
	t.Helper()
	var found slackemu.HTTPDelivery
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := emu.WaitFor(ctx, func() bool {
		for _, d := range hm.Deliveries() {
			if d.Request.Kind == kind && strings.Contains(string(d.Request.Body), what) {
				found = d
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no %s request with %q was sent", kind, what)
	}
	return found
}

func TestSlackHTTPModeRunApproveSucceeds(t *testing.T) {
	h, hm, _ := newHTTPE2E(t)
	if err := hm.VerifyURL(context.Background()); err != nil {
		t.Fatalf("url_verification: %v", err)
	}
	// A run's problems are answered in the response to the command.
	h.slash("alice", h.ops, "run example-ech service=x")
	h.ephemeral("alice", `did you mean "example-echo"`)
	if d := delivered(t, h.emu, hm, "slash_commands", "example-ech+"); d.Status != http.StatusOK || !strings.Contains(string(d.Response), "did you mean") {
		t.Errorf("the mistyped run was answered %d %s, want the answer in the body", d.Status, d.Response)
	}
	parent, approval := h.startProduction()
	h.click("alice", approval, "approval:approve") // four-eyes: answered, not acted on
	h.ephemeral("alice", "someone else must approve")
	h.click("bob", approval, "approval:approve")
	h.message(h.incident, "the decision replacing the buttons", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "Approved by <@"+h.users["bob"]+">") && !strings.Contains(body(m), "approval:approve")
	})
	h.message(h.ops, "the parent showing success", func(m slackemu.Message) bool {
		return m.TS == parent.TS && strings.Contains(body(m), "*Succeeded*")
	})
	for _, d := range hm.Deliveries() {
		if d.Status != http.StatusOK || d.Latency > 3*time.Second {
			t.Errorf("%s answered %d after %v, want 200 within 3s", d.Request.Kind, d.Status, d.Latency)
		}
	}
	if errs := h.emu.ProtocolErrors(); len(errs) > 0 {
		t.Errorf("protocol errors: %v", errs)
	}
	if n := h.emu.AckTimeouts(); n != 0 {
		t.Errorf("%d requests were not answered in time", n)
	}
}

// Requests that are not Slack's as sent (replayed with an old timestamp,
// sent again as captured, unsigned, signed with a guessed secret) are
// refused with 401 and reach nothing: no second execution, no approval.
func TestSlackHTTPModeRefusesReplayedAndUnsignedRequests(t *testing.T) {
	h, hm, logs := newHTTPE2E(t)
	parent, approval := h.startProduction()
	h.click("alice", approval, "approval:approve")
	h.ephemeral("alice", "someone else must approve")
	run := delivered(t, h.emu, hm, "slash_commands", "run+example-echo")
	click := delivered(t, h.emu, hm, "interactive", "approval%3Aapprove")
	// The click as bob: what an attacker would need to sign.
	asBob := bytes.ReplaceAll(click.Request.Body, []byte(h.users["alice"]), []byte(h.users["bob"]))
	sentAt, _ := strconv.ParseInt(run.SentTimestamp, 10, 64)
	handled := len(h.rb.client.AckLatencies())

	sixMinutesAgo := time.Now().Add(-6 * time.Minute)
	unsignedCheck := []byte(`{"token":"x","challenge":"c","type":"url_verification"}`)
	refusals := []struct {
		name string
		req  slackemu.HTTPRequest
	}{
		{"the run replayed six minutes later", withTime(run.Request, sixMinutesAgo)},
		{"the run sent again as captured", captured(run.Request, time.Unix(sentAt, 0), run.SentSignature)},
		{"the run unsigned", unsigned(run.Request)},
		{"bob's approval signed with a guessed secret", slackemu.HTTPRequest{Kind: "interactive", ContentType: click.Request.ContentType, Body: asBob, Secret: "hunter2"}},
		{"bob's approval unsigned", slackemu.HTTPRequest{Kind: "interactive", ContentType: click.Request.ContentType, Body: asBob, Unsigned: true}},
		{"bob's approval signed six minutes ago", slackemu.HTTPRequest{Kind: "interactive", ContentType: click.Request.ContentType, Body: asBob, Timestamp: sixMinutesAgo}},
		{"url_verification unsigned", slackemu.HTTPRequest{Kind: "url_verification", ContentType: "application/json", Body: unsignedCheck, Unsigned: true}},
	}
	for _, r := range refusals {
		d := hm.Send(context.Background(), r.req)
		if d.Status != http.StatusUnauthorized {
			t.Errorf("%s: answered %d %s, want 401", r.name, d.Status, d.Response)
		}
	}
	if got := len(h.rb.client.AckLatencies()); got != handled {
		t.Errorf("%d refused requests reached the bot", got-handled)
	}
	if err := h.rb.bot.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, _ := h.emu.Message(h.incident, approval.TS); !strings.Contains(body(m), "approval:approve") || strings.Contains(body(m), "Approved by") {
		t.Errorf("the approval request changed after refused requests: %s", body(m))
	}
	// The real click still works, and there is still one execution.
	h.click("bob", approval, "approval:approve")
	h.message(h.ops, "the parent showing success", func(m slackemu.Message) bool {
		return m.TS == parent.TS && strings.Contains(body(m), "*Succeeded*")
	})
	if execs, err := h.rb.store.History(context.Background(), historyAll); err != nil || len(execs) != 1 {
		t.Errorf("executions = %d (%v), want 1", len(execs), err)
	}
	if !strings.Contains(logs.String(), "refused a request to the Slack endpoint") {
		t.Error("refused requests are not in the operator's log")
	}
}

func withTime(r slackemu.HTTPRequest, at time.Time) slackemu.HTTPRequest {
	r.Timestamp = at
	return r
}

func captured(r slackemu.HTTPRequest, at time.Time, signature string) slackemu.HTTPRequest {
	r.Timestamp, r.Signature = at, signature
	return r
}

func unsigned(r slackemu.HTTPRequest) slackemu.HTTPRequest {
	r.Unsigned = true
	return r
}

// An alert's message event that Slack sends again (X-Slack-Retry-Num, as
// after a lost 200) does not start its runbook twice.
func TestSlackHTTPModeEventRetryRunsOnce(t *testing.T) {
	dir := t.TempDir()
	mf := filepath.Join(dir, "mappings.yaml")
	if err := os.WriteFile(mf, []byte(alertMappings), 0o644); err != nil {
		t.Fatal(err)
	}
	h, hm, _ := newHTTPE2E(t, mf)
	alertsCh := h.emu.ChannelID("alerts")
	hook := h.emu.AddWebhook("", "alerts")
	text := "*Alert:* CheckoutDown\n • *alertname:* `CheckoutDown`\n • *environment:* `staging`\n • *service:* `checkout`\n"
	payload := []byte(`{"username":"AlertManager","attachments":[{"title":"[FIRING:1] CheckoutDown","text":` + strconv.Quote(text) + `,"color":"danger"}]}`)
	if err := h.emu.PostWebhook(hook[strings.Index(hook, "/services/"):], payload); err != nil {
		t.Fatal(err)
	}
	alert := h.message(alertsCh, "the alert", func(m slackemu.Message) bool { return m.ThreadTS == "" && strings.Contains(body(m), "FIRING") })
	h.message(alertsCh, "the execution in the alert's thread", func(m slackemu.Message) bool {
		return m.ThreadTS == alert.TS && strings.Contains(body(m), "example-echo v1.0.0")
	})
	event := delivered(t, h.emu, hm, "events_api", "CheckoutDown")
	handled := len(h.rb.client.AckLatencies())
	for n := 1; n <= 2; n++ {
		retry := event.Request
		retry.Timestamp, retry.RetryNum, retry.RetryReason = time.Time{}, n, "http_timeout"
		if d := hm.Send(context.Background(), retry); d.Status != http.StatusOK {
			t.Fatalf("retry %d answered %d, want 200 (or Slack keeps retrying)", n, d.Status)
		}
	}
	if got := len(h.rb.client.AckLatencies()); got != handled {
		t.Errorf("retries reached the bot %d times, want 0", got-handled)
	}
	h.advance(2, 2*time.Second) // the sleep and the step timeout
	h.message(alertsCh, "success in the alert's thread", func(m slackemu.Message) bool {
		return m.ThreadTS == alert.TS && strings.Contains(body(m), "*Succeeded*")
	})
	if err := h.rb.bot.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	parents := 0
	for _, m := range h.emu.Replies(alertsCh, alert.TS) {
		if strings.Contains(body(m), "example-echo v1.0.0") {
			parents++
		}
	}
	if execs, _ := h.rb.store.History(context.Background(), historyAll); len(execs) != 1 || parents != 1 {
		t.Errorf("%d executions, %d parents in the alert's thread; want 1 and 1", len(execs), parents)
	}
}

func TestServeSlackModeCommandLine(t *testing.T) {
	t.Setenv("SLACK_SIGNING_SECRET", "")
	t.Setenv("SLACK_BOT_TOKEN", "xoxb-unused")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"http without --listen", []string{"serve", "--slack-mode", "http"}, exitUsage, "--slack-mode http needs --listen ADDR"},
		{"an unknown mode", []string{"serve", "--slack-mode", "pigeon", "--listen", "127.0.0.1:0"}, exitUsage, `--slack-mode "pigeon": want socket or http`},
		{"http without the signing secret", []string{"serve", "--slack-mode", "http", "--listen", "127.0.0.1:0"}, exitFailure, "SLACK_SIGNING_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := cli(t, "", tt.args...)
			if code != tt.wantCode || !strings.Contains(errs, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// The HTTP manifest asks for what the Socket Mode one does, with every
// request URL on the bot's endpoint and Socket Mode off.
func TestSlackHTTPManifest(t *testing.T) {
	type manifest struct {
		Features struct {
			SlashCommands []map[string]any `yaml:"slash_commands"`
		} `yaml:"features"`
		OAuth struct {
			Scopes struct {
				Bot []string `yaml:"bot"`
			} `yaml:"scopes"`
		} `yaml:"oauth_config"`
		Settings struct {
			Interactivity struct {
				Enabled    bool   `yaml:"is_enabled"`
				RequestURL string `yaml:"request_url"`
			} `yaml:"interactivity"`
			Events struct {
				RequestURL string   `yaml:"request_url"`
				BotEvents  []string `yaml:"bot_events"`
			} `yaml:"event_subscriptions"`
			SocketMode bool `yaml:"socket_mode_enabled"`
		} `yaml:"settings"`
	}
	read := func(name string) manifest {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		var m manifest
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	socket, httpm := read("slack-app-manifest.yaml"), read("slack-app-manifest-http.yaml")
	if httpm.Settings.SocketMode {
		t.Error("socket_mode_enabled is true")
	}
	urls := map[string]string{"interactivity": httpm.Settings.Interactivity.RequestURL, "event_subscriptions": httpm.Settings.Events.RequestURL}
	for _, c := range httpm.Features.SlashCommands {
		urls["slash command "+c["command"].(string)], _ = c["url"].(string)
	}
	for what, u := range urls {
		if !strings.HasPrefix(u, "https://") || !strings.HasSuffix(u, slackbot.EventsPath) {
			t.Errorf("%s request URL %q, want https://…%s", what, u, slackbot.EventsPath)
		}
	}
	if !httpm.Settings.Interactivity.Enabled {
		t.Error("interactivity is off")
	}
	if strings.Join(httpm.OAuth.Scopes.Bot, ",") != strings.Join(socket.OAuth.Scopes.Bot, ",") ||
		strings.Join(httpm.Settings.Events.BotEvents, ",") != strings.Join(socket.Settings.Events.BotEvents, ",") ||
		len(httpm.Features.SlashCommands) != len(socket.Features.SlashCommands) {
		t.Error("the HTTP manifest's scopes, events or commands differ from the Socket Mode one's")
	}
}

// Reject asks for a reason in a form; over HTTP the form's field error is
// the response to the submission, and the decision follows.
func TestSlackHTTPModeRejectWithComment(t *testing.T) {
	h, hm, _ := newHTTPE2E(t)
	parent, approval := h.startProduction()
	h.click("bob", approval, "approval:reject:reject")
	var view slackemu.View
	h.waitFor("the reject form", func() bool {
		for _, v := range h.emu.Views() {
			if v.CallbackID == "reject" && v.Open {
				view = v
				return true
			}
		}
		return false
	})
	if err := h.emu.SubmitView(h.users["bob"], view.ID, map[string]map[string]string{"comment": {"comment": " "}}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the form error", func() bool { v, _ := h.emu.View(view.ID); return v.Errors["comment"] != "" })
	if d := delivered(t, h.emu, hm, "interactive", "view_submission"); !strings.Contains(string(d.Response), `"response_action":"errors"`) {
		t.Errorf("the empty reason was answered %d %s, want the field error in the body", d.Status, d.Response)
	}
	if err := h.emu.SubmitView(h.users["bob"], view.ID, map[string]map[string]string{"comment": {"comment": "look at the heap dump first"}}); err != nil {
		t.Fatal(err)
	}
	h.message(h.incident, "the rejection", func(m slackemu.Message) bool {
		return m.TS == approval.TS && strings.Contains(body(m), "Rejected by <@"+h.users["bob"]+">") && strings.Contains(body(m), "look at the heap dump first")
	})
	h.message(h.ops, "the parent showing aborted", func(m slackemu.Message) bool {
		return m.TS == parent.TS && strings.Contains(body(m), "*Aborted*")
	})
}
