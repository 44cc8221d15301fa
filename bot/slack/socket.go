// Package slack connects the bot to Slack over Socket Mode and renders its
// neutral messages as mrkdwn and Block Kit. It is the only package that
// imports slack-go, and the only one that knows Slack's ids, limits and
// markup.
package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runbookbot/runbookbot/bot"
	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// Config reaches Slack: tokens and, for the emulator, the API URL.
type Config struct {
	BotToken string
	AppToken string
	// APIURL overrides https://slack.com/api/ (ends with a slash).
	APIURL string
	Logger *slog.Logger
}

// AckBudget is how long a slash command's answer may take to be carried
// in its ack (Slack allows 3s); slower answers follow on response_url.
const AckBudget = 1500 * time.Millisecond

// maxAck is the largest ack slack-go sends (Slack drops bigger frames).
const maxAck = 19 * 1024

// Client is a Socket Mode connection feeding a Bot. Envelopes are acked as
// they are read, before their handlers start (a run's is acked once its
// start is persisted), and every envelope is handled in its own goroutine,
// so no envelope waits for another.
type Client struct {
	selfBotID string
	api       *slack.Client
	sm        *socketmode.Client
	bot       *bot.Bot
	log       *slog.Logger
	wg        sync.WaitGroup
	acksMu    sync.Mutex
	acks      []time.Duration
	connected atomic.Bool // between Slack's hello and the socket's loss
	httpAcks  sync.Map    // envelope id → chan any: acks that are HTTP responses (http.go)
}

// NewAPI returns a Web API client for cfg.
func NewAPI(cfg Config) *slack.Client {
	o := []slack.Option{slack.OptionAppLevelToken(cfg.AppToken)}
	if cfg.APIURL != "" {
		o = append(o, slack.OptionAPIURL(cfg.APIURL))
	}
	return slack.New(cfg.BotToken, o...)
}

// Check verifies the bot token (auth.test) so a bad token fails at start.
func Check(ctx context.Context, api *slack.Client) (string, error) {
	r, err := api.AuthTestContext(ctx)
	if err != nil {
		return "", fmt.Errorf("slack auth.test: %w", err)
	}
	return r.UserID, nil
}

// NewClient connects b to Slack through api.
func NewClient(api *slack.Client, b *bot.Bot, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{api: api, sm: socketmode.New(api), bot: b, log: log}
	if r, err := api.AuthTest(); err == nil {
		c.selfBotID = r.BotID
	}
	return c
}

// AckLatencies returns how long each envelope waited for its ack, from
// reading it to acking it.
func (c *Client) AckLatencies() []time.Duration {
	c.acksMu.Lock()
	defer c.acksMu.Unlock()
	return append([]time.Duration(nil), c.acks...)
}

// Connected reports whether the Socket Mode connection is up: true from
// Slack's hello until the socket is lost (a reconnect, a connection error)
// or Run returns. In HTTP mode there is no socket and it stays false.
func (c *Client) Connected() bool { return c.connected.Load() }

// Run reads Socket Mode events until ctx ends, and returns once every
// handler it started has finished.
func (c *Client) Run(ctx context.Context) error {
	defer c.connected.Store(false)
	errc := make(chan error, 1)
	go func() { errc <- c.sm.RunContext(ctx) }()
	defer c.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			c.drain(errc)
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case evt, ok := <-c.sm.Events:
			if !ok {
				<-errc
				return nil
			}
			c.dispatch(ctx, evt)
		}
	}
}

// drain discards events until the socket goroutine has stopped.
func (c *Client) drain(errc <-chan error) {
	for {
		select {
		case <-errc:
			return
		case <-c.sm.Events:
		}
	}
}

func (c *Client) spawn(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *Client) ack(req *socketmode.Request, start time.Time, payload any) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	if c.ackHTTP(req.EnvelopeID, start, payload) {
		return // in HTTP mode the ack is the response
	}
	var err error
	if payload != nil {
		err = c.sm.Ack(*req, payload)
	} else {
		err = c.sm.Ack(*req)
	}
	if err != nil {
		c.log.Warn("cannot ack an envelope", "type", req.Type, "err", err)
	}
	c.acksMu.Lock()
	c.acks = append(c.acks, time.Since(start))
	c.acksMu.Unlock()
}

