package bot

import (
	"context"
	"strings"

	"github.com/google/uuid"
	"github.com/runbookbot/runbookbot/engine"
)

// Notify implements engine.Notifier for chat: "chat" (or a platform's
// name, e.g. "slack") posts into the execution's thread, "#channel" posts
// there on the execution's platform. Other channels (pagerduty, webhooks)
// belong to other notifiers and are ignored here. It never blocks on the
// platform: the message is queued.
func (b *Bot) Notify(ctx context.Context, n engine.Notification) error {
	text := R(Sym(StatusInfo), Txt(" "+strings.TrimSpace(n.Message)))
	if n.Severity != "" {
		text = append(R(Bold(n.Severity), Txt(" ")), text...)
	}
	msg := textMessage(text)
	b.view.mu.Lock()
	ev := b.view.execs[n.ExecutionID]
	var c *chat
	var conv, thread string
	if ev != nil && ev.chat != nil {
		c, conv, thread = ev.chat, ev.t.trigger.Channel, b.view.replyThread(ev)
	}
	b.view.mu.Unlock()
	if c == nil {
		s, err := b.eng.Store().Get(ctx, n.ExecutionID)
		if err != nil {
			return nil
		}
		if c = b.chatFor(s.Trigger); c == nil {
			return nil
		}
		conv, thread = s.Trigger.Channel, s.Trigger.Thread
	}
	for _, ch := range n.Channels {
		to, in := "", ""
		switch {
		case ch == "chat" || ch == c.p.Name():
			to, in = conv, thread
		case strings.HasPrefix(ch, "#"):
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
	return nil
}
