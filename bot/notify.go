package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/runbookbot/runbookbot/engine"
)

// Notify implements engine.Notifier for chat: "chat" (or a platform's
// name, e.g. "slack") posts into the execution's thread, "#channel" (or a
// channel id) posts there on the execution's platform. A notification of
// no execution (a drift report), or of one shown in no chat, posts its
// "#channel"s on the default platform, the first chat. Other channels
// (pagerduty, webhooks) belong to other notifiers and are ignored here. It
// never blocks on the platform: the message is queued. A notification of no
// execution that names "chat" has no thread to go to: that is an error.
func (b *Bot) Notify(ctx context.Context, n engine.Notification) error {
	text := R(Sym(StatusInfo), Txt(" "+strings.TrimSpace(n.Message)))
	if n.Severity != "" {
		text = append(R(Bold(n.Severity), Txt(" ")), text...)
	}
	msg := textMessage(text)
	var c *chat
	var conv, thread string
	if n.ExecutionID != "" {
		b.view.mu.Lock()
		ev := b.view.execs[n.ExecutionID]
		if ev != nil && ev.chat != nil {
			c, conv, thread = ev.chat, ev.t.trigger.Channel, b.view.replyThread(ev)
		}
		b.view.mu.Unlock()
		if c == nil {
			if s, err := b.eng.Store().Get(ctx, n.ExecutionID); err == nil {
				if c = b.chatFor(s.Trigger); c != nil {
					conv, thread = s.Trigger.Channel, s.Trigger.Thread
				}
			}
		}
	}
	if c == nil && len(b.order) > 0 {
		c = b.order[0] // no conversation of its own: channels only
	}
	if c == nil {
		return errors.New("chat notification: the bot is on no chat platform")
	}
	var unposted []string
	for _, ch := range n.Channels {
		to, in := "", ""
		switch {
		case ch == "chat" || ch == c.p.Name():
			if conv == "" {
				unposted = append(unposted, ch)
				continue
			}
			to, in = conv, thread
		case strings.HasPrefix(ch, "#") || channelID(ch):
			to = ch
		default:
			continue
		}
		c.out.add(mark{key: "n|" + uuid.NewString(), conv: to, kind: kindPost, prio: prioNormal, ready: true,
			send: func(ctx context.Context) error {
				ref, err := c.p.Post(ctx, to, in, msg)
				if err == nil {
					c.out.learn(to, ref.Conversation)
				}
				return err
			}})
	}
	if len(unposted) > 0 && n.ExecutionID == "" {
		return fmt.Errorf("chat notification to %s: no execution thread to post in; name a #channel", strings.Join(unposted, ", "))
	}
	return nil
}

// channelID reports whether a notification channel is a platform's
// channel id: Slack's (C0123ABCD) or Discord's (a snowflake).
func channelID(s string) bool {
	if len(s) < 6 {
		return false
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