func (c *Client) dispatch(ctx context.Context, evt socketmode.Event) {
	start := time.Now()
	hctx := context.WithoutCancel(ctx)
	switch evt.Type {
	case socketmode.EventTypeHello:
		// hello carries no envelope id: nothing to ack.
		c.connected.Store(true)
	case socketmode.EventTypeConnecting, socketmode.EventTypeDisconnect:
		// The socket is gone (slack-go reconnects): not connected until
		// the next hello.
		c.connected.Store(false)
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || !bot.AnswerInAck(cmd.Text) {
			// Acked here, before any handler is started: nothing but
			// reading the envelope comes before its ack.
			c.ack(evt.Request, start, nil)
			if ok {
				c.spawn(func() { c.answer(hctx, cmd) })
			}
			return
		}
		c.spawn(func() { c.slash(hctx, evt.Request, cmd, start) })
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			c.ack(evt.Request, start, nil)
			return
		}
		c.interactive(hctx, evt.Request, cb, start)
	case socketmode.EventTypeEventsAPI:
		c.ack(evt.Request, start, nil)
		if ev, ok := evt.Data.(slackevents.EventsAPIEvent); ok {
			c.spawn(func() { c.event(hctx, ev) })
		}
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
		c.connected.Store(false)
		c.log.Error("slack connection problem", "type", evt.Type, "data", fmt.Sprint(evt.Data))
	default:
		c.ack(evt.Request, start, nil)
	}
}

// answer handles a slash command that was acked already and delivers the
// answer (response_url, a form, or a whisper).
func (c *Client) answer(ctx context.Context, cmd slack.SlashCommand) {
	req := bot.Request{Platform: Name, User: cmd.UserID, Conversation: cmd.ChannelID, Line: cmd.Text}
	c.deliver(ctx, c.bot.Handle(ctx, req), cmd.ResponseURL, cmd.TriggerID, cmd.ChannelID, cmd.UserID)
}

// slash answers a run: it is handled first (its start is persisted before
// the ack) and its answer rides in the ack when it is ready within
// AckBudget, else the ack goes alone and the answer follows on
// response_url. Other commands are acked at once (see dispatch).
func (c *Client) slash(ctx context.Context, env *socketmode.Request, cmd slack.SlashCommand, start time.Time) {
	req := bot.Request{Platform: Name, User: cmd.UserID, Conversation: cmd.ChannelID, Line: cmd.Text}
	done := make(chan bot.Response, 1)
	c.spawn(func() { done <- c.bot.Handle(ctx, req) })
	timer := time.NewTimer(AckBudget)
	defer timer.Stop()
	var resp bot.Response
	select {
	case resp = <-done:
		p := ackPayload(resp)
		c.ack(env, start, p)
		if p != nil {
			resp.Reply = nil
		}
	case <-timer.C:
		c.ack(env, start, nil)
		resp = <-done
	}
	c.deliver(ctx, resp, cmd.ResponseURL, cmd.TriggerID, cmd.ChannelID, cmd.UserID)
}

// ackPayload is a reply as a slash command ack payload, or nil when there
// is none or it is too big for an ack.
func ackPayload(r bot.Response) any {
	if r.Reply == nil {
		return nil
	}
	typ := "ephemeral"
	if !r.Ephemeral {
		typ = "in_channel"
	}
	p := map[string]any{"response_type": typ, "text": Text(*r.Reply), "blocks": Blocks(*r.Reply)}
	raw, err := json.Marshal(p)
	if err != nil || len(raw) > maxAck {
		return nil
	}
	return json.RawMessage(raw)
}

