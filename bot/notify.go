package bot

import (
	"context"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// Notify implements engine.Notifier for chat: "slack" (or "chat") posts
// into the execution's thread, "#channel" posts there. Other channels
// (pagerduty, webhooks) belong to other notifiers and are ignored here.
func (b *Bot) Notify(ctx context.Context, n engine.Notification) error {
	text := ":mega: " + strings.TrimSpace(n.Message)
	if n.Severity != "" {
		text = "*" + n.Severity + "* " + text
	}
	msg := Message{Text: text, Blocks: []Block{{Kind: KindSection, Text: trim(text, 2900)}}}
	for _, ch := range n.Channels {
		switch {
		case ch == "slack" || ch == "chat":
			b.mu.Lock()
			t := b.threads[n.ExecutionID]
			b.mu.Unlock()
			if t == nil || t.channel == "" {
				continue
			}
			b.out.mark(item{key: "n:" + n.ExecutionID, oneShot: true, channel: t.channel, threadTS: b.threadOf(t), render: func() Message { return msg }})
		case strings.HasPrefix(ch, "#"):
			b.out.mark(item{key: "n:" + n.ExecutionID + ch, oneShot: true, channel: ch, threadTS: func() string { return "" }, render: func() Message { return msg }})
		}
	}
	return nil
}
