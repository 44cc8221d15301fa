// Package slack connects the bot to Slack over Socket Mode and renders its
// messages as Block Kit. It is the only package that imports slack-go.
package slack

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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

// Client is a Socket Mode connection feeding a Bot.
type Client struct {
	selfBotID string
	api       *slack.Client
	sm        *socketmode.Client
	bot       *bot.Bot
	log       *slog.Logger
	wg        sync.WaitGroup
	acksMu    sync.Mutex
	acks      []time.Duration
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

// AckLatencies returns how long each envelope waited for its ack.
func (c *Client) AckLatencies() []time.Duration {
	c.acksMu.Lock()
	defer c.acksMu.Unlock()
	return append([]time.Duration(nil), c.acks...)
}

// Run reads Socket Mode events until ctx ends. Every envelope is acked
// first; the work runs after the ack, in its own goroutine.
func (c *Client) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- c.sm.RunContext(ctx) }()
	defer c.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case evt, ok := <-c.sm.Events:
			if !ok {
				return nil
			}
			c.handle(ctx, evt)
		}
	}
}

func (c *Client) ack(req *socketmode.Request, start time.Time, payload ...any) {
	if req == nil {
		return
	}
	c.sm.Ack(*req, payload...)
	c.acksMu.Lock()
	c.acks = append(c.acks, time.Since(start))
	c.acksMu.Unlock()
}

func (c *Client) async(ctx context.Context, f func(ctx context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f(context.WithoutCancel(ctx))
	}()
}

func (c *Client) handle(ctx context.Context, evt socketmode.Event) {
	start := time.Now()
	switch evt.Type {
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		c.ack(evt.Request, start)
		if !ok {
			return
		}
		c.async(ctx, func(ctx context.Context) {
			r := c.bot.HandleCommand(ctx, bot.CommandIn{User: cmd.UserID, Channel: cmd.ChannelID, Text: cmd.Text, TriggerID: cmd.TriggerID})
			c.reply(ctx, cmd.ChannelID, cmd.UserID, r)
		})
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			c.ack(evt.Request, start)
			return
		}
		switch cb.Type {
		case slack.InteractionTypeBlockActions:
			c.ack(evt.Request, start)
			for _, a := range cb.ActionCallback.BlockActions {
				in := bot.ActionIn{User: cb.User.ID, Channel: cb.Channel.ID, MessageTS: cb.Container.MessageTs, ActionID: a.ActionID, Value: a.Value, TriggerID: cb.TriggerID}
				c.async(ctx, func(ctx context.Context) {
					c.reply(ctx, in.Channel, in.User, c.bot.HandleAction(ctx, in))
				})
			}
		case slack.InteractionTypeViewSubmission:
			in := bot.ModalIn{User: cb.User.ID, CallbackID: cb.View.CallbackID, Metadata: cb.View.PrivateMetadata, Values: map[string]string{}}
			for blockID, actions := range cb.View.State.Values {
				for _, v := range actions {
					in.Values[blockID] = v.Value
				}
			}
			// Field checks are cheap and answered in the ack, so the form
			// shows them; the decision runs after the ack.
			if errs := bot.ValidateModal(in); len(errs) > 0 {
				c.ack(evt.Request, start, slack.NewErrorsViewSubmissionResponse(errs))
				return
			}
			c.ack(evt.Request, start)
			c.async(ctx, func(ctx context.Context) {
				_, r := c.bot.HandleModal(ctx, in)
				ch := cb.Channel.ID
				if ch == "" {
					ch = cb.User.ID
				}
				c.reply(ctx, ch, cb.User.ID, r)
			})
		default:
			c.ack(evt.Request, start)
		}
	case socketmode.EventTypeEventsAPI:
		c.ack(evt.Request, start)
		ev, ok := evt.Data.(slackevents.EventsAPIEvent)
		if !ok || ev.Type != slackevents.CallbackEvent {
			return
		}
		m, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
		if !ok || m.SubType == "message_changed" || m.SubType == "message_deleted" {
			return
		}
		cm := bot.ChannelMessage{Channel: m.Channel, TS: m.TimeStamp, ThreadTS: m.ThreadTimeStamp, User: m.User, BotID: m.BotID, Username: m.Username, Text: m.Text}
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
		c.async(ctx, func(ctx context.Context) { c.bot.HandleChannelMessage(ctx, cm) })
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
		c.log.Error("slack connection problem", "type", evt.Type, "data", fmt.Sprint(evt.Data))
	default:
		if evt.Request != nil {
			c.ack(evt.Request, start)
		}
	}
}

func (c *Client) reply(ctx context.Context, channel, user string, r *bot.Reply) {
	if r == nil {
		return
	}
	if err := NewPlatform(c.api).Ephemeral(ctx, channel, user, *r); err != nil {
		c.log.Warn("cannot answer user", "user", user, "err", err)
	}
}
