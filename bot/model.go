// Package bot is the chat-neutral bot: it turns engine events into live
// threads (a parent message and one message per step, edited in place),
// approval requests with buttons, and replies to commands, and it paces
// what it sends so the platform's rate limits are never hit. Platforms
// (bot/slack) render Messages and feed inbound events to Bot.
package bot

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// BlockKind is a kind of message block.
type BlockKind string

// Block kinds every platform can render.
const (
	KindHeader  BlockKind = "header"
	KindSection BlockKind = "section"
	KindContext BlockKind = "context"
	KindActions BlockKind = "actions"
	KindDivider BlockKind = "divider"
)

// Message is a platform-neutral message. Text uses Slack-style mrkdwn
// (*bold*, `code`, <@USER>), which other platforms translate.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks,omitempty"`
}

// Block is one part of a message.
type Block struct {
	Kind    BlockKind `json:"kind"`
	ID      string    `json:"id,omitempty"`
	Text    string    `json:"text,omitempty"`
	Fields  []string  `json:"fields,omitempty"`
	Buttons []Button  `json:"buttons,omitempty"`
}

// Button carries an action id (what) and an opaque value (which); clicks
// come back as Action with both.
type Button struct {
	Label    string `json:"label"`
	ActionID string `json:"actionId"`
	Value    string `json:"value"`
	Style    string `json:"style,omitempty"` // primary | danger
}

// Modal is a form the bot opens in reply to a click.
type Modal struct {
	CallbackID string
	Title      string
	Submit     string
	Text       string
	Metadata   string
	Inputs     []Input
}

// Input is one text field of a modal.
type Input struct {
	ID          string
	Label       string
	Placeholder string
	Multiline   bool
	Optional    bool
}

// Platform sends messages to a chat platform. Errors that are rate limits
// must be *RateLimitedError so the bot waits and retries.
type Platform interface {
	// Post sends a message (a thread reply when threadTS is set) and
	// returns the channel id and message timestamp.
	Post(ctx context.Context, channel, threadTS string, m Message) (channelID, ts string, err error)
	Update(ctx context.Context, channel, ts string, m Message) error
	Ephemeral(ctx context.Context, channel, user string, m Message) error
	OpenModal(ctx context.Context, triggerID string, m Modal) error
	Permalink(ctx context.Context, channel, ts string) (string, error)
	// FindMessage finds a message the bot posted earlier by a block id, in
	// a thread (threadTS set) or the channel's recent history.
	FindMessage(ctx context.Context, channel, threadTS, blockID string) (ts string, err error)
}

// RateLimitedError says the platform refused a call for RetryAfter.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s", e.RetryAfter)
}

// ErrNotFound is returned by FindMessage when no message matches.
var ErrNotFound = errors.New("message not found")

// CommandIn is a typed /runbook command.
type CommandIn struct {
	User      string
	Channel   string
	Text      string
	TriggerID string
}

// ActionIn is a button click.
type ActionIn struct {
	User      string
	Channel   string
	MessageTS string
	ActionID  string
	Value     string
	TriggerID string
}

// ModalIn is a submitted modal.
type ModalIn struct {
	User       string
	CallbackID string
	Metadata   string
	Values     map[string]string
}
