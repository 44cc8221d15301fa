// Package bot is the chat-neutral core of runbookbot. It turns the engine's
// event log into conversations (a parent message per execution, a reply per
// step, approval cards with buttons) and answers what people type and click.
//
// Three seams keep it platform-neutral, so that a chat platform is one
// sub-package (bot/slack, bot/discord) and one wiring line:
//
//   - Messages are built from semantic spans (Mention, Link, Code, Status,
//     Time …); only a platform package turns them into its markup.
//   - Handlers return a Response (a reply, a form to open, form errors); the
//     platform delivers it its own way (Slack: the ack payload or
//     response_url; Discord: the interaction response).
//   - A button carries a command line ("approve <approval-id>"), so a click
//     goes through the same grammar, authorization and audit as a typed
//     command.
//
// The chat view is a reader of the event log with a durable cursor (see
// view.go): what was delivered to chat is recorded in a ViewStore, and after
// any restart every execution whose chat lags its events is re-rendered to
// the final truth. The outbox (outbox.go) is only a cache of pending
// renders, sent by priority within the platform's limits.
package bot

import (
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// SpanKind says what a span means.
type SpanKind uint8

// Span kinds every platform renders.
const (
	SpanText    SpanKind = iota // plain text
	SpanBold                    // emphasised text
	SpanItalic                  // secondary text
	SpanCode                    // an identifier, a value: monospace
	SpanPre                     // a block of preformatted text (output)
	SpanMention                 // a person (User is the platform's user id or a name)
	SpanGroup                   // a group of people from the RBAC config (Group)
	SpanLink                    // URL with Text
	SpanStatus                  // a status symbol (Status)
	SpanTime                    // a moment (Time), shown in the reader's terms
	SpanBreak                   // a line break
)

// Status is a state a span shows as a symbol.
type Status string

// Statuses a platform maps to its own symbols.
const (
	StatusOK        Status = "ok"
	StatusFailed    Status = "failed"
	StatusRunning   Status = "running"
	StatusWaiting   Status = "waiting"
	StatusPending   Status = "pending"
	StatusSkipped   Status = "skipped"
	StatusWarning   Status = "warning"
	StatusRollback  Status = "rollback"
	StatusAborted   Status = "aborted"
	StatusPartial   Status = "partial"
	StatusRefused   Status = "refused"
	StatusInfo      Status = "info"
	StatusAlert     Status = "alert"
	StatusResolved  Status = "resolved"
	StatusStop      Status = "stop"
	StatusTimeout   Status = "timeout"
	StatusEscalated Status = "escalated"
	StatusLock      Status = "lock"
	StatusSearch    Status = "search"
	StatusQuestion  Status = "question"
	StatusRunbook   Status = "runbook"
	StatusVote      Status = "vote"
	StatusQueued    Status = "queued"
)

// Span is one piece of rich text.
type Span struct {
	Kind   SpanKind
	Text   string
	User   string
	URL    string
	Status Status
	Time   time.Time
	Group  *engine.Group
}

// Rich is text made of spans.
type Rich []Span

// Txt is plain text.
func Txt(s string) Span { return Span{Kind: SpanText, Text: s} }

// Bold is emphasised text.
func Bold(s string) Span { return Span{Kind: SpanBold, Text: s} }

// Ital is secondary (italic) text.
func Ital(s string) Span { return Span{Kind: SpanItalic, Text: s} }

// Code is an identifier or value, shown monospace.
func Code(s string) Span { return Span{Kind: SpanCode, Text: s} }

// Pre is a block of preformatted text.
func Pre(s string) Span { return Span{Kind: SpanPre, Text: s} }

// Mention names a person by their platform user id (or a name when the
// actor is not a person, e.g. "alert:CheckoutDown").
func Mention(user string) Span { return Span{Kind: SpanMention, User: user} }

// GroupMention names a group of the RBAC config; each platform mentions
// its own identities for it (Slack user groups, Discord roles, users).
func GroupMention(g engine.Group) Span { return Span{Kind: SpanGroup, Group: &g, Text: g.Name} }

// Link is a hyperlink.
func Link(url, text string) Span { return Span{Kind: SpanLink, URL: url, Text: text} }

// Sym is a status symbol.
func Sym(s Status) Span { return Span{Kind: SpanStatus, Status: s} }

// At is a moment in time.
func At(t time.Time) Span { return Span{Kind: SpanTime, Time: t} }

// BR is a line break.
func BR() Span { return Span{Kind: SpanBreak} }

// R builds rich text.
func R(spans ...Span) Rich { return Rich(spans) }

// Plain is the text without markup: mentions as @id, links as their text,
// statuses as words. Platforms use it where no markup is allowed; tests use
// it to read messages.
func (r Rich) Plain() string {
	var b strings.Builder
	for _, s := range r {
		switch s.Kind {
		case SpanMention:
			b.WriteString("@" + s.User)
		case SpanGroup:
			b.WriteString("@" + s.Text)
		case SpanStatus:
			b.WriteString("[" + string(s.Status) + "]")
		case SpanTime:
			b.WriteString(s.Time.UTC().Format("2006-01-02 15:04 UTC"))
		case SpanBreak:
			b.WriteString("\n")
		default:
			b.WriteString(s.Text)
		}
	}
	return b.String()
}

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

// Message is a platform-neutral message. Summary is the short form used
// for notifications and where blocks cannot be shown.
type Message struct {
	Summary Rich
	Blocks  []Block
}

// Block is one part of a message. ID names it so that the bot can find its
// own messages again (the first block's ID is the message's key).
type Block struct {
	Kind    BlockKind
	ID      string
	Text    Rich
	Fields  []Field
	Buttons []Button
}

// Field is a labelled value.
type Field struct {
	Label string
	Value Rich
}

// ButtonStyle colours a button.
type ButtonStyle string

// Button styles.
const (
	StyleDefault ButtonStyle = ""
	StylePrimary ButtonStyle = "primary"
	StyleDanger  ButtonStyle = "danger"
)

// Button carries a command line: a click is handled as if its user typed
// Command. ID identifies the button among those the bot issued.
type Button struct {
	ID      string
	Label   string
	Command string
	Style   ButtonStyle
}

// Modal is a form. Command is the command line the submitted values
// complete (e.g. "reject <approval-id>" + the comment).
type Modal struct {
	ID      string
	Title   string
	Submit  string
	Text    Rich
	Command string
	Inputs  []Input
}

// Input is one text field of a modal.
type Input struct {
	ID          string
	Label       string
	Placeholder string
	Multiline   bool
	Optional    bool
}

// Response is what a handler answers; the platform delivers it.
type Response struct {
	// Reply is shown to the person who typed or clicked.
	Reply *Message
	// Ephemeral keeps Reply visible to that person only.
	Ephemeral bool
	// Modal asks the platform to open a form.
	Modal *Modal
	// FieldErrors, for a submitted form, are shown in the form by input id.
	FieldErrors map[string]string
}

// Request is something a person did in chat: typed a command, clicked a
// button, or submitted a form.
type Request struct {
	// Platform names the chat platform ("slack", "discord").
	Platform string
	// User is the platform's user id.
	User string
	// Conversation and Thread are where it happened (opaque references).
	Conversation string
	Thread       string
	// Line is the command line: typed, carried by a button, or completed
	// by a form.
	Line string
	// Button is the id of the clicked button ("" when typed).
	Button string
	// Form is the id of the submitted form and Values its inputs.
	Form   string
	Values map[string]string
}
