package emulator

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// alertmanagerBody is what Alertmanager's slack_configs send with the
// default templates (text empty, everything in attachments[0]).
const alertmanagerBody = `{"channel":"#elsewhere","username":"Alertmanager","icon_emoji":"","icon_url":"","link_names":false,"text":"",
"attachments":[{"title":"[FIRING:1] HighCPU (web prod)","title_link":"http://am:9093/#/alerts?receiver=slack",
"pretext":"","text":"","fallback":"[FIRING:1] HighCPU (web prod) | http://am:9093/#/alerts?receiver=slack",
"callback_id":"","footer":"","color":"danger","mrkdwn_in":["fallback","pretext","text"]}]}`

func postHook(t *testing.T, url, body string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestWebhookDeliversBotMessage(t *testing.T) {
	h := start(t, Options{})
	alerts := h.srv.AddChannel("alerts")
	hook := h.srv.AddWebhook("T0EMULATOR/B0ALERTS/secret", "#alerts")
	if hook != h.srv.URL()+"services/T0EMULATOR/B0ALERTS/secret" {
		t.Fatalf("webhook URL %q", hook)
	}
	h.connect()

	code, body, _ := postHook(t, hook, alertmanagerBody)
	if code != http.StatusOK || body != "ok" {
		t.Fatalf("webhook answered %d %q", code, body)
	}
	evt := h.waitEvent(socketmode.EventTypeEventsAPI)
	msg := evt.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.SubType != "bot_message" || msg.BotID == "" || msg.Username != "Alertmanager" || msg.Channel != alerts || msg.Text != "" || msg.User != "" {
		t.Fatalf("bot_message event %+v", msg)
	}
	if msg.Message == nil || len(msg.Message.Attachments) != 1 {
		t.Fatalf("attachments missing: %+v", msg.Message)
	}
	att := msg.Message.Attachments[0]
	if att.Color != "a30200" || att.Title != "[FIRING:1] HighCPU (web prod)" || att.ID != 1 {
		t.Fatalf("attachment %+v", att)
	}
	if err := h.sm.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}
	ms := h.srv.Messages("alerts")
	if len(ms) != 1 || ms[0].SubType != "bot_message" || ms[0].TS != msg.TimeStamp {
		t.Fatalf("stored %+v", ms)
	}
	if len(h.srv.Messages(h.ops)) != 0 {
		t.Fatal("channel override must be ignored")
	}

	// The bot can thread under the alert.
	if _, _, err := h.api.PostMessage(alerts, slack.MsgOptionText("running runbook", false), slack.MsgOptionTS(msg.TimeStamp)); err != nil {
		t.Fatal(err)
	}
	if r := h.srv.Replies(alerts, msg.TimeStamp); len(r) != 1 {
		t.Fatalf("replies %+v", r)
	}
	if h.srv.Calls("incoming-webhook") != 1 {
		t.Fatalf("calls %d", h.srv.Calls("incoming-webhook"))
	}
}

func TestWebhookErrors(t *testing.T) {
	h := start(t, Options{Now: newFakeClock().Now})
	hook := h.srv.AddWebhook("", "ops")
	if !strings.HasPrefix(hook, h.srv.URL()+"services/T0EMULATOR/B") {
		t.Fatalf("minted webhook URL %q", hook)
	}
	if code, body, _ := postHook(t, h.srv.URL()+"services/nope", `{"text":"x"}`); code != 404 || body != "no_service" {
		t.Fatalf("unknown hook: %d %q", code, body)
	}
	if code, body, _ := postHook(t, hook, `{"text":""}`); code != 400 || body != "no_text" {
		t.Fatalf("empty: %d %q", code, body)
	}
	if code, body, _ := postHook(t, hook, `{not json`); code != 400 || body != "invalid_payload" {
		t.Fatalf("bad json: %d %q", code, body)
	}
	gone := h.srv.AddWebhook("x", "#does-not-exist")
	if code, body, _ := postHook(t, gone, `{"text":"x"}`); code != 404 || body != "channel_not_found" {
		t.Fatalf("no channel: %d %q", code, body)
	}
	hook = h.srv.AddWebhook("burst", h.srv.AddChannel("burst")) // fresh bucket: failed posts count too
	for i := range 5 {
		if code, body, _ := postHook(t, hook, `{"text":"burst"}`); code != 200 {
			t.Fatalf("post %d: %d %q", i, code, body)
		}
	}
	code, _, hdr := postHook(t, hook, `{"text":"one too many"}`)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("burst: %d %v", code, hdr)
	}
	// slack-go's webhook helper sees the 429 as a RateLimitedError too.
	wantRateLimited(t, slack.PostWebhook(hook, &slack.WebhookMessage{Text: "x"}), time.Second)
}
