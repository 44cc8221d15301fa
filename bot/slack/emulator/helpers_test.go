package emulator

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// fakeClock is an injectable clock for deterministic rate limiting.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1700000000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var tsRE = regexp.MustCompile(`^\d{10}\.\d{6}$`)

// harness is an emulator plus real slack-go clients pointed at it.
type harness struct {
	t      *testing.T
	srv    *Server
	api    *slack.Client
	sm     *socketmode.Client
	events chan socketmode.Event
	alice  string
	bob    string
	ops    string
}

// start starts an emulator with o and seeds users alice, bob and #ops.
func start(t *testing.T, o Options) *harness {
	t.Helper()
	if o.PingInterval == 0 {
		o.PingInterval = 100 * time.Millisecond
	}
	srv := New(o)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	h := &harness{t: t, srv: srv}
	h.alice = srv.AddUser(User{Name: "alice", RealName: "Alice Example", Email: "alice@example.com"})
	h.bob = srv.AddUser(User{Name: "bob", RealName: "Bob Example"})
	h.ops = srv.AddChannel("#ops")
	h.api = slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()), slack.OptionAppLevelToken(srv.AppToken()))
	return h
}

// connect runs a socketmode client until the test ends and forwards its
// events to h.events (drained continuously so the client never blocks).
// It returns the hello event.
func (h *harness) connect() socketmode.Event {
	h.t.Helper()
	h.sm = socketmode.New(h.api)
	h.events = make(chan socketmode.Event, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- h.sm.RunContext(ctx) }()
	go func() {
		for {
			select {
			case e := <-h.sm.Events:
				select {
				case h.events <- e:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-runDone:
		case <-time.After(10 * time.Second):
			h.t.Error("socketmode client did not stop")
		}
	})
	return h.waitEvent(socketmode.EventTypeHello)
}

// waitEvent returns the next event of type typ, skipping others.
func (h *harness) waitEvent(typ socketmode.EventType) socketmode.Event {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-h.events:
			if e.Type == typ {
				return e
			}
		case <-deadline:
			h.t.Fatalf("timed out waiting for socketmode event %q", typ)
		}
	}
}

// waitFor waits (without sleeping) until cond holds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.WaitFor(ctx, cond); err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func slackErr(t *testing.T, err error) slack.SlackErrorResponse {
	t.Helper()
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) {
		t.Fatalf("want slack.SlackErrorResponse, got %T %v", err, err)
	}
	return se
}

func wantErrCode(t *testing.T, err error, code string) {
	t.Helper()
	if se := slackErr(t, err); se.Err != code {
		t.Fatalf("error = %q, want %q (messages %v)", se.Err, code, se.ResponseMetadata.Messages)
	}
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject("plain_text", s, false, false)
}
func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject("mrkdwn", s, false, false)
}

// approvalBlocks is a typical approval message; the section has no block_id.
func approvalBlocks() slack.MsgOption {
	approve := slack.NewButtonBlockElement("approve", "run-42", plain("Approve"))
	approve.Style = slack.StylePrimary
	reject := slack.NewButtonBlockElement("reject", "run-42", plain("Reject"))
	reject.Style = slack.StyleDanger
	return slack.MsgOptionBlocks(
		slack.NewSectionBlock(mrkdwn("*Runbook* `restart-web`"), nil, nil),
		slack.NewActionBlock("approval", approve, reject),
		slack.NewActionBlock("", slack.NewButtonBlockElement("details", "d-1", plain("Details"))),
	)
}
