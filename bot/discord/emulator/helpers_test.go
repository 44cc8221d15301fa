package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// fakeClock is an injectable clock for token expiry and rate limits.
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

// rewriteTransport sends every request to the emulator: discordgo's
// endpoints are fixed at init, so only scheme and host change.
type rewriteTransport struct{ base *url.URL }

func (t rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = t.base.Scheme, t.base.Host, ""
	return http.DefaultTransport.RoundTrip(r)
}

// harness is an emulator plus a real discordgo session pointed at it.
type harness struct {
	t      *testing.T
	srv    *Server
	dg     *discordgo.Session
	events chan any
	alice  string
	bob    string
	ops    string
}

// start starts an emulator with o and seeds users alice, bob and #ops.
func start(t *testing.T, o Options) *harness {
	t.Helper()
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = time.Second
	}
	srv := New(o)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	h := &harness{t: t, srv: srv, events: make(chan any, 1000)}
	h.alice = srv.AddUser(User{Username: "alice", GlobalName: "Alice"})
	h.bob = srv.AddUser(User{Username: "bob"})
	h.ops = srv.AddChannel("ops")
	h.dg = h.session("Bot " + srv.Token())
	return h
}

// session returns a discordgo session with token whose requests go to the
// emulator.
func (h *harness) session(token string) *discordgo.Session {
	h.t.Helper()
	dg, err := discordgo.New(token)
	if err != nil {
		h.t.Fatal(err)
	}
	base, _ := url.Parse(h.srv.URL())
	dg.Client = &http.Client{Transport: rewriteTransport{base}, Timeout: 20 * time.Second}
	dg.LogLevel = -1 // quiet: failures are asserted, not logged
	return dg
}

// connect opens the gateway with intents and forwards every event to
// h.events until the test ends.
func (h *harness) connect(intents discordgo.Intent) {
	h.t.Helper()
	h.dg.Identify.Intents = intents
	// Handlers run in discordgo's read loop, so what they forward is
	// final; State mutates READY and GUILD_CREATE later, so those are copied.
	h.dg.SyncEvents = true
	h.dg.AddHandler(func(_ *discordgo.Session, e any) {
		switch v := e.(type) {
		case *discordgo.Ready:
			e = snapshot(v)
		case *discordgo.GuildCreate:
			e = snapshot(v)
		}
		select {
		case h.events <- e:
		default:
		}
	})
	if err := h.dg.Open(); err != nil {
		h.t.Fatalf("Open: %v", err)
	}
	h.t.Cleanup(func() { _ = h.dg.Close() })
}

const botIntents = discordgo.IntentsAllWithoutPrivileged | discordgo.IntentMessageContent

// snapshot deep-copies an event through JSON.
func snapshot[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// poll re-checks cond until it holds, for state outside the emulator
// (the client's), failing after a deadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// next returns the next event of type T, skipping others.
func next[T any](h *harness) T {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-h.events:
			if v, ok := e.(T); ok {
				return v
			}
		case <-deadline:
			var zero T
			h.t.Fatalf("timed out waiting for a %T event", zero)
			return zero
		}
	}
}

// interaction waits for the next INTERACTION_CREATE.
func (h *harness) interaction() *discordgo.InteractionCreate {
	h.t.Helper()
	return next[*discordgo.InteractionCreate](h)
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

// restErr asserts err is a Discord REST error with status and code.
func restErr(t *testing.T, err error, status, code int) *discordgo.RESTError {
	t.Helper()
	var re *discordgo.RESTError
	if !errors.As(err, &re) {
		t.Fatalf("want *discordgo.RESTError %d/%d, got %T %v", status, code, err, err)
	}
	if re.Response.StatusCode != status || re.Message == nil || re.Message.Code != code {
		t.Fatalf("got HTTP %d %s, want %d with code %d", re.Response.StatusCode, re.ResponseBody, status, code)
	}
	return re
}

// registerRunbook registers /runbook (run, status, cancel) in the guild.
func (h *harness) registerRunbook() []*discordgo.ApplicationCommand {
	h.t.Helper()
	minID := 1.0
	cmds, err := h.dg.ApplicationCommandBulkOverwrite(h.srv.ApplicationID(), h.srv.GuildID(), []*discordgo.ApplicationCommand{{
		Name: "runbook", Description: "Run a runbook",
		Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionSubCommand, Name: "run", Description: "Start a runbook",
				Options: []*discordgo.ApplicationCommandOption{
					{Type: discordgo.ApplicationCommandOptionString, Name: "name", Description: "runbook", Required: true, Autocomplete: true},
					{Type: discordgo.ApplicationCommandOptionString, Name: "params", Description: "key=value ..."},
				}},
			{Type: discordgo.ApplicationCommandOptionSubCommand, Name: "status", Description: "Show an execution",
				Options: []*discordgo.ApplicationCommandOption{
					{Type: discordgo.ApplicationCommandOptionInteger, Name: "id", Description: "execution", Required: true, MinValue: &minID},
				}},
			{Type: discordgo.ApplicationCommandOptionSubCommand, Name: "cancel", Description: "Cancel an execution",
				Options: []*discordgo.ApplicationCommandOption{
					{Type: discordgo.ApplicationCommandOptionUser, Name: "owner", Description: "whose", Required: true},
				}},
		},
	}})
	if err != nil {
		h.t.Fatalf("register commands: %v", err)
	}
	return cmds
}

func strptr(s string) *string { return &s }

// approvalComponents is a typical approval card's buttons.
func approvalComponents() []discordgo.MessageComponent {
	return []discordgo.MessageComponent{discordgo.ActionsRow{Components: []discordgo.MessageComponent{
		discordgo.Button{Label: "Approve", Style: discordgo.SuccessButton, CustomID: "approve:42"},
		discordgo.Button{Label: "Reject", Style: discordgo.DangerButton, CustomID: "reject:42"},
		discordgo.Button{Label: "Docs", Style: discordgo.LinkButton, URL: "https://example.com/runbooks"},
	}}}
}
