package emulator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

func TestSlashCommandAckAndLatency(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	h.waitFor("pongs", func() bool { return h.srv.Pongs() >= 2 })

	if err := h.srv.SlashCommand(h.alice, "#ops", "restart web"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	cmd := evt.Data.(slack.SlashCommand)
	if cmd.Command != "/runbook" || cmd.Text != "restart web" || cmd.UserID != h.alice ||
		cmd.UserName != "alice" || cmd.ChannelID != h.ops || cmd.ChannelName != "ops" || cmd.TeamID != "T0EMULATOR" {
		t.Fatalf("unexpected command %+v", cmd)
	}
	if !strings.HasPrefix(cmd.ResponseURL, h.srv.URL()+"hooks/commands/") || strings.Count(cmd.TriggerID, ".") != 2 {
		t.Fatalf("response_url %q trigger_id %q", cmd.ResponseURL, cmd.TriggerID)
	}
	if !evt.Request.AcceptsResponsePayload {
		t.Error("slash_commands must accept a response payload")
	}
	if err := h.sm.Ack(*evt.Request, map[string]any{"response_type": "ephemeral", "text": "working on it"}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("ack", func() bool { return len(h.srv.Acks()) == 1 })
	ack := h.srv.Acks()[0]
	if ack.Type != "slash_commands" || ack.EnvelopeID != evt.Request.EnvelopeID || ack.Latency <= 0 {
		t.Fatalf("ack %+v", ack)
	}
	if lat := h.srv.AckLatencies(); len(lat) != 1 || lat[0] != ack.Latency {
		t.Fatalf("latencies %v", lat)
	}
	h.waitFor("ephemeral from ack payload", func() bool {
		e := h.srv.Ephemerals(h.alice)
		return len(e) == 1 && e[0].Text == "working on it" && e[0].Channel == h.ops
	})

	// The follow-up through response_url, as slack-go sends it.
	if err := slack.PostWebhook(cmd.ResponseURL, &slack.WebhookMessage{ResponseType: "in_channel", Text: "done"}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("in_channel reply", func() bool {
		ms := h.srv.Messages(h.ops)
		return len(ms) == 1 && ms[0].Text == "done" && ms[0].User == "U0BOTUSER01"
	})
	if err := slack.PostWebhook(h.srv.URL()+"hooks/commands/nope", &slack.WebhookMessage{Text: "x"}); err == nil {
		t.Error("unknown response_url accepted")
	}
}

func TestUnackedEventIsRetried(t *testing.T) {
	h := start(t, Options{AckTimeout: 150 * time.Millisecond})
	h.connect()
	ts, err := h.srv.PostMessage(h.bob, h.ops, "hello <@U0BOTUSER01>")
	if err != nil {
		t.Fatal(err)
	}
	first := h.waitEvent(socketmode.EventTypeEventsAPI)
	if first.Request.RetryAttempt != 0 || first.Request.RetryReason != "" {
		t.Fatalf("first delivery retry %d %q", first.Request.RetryAttempt, first.Request.RetryReason)
	}
	ev := first.Data.(slackevents.EventsAPIEvent)
	if ev.Type != slackevents.CallbackEvent || ev.TeamID != "T0EMULATOR" || ev.APIAppID != "A0RUNBOOK01" {
		t.Fatalf("outer event %+v", ev)
	}
	msg, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if !ok {
		t.Fatalf("inner data %T", ev.InnerEvent.Data)
	}
	if msg.User != h.bob || msg.Text != "hello <@U0BOTUSER01>" || msg.Channel != h.ops || msg.TimeStamp != ts || msg.SubType != "" || msg.ChannelType != "channel" {
		t.Fatalf("message event %+v", msg)
	}
	// Do not ack: Slack redelivers with retry_attempt 1, reason timeout.
	second := h.waitEvent(socketmode.EventTypeEventsAPI)
	if second.Request.RetryAttempt != 1 || second.Request.RetryReason != "timeout" {
		t.Fatalf("redelivery retry %d %q", second.Request.RetryAttempt, second.Request.RetryReason)
	}
	if err := h.sm.Ack(*second.Request); err != nil {
		t.Fatal(err)
	}
	h.waitFor("ack of retry", func() bool { return len(h.srv.Acks()) == 1 })
	if a := h.srv.Acks()[0]; a.Attempt != 1 || a.Type != "events_api" || a.Payload != nil {
		t.Fatalf("ack %+v", a)
	}
	if h.srv.AckTimeouts() != 1 || h.srv.Pending() != 0 {
		t.Fatalf("timeouts %d pending %d", h.srv.AckTimeouts(), h.srv.Pending())
	}
}

func TestSlashCommandNotRetriedByDefault(t *testing.T) {
	h := start(t, Options{AckTimeout: 50 * time.Millisecond})
	h.connect()
	if err := h.srv.SlashCommand(h.alice, h.ops, "x"); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(socketmode.EventTypeSlashCommand)
	h.waitFor("timeout", func() bool { return h.srv.AckTimeouts() == 1 && h.srv.Pending() == 0 })
}

func TestDisconnectReconnects(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	h.waitFor("first connection", func() bool { return h.srv.Connects() == 1 && h.srv.Connections() == 1 })
	h.srv.Disconnect()
	h.waitEvent(socketmode.EventTypeConnecting)
	h.waitEvent(socketmode.EventTypeHello)
	h.waitFor("reconnect", func() bool { return h.srv.Connects() == 2 && h.srv.Connections() == 1 })
	if n := h.srv.Calls("apps.connections.open"); n != 2 {
		t.Fatalf("apps.connections.open calls = %d", n)
	}
	// Envelopes still flow on the new socket.
	if err := h.srv.SlashCommand(h.bob, h.ops, "status"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	if err := h.sm.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}
	h.waitFor("ack", func() bool { return len(h.srv.Acks()) == 1 })
}

func TestEnvelopesQueueUntilConnected(t *testing.T) {
	h := start(t, Options{})
	if err := h.srv.SlashCommand(h.alice, h.ops, "early"); err != nil {
		t.Fatal(err)
	}
	if h.srv.Pending() != 1 {
		t.Fatalf("pending = %d", h.srv.Pending())
	}
	h.connect()
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	if evt.Data.(slack.SlashCommand).Text != "early" {
		t.Fatalf("got %+v", evt.Data)
	}
}

func TestSocketAuth(t *testing.T) {
	h := start(t, Options{})
	bad := slack.New("xoxb-x", slack.OptionAPIURL(h.srv.APIURL()), slack.OptionAppLevelToken("xapp-wrong"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sm := socketmode.New(bad)
	go func() {
		for {
			select {
			case <-sm.Events:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := sm.RunContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("RunContext = %v, want invalid_auth", err)
	}
	// A bot token is the wrong kind of token for apps.connections.open.
	_, _, err := slack.New("x", slack.OptionAPIURL(h.srv.APIURL()), slack.OptionAppLevelToken(h.srv.BotToken())).StartSocketModeContext(ctx)
	wantErrCode(t, err, "not_allowed_token_type")
}

func TestWaitForHonoursContext(t *testing.T) {
	srv := New(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := srv.WaitFor(ctx, func() bool { return false }); err == nil {
		t.Fatal("WaitFor returned nil for a false condition")
	}
	ch := srv.Changed()
	srv.AddChannel("x")
	select {
	case <-ch:
	default:
		t.Fatal("Changed did not fire on AddChannel")
	}
}

func TestEchoBotMessages(t *testing.T) {
	h := start(t, Options{EchoBotMessages: true})
	h.connect()
	_, ts, err := h.api.PostMessage(h.ops, slack.MsgOptionText("hi", false))
	if err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeEventsAPI)
	msg := evt.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.BotID != "B0BOTAPP001" || msg.User != "U0BOTUSER01" || msg.TimeStamp != ts {
		t.Fatalf("echo %+v", msg)
	}
	_ = h.sm.Ack(*evt.Request)
	if _, _, _, err := h.api.UpdateMessage(h.ops, ts, slack.MsgOptionText("hi again", false)); err != nil {
		t.Fatal(err)
	}
	evt = h.waitEvent(socketmode.EventTypeEventsAPI)
	ch := evt.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if ch.SubType != "message_changed" || ch.Message == nil || ch.Message.Text != "hi again" || ch.PreviousMessage == nil || ch.PreviousMessage.Text != "hi" {
		raw, _ := json.Marshal(ch)
		t.Fatalf("message_changed %s", raw)
	}
	_ = h.sm.Ack(*evt.Request)
}
