package bot

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// MessageRef is a platform's opaque reference to a message it posted.
type MessageRef struct {
	Conversation string `json:"c"`
	ID           string `json:"m"`
}

// IsZero reports whether the reference names no message.
func (r MessageRef) IsZero() bool { return r.ID == "" }

// Platform is what the core needs from a chat platform to show the view.
// Errors that are rate limits must be *RateLimitedError so the core waits.
type Platform interface {
	// Name is the platform's name in execution triggers ("slack").
	Name() string
	// Limits is the posting budget the core keeps within.
	Limits() Limits
	// Post sends a message, as a reply in thread when thread is set.
	Post(ctx context.Context, conversation, thread string, m Message) (MessageRef, error)
	// Update replaces a message the bot posted.
	Update(ctx context.Context, ref MessageRef, m Message) error
	// Whisper shows a message to one user only (a late answer).
	Whisper(ctx context.Context, conversation, user string, m Message) error
	// Link returns a link that opens a message.
	Link(ctx context.Context, ref MessageRef) (string, error)
	// Find looks for a message the bot posted whose first block has id key,
	// in thread (when set) or the conversation's recent history; it
	// returns ErrNotFound when there is none.
	Find(ctx context.Context, conversation, thread, key string) (MessageRef, error)
}

// Limits paces what the core sends to one platform: new messages per
// conversation and edits per workspace, as token buckets.
type Limits struct {
	PostBurst   int
	PostEvery   time.Duration // per conversation
	UpdateBurst int
	UpdateEvery time.Duration // platform-wide
	// StepPatience is how long a step's reply may wait for the
	// conversation's budget before the step is shown only in the parent's
	// list (default 5s).
	StepPatience time.Duration
}

// RateLimitedError says the platform refused a call for RetryAfter.
type RateLimitedError struct {
	RetryAfter time.Duration
	// Predicted says the platform did not send the call: it knew the
	// call would be refused (its rate-limit headers said so) and held it
	// back. Otherwise the platform answered 429.
	Predicted bool
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s", e.RetryAfter)
}

// ErrNotFound is returned by Find when no message matches.
var ErrNotFound = errors.New("message not found")