// deliver sends what a handler answered after the ack: a reply through
// response_url (retried, then through the bot's budgeted whisper so an
// answer always arrives), a form through views.open.
func (c *Client) deliver(ctx context.Context, r bot.Response, responseURL, triggerID, channel, user string) {
	if r.Modal != nil {
		meta, _ := json.Marshal(modalMeta{Line: r.Modal.Command, Channel: channel})
		if _, err := c.api.OpenViewContext(ctx, triggerID, modalView(*r.Modal, string(meta))); err != nil {
			c.log.Warn("cannot open a form", "user", user, "err", err)
			m := bot.Message{Blocks: []bot.Block{{Kind: bot.KindSection, Text: bot.R(bot.Sym(bot.StatusWarning),
				bot.Txt(" I could not open the form; type "), bot.Code("/runbook "+r.Modal.Command+" ..."), bot.Txt(" instead."))}}}
			r.Reply = &m
		}
	}
	if r.Reply == nil {
		return
	}
	if responseURL != "" {
		typ := "ephemeral"
		if !r.Ephemeral {
			typ = "in_channel"
		}
		blocks := slack.Blocks{BlockSet: Blocks(*r.Reply)}
		msg := &slack.WebhookMessage{Text: Text(*r.Reply), Blocks: &blocks, ResponseType: typ}
		for attempt := 0; attempt < 3; attempt++ {
			if err := slack.PostWebhookContext(ctx, responseURL, msg); err == nil {
				return
			} else {
				c.log.Warn("response_url failed", "attempt", attempt+1, "err", err)
			}
			t := time.NewTimer(time.Duration(200*(attempt+1)) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
	c.bot.Whisper(Name, channel, user, *r.Reply)
}

// modalMeta travels in a form's private_metadata.
type modalMeta struct {
	Line    string `json:"l"`
	Channel string `json:"c,omitempty"`
}

func (c *Client) interactive(ctx context.Context, env *socketmode.Request, cb slack.InteractionCallback, start time.Time) {
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		c.ack(env, start, nil)
		c.spawn(func() {
			for _, a := range cb.ActionCallback.BlockActions {
				req := bot.Request{Platform: Name, User: cb.User.ID, Conversation: cb.Channel.ID, Thread: cb.Container.ThreadTs,
					Line: a.Value, Button: a.ActionID}
				if req.Thread == "" {
					req.Thread = cb.Container.MessageTs
				}
				c.deliver(ctx, c.bot.Handle(ctx, req), cb.ResponseURL, cb.TriggerID, cb.Channel.ID, cb.User.ID)
			}
		})
	case slack.InteractionTypeViewSubmission:
		var meta modalMeta
		_ = json.Unmarshal([]byte(cb.View.PrivateMetadata), &meta)
		req := bot.Request{Platform: Name, User: cb.User.ID, Conversation: meta.Channel, Line: meta.Line,
			Form: cb.View.CallbackID, Values: map[string]string{}}
		for blockID, actions := range cb.View.State.Values {
			for _, v := range actions {
				req.Values[blockID] = v.Value
			}
		}
		// Field checks are answered in the ack, so the form shows them;
		// the decision runs after the ack.
		if errs := bot.CheckForm(req); len(errs) > 0 {
			c.ack(env, start, slack.NewErrorsViewSubmissionResponse(errs))
			return
		}
		c.ack(env, start, nil)
		ch := meta.Channel
		if ch == "" {
			ch = cb.User.ID
		}
		c.spawn(func() { c.deliver(ctx, c.bot.Handle(ctx, req), "", "", ch, cb.User.ID) })
	default:
		c.ack(env, start, nil)
	}
}

// event passes channel messages on (alerts posted by other bots and
// Alertmanager).
func (c *Client) event(ctx context.Context, ev slackevents.EventsAPIEvent) {
	if ev.Type != slackevents.CallbackEvent {
		return
	}
	m, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if !ok || m.SubType == "message_changed" || m.SubType == "message_deleted" {
		return
	}
	cm := bot.ChannelMessage{Platform: Name, Channel: m.Channel, TS: m.TimeStamp, ThreadTS: m.ThreadTimeStamp, User: m.User, BotID: m.BotID, Username: m.Username, Text: m.Text}
	if m.Message != nil {
		if cm.Text == "" {
			cm.Text = m.Message.Text
		}
		if cm.BotID == "" {
			cm.BotID = m.Message.BotID
		}
		for _, a := range m.Message.Attachments {
			at := alerts.Attachment{Title: a.Title, TitleLink: a.TitleLink, Text: a.Text, Fallback: a.Fallback, Color: a.Color, Pretext: a.Pretext}
			for _, f := range a.Fields {
				at.Fields = append(at.Fields, alerts.Field{Title: f.Title, Value: f.Value})
			}
			cm.Attachments = append(cm.Attachments, at)
		}
	}
	if cm.BotID != "" && cm.BotID == c.selfBotID {
		return // our own messages
	}
	c.bot.HandleChannelMessage(ctx, cm)
}
