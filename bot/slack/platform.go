package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/bot"
	"github.com/slack-go/slack"
)

// Platform sends the bot's messages through the Slack Web API.
type Platform struct {
	api *slack.Client

	mu       sync.Mutex
	channels map[string]string // name → id
	groups   map[string]string // handle → id
}

var _ bot.Platform = (*Platform)(nil)

// NewPlatform wraps a Web API client.
func NewPlatform(api *slack.Client) *Platform {
	return &Platform{api: api, channels: map[string]string{}, groups: map[string]string{}}
}

// Name is the platform's name in execution triggers.
func (p *Platform) Name() string { return Name }

// Name is Slack's name in execution triggers.
const Name = "slack"

// DefaultLimits are Slack's: chat.postMessage one per second per channel
// with short bursts (the bot keeps one burst token less than Slack allows,
// so network jitter never makes Slack count a post early), chat.update
// Tier 3 (50 per minute per workspace, kept a little under).
func DefaultLimits() bot.Limits {
	return bot.Limits{PostBurst: 4, PostEvery: time.Second, UpdateBurst: 10, UpdateEvery: 1300 * time.Millisecond, StepPatience: 5 * time.Second}
}

// Limits implements bot.Platform.
func (p *Platform) Limits() bot.Limits { return DefaultLimits() }

func opts(m bot.Message) []slack.MsgOption {
	o := []slack.MsgOption{slack.MsgOptionText(Text(m), false)}
	if len(m.Blocks) > 0 {
		o = append(o, slack.MsgOptionBlocks(Blocks(m)...))
	}
	return o
}

func convert(err error) error {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return &bot.RateLimitedError{RetryAfter: rl.RetryAfter}
	}
	return err
}

// Post sends a message or a thread reply.
func (p *Platform) Post(ctx context.Context, channel, thread string, m bot.Message) (bot.MessageRef, error) {
	o := opts(m)
	if thread != "" {
		o = append(o, slack.MsgOptionTS(thread))
	}
	ch, ts, err := p.api.PostMessageContext(ctx, channel, o...)
	if err != nil {
		return bot.MessageRef{}, convert(err)
	}
	if strings.HasPrefix(channel, "#") {
		p.mu.Lock()
		p.channels[strings.TrimPrefix(channel, "#")] = ch
		p.mu.Unlock()
	}
	return bot.MessageRef{Conversation: ch, ID: ts}, nil
}

// Update edits a message in place.
func (p *Platform) Update(ctx context.Context, ref bot.MessageRef, m bot.Message) error {
	ch, err := p.channelID(ctx, ref.Conversation)
	if err != nil {
		return err
	}
	_, _, _, err = p.api.UpdateMessageContext(ctx, ch, ref.ID, opts(m)...)
	return convert(err)
}

// Whisper shows a message to one user.
func (p *Platform) Whisper(ctx context.Context, channel, user string, m bot.Message) error {
	_, err := p.api.PostEphemeralContext(ctx, channel, user, opts(m)...)
	return convert(err)
}

// Link links to a message.
func (p *Platform) Link(ctx context.Context, ref bot.MessageRef) (string, error) {
	ch, err := p.channelID(ctx, ref.Conversation)
	if err != nil {
		return "", err
	}
	l, err := p.api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: ch, Ts: ref.ID})
	return l, convert(err)
}

// channelID resolves #name to an id (conversations.info, then
// conversations.list); ids pass through.
func (p *Platform) channelID(ctx context.Context, ref string) (string, error) {
	if !strings.HasPrefix(ref, "#") {
		return ref, nil
	}
	name := strings.TrimPrefix(ref, "#")
	p.mu.Lock()
	id, ok := p.channels[name]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	if c, err := p.api.GetConversationInfoContext(ctx, &slack.GetConversationInfoInput{ChannelID: name}); err == nil {
		id = c.ID
	} else {
		cursor := ""
		for id == "" {
			chans, next, lerr := p.api.GetConversationsContext(ctx, &slack.GetConversationsParameters{Cursor: cursor, Limit: 200, ExcludeArchived: true})
			if lerr != nil {
				return "", fmt.Errorf("resolving channel %s: %w", ref, convert(lerr))
			}
			for _, c := range chans {
				if c.Name == name {
					id = c.ID
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	if id == "" {
		return "", fmt.Errorf("channel %s not found", ref)
	}
	p.mu.Lock()
	p.channels[name] = id
	p.mu.Unlock()
	return id, nil
}

// Find finds one of the bot's messages by block id, in a thread or
// in the channel's recent history.
func (p *Platform) Find(ctx context.Context, channel, threadTS, blockID string) (bot.MessageRef, error) {
	ch, err := p.channelID(ctx, channel)
	if err != nil {
		return bot.MessageRef{}, err
	}
	var msgs []slack.Message
	if threadTS != "" {
		msgs, _, _, err = p.api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: ch, Timestamp: threadTS, Limit: 200})
	} else {
		var h *slack.GetConversationHistoryResponse
		h, err = p.api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: ch, Limit: 200})
		if h != nil {
			msgs = h.Messages
		}
	}
	if err != nil {
		return bot.MessageRef{}, convert(err)
	}
	for _, m := range msgs {
		raw, _ := json.Marshal(m.Blocks)
		if strings.Contains(string(raw), `"block_id":"`+blockID+`"`) {
			return bot.MessageRef{Conversation: ch, ID: m.Timestamp}, nil
		}
	}
	return bot.MessageRef{}, bot.ErrNotFound
}

// UserGroupMembers lists a user group's members (by id, or by handle).
func (p *Platform) UserGroupMembers(ctx context.Context, group string) ([]string, error) {
	id := group
	if !strings.HasPrefix(group, "S") {
		p.mu.Lock()
		cached, ok := p.groups[group]
		p.mu.Unlock()
		if ok {
			id = cached
		} else {
			gs, err := p.api.GetUserGroupsContext(ctx)
			if err != nil {
				return nil, convert(err)
			}
			for _, g := range gs {
				if g.Handle == strings.TrimPrefix(group, "@") {
					id = g.ID
				}
			}
			p.mu.Lock()
			p.groups[group] = id
			p.mu.Unlock()
		}
	}
	us, err := p.api.GetUserGroupMembersContext(ctx, id)
	return us, convert(err)
}
